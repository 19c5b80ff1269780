"""The keys a running gateway accepts, in memory: one dict lookup per request.

``KeyDirectory`` maps the SHA-256 digest of every accepted key (the static keys
of the configuration and the keys of the accounts tables) to a prebuilt
``Identity``. A request's credential is hashed once and looked up; nothing
waits on the database. The sync thread (``sync.py``) installs a new snapshot
when ``gateway`` or the admin API changes the tables, so a revoked key stops
working within the sync period (0.25 s); expiry is checked per request.

Looking a key up by its digest is the constant-time comparison: the dict
compares the digest of what the client sent with stored digests, so timing can
at most tell a client how many leading bytes of its own digest match a stored
one, which says nothing about any key (SHA-256 is preimage-resistant). The raw
key is never compared byte by byte.
"""

from __future__ import annotations

import time
from typing import Any

from .keys import key_hash, static_key_id
from .model import ApiKey, Limits, User, model_allowed

# Models a restricted identity has been asked for, remembered per identity;
# a client picks model names, so the memo is cleared at this size.
MODEL_MEMO_MAX = 256


class Identity:
    """Who a request is: the key it presented, and the key's user if any.

    Built once per snapshot and shared by every request with the same key.
    ``limited`` says whether any allow-list, rate or budget applies, so an
    unlimited key costs the request path one attribute read.
    """

    __slots__ = ("key_id", "key", "user", "is_admin", "limited", "models_limited",
                 "_memo", "quotas", "budgeted")

    def __init__(self, key_id: str, key: ApiKey | None, user: User | None) -> None:
        self.key_id = key_id
        self.key = key
        self.user = user
        self.is_admin = user is not None and user.role == "admin" and not user.disabled
        key_limits = key.limits if key is not None else None
        user_limits = user.limits if user is not None else None
        self.models_limited = any(lim is not None and lim.models is not None
                                  for lim in (key_limits, user_limits))
        self.limited = any(lim is not None and not lim.empty for lim in (key_limits, user_limits))
        self._memo: dict[str, bool] = {}
        # Filled by the meter (meter.py): the live quotas of the key and of its
        # user that have a rate or a budget, and whether one has a budget.
        self.quotas: tuple[Any, ...] = ()
        self.budgeted = False

    def may_use(self, model: str) -> bool:
        """Whether the key's and the user's model allow-lists both admit ``model``."""
        if not self.models_limited:
            return True
        memo = self._memo
        ok = memo.get(model)
        if ok is None:
            ok = all(model_allowed(lim.models, model) for lim in self._limits())
            if len(memo) >= MODEL_MEMO_MAX:
                memo.clear()
            memo[model] = ok
        return ok

    def _limits(self) -> list[Limits]:
        return [x.limits for x in (self.key, self.user) if x is not None]


class Refused:
    """Why a presented key is not accepted (it is known, but not usable now)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class KeyDirectory:
    def __init__(self, static_keys: tuple[bytes, ...] = ()) -> None:
        self._static: dict[bytes, Identity] = {}
        self._stored: dict[bytes, Identity] = {}
        self._any_stored = False
        self.version = -1
        self.users: dict[str, User] = {}
        self.set_static(static_keys)

    # -- installing what the configuration and the database say ------------------------

    def set_static(self, keys: tuple[bytes, ...]) -> None:
        self._static = {key_hash(k): Identity(static_key_id(k), None, None) for k in keys}

    def install(self, version: int, users: list[User], keys: list[Any]) -> list[Identity]:
        """A snapshot of the accounts tables (``store.Snapshot``'s users and keys);
        returns the identities now in use, for the meter to attach its quotas."""
        self.users = {u.id: u for u in users}
        stored: dict[bytes, Identity] = {}
        for row in keys:
            key: ApiKey = row.key
            user = self.users.get(key.user_id) if key.user_id is not None else None
            stored[row.digest] = Identity(key.id, key, user)
        self._stored = stored
        # Any key ever created keeps authentication on, revoked ones included:
        # revoking the last key must not open the gateway.
        self._any_stored = bool(keys)
        self.version = version
        return list(stored.values())

    # -- per request -----------------------------------------------------------------

    @property
    def has_stored(self) -> bool:
        """Whether the accounts tables hold any key (revoked ones included)."""
        return self._any_stored

    @property
    def required(self) -> bool:
        """Whether requests need a key: once any key exists, static or stored."""
        return bool(self._static) or self._any_stored

    def authenticate(self, presented: list[bytes]) -> Identity | Refused | None:
        """The identity of the first presented credential that is a usable key; a
        ``Refused`` when one is a known key that cannot be used now (revoked,
        expired, its user disabled) and none is usable; None when none is known."""
        refused: Refused | None = None
        now = 0.0
        for value in presented:
            digest = key_hash(value)
            ident = self._static.get(digest) or self._stored.get(digest)
            if ident is None:
                continue
            key = ident.key
            if key is None:
                return ident
            if not now:
                now = time.time()
            if key.revoked is not None:
                refused = Refused(f"API key {key.id} was revoked")
            elif key.expires is not None and now >= key.expires:
                refused = Refused(f"API key {key.id} expired")
            elif ident.user is not None and ident.user.disabled:
                refused = Refused(f"the user of API key {key.id} is disabled")
            else:
                return ident
        return refused

    def is_gateway_key(self, value: bytes) -> bool:
        """Whether ``value`` is one of the gateway's keys (usable or not): such a
        credential is for the gateway only and is never sent to a provider."""
        digest = key_hash(value)
        return digest in self._static or digest in self._stored
