"""A recording ``Outbox`` for edge-pipeline tests: hands every ``Routed`` to a callback
and keeps the gaps; ``flush`` only counts."""

from __future__ import annotations

from collections.abc import Callable

from gateway.router import Routed, RoutedGap


class CallbackOutbox:
    def __init__(self, on_frame: Callable[[Routed], None]) -> None:
        self._on_frame = on_frame
        self.gaps: list[RoutedGap] = []
        self.flushes = 0

    def frame(self, routed: Routed) -> None:
        self._on_frame(routed)

    def gap(self, routed: RoutedGap) -> None:
        self.gaps.append(routed)

    def flush(self) -> None:
        self.flushes += 1
