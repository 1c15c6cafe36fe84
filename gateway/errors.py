"""Gateway errors: one subtree of biogw's exception tree (rooted at ``BiogwError``).

Third-party errors are translated in one place per adapter with ``raise ... from exc``:
pydantic's into ``ConfigError`` here; bumble's into bleak's error types in
``gateway.ble.bumble_backend.errors`` (so gateway code handles one set of Bluetooth errors
for real and virtual radios alike). Callers classify by type and attributes.
"""

from __future__ import annotations

from devices.errors import BiogwError

__all__ = ["BiogwError", "ConfigError"]


class ConfigError(BiogwError):
    """Configuration could not be parsed or is inconsistent. ``source`` names the file or
    ``"environment"``; ``problems`` lists one line per invalid field."""

    def __init__(self, source: str, problems: tuple[str, ...]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}: " + "; ".join(problems))
