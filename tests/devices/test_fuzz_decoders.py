"""Every byte-taking decoder, fed arbitrary bytes, decodes or raises only decode errors.

The same table drives the coverage-guided atheris fuzzer that CI runs for a bounded time
(``fuzz/fuzz_decoders.py``); this is the always-on hypothesis version.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets import ALLOWED, targets

TARGETS = targets()


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_decoder_raises_only_decode_errors(name: str, data: bytes) -> None:
    with contextlib.suppress(*ALLOWED):
        TARGETS[name](data)


def test_table_covers_every_profile_subscription() -> None:
    from devices.profiles import PROFILES

    subscribed = sum(len(p.subscriptions) for p in PROFILES)
    assert sum(1 for n in TARGETS if n.startswith("profile.")) == subscribed
