"""The explicit list of device profiles biogw drives, most specific first.

A literal tuple, no registration magic (bleak's explicit backend match): a Polar H10
also advertises the standard Heart Rate Service, so it must be tried before the generic
HRS profile. Pure: no Bluetooth stack here.
"""

from __future__ import annotations

from devices.garment.profile import GARMENT_PROFILE
from devices.hrs.profile import HEART_RATE_PROFILE
from devices.polar.profile import POLAR_H10_PROFILE
from devices.registry import Advertisement, Profile

PROFILES: tuple[Profile, ...] = (POLAR_H10_PROFILE, GARMENT_PROFILE, HEART_RATE_PROFILE)


def match_profile(
    advertisement: Advertisement, profiles: tuple[Profile, ...] = PROFILES
) -> Profile | None:
    """The first profile that claims this advertisement, or ``None``."""
    for profile in profiles:
        if profile.matches(advertisement):
            return profile
    return None


def profile_by_name(name: str, profiles: tuple[Profile, ...] = PROFILES) -> Profile | None:
    """Look a profile up by its ``name`` (as stored with a paired device)."""
    for profile in profiles:
        if profile.name == name:
            return profile
    return None
