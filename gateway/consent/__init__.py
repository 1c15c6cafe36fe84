"""Consent: the wearer's scopes as frozen records and events, the one deny-by-default
decision every path out of the gateway uses, and consent receipts.

Pure: no database, files, clocks or logging here. ``gateway.store`` persists the events
and hands them back as a ``ConsentHistory``; the router calls ``decide`` per frame.
"""

from gateway.consent.decision import ConsentHistory, Decision, Reason, active_scopes, decide
from gateway.consent.model import (
    DEFAULT_PURPOSE,
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentRecord,
    ConsentStatus,
    Grant,
    Period,
    Scope,
    Withdrawal,
)
from gateway.consent.receipt import Receipt, receipt_for, to_json

__all__ = [
    "DEFAULT_PURPOSE",
    "CollectionMethod",
    "ConsentError",
    "ConsentEvent",
    "ConsentHistory",
    "ConsentRecord",
    "ConsentStatus",
    "Decision",
    "Grant",
    "Period",
    "Reason",
    "Receipt",
    "Scope",
    "Withdrawal",
    "active_scopes",
    "decide",
    "receipt_for",
    "to_json",
]
