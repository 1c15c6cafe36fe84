"""Logging set-up for the app root (the only place that configures handlers).

Modules log through ``logging.getLogger(__name__)`` with lazy ``%s`` formatting and name
devices by their opaque key or pseudonym; raw payloads, names and subject ids appear only
at DEBUG. This module installs one stderr handler with a compact format.
"""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Install the root handler once; calling again only changes the level."""
    root = logging.getLogger()
    if not any(getattr(h, "_biogw", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._biogw = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # bumble is chatty at INFO about every HCI event, pgserver about every pg_ctl command
    # (with its whole output); keep them to warnings unless debugging.
    for name in ("bumble", "pgserver"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.WARNING))
