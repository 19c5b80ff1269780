"""Where the ledger lives: a SQLite file or a PostgreSQL database, named by one string.

Forms (``--database-url``, ``TOKENWAY_DATABASE_URL``, ``[storage] url``; docs/fleet.md):

- ``sqlite:///var/lib/tokenway.db``: the SQLite file ``/var/lib/tokenway.db``. As in a
  ``file:`` URL (RFC 8089, section 2) the path follows the empty authority, so three
  slashes give an absolute path; ``sqlite:tokenway.db`` (no slashes) is relative to
  the working directory.
- ``postgresql://user:password@host:5432/dbname?sslmode=require`` (or ``postgres://``):
  a PostgreSQL connection URI, handed to libpq as written
  (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
- anything without ``scheme://`` or ``scheme:`` in front: a SQLite file path, as
  ``--db`` always meant.

The password of a PostgreSQL URL (in the user info or as a ``password=`` query
parameter) is never shown: ``StorageURL.shown`` and every error carry ``***``
instead. Pure parsing; no driver is imported here.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

_PG_SCHEMES = ("postgresql", "postgres")
# "scheme:" at the start, as RFC 3986 section 3.1 spells a scheme; two letters at
# least, so that a Windows-style "C:" drive is still taken as a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
MASK = "***"
# scheme://user:PASSWORD@ (RFC 3986 section 3.2.1). The password runs to the last "@"
# of the text, so one holding an unescaped "@", "/" or "?" is still masked whole
# (at worst a little more than the password is).
_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*:).*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


class StorageURL(NamedTuple):
    kind: str  # SQLITE or POSTGRESQL
    path: str | None  # the SQLite file; None for PostgreSQL
    dsn: str | None  # the PostgreSQL URI as given (it may hold a password: never print it)
    shown: str  # what logs and errors may print: the password replaced by ***


def parse_storage_url(text: str) -> StorageURL:
    """``text`` as a SQLite path or URL, or a PostgreSQL URI. ``ValueError`` (whose
    message shows no password) when it is neither."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the database URL is empty")
    text = text.strip()
    m = _SCHEME.match(text)
    if m is None:
        return StorageURL(SQLITE, text, None, text)
    scheme = m.group(1).lower()
    if scheme == SQLITE:
        return _sqlite(text)
    if scheme in _PG_SCHEMES:
        return _postgresql(text)
    raise ValueError(f"unsupported database URL {mask_url(text)!r}: expected "
                     "sqlite:///PATH, postgresql://[USER@]HOST[:PORT]/DBNAME or a file path")


def mask_url(text: str) -> str:
    """``text`` with the password of its user info and the value of any ``password=``
    query parameter replaced by ``***``; the rest as written."""
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text, count=1)
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _sqlite(text: str) -> StorageURL:
    rest = text[len(SQLITE) + 1:]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise ValueError(f"{text!r}: a SQLite URL names a local file: sqlite:///PATH "
                             "(three slashes, then the path)")
        path = slash + path
    else:
        path = rest
    path = path.split("?", 1)[0]
    if not path or path == "/":
        raise ValueError(f"{text!r}: no file path after sqlite:")
    return StorageURL(SQLITE, path, None, text)


def _postgresql(text: str) -> StorageURL:
    shown = mask_url(text)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        # urllib's message may quote the netloc (and with it the password): not used.
        reason = "bad port" if "port" in str(exc).lower() else "malformed URL"
        raise ValueError(f"{shown!r}: {reason}") from None
    if port == 0:
        raise ValueError(f"{shown!r}: bad port 0")
    if parts.fragment:
        raise ValueError(f"{shown!r}: a database URL has no #fragment")
    database = parts.path.lstrip("/")
    if "/" in database:
        raise ValueError(f"{shown!r}: one database name after the host, not a path")
    return StorageURL(POSTGRESQL, None, text, shown)
