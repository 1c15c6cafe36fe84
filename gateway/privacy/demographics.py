"""Generalized demographics for the research side (pure: no I/O, no clock, no logging).

Turns a subject's identifying baseline data into coarse bands that may sit next to a
pseudonym in the research database. It must never return or keep the birth date, the
exact age, height or weight.

Bands (lower bound inclusive, upper bound exclusive):

- age: completed years at a reference date, 5-year bands ``00-04`` ... ``85-89``, and
  ``90+`` top-coded. A 29 February birthday counts on 1 March in common years.
- sex: the FHIR AdministrativeGender codes ``female``, ``male``, ``other``, ``unknown``;
  anything else (or nothing) is ``unknown``.
- height: 10 cm bands from ``140-149`` to ``190-199`` with open ends ``<140`` and ``200+``.
- weight: 10 kg bands from ``40-49`` to ``120-129`` with open ends ``<40`` and ``130+``.

A missing input gives ``None`` (shown as ``unknown``); an impossible one (birth after the
reference date, a negative or non-finite measure) raises ``DemographicsError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from devices.errors import BiogwError

__all__ = [
    "Band",
    "DemographicsError",
    "GeneralizedDemographics",
    "Sex",
    "age_band",
    "age_years",
    "generalize",
    "generalize_sex",
    "height_band",
    "weight_band",
]

Sex = Literal["female", "male", "other", "unknown"]

AGE_BAND_YEARS: Final = 5
AGE_TOP_CODE: Final = 90
HEIGHT_BAND_CM: Final = 10
HEIGHT_OPEN_BELOW_CM: Final = 140
HEIGHT_OPEN_FROM_CM: Final = 200
WEIGHT_BAND_KG: Final = 10
WEIGHT_OPEN_BELOW_KG: Final = 40
WEIGHT_OPEN_FROM_KG: Final = 130
UNKNOWN: Final = "unknown"

_SEX_CODES: Final[dict[str, Sex]] = {
    "female": "female",
    "f": "female",
    "male": "male",
    "m": "male",
    "other": "other",
    "unknown": "unknown",
}


class DemographicsError(BiogwError, ValueError):
    """An input that cannot describe a person. ``field`` names it, ``reason`` says why;
    the offending value is not kept (it may identify someone)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class Band:
    """A half-open interval ``[low, high)``; ``None`` marks an open end."""

    label: str
    low: int | None
    high: int | None

    def __contains__(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value < self.high)


@dataclass(frozen=True, slots=True)
class GeneralizedDemographics:
    """What the research side may know about a person. ``None`` means unknown."""

    age: Band | None
    sex: Sex
    height: Band | None
    weight: Band | None

    def labels(self) -> dict[str, str]:
        """Column name -> label, with ``unknown`` for missing values."""
        return {
            "age_band": self.age.label if self.age else UNKNOWN,
            "sex": self.sex,
            "height_band": self.height.label if self.height else UNKNOWN,
            "weight_band": self.weight.label if self.weight else UNKNOWN,
        }


def age_years(birth_date: date, on: date) -> int:
    """Completed years of life on ``on``."""
    if birth_date > on:
        raise DemographicsError("birth_date", "after the reference date")
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - int(before_birthday)


def age_band(birth_date: date, on: date) -> Band:
    """The 5-year age band on ``on`` (``90+`` top-coded)."""
    years = age_years(birth_date, on)
    if years >= AGE_TOP_CODE:
        return Band(f"{AGE_TOP_CODE}+", AGE_TOP_CODE, None)
    low = years - years % AGE_BAND_YEARS
    return Band(f"{low:02d}-{low + AGE_BAND_YEARS - 1:02d}", low, low + AGE_BAND_YEARS)


def generalize_sex(value: str | None) -> Sex:
    """A FHIR AdministrativeGender code, ``unknown`` when missing or unrecognised."""
    if value is None:
        return "unknown"
    return _SEX_CODES.get(value.strip().lower(), "unknown")


def _measure_band(value: float, field: str, width: int, open_below: int, open_from: int) -> Band:
    if not math.isfinite(value) or value <= 0:
        raise DemographicsError(field, "must be a positive finite number")
    if value < open_below:
        return Band(f"<{open_below}", None, open_below)
    if value >= open_from:
        return Band(f"{open_from}+", open_from, None)
    low = math.floor(value / width) * width
    return Band(f"{low}-{low + width - 1}", low, low + width)


def height_band(height_cm: float) -> Band:
    """10 cm bands, open below 140 cm and from 200 cm."""
    return _measure_band(
        height_cm, "height_cm", HEIGHT_BAND_CM, HEIGHT_OPEN_BELOW_CM, HEIGHT_OPEN_FROM_CM
    )


def weight_band(weight_kg: float) -> Band:
    """10 kg bands, open below 40 kg and from 130 kg."""
    return _measure_band(
        weight_kg, "weight_kg", WEIGHT_BAND_KG, WEIGHT_OPEN_BELOW_KG, WEIGHT_OPEN_FROM_KG
    )


def generalize(
    *,
    on: date,
    birth_date: date | None = None,
    sex: str | None = None,
    height_cm: float | None = None,
    weight_kg: float | None = None,
) -> GeneralizedDemographics:
    """Generalize one person's baseline data as of ``on`` (the reference date)."""
    return GeneralizedDemographics(
        age=None if birth_date is None else age_band(birth_date, on),
        sex=generalize_sex(sex),
        height=None if height_cm is None else height_band(height_cm),
        weight=None if weight_kg is None else weight_band(weight_kg),
    )
