"""Respiration: breaths, breathing rate and apnoea from a respiratory band, and ECG-derived
respiration (EDR) when no band is present.

Role: the public respiration API of ``processing`` (pure numpy/scipy): batch
``detect_breaths`` / ``breath_rates`` / ``window_rates``, streaming ``resp_step`` (band)
and ``edr_step`` (beats and R amplitudes).
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from processing.respiration.breaths import (
    APNOEA_S,
    BreathRates,
    Breaths,
    RespInputError,
    breath_rates,
    detect_breaths,
)
from processing.respiration.edr import EDR_DELAY_S, EdrEstimate, EdrState, edr_rate, edr_step
from processing.respiration.stream import (
    DECISION_DELAY_S,
    RespState,
    WindowRates,
    resp_step,
    window_rates,
)

__all__ = [
    "APNOEA_S",
    "DECISION_DELAY_S",
    "EDR_DELAY_S",
    "BreathRates",
    "Breaths",
    "EdrEstimate",
    "EdrState",
    "RespInputError",
    "RespState",
    "WindowRates",
    "breath_rates",
    "detect_breaths",
    "edr_rate",
    "edr_step",
    "resp_step",
    "window_rates",
]
