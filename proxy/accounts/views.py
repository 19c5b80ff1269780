"""Users and keys as the ``gateway`` CLI and the admin API show them: the stored
record plus what has been spent and what is left of each budget.

Spend comes from the ``key_spend`` table (``AccountStore.spend``), which the
ledger writer fills with each row's cost; days and months are UTC, as the meter
counts them (``meter.utc_days``). A user's spend is the sum over its keys.
"""

from __future__ import annotations

import time
from typing import Any

from .meter import utc_days
from .model import ApiKey, Limits, User
from .store import AccountStore

Spend = tuple[float, float, float]  # USD: today, this month, all time
NO_SPEND: Spend = (0.0, 0.0, 0.0)
_PERIOD_INDEX = {"day": 0, "month": 1, "total": 2}


def spend_by_key(store: AccountStore, now: float | None = None) -> dict[str, Spend]:
    today, month_start = utc_days(time.time() if now is None else now)
    return store.spend(today, month_start)


def spend_json(spend: Spend) -> dict[str, float]:
    return {"today_usd": spend[0], "month_usd": spend[1], "total_usd": spend[2]}


def budget_json(limits: Limits, spend: Spend) -> dict[str, Any] | None:
    """The budget, what its period has spent and what is left (None: no budget)."""
    if limits.budget_usd is None or limits.budget_period is None:
        return None
    spent = spend[_PERIOD_INDEX[limits.budget_period]]
    return {"usd": limits.budget_usd, "period": limits.budget_period, "spent_usd": spent,
            "remaining_usd": max(0.0, limits.budget_usd - spent)}


def user_spend(user: User, keys: list[ApiKey], by_key: dict[str, Spend]) -> Spend:
    mine = [by_key.get(k.id, NO_SPEND) for k in keys if k.user_id == user.id]
    return (sum(s[0] for s in mine), sum(s[1] for s in mine), sum(s[2] for s in mine))


def key_view(store: AccountStore, key: ApiKey, *, detail: bool = False,
             now: float | None = None) -> dict[str, Any]:
    """``key`` as JSON with its user's name; with ``detail``, its spend and what is
    left of its budget and of its user's budget."""
    now = time.time() if now is None else now
    user = store.user(key.user_id) if key.user_id is not None else None
    out = key.as_json(now, user.name if user is not None else None)
    if detail:
        by_key = spend_by_key(store, now)
        spend = by_key.get(key.id, NO_SPEND)
        out["spend"] = spend_json(spend)
        out["budget"] = budget_json(key.limits, spend)
        out["user_budget"] = (budget_json(user.limits, user_spend(user, store.keys(), by_key))
                              if user is not None else None)
    return out


def user_view(store: AccountStore, user: User, *, detail: bool = False,
              now: float | None = None) -> dict[str, Any]:
    """``user`` as JSON; with ``detail``, its keys' ids, spend and budget left."""
    out = user.as_json()
    if detail:
        keys = [k for k in store.keys() if k.user_id == user.id]
        spend = user_spend(user, keys, spend_by_key(store, now))
        out["keys"] = [k.id for k in keys]
        out["spend"] = spend_json(spend)
        out["budget"] = budget_json(user.limits, spend)
    return out
