"""Privacy primitives: the key store, pseudonyms, date shifts and generalized demographics.

Pure of any database: keys live in a ``KeyStore`` outside every database (Invariant 3),
and nothing here reads the environment or logs subject ids, keys or shifts above DEBUG.
The care/research split itself happens in the router, which uses these pieces.
"""

from __future__ import annotations

from gateway.privacy.demographics import (
    Band,
    DemographicsError,
    GeneralizedDemographics,
    generalize,
)
from gateway.privacy.keystore import (
    FileKeyStore,
    KeyDestroyedError,
    KeyExistsError,
    KeyId,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyStore,
    KeyStoreError,
    MasterKeyError,
    get_or_create,
)
from gateway.privacy.master_key import (
    generate_master_key,
    master_key_from_env,
    master_key_from_file,
)
from gateway.privacy.pseudonyms import DateShifter, Pseudonym, Pseudonymizer, parse_pseudonym

__all__ = [
    "Band",
    "DateShifter",
    "DemographicsError",
    "FileKeyStore",
    "GeneralizedDemographics",
    "KeyDestroyedError",
    "KeyExistsError",
    "KeyId",
    "KeyIntegrityError",
    "KeyNotFoundError",
    "KeyStore",
    "KeyStoreError",
    "MasterKeyError",
    "Pseudonym",
    "Pseudonymizer",
    "generalize",
    "generate_master_key",
    "get_or_create",
    "master_key_from_env",
    "master_key_from_file",
    "parse_pseudonym",
]
