"""Transport: what the gateway publishes and how (ARCHITECTURE.md, The flow).

``wire`` is the versioned binary payload format (docs/wire-format.md). This package
initialiser does no I/O and starts nothing.
"""

from __future__ import annotations

from gateway.transport.wire import (
    Gap,
    GapCause,
    MessageKind,
    WireFormatError,
    WireMessage,
    decode,
    encode_clinical,
    encode_clinical_gap,
    encode_gap,
    encode_research,
    encode_research_gap,
)

__all__ = [
    "Gap",
    "GapCause",
    "MessageKind",
    "WireFormatError",
    "WireMessage",
    "decode",
    "encode_clinical",
    "encode_clinical_gap",
    "encode_gap",
    "encode_research",
    "encode_research_gap",
]
