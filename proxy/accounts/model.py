"""The account records and the rules on their fields (no I/O).

The CLI, the admin API and the daemon share these: a value refused here is
refused the same way from a terminal and over HTTP.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any

ROLES = ("admin", "member")
BUDGET_PERIODS = ("day", "month", "total")

# Bounds on what an operator types: generous, but a typo of 10^9 rpm or a
# 10 MB name is refused rather than stored.
MAX_NAME_CHARS = 128
MAX_EMAIL_CHARS = 254  # RFC 5321 section 4.5.3.1.3 (path), minus the brackets
MAX_MODEL_GLOBS = 64
MAX_GLOB_CHARS = 256
MAX_RATE = 10_000_000
# Tokens a minute: a busy team or a fleet passes ten million; still an SQLite integer.
MAX_TPM = 10**12
MAX_BUDGET_USD = 1e9

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


class AccountError(Exception):
    """A refused account operation. ``kind`` picks the HTTP status of the admin
    API: ``invalid`` 400, ``not_found`` 404, ``conflict`` 409."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(message: str) -> AccountError:
    return AccountError("invalid", message)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key (or every key of a user) may do. None: no limit."""

    models: tuple[str, ...] | None = None  # globs (fnmatch, case-sensitive)
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None  # "day", "month" or "total" (UTC)

    def __post_init__(self) -> None:
        if self.models is not None:
            if len(self.models) > MAX_MODEL_GLOBS:
                raise invalid(f"at most {MAX_MODEL_GLOBS} model globs")
            for g in self.models:
                if not isinstance(g, str) or not g or len(g) > MAX_GLOB_CHARS:
                    raise invalid(f"a model glob must be a non-empty string of at most "
                                  f"{MAX_GLOB_CHARS} characters, got {str(g)[:40]!r}")
        for name, top in (("rpm", MAX_RATE), ("tpm", MAX_TPM)):
            v = getattr(self, name)
            if v is not None and (type(v) is not int or not 0 < v <= top):
                raise invalid(f"{name} must be a whole number from 1 to {top}")
        b = self.budget_usd
        if b is not None:
            if (isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b)
                    or not 0 < b <= MAX_BUDGET_USD):
                raise invalid(f"budget_usd must be a number above 0 and at most {MAX_BUDGET_USD:g}")
            if self.budget_period not in BUDGET_PERIODS:
                raise invalid(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}")
        elif self.budget_period is not None:
            raise invalid("budget_period needs budget_usd")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Limits:
        models = obj.get("models")
        if models is not None and not isinstance(models, list | tuple):
            raise invalid("models must be a list of globs")
        b = obj.get("budget_usd")
        return cls(models=tuple(models) if models is not None else None,
                   rpm=obj.get("rpm"), tpm=obj.get("tpm"),
                   budget_usd=float(b) if type(b) is int else b,
                   budget_period=obj.get("budget_period"))

    def as_json(self) -> dict[str, Any]:
        return {"models": list(self.models) if self.models is not None else None,
                "rpm": self.rpm, "tpm": self.tpm, "budget_usd": self.budget_usd,
                "budget_period": self.budget_period}

    @property
    def empty(self) -> bool:
        return self == NO_LIMITS


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    email: str | None
    role: str
    disabled: bool
    created: float
    limits: Limits = field(default=NO_LIMITS)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "role": self.role,
                "disabled": self.disabled, "created": self.created, **self.limits.as_json()}


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    hint: str
    name: str | None
    user_id: str | None
    created: float
    expires: float | None
    revoked: float | None
    limits: Limits = field(default=NO_LIMITS)

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"

    def as_json(self, now: float, user_name: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "hint": self.hint, "name": self.name, "user_id": self.user_id,
                "user": user_name, "created": self.created, "expires": self.expires,
                "revoked": self.revoked, "state": self.state(now), **self.limits.as_json()}


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS:
        raise invalid(f"{what} must be 1 to {MAX_NAME_CHARS} letters, digits or . _ @ + - "
                      f"(starting with a letter or digit), got {str(name)[:40]!r}")
    return name


def check_email(email: Any) -> str | None:
    if email is None:
        return None
    if (not isinstance(email, str) or len(email) > MAX_EMAIL_CHARS or "@" not in email
            or any(c.isspace() for c in email)):
        raise invalid(f"not an email address: {str(email)[:40]!r}")
    return email


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise invalid(f"role must be one of {', '.join(ROLES)}, got {str(role)[:20]!r}")
    return str(role)


def model_allowed(globs: tuple[str, ...] | None, model: str) -> bool:
    """Whether ``model`` matches one of ``globs`` (None: every model)."""
    if globs is None:
        return True
    return any(fnmatch.fnmatchcase(model, g) for g in globs)
