"""Ingest: broker messages → validated values → committed rows (ARCHITECTURE.md, The flow).

``validate.classify`` turns one (topic, payload) into a storable value or a
``DeadLetter`` with a reason tag; ``writer.SignalWriter`` stores a batch of them in one
transaction (binary COPY, idempotent, partitions ensured ahead); ``rows`` is the pure COPY
encoding between the two. The MQTT loop that feeds them lives elsewhere. This package
initialiser does no I/O and starts nothing.
"""

from __future__ import annotations

from gateway.ingest.validate import REASONS, DeadLetter, IngestPath, Item, classify
from gateway.ingest.writer import SignalWriter, WriteResult

__all__ = ["REASONS", "DeadLetter", "IngestPath", "Item", "SignalWriter", "WriteResult", "classify"]
