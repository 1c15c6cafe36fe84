"""The reconnect backoff policy: growth, cap, jitter bounds, reset after a stable link."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import BackoffPolicy, BackoffState


def test_first_attempt_after_a_stable_link_is_immediate() -> None:
    policy = BackoffPolicy(initial_s=0.5, max_s=30.0, stable_s=10.0)
    state = policy.connected(BackoffState(), now_s=100.0)
    state = policy.disconnected(state, now_s=160.0)
    assert state == BackoffState()
    assert policy.delay_s(state, rand=0.999) == 0.0


def test_short_lived_connections_count_as_failures() -> None:
    policy = BackoffPolicy(initial_s=0.5, max_s=30.0, stable_s=10.0)
    state = BackoffState()
    for expected in (1, 2, 3):
        state = policy.connected(state, now_s=0.0)
        state = policy.disconnected(state, now_s=1.0)
        assert state.failures == expected
    assert policy.ceiling_s(state.failures) == 2.0  # 0.5 * 2**2


def test_ceiling_doubles_then_caps() -> None:
    policy = BackoffPolicy(initial_s=0.25, max_s=30.0)
    ceilings = [policy.ceiling_s(n) for n in range(1, 11)]
    assert ceilings[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert ceilings[-1] == 30.0
    assert policy.ceiling_s(10_000) == 30.0  # no overflow on a very long outage


@given(
    failures=st.integers(min_value=1, max_value=200),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_full_jitter_stays_within_floor_and_ceiling(failures: int, rand: float) -> None:
    policy = BackoffPolicy(initial_s=0.25, max_s=20.0, floor_s=0.05)
    delay = policy.delay_s(BackoffState(failures=failures), rand)
    assert 0.05 <= delay <= policy.ceiling_s(failures)
    assert delay == max(0.05, policy.ceiling_s(failures) * rand)


def test_failed_attempts_accumulate_and_a_stable_connection_resets() -> None:
    policy = BackoffPolicy(stable_s=5.0)
    state = policy.failed(policy.failed(BackoffState()))
    assert state.failures == 2
    state = policy.connected(state, now_s=10.0)
    assert state.failures == 2  # not stable yet
    assert policy.disconnected(state, now_s=15.0) == BackoffState()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": 5.0, "max_s": 1.0},
        {"multiplier": 0.5},
        {"floor_s": -1.0},
        {"max_s": float("inf")},
    ],
)
def test_rejects_nonsense_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        BackoffPolicy(**kwargs)


def test_rejects_a_draw_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="rand"):
        BackoffPolicy().delay_s(BackoffState(failures=1), rand=1.0)
