"""The accounts tables (users, API keys, prices, spend) in the ledger's database:
the SQLite file or the PostgreSQL database.

Used from the ``gateway`` CLI, from the admin API's worker thread and from the
daemon's sync thread: each opens its own ``AccountStore`` and never touches it
from the event loop. Every change runs in one write transaction
(``AccountsSession.change``: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's lock on
the counter row) that also bumps ``accounts_version``, which every running
gateway polls to pick up changes (``sync.py``), on this machine or any other
sharing the PostgreSQL database. Safe while the daemon runs: SQLite's WAL (and
PostgreSQL) let readers and the ledger writer go on, and a writer waits for the
lock up to the busy timeout.

The SQL is written once for both: ``?`` placeholders (the PostgreSQL session turns
them into ``%s``), ``coalesce(sum(...), 0.0)`` rather than SQLite's ``total()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from proxy.ledger import open_backend
from proxy.ledger.backend import AccountsSession, LedgerError
from proxy.ledger.schema import (
    ACCOUNTS_VERSION_TABLE,
    KEYS_TABLE,
    PRICES_TABLE,
    SPEND_TABLE,
    USERS_TABLE,
)
from proxy.ledger.sqlite import SQLiteBackend
from proxy.ledger.url import StorageURL

if TYPE_CHECKING:
    from proxy.ledger.postgres import PostgresBackend

from .keys import key_hash, key_hint, new_key, new_key_id, new_user_id
from .model import (
    NO_LIMITS,
    AccountError,
    ApiKey,
    Limits,
    User,
    check_email,
    check_name,
    check_role,
    invalid,
)

# Price fields, USD per million tokens.
PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
MAX_PRICE_PER_MTOK = 1e6

_LIMIT_COLUMNS = "models, rpm, tpm, budget_usd, budget_period"
_USER_COLUMNS = f"id, name, email, role, disabled, created, {_LIMIT_COLUMNS}"
_KEY_COLUMNS = f"id, hint, name, user_id, created, expires, revoked, {_LIMIT_COLUMNS}"


class KeyRow(NamedTuple):
    """A key as the daemon needs it: its record and its stored digest."""

    key: ApiKey
    digest: bytes


class Snapshot(NamedTuple):
    version: int
    users: list[User]
    keys: list[KeyRow]
    prices: list[dict[str, Any]]


class AccountStore:
    """``where``: the SQLite file's path, or a ``StorageURL`` (either backend).
    ``busy_timeout_ms`` bounds a wait for another writer's lock (PostgreSQL: the
    statement timeout)."""

    def __init__(self, where: str | StorageURL, *, busy_timeout_ms: int | None = None
                 ) -> None:
        if isinstance(where, str):
            self.path = where
            backend: SQLiteBackend | PostgresBackend = SQLiteBackend(
                where, busy_timeout_ms=busy_timeout_ms)
        else:
            self.path = where.shown
            backend = open_backend(where, timeout_ms=busy_timeout_ms)
        self._backend = backend
        backend.open()
        try:
            backend.migrate()
            self._db: AccountsSession = backend.session()
        except LedgerError:
            backend.close()
            raise

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> AccountStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- users -----------------------------------------------------------------------

    def add_user(self, name: str, *, email: str | None = None, role: str = "member",
                 limits: Limits = NO_LIMITS) -> User:
        user = User(new_user_id(), check_name(name, "a user name"), check_email(email),
                    check_role(role), False, time.time(), limits)
        with self._change():
            if self._find_user(name) is not None:
                raise AccountError("conflict", f"a user named {name!r} exists")
            self._db.run(
                f"INSERT INTO {USERS_TABLE} ({_USER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (user.id, user.name, user.email, user.role, 0, user.created,
                 *_limit_values(limits)))
        return user

    def users(self) -> list[User]:
        return [_user(r) for r in self._read(
            f"SELECT {_USER_COLUMNS} FROM {USERS_TABLE} ORDER BY created, id")]

    def user(self, ref: str) -> User:
        """The user named ``ref`` (or whose id is ``ref``)."""
        found = self._find_user(ref)
        if found is None:
            raise AccountError("not_found", f"no user {str(ref)[:80]!r}")
        return found

    def update_user(self, ref: str, *, disabled: bool | None = None,
                    email: str | None = None, clear_email: bool = False,
                    role: str | None = None,
                    limits: Limits | None = None) -> User:
        with self._change():
            u = self.user(ref)
            sets: list[str] = []
            args: list[Any] = []
            if disabled is not None:
                sets.append("disabled = ?")
                args.append(int(disabled))
            if email is not None or clear_email:
                sets.append("email = ?")
                args.append(None if clear_email else check_email(email))
            if role is not None:
                sets.append("role = ?")
                args.append(check_role(role))
            if limits is not None:
                sets.append("models = ?, rpm = ?, tpm = ?, budget_usd = ?, budget_period = ?")
                args.extend(_limit_values(limits))
            if sets:
                self._db.run(f"UPDATE {USERS_TABLE} SET {', '.join(sets)} WHERE id = ?",
                             (*args, u.id))
            return self.user(u.id)

    # -- keys --------------------------------------------------------------------------

    def create_key(self, *, name: str | None = None, user: str | None = None,
                   limits: Limits = NO_LIMITS, expires_in_s: float | None = None
                   ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside a client)."""
        if name is not None:
            check_name(name, "a key name")
        if expires_in_s is not None and (not math.isfinite(expires_in_s) or expires_in_s <= 0):
            raise invalid("expiry must be a positive duration")
        secret = new_key()
        now = time.time()
        with self._change():
            user_id = self.user(user).id if user is not None else None
            key = ApiKey(new_key_id(), key_hint(secret), name, user_id, now,
                         now + expires_in_s if expires_in_s is not None else None, None, limits)
            self._db.run(
                f"INSERT INTO {KEYS_TABLE} (hash, {_KEY_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key_hash(secret.encode()), key.id, key.hint, key.name, key.user_id,
                 key.created, key.expires, None, *_limit_values(limits)))
        return key, secret

    def keys(self, *, user: str | None = None) -> list[ApiKey]:
        if user is None:
            rows = self._read(f"SELECT {_KEY_COLUMNS} FROM {KEYS_TABLE} ORDER BY created, id")
        else:
            rows = self._read(f"SELECT {_KEY_COLUMNS} FROM {KEYS_TABLE} WHERE user_id = ? "
                              "ORDER BY created, id", (self.user(user).id,))
        return [_key(r) for r in rows]

    def key(self, key_id: str) -> ApiKey:
        rows = self._read(f"SELECT {_KEY_COLUMNS} FROM {KEYS_TABLE} WHERE id = ?", (key_id,))
        if not rows:
            raise AccountError("not_found", f"no key {str(key_id)[:80]!r}")
        return _key(rows[0])

    def revoke_key(self, key_id: str) -> ApiKey:
        with self._change():
            key = self.key(key_id)
            if key.revoked is None:
                self._db.run(f"UPDATE {KEYS_TABLE} SET revoked = ? WHERE id = ?",
                             (time.time(), key.id))
            return self.key(key.id)

    def rotate_key(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the key: the old one stops working at once; id, limits,
        spend and ledger history stay with the id."""
        secret = new_key()
        with self._change():
            key = self.key(key_id)
            if key.revoked is not None:
                raise AccountError("conflict", f"key {key.id} is revoked")
            self._db.run(f"UPDATE {KEYS_TABLE} SET hash = ?, hint = ? WHERE id = ?",
                         (key_hash(secret.encode()), key_hint(secret), key.id))
            return self.key(key.id), secret

    def update_key(self, key_id: str, *, limits: Limits | None = None,
                   name: str | None = None) -> ApiKey:
        with self._change():
            key = self.key(key_id)
            if name is not None:
                self._db.run(f"UPDATE {KEYS_TABLE} SET name = ? WHERE id = ?",
                             (check_name(name, "a key name"), key.id))
            if limits is not None:
                self._db.run(
                    f"UPDATE {KEYS_TABLE} SET models = ?, rpm = ?, tpm = ?, budget_usd = ?, "
                    "budget_period = ? WHERE id = ?", (*_limit_values(limits), key.id))
            return self.key(key.id)

    # -- prices -------------------------------------------------------------------------

    def prices(self) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT pattern, {', '.join(PRICE_FIELDS)}, updated "
                          f"FROM {PRICES_TABLE} ORDER BY pattern")
        return [dict(zip(("pattern", *PRICE_FIELDS, "updated"), r, strict=True))
                for r in rows]

    def set_price(self, pattern: str, **per_mtok: float | None) -> dict[str, Any]:
        """Set the USD-per-million-token prices of models matching ``pattern``."""
        if not isinstance(pattern, str) or not pattern or len(pattern) > 256:
            raise invalid("a price needs a model name or glob of 1 to 256 characters")
        unknown = set(per_mtok) - set(PRICE_FIELDS)
        if unknown:
            raise invalid(f"unknown price field(s): {', '.join(sorted(unknown))}")
        for k, v in per_mtok.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or not math.isfinite(v) or not 0 <= v <= MAX_PRICE_PER_MTOK):
                raise invalid(f"price {k} must be a number from 0 to {MAX_PRICE_PER_MTOK:g}")
        if per_mtok.get("input") is None or per_mtok.get("output") is None:
            raise invalid("a price needs at least input and output")
        values = [per_mtok.get(k) for k in PRICE_FIELDS]
        with self._change():
            self._db.run(
                f"INSERT INTO {PRICES_TABLE} (pattern, {', '.join(PRICE_FIELDS)}, updated) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (pattern) DO UPDATE SET input = excluded.input, "
                "output = excluded.output, cache_read = excluded.cache_read, "
                "cache_write = excluded.cache_write, updated = excluded.updated",
                (pattern, *values, time.time()))
        return next(p for p in self.prices() if p["pattern"] == pattern)

    def delete_price(self, pattern: str) -> None:
        with self._change():
            if self._db.run(f"DELETE FROM {PRICES_TABLE} WHERE pattern = ?", (pattern,)) == 0:
                raise AccountError("not_found", f"no price for {str(pattern)[:80]!r}")

    # -- what a running gateway reads ----------------------------------------------------

    def version(self) -> int:
        rows = self._read(f"SELECT version FROM {ACCOUNTS_VERSION_TABLE}")
        return int(rows[0][0]) if rows else 0

    def snapshot(self) -> Snapshot:
        """Everything the daemon keeps in memory, read in one transaction."""
        with self._db.snapshot():
            version = self.version()
            users = self.users()
            keys = [KeyRow(_key(r[1:]), bytes(r[0])) for r in self._read(
                f"SELECT hash, {_KEY_COLUMNS} FROM {KEYS_TABLE}")]
            prices = self.prices()
        return Snapshot(version, users, keys, prices)

    def spend(self, today: str, month_start: str) -> dict[str, tuple[float, float, float]]:
        """Each key's stored spend in USD: (today, this month, all time). Days are
        UTC ``YYYY-MM-DD`` strings, as the ledger writer stores them."""
        rows = self._read(
            f"SELECT api_key_id, coalesce(sum(CASE WHEN day = ? THEN cost_usd END), 0.0), "
            f"coalesce(sum(CASE WHEN day >= ? THEN cost_usd END), 0.0), "
            f"coalesce(sum(cost_usd), 0.0) FROM {SPEND_TABLE} GROUP BY api_key_id",
            (today, month_start))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def usage_groups(self, by: str, *, since: float | None = None) -> list[dict[str, Any]]:
        """``LedgerBackend.query_groups`` on this store's connection (the admin API's
        usage report)."""
        return self._backend.query_groups(by, since=since)

    # -- helpers ---------------------------------------------------------------------

    def _find_user(self, ref: str) -> User | None:
        rows = self._read(f"SELECT {_USER_COLUMNS} FROM {USERS_TABLE} WHERE name = ? OR id = ?",
                          (ref, ref))
        return _user(rows[0]) if rows else None

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.rows(sql, args)

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One transaction that also tells running gateways something changed."""
        with self._db.change():
            yield
            self._db.run(f"UPDATE {ACCOUNTS_VERSION_TABLE} SET version = version + 1")


def _limit_values(limits: Limits) -> tuple[Any, ...]:
    models = orjson.dumps(list(limits.models)).decode() if limits.models is not None else None
    return (models, limits.rpm, limits.tpm, limits.budget_usd, limits.budget_period)


def _limits(row: tuple[Any, ...]) -> Limits:
    models, rpm, tpm, budget, period = row
    return Limits(tuple(orjson.loads(models)) if models is not None else None,
                  rpm, tpm, budget, period)


def _user(r: tuple[Any, ...]) -> User:
    return User(r[0], r[1], r[2], r[3], bool(r[4]), r[5], _limits(r[6:11]))


def _key(r: tuple[Any, ...]) -> ApiKey:
    return ApiKey(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _limits(r[7:12]))

