"""Where the real recordings for tests live: ``../shared/data`` beside the checkout
(as CI lays it out), or ``BIOGW_SHARED_DATA``. Tests that need them are skipped with a
clear reason when they are absent (a bare machine running the README's test command);
``.ci/run`` refuses to run without them, so CI never skips them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("BIOGW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MITDB = SHARED_DATA / "mitdb"

requires_mitdb = pytest.mark.skipif(
    not (MITDB / "100.hea").is_file(),
    reason=f"MIT-BIH records not found in {MITDB} (set BIOGW_SHARED_DATA)",
)
