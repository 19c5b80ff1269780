"""API keys: their text, their stored hash and their public id (no I/O).

A key is ``tw-`` plus 32 random bytes in the URL-safe base64 alphabet (43
characters, https://www.rfc-editor.org/rfc/rfc4648#section-5), shown once at
creation. The database keeps only its SHA-256 digest: a random 256-bit secret
needs no slow password hash, since nothing smaller than the key itself can be
guessed. Listings and the ledger name a key by its public id (``key_`` plus
12 hex digits, random, unrelated to the secret) and a hint (the first and last
four characters) so a person can tell two keys apart.
"""

from __future__ import annotations

import base64
import os
import re

KEY_PREFIX = "tw-"
KEY_RANDOM_BYTES = 32
KEY_ID_PREFIX = "key_"
USER_ID_PREFIX = "usr_"
# Keys from the configuration file or TOKENWAY_API_KEYS: named in the ledger by
# a digest prefix, stable across restarts and saying nothing usable about the key.
STATIC_KEY_ID_PREFIX = "cfg_"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def new_key() -> str:
    raw = base64.urlsafe_b64encode(os.urandom(KEY_RANDOM_BYTES)).rstrip(b"=")
    return KEY_PREFIX + raw.decode("ascii")


try:
    # CPython's own SHA-256, built in: the same digest as hashlib's OpenSSL one,
    # without its per-call EVP setup (1.7 against 2.3-2.7 us a key, run cold as in
    # the gateway), and without importing hashlib (which lists OpenSSL's digests
    # when imported: 0.65 MiB of a gateway).
    from _sha256 import sha256 as _sha256
except ImportError:  # an interpreter built without it
    _sha256 = None


def key_hash(key: bytes) -> bytes:
    if _sha256 is not None:
        digest: bytes = _sha256(key).digest()
        return digest
    import hashlib  # then the import is a dictionary lookup

    return hashlib.sha256(key).digest()


def new_key_id() -> str:
    return KEY_ID_PREFIX + os.urandom(6).hex()


def new_user_id() -> str:
    return USER_ID_PREFIX + os.urandom(6).hex()


def key_hint(key: str) -> str:
    return f"{key[:7]}...{key[-4:]}"


def static_key_id(key: bytes) -> str:
    import hashlib  # see key_hash

    return STATIC_KEY_ID_PREFIX + hashlib.sha256(b"tokenway static key\0" + key).hexdigest()[:12]


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``12h``, ``30d``, ``2w``; ``ValueError`` otherwise."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"cannot read {text!r} as a duration: use 90s, 15m, 12h, 30d or 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]
