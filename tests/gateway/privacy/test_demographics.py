"""Generalized demographics: age bands with 90+ top-coding, sex codes, height/weight bands."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.privacy.demographics import (
    DemographicsError,
    age_band,
    age_years,
    generalize,
    generalize_sex,
    height_band,
    weight_band,
)


@pytest.mark.parametrize(
    ("birth", "on", "label"),
    [
        (date(2000, 6, 15), date(2000, 6, 15), "00-04"),
        (date(2000, 6, 15), date(2005, 6, 14), "00-04"),
        (date(2000, 6, 15), date(2005, 6, 15), "05-09"),
        (date(1980, 1, 1), date(2024, 12, 31), "40-44"),
        (date(1936, 3, 10), date(2026, 3, 9), "85-89"),  # 89 years, 364 days
        (date(1936, 3, 10), date(2026, 3, 10), "90+"),  # 90th birthday
        (date(1900, 1, 1), date(2026, 1, 1), "90+"),
    ],
)
def test_age_bands(birth: date, on: date, label: str) -> None:
    assert age_band(birth, on).label == label


def test_89_and_90_boundary() -> None:
    birth = date(1930, 7, 1)
    assert age_years(birth, date(2020, 6, 30)) == 89
    assert age_band(birth, date(2020, 6, 30)).label == "85-89"
    assert age_band(birth, date(2020, 7, 1)).label == "90+"
    top = age_band(birth, date(2020, 7, 1))
    assert (top.low, top.high) == (90, None)


def test_leap_day_birthday_counts_on_first_of_march_in_common_years() -> None:
    birth = date(2004, 2, 29)
    assert age_years(birth, date(2009, 2, 28)) == 4
    assert age_years(birth, date(2009, 3, 1)) == 5
    assert age_years(birth, date(2008, 2, 28)) == 3
    assert age_years(birth, date(2008, 2, 29)) == 4
    assert age_band(birth, date(2009, 2, 28)).label == "00-04"
    assert age_band(birth, date(2009, 3, 1)).label == "05-09"


def test_birth_after_reference_date_is_refused() -> None:
    with pytest.raises(DemographicsError) as info:
        age_band(date(2030, 1, 1), date(2026, 1, 1))
    assert info.value.field == "birth_date"
    assert "2030" not in str(info.value)


@given(
    birth=st.dates(min_value=date(1880, 1, 1), max_value=date(2030, 12, 31)),
    days=st.integers(min_value=0, max_value=60_000),
)
def test_age_band_contains_the_age(birth: date, days: int) -> None:
    on = birth + timedelta(days=days)
    years = age_years(birth, on)
    band = age_band(birth, on)
    assert years in band
    assert 0 <= years <= days / 365
    if years >= 90:
        assert band.label == "90+"
    else:
        assert band.high is not None
        assert band.low is not None
        assert band.high - band.low == 5
        assert band.low % 5 == 0


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("female", "female"),
        ("F", "female"),
        (" Male ", "male"),
        ("other", "other"),
        ("unknown", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        ("prefer not to say", "unknown"),
    ],
)
def test_sex_codes(given_value: str | None, expected: str) -> None:
    assert generalize_sex(given_value) == expected


@pytest.mark.parametrize(
    ("height_cm", "label"),
    [(120.0, "<140"), (139.99, "<140"), (140.0, "140-149"), (149.9, "140-149"), (172.4, "170-179"),
     (199.99, "190-199"), (200.0, "200+"), (231.0, "200+")],
)  # fmt: skip
def test_height_bands(height_cm: float, label: str) -> None:
    assert height_band(height_cm).label == label


@pytest.mark.parametrize(
    ("weight_kg", "label"),
    [(3.2, "<40"), (39.9, "<40"), (40.0, "40-49"), (72.5, "70-79"), (129.9, "120-129"),
     (130.0, "130+"), (210.0, "130+")],
)  # fmt: skip
def test_weight_bands(weight_kg: float, label: str) -> None:
    assert weight_band(weight_kg).label == label


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_impossible_measures_are_refused(value: float) -> None:
    with pytest.raises(DemographicsError):
        height_band(value)
    with pytest.raises(DemographicsError):
        weight_band(value)


@given(st.floats(min_value=0.01, max_value=500.0))
def test_measure_bands_contain_the_value(value: float) -> None:
    for band in (height_band(value), weight_band(value)):
        assert value in band
        if band.low is not None and band.high is not None:
            assert band.high - band.low == 10


def test_generalize_keeps_nothing_exact() -> None:
    result = generalize(
        on=date(2026, 11, 22),
        birth_date=date(1959, 4, 3),
        sex="F",
        height_cm=163.5,
        weight_kg=58.2,
    )
    assert result.labels() == {
        "age_band": "65-69",
        "sex": "female",
        "height_band": "160-169",
        "weight_band": "50-59",
    }
    text = repr(result)
    for exact in ("1959", "163.5", "58.2", "67"):
        assert exact not in text


def test_generalize_with_nothing_known() -> None:
    result = generalize(on=date(2026, 1, 1))
    assert result.labels() == {
        "age_band": "unknown",
        "sex": "unknown",
        "height_band": "unknown",
        "weight_band": "unknown",
    }
