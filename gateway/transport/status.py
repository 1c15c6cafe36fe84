"""Status payloads: the retained JSON on the gateway and device status topics.

Role: encode and decode the small state messages of docs/transport.md (Status):

* gateway: ``{"v": 1, "state": "online", "at_ms": 1700000000000}`` on connect;
  ``{"v": 1, "state": "offline", "cause": "shutdown", "at_ms": ...}`` on a clean stop;
  ``{"v": 1, "state": "offline", "cause": "lost"}`` as the MQTT last will (fixed when the
  connection is made, so it carries no time);
* device: ``{"v": 1, "state": "online", "battery_pct": 87, "skin_contact": true,
  "stalled": false, "at_ms": ...}``; ``battery_pct`` and ``skin_contact`` are ``null``
  when unknown.

Status is state, not data: latest value wins, it is not spooled. A device status is only
meaningful while its gateway's status is online. Payloads carry no name, MAC, serial or
subject id (the device is named by its random key in the topic only).

Must not: do I/O, read clocks (callers pass ``at_ms``), or log.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final

from devices.errors import BiogwError

__all__ = [
    "STATUS_VERSION",
    "DeviceStatus",
    "GatewayState",
    "GatewayStatus",
    "OfflineCause",
    "StatusFormatError",
    "decode_device_status",
    "decode_gateway_status",
    "encode_device_status",
    "encode_gateway_status",
]

STATUS_VERSION: Final = 1


class StatusFormatError(BiogwError, ValueError):
    """A status payload is not valid JSON of the expected shape; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"status: {reason}")


class GatewayState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class OfflineCause(enum.StrEnum):
    LOST = "lost"
    """The broker published the last will: the connection broke without a goodbye."""
    SHUTDOWN = "shutdown"
    """The gateway stopped cleanly."""


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    state: GatewayState
    cause: OfflineCause | None = None
    at_ms: int | None = None
    """Unix time in ms when the state began; ``None`` in the last will."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What the gateway knows about one device right now."""

    online: bool
    battery_pct: int | None = None
    skin_contact: bool | None = None
    stalled: bool = False
    """Connected but its notifications stopped (the watchdog's view)."""
    at_ms: int | None = None

    def __post_init__(self) -> None:
        if self.battery_pct is not None and not 0 <= self.battery_pct <= 100:
            raise ValueError("battery_pct must be in 0..100")


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def encode_gateway_status(status: GatewayStatus) -> bytes:
    obj: dict[str, Any] = {"v": STATUS_VERSION, "state": status.state.value}
    if status.cause is not None:
        obj["cause"] = status.cause.value
    if status.at_ms is not None:
        obj["at_ms"] = status.at_ms
    return _dump(obj)


def encode_device_status(status: DeviceStatus) -> bytes:
    return _dump(
        {
            "v": STATUS_VERSION,
            "state": GatewayState.ONLINE if status.online else GatewayState.OFFLINE,
            "battery_pct": status.battery_pct,
            "skin_contact": status.skin_contact,
            "stalled": status.stalled,
            "at_ms": status.at_ms,
        }
    )


def _load(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StatusFormatError("not_json") from None
    if not isinstance(obj, dict):
        raise StatusFormatError("not_object")
    if obj.get("v") != STATUS_VERSION:
        raise StatusFormatError("version")
    return obj


def _opt(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is not None and (type(value) is not kind):
        raise StatusFormatError(f"bad_{key}")
    return value


def decode_gateway_status(payload: bytes) -> GatewayStatus:
    obj = _load(payload)
    try:
        state = GatewayState(str(obj.get("state")))
        cause = OfflineCause(obj["cause"]) if obj.get("cause") is not None else None
    except ValueError:
        raise StatusFormatError("bad_state") from None
    return GatewayStatus(state, cause, _opt(obj, "at_ms", int))


def decode_device_status(payload: bytes) -> DeviceStatus:
    obj = _load(payload)
    try:
        online = GatewayState(str(obj.get("state"))) is GatewayState.ONLINE
        return DeviceStatus(
            online=online,
            battery_pct=_opt(obj, "battery_pct", int),
            skin_contact=_opt(obj, "skin_contact", bool),
            stalled=bool(_opt(obj, "stalled", bool)),
            at_ms=_opt(obj, "at_ms", int),
        )
    except StatusFormatError:
        raise
    except ValueError:
        raise StatusFormatError("bad_value") from None
