"""Ground truth of a running fleet, written to files (``biogw sim --truth-dir``).

For every device and every signal source it runs on, the source's truth so far (R-peak
times, breath onsets, activity segments, ...) goes to ``<device>-<stream>.json`` in the
same layout as ``devices.sim.signals.export_truth``. Times are seconds since the device
booted, the simulator's device timeline. It must not touch the radio or the devices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devices.sim.fleet import SimulatedFleet
from devices.sim.signals import export_truth

_STREAMS = ("ecg", "resp", "temp", "accel", "gyro")


def export_fleet_truth(fleet: SimulatedFleet, directory: Path) -> list[Path]:
    """Write every device's ground truth into ``directory``; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for member in fleet.devices:
        sources: Any = getattr(member.device, "sources", None)
        for stream in _STREAMS:
            source = getattr(sources, stream, None)
            truth = source.truth() if source is not None else None
            if truth is None:
                continue
            path = directory / f"{member.model}-{member.address.replace(':', '')}-{stream}.json"
            export_truth(truth, path)
            written.append(path)
    return written
