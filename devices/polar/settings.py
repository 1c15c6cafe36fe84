"""PMD settings: the ``type count values...`` blocks of start requests and responses.

Byte format (Polar BLE SDK ``PmdSetting``, ``PmdSecret``)::

    setting   type:u8  count:u8  count * value   (u16 LE for sample rate, resolution,
              range; u32 LE for range-milliunit and factor (IEEE-754 bits); u8 for
              channels; SECURITY is ``06 01 strategy key...`` as ``PmdSecret`` writes it)

Decisions: setting values decode as unsigned (the SDK reads them as signed ints, so a
range-milliunit of FF FF FF FF is -1 there and 4294967295 here); a repeated setting type
is rejected rather than silently overwritten; ``single_byte_is_empty`` mirrors the SDK's
response parser (``parsePmdSettingsData``). The requests and responses that carry these
blocks are in ``control``.

Pure: no I/O, no Bluetooth stack, no logging of payloads.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from devices.errors import FrameDecodeError, FrameEncodeError

__all__ = [
    "PmdSecurityStrategy",
    "PmdSettingType",
    "PmdSettings",
    "decode_settings",
    "encode_settings",
    "factor_bits",
]

_KIND: Final = "pmd.settings"


class PmdSettingType(enum.IntEnum):
    """Setting types (SDK ``PmdSetting.PmdSettingType``)."""

    SAMPLE_RATE = 0
    RESOLUTION = 1
    RANGE = 2
    RANGE_MILLIUNIT = 3
    CHANNELS = 4
    FACTOR = 5
    SECURITY = 6


class PmdSecurityStrategy(enum.IntEnum):
    """``PmdSecret.SecurityStrategy``; the key length follows from the strategy."""

    NONE = 0
    XOR = 1
    AES128 = 2
    AES256 = 3


_FIELD_BYTES: Final = {
    PmdSettingType.SAMPLE_RATE: 2,
    PmdSettingType.RESOLUTION: 2,
    PmdSettingType.RANGE: 2,
    PmdSettingType.RANGE_MILLIUNIT: 4,
    PmdSettingType.CHANNELS: 1,
    PmdSettingType.FACTOR: 4,
}
_STRATEGY_IDS: Final = frozenset(int(s) for s in PmdSecurityStrategy)
_KEY_BYTES: Final = {
    PmdSecurityStrategy.NONE: 0,
    # The SDK only ever uses the first key byte for XOR, so one byte is what we carry.
    PmdSecurityStrategy.XOR: 1,
    PmdSecurityStrategy.AES128: 16,
    PmdSecurityStrategy.AES256: 32,
}


def _check_values(kind: PmdSettingType, values: tuple[int, ...]) -> None:
    if kind is PmdSettingType.SECURITY:
        if not values or values[0] not in _STRATEGY_IDS:
            raise FrameEncodeError(_KIND, "bad_security_strategy")
        strategy = PmdSecurityStrategy(values[0])
        key = values[1:]
        if len(key) != _KEY_BYTES[strategy] or any(not 0 <= b <= 0xFF for b in key):
            raise FrameEncodeError(_KIND, "bad_security_key")
        return
    limit = 1 << (8 * _FIELD_BYTES[kind])
    if len(values) > 0xFF:
        raise FrameEncodeError(_KIND, "too_many_values")
    if any(not 0 <= v < limit for v in values):
        raise FrameEncodeError(_KIND, f"{kind.name.lower()}_out_of_range")


@dataclass(frozen=True, slots=True)
class PmdSettings(Mapping[PmdSettingType, tuple[int, ...]]):
    """Settings as the wire carries them: setting type -> values, sorted by type.

    Build with ``PmdSettings.of({PmdSettingType.SAMPLE_RATE: (130,), ...})``. A start
    request carries one value per type; a get-settings response lists the available
    values. ``SECURITY`` is ``(strategy, *key_bytes)``. Values out of their wire range
    raise ``FrameEncodeError`` at construction.
    """

    entries: tuple[tuple[PmdSettingType, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        normal = tuple(sorted((PmdSettingType(k), tuple(v)) for k, v in self.entries))
        kinds = [k for k, _ in normal]
        if len(set(kinds)) != len(kinds):
            raise FrameEncodeError(_KIND, "duplicate_setting")
        for kind, values in normal:
            _check_values(kind, values)
        object.__setattr__(self, "entries", normal)

    @classmethod
    def of(cls, values: Mapping[PmdSettingType, Iterable[int]]) -> PmdSettings:
        return cls(tuple((PmdSettingType(k), tuple(v)) for k, v in values.items()))

    def __getitem__(self, key: PmdSettingType) -> tuple[int, ...]:
        for kind, values in self.entries:
            if kind == key:
                return values
        raise KeyError(key)

    def __iter__(self) -> Iterator[PmdSettingType]:
        return iter(kind for kind, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def factor(self) -> float | None:
        """The FACTOR setting as the float its IEEE-754 bits encode (first value)."""
        bits = self.get(PmdSettingType.FACTOR)
        if not bits:
            return None
        return float(struct.unpack("<f", bits[0].to_bytes(4, "little"))[0])


def factor_bits(factor: float) -> int:
    """The u32 a FACTOR setting carries for ``factor`` (rounded to float32)."""
    return int.from_bytes(struct.pack("<f", factor), "little")


def encode_settings(settings: PmdSettings) -> bytes:
    """Settings bytes in type order: ``type count values...`` per entry."""
    out = bytearray()
    for kind, values in settings.entries:
        out += bytes((kind, 1 if kind is PmdSettingType.SECURITY else len(values)))
        if kind is PmdSettingType.SECURITY:
            out += bytes(values)
            continue
        size = _FIELD_BYTES[kind]
        for value in values:
            out += value.to_bytes(size, "little")
    return bytes(out)


def _take(data: bytes, offset: int, size: int, kind: str) -> bytes:
    if offset + size > len(data):
        raise FrameDecodeError(kind, "truncated", f"need {offset + size} bytes, have {len(data)}")
    return data[offset : offset + size]


def _parse_entry(data: bytes, offset: int) -> tuple[PmdSettingType, tuple[int, ...], int]:
    try:
        kind = PmdSettingType(data[offset])
    except ValueError:
        raise FrameDecodeError(_KIND, "unknown_setting", f"type {data[offset]}") from None
    count = _take(data, offset + 1, 1, _KIND)[0]
    offset += 2
    if kind is PmdSettingType.SECURITY:
        strategy_byte = _take(data, offset, 1, _KIND)[0]
        try:
            strategy = PmdSecurityStrategy(strategy_byte)
        except ValueError:
            raise FrameDecodeError(_KIND, "bad_security_strategy") from None
        key = _take(data, offset + 1, _KEY_BYTES[strategy], _KIND)
        return kind, (strategy, *key), offset + 1 + len(key)
    size = _FIELD_BYTES[kind]
    raw = _take(data, offset, size * count, _KIND)
    values = tuple(int.from_bytes(raw[i : i + size], "little") for i in range(0, len(raw), size))
    return kind, values, offset + len(raw)


def decode_settings(data: bytes, *, single_byte_is_empty: bool = False) -> PmdSettings:
    """Parse settings bytes. ``single_byte_is_empty`` mirrors the SDK's response parser,
    which treats a one-byte parameter block as "no settings"."""
    if single_byte_is_empty and len(data) <= 1:
        return PmdSettings()
    entries: list[tuple[PmdSettingType, tuple[int, ...]]] = []
    offset = 0
    while offset < len(data):
        kind, values, offset = _parse_entry(data, offset)
        if any(k == kind for k, _ in entries):
            raise FrameDecodeError(_KIND, "duplicate_setting", kind.name)
        entries.append((kind, values))
    return PmdSettings(tuple(entries))
