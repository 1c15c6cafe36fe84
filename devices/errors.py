"""The root of biogw's exception tree and the device-layer errors.

The root lives here, in the lowest layer, so that ``devices`` and ``gateway`` share one
tree while dependencies still point one way (``gateway -> devices``). Errors carry data
as attributes; callers classify by type, never by message text.
"""

from __future__ import annotations


class BiogwError(Exception):
    """Base of every error biogw raises on purpose."""


class FrameDecodeError(BiogwError, ValueError):
    """A notification or frame could not be decoded.

    ``kind`` names the frame type (``"hrs.measurement"``, ``"pmd.data"``, ...) and
    ``reason`` is a short machine-friendly tag (``"short"``, ``"bad_flags"``, ...).
    The raw payload is deliberately not kept: it may be health data.
    """

    def __init__(self, kind: str, reason: str, detail: str = "") -> None:
        self.kind = kind
        self.reason = reason
        self.detail = detail
        text = f"{kind}: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class FrameEncodeError(BiogwError, ValueError):
    """Values that cannot be represented in a wire format (out of range, wrong shape)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


class ProfileError(BiogwError):
    """A profile was asked for something it does not support (unknown stream, rate...)."""

    def __init__(self, profile: str, reason: str) -> None:
        self.profile = profile
        self.reason = reason
        super().__init__(f"{profile}: {reason}")
