"""A fleet of simulated devices on one radio: N Polar H10 straps and M garments.

Role: start and stop many devices as one async context manager (one ``AsyncExitStack``:
a failure half-way closes what was started), with distinct static random addresses,
distinct names and one seed each (derived from the fleet seed), so ``biogw sim``,
``biogw scan``/``stream`` on the virtual link, the end-to-end test and the benchmark
see the same fleet for the same arguments. Addresses: Polar ``E0:00:00:00:hh:ll``,
garments ``D0:00:00:00:hh:ll`` (``hhll`` = 1-based index).

It must not: connect to its devices, run tasks of its own, or share signal sources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from devices.sim.garment import GARMENT_MODEL, SimulatedGarment, garment_name
from devices.sim.garment_sources import GarmentSources
from devices.sim.peripheral import SimPeripheral
from devices.sim.polar_h10 import POLAR_MODEL, SimulatedPolarH10
from devices.sim.polar_sources import PolarSources
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import SentLogSink

__all__ = ["FleetMember", "Model", "SimulatedFleet", "garment_address", "polar_address"]

Model = Literal["polar_h10", "garment"]
_MAX_PER_MODEL = 0xFFFF


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One running device of the fleet."""

    address: str
    name: str
    model: Model
    seed: int
    device: SimPeripheral


def polar_address(index: int) -> str:
    """The static random address of the fleet's ``index``-th Polar H10 (from 1)."""
    return f"E0:00:00:00:{index >> 8:02X}:{index & 0xFF:02X}"


def garment_address(index: int) -> str:
    """The static random address of the fleet's ``index``-th garment (from 1)."""
    return f"D0:00:00:00:{index >> 8:02X}:{index & 0xFF:02X}"


def _seed(fleet_seed: int, model: str, index: int) -> int:
    digest = hashlib.sha256(f"biogw-fleet:{fleet_seed}:{model}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class SimulatedFleet:
    """``async with SimulatedFleet(radio, polar=2, garment=8, seed=1) as fleet``.

    ``log_for(address)`` gives each device its sent-log sink (``None``: no log).
    ``replay_ecg`` (a WFDB record path) makes every device stream that recording as its
    ECG instead of the synthetic one; the other streams stay synthetic.
    Every advertising device costs every other host on the radio CPU time (the virtual
    link delivers each advertisement to every controller), so large fleets should
    advertise slower: ``advertising_interval_ms=1000`` for a hundred devices or more.
    """

    def __init__(
        self,
        radio: VirtualRadio,
        *,
        polar: int = 0,
        garment: int = 0,
        seed: int = 0,
        require_bonding: bool = False,
        speed: float = 1.0,
        passkey: int | None = None,
        log_for: Callable[[str], SentLogSink | None] | None = None,
        advertising_interval_ms: float = 100.0,
        replay_ecg: Path | None = None,
    ) -> None:
        if not (0 <= polar <= _MAX_PER_MODEL and 0 <= garment <= _MAX_PER_MODEL):
            raise ValueError(f"0..{_MAX_PER_MODEL} devices of each model")
        self._radio = radio
        self._counts = {POLAR_MODEL: polar, GARMENT_MODEL: garment}
        self._seed = seed
        self._require_bonding = require_bonding
        self._speed = speed
        self._passkey = passkey
        self._log_for = log_for
        self._adv_interval_ms = advertising_interval_ms
        self._replay_ecg = replay_ecg
        self._members: list[FleetMember] = []
        self._stack = AsyncExitStack()

    @property
    def devices(self) -> tuple[FleetMember, ...]:
        return tuple(self._members)

    def member(self, address_or_name: str) -> FleetMember:
        """The member with this address (any case) or name; ``KeyError`` if none."""
        for member in self._members:
            if address_or_name.upper() == member.address or address_or_name == member.name:
                return member
        raise KeyError(address_or_name)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            names: set[str] = set()
            for index in range(1, self._counts[POLAR_MODEL] + 1):
                address = polar_address(index)
                seed = _seed(self._seed, POLAR_MODEL, index)
                device_id = _unique_hex(seed, 8, names, lambda h: f"Polar H10 {h}")
                polar = SimulatedPolarH10(
                    self._radio,
                    address=address,
                    device_id=device_id,
                    seed=seed,
                    require_bonding=self._require_bonding,
                    passkey=self._passkey,
                    speed=self._speed,
                    log=self._log(address),
                    advertising_interval_ms=self._adv_interval_ms,
                    sources=self._polar_sources(seed),
                )
                await self._start(stack, polar, POLAR_MODEL, seed)
            for index in range(1, self._counts[GARMENT_MODEL] + 1):
                address = garment_address(index)
                seed = _seed(self._seed, GARMENT_MODEL, index)
                suffix = _unique_hex(seed, 4, names, garment_name)
                garment = SimulatedGarment(
                    self._radio,
                    address=address,
                    name=garment_name(suffix),
                    seed=seed,
                    require_bonding=self._require_bonding,
                    passkey=self._passkey,
                    speed=self._speed,
                    log=self._log(address),
                    advertising_interval_ms=self._adv_interval_ms,
                    sources=self._garment_sources(seed),
                )
                await self._start(stack, garment, GARMENT_MODEL, seed)
            stack.callback(self._members.clear)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _polar_sources(self, seed: int) -> PolarSources | None:
        if self._replay_ecg is None:
            return None  # the model's own synthetic sources
        return PolarSources.synthetic(seed).with_ecg_replay(self._replay_ecg)

    def _garment_sources(self, seed: int) -> GarmentSources | None:
        if self._replay_ecg is None:
            return None
        return GarmentSources.synthetic(seed).with_ecg_replay(self._replay_ecg)

    def _log(self, address: str) -> SentLogSink | None:
        return None if self._log_for is None else self._log_for(address)

    async def _start(
        self, stack: AsyncExitStack, device: SimPeripheral, model: Model, seed: int
    ) -> None:
        await stack.enter_async_context(device)
        self._members.append(FleetMember(device.address, device.name, model, seed, device))


def _unique_hex(seed: int, digits: int, taken: set[str], name: Callable[[str], str]) -> str:
    """``digits`` upper-case hex digits from ``seed`` whose name is not taken yet."""
    for attempt in range(1 << 16):
        digest = hashlib.sha256(f"{seed}:{attempt}".encode()).hexdigest().upper()
        candidate = digest[:digits]
        if name(candidate) not in taken:
            taken.add(name(candidate))
            return candidate
    raise RuntimeError("no free device name")  # unreachable for fleets under 2**16
