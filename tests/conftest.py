"""Fixtures shared by every test package.

``owned_broker``: a Mosquitto this test owns and may stop and start (skipped without
the binary; tests that stop a broker never touch the machine's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import MOSQUITTO, MosquittoBroker


@pytest.fixture
def owned_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto binary (never the machine's broker)")
    owned = MosquittoBroker(tmp_path / "mosquitto")
    owned.start()
    try:
        yield owned
    finally:
        owned.stop()
