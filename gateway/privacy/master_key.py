"""The key store's master key as it arrives from outside: generated, or parsed from an
environment value or a key file. Read by the command line at the edge, then handed to
``FileKeyStore``. Must not: log or echo the key, or keep it anywhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import secrets
from pathlib import Path

from gateway.privacy.keystore import MASTER_KEY_BYTES, MasterKeyError

__all__ = ["generate_master_key", "master_key_from_env", "master_key_from_file"]


def generate_master_key() -> str:
    """A new random master key, hex encoded (for ``BIOGW_*`` settings or a key file)."""
    return secrets.token_hex(MASTER_KEY_BYTES)


def master_key_from_env(value: str) -> bytes:
    """Parse a master key given as text: 64 hex digits, or base64 / base64url of 32
    bytes. The value is never echoed in errors."""
    text = value.strip()
    if not text:
        raise MasterKeyError("master_key_empty")
    decoded: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        decoded = bytes.fromhex(text)
    else:
        for altchars in (b"+/", b"-_"):
            with contextlib.suppress(binascii.Error, ValueError):
                padded = text + "=" * (-len(text) % 4)
                decoded = base64.b64decode(padded, altchars=altchars, validate=True)
                break
    if decoded is None:
        raise MasterKeyError("master_key_malformed", None, "expected hex or base64")
    if len(decoded) != MASTER_KEY_BYTES:
        raise MasterKeyError("master_key_length", None, f"decodes to {len(decoded)} bytes, need 32")
    return decoded


def master_key_from_file(path: Path) -> bytes:
    """Read a master key file: exactly 32 raw bytes, or text as ``master_key_from_env``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MasterKeyError("master_key_unreadable", None, type(exc).__name__) from exc
    if len(data) == MASTER_KEY_BYTES:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MasterKeyError("master_key_malformed", None, "binary file is not 32 bytes") from exc
    return master_key_from_env(text)
