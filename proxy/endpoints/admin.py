"""The admin API, ``/admin/v1/...``: users, keys, usage, prices and routes.

Only a key whose user has the ``admin`` role gets here: dispatch checks that at
the request's head, before any of its body is read, whatever the rest of the
gateway's authentication says (``proxy.dispatch``). The API is described by
docs/admin-openapi.yaml, which the tests hold it to.

Bodies are JSON objects, read and checked on the loop (unknown fields, wrong
types: 400 naming the field); the rules on values are the accounts model's
(``proxy.accounts.model``), the same as the ``gateway`` CLI's. Database work
runs on the accounts worker thread (``proxy.accounts.worker``) with a deadline:
503 when it is not met or the database fails. Errors are OpenAI-shaped
``{"error": {"message", "type", "param", "code"}}``. Every admin request has its
ledger row (client protocol ``admin``, the admin key's id).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..accounts.bundled_prices import BUNDLED_PRICES_DATE
from ..accounts.model import (
    BUDGET_PERIODS,
    ROLES,
    AccountError,
    Limits,
)
from ..accounts.prices import PriceBook
from ..accounts.store import PRICE_FIELDS, AccountStore
from ..accounts.views import key_view, user_view
from ..accounts.worker import WorkerTimeout
from ..call import Call
from ..errors import GatewayError, bad_request
from ..ledger import LedgerError
from ..ledger.reads import GROUP_BY
from ..state import GatewayState
from ..usage_report import group_objects, parse_since
from . import ADMIN

log = logging.getLogger("tokenway.admin")

ADMIN_PREFIX = "/admin/v1/"
CLIENT_PROTOCOL = ADMIN

# Longest path parameter kept in an error message.
_SHOWN_CHARS = 80
# A key's longest lifetime when it is given one: past this, no expiry was meant.
MAX_EXPIRES_IN_S = 100 * 365 * 86_400


class Ctx:
    """One admin request: the gateway, the call, the path parameters, the query."""

    __slots__ = ("state", "call", "params", "query")

    def __init__(self, state: GatewayState, call: Call, params: list[str],
                 query: dict[str, str]) -> None:
        self.state = state
        self.call = call
        self.params = params
        self.query = query

    def body(self, fields: Mapping[str, Callable[[str, Any], Any]],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON body, every field known and of its type (checked by ``fields``)."""
        body = self.call.json_body()
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise bad_request(f"unknown field {unknown[0][:_SHOWN_CHARS]!r} (known: "
                              f"{', '.join(fields)})", param=unknown[0][:_SHOWN_CHARS],
                              code="unknown_field")
        for name in required:
            if body.get(name) is None:
                raise bad_request(f"the field {name!r} is required", param=name,
                                  code="missing_field")
        return {name: fields[name](name, value) for name, value in body.items()}

    def no_body(self) -> None:
        """Endpoints without a body accept none, or an empty JSON object."""
        req = self.call.req
        if req is not None and req.body.strip() and self.call.json_body():
            raise bad_request("this endpoint takes no fields", code="unknown_field")

    def query_params(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.query) - set(allowed))
        if unknown:
            raise bad_request(f"unknown query parameter {unknown[0][:_SHOWN_CHARS]!r}"
                              + (f" (known: {', '.join(allowed)})" if allowed else ""),
                              param=unknown[0][:_SHOWN_CHARS], code="unknown_parameter")

    async def db(self, fn: Callable[[AccountStore], Any]) -> Any:
        worker = self.state.accounts.worker
        if worker is None:
            raise GatewayError(503, "the admin API needs the ledger database, which this "
                                    "gateway does not have open", kind="unavailable",
                               code="database_unavailable")
        return await worker.run(fn)


Handler = Callable[[Ctx], Awaitable[tuple[int, Any]]]


# -- field checks (type only; the accounts model checks the values) -----------------


def _type_error(name: str, what: str) -> GatewayError:
    return bad_request(f"the field {name!r} must be {what}", param=name, code="invalid_type")


def _str(name: str, v: Any) -> str:
    if type(v) is not str:
        raise _type_error(name, "a string")
    return v


def _str_or_null(name: str, v: Any) -> str | None:
    return None if v is None else _str(name, v)


def _bool(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise _type_error(name, "true or false")
    return v


def _role(name: str, v: Any) -> str:
    if v not in ROLES:
        raise _type_error(name, f"one of {', '.join(ROLES)}")
    return str(v)


def _int_or_null(name: str, v: Any) -> int | None:
    # JSON has one number type: 60.0 is a whole number too (JSON Schema's "integer").
    if type(v) is float and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if v is not None and type(v) is not int:
        raise _type_error(name, "a whole number or null")
    return v


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _type_error(name, "a number")
    return float(v)


def _number_or_null(name: str, v: Any) -> float | None:
    return None if v is None else _number(name, v)


def _globs_or_null(name: str, v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if type(v) is not list or not all(type(g) is str for g in v):
        raise _type_error(name, "a list of model names or globs, or null")
    return tuple(v)


def _period_or_null(name: str, v: Any) -> str | None:
    if v is not None and v not in BUDGET_PERIODS:
        raise _type_error(name, f"one of {', '.join(BUDGET_PERIODS)}, or null")
    return None if v is None else str(v)


def _expiry_or_null(name: str, v: Any) -> float | None:
    n = _number_or_null(name, v)
    if n is not None and not 0 < n <= MAX_EXPIRES_IN_S:
        raise bad_request(f"the field {name!r} must be a number of seconds above 0 and at "
                          f"most {MAX_EXPIRES_IN_S} (100 years), or null", param=name,
                          code="invalid_value")
    return n


LIMIT_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "models": _globs_or_null, "rpm": _int_or_null, "tpm": _int_or_null,
    "budget_usd": _number_or_null, "budget_period": _period_or_null,
}
LIMIT_NAMES = tuple(LIMIT_FIELDS)


def _check_budget(fields: dict[str, Any]) -> None:
    """A budget is set whole: ``budget_usd`` with ``budget_period``; ``budget_usd``
    null (its period absent or null) removes it."""
    if "budget_period" in fields and "budget_usd" not in fields:
        raise bad_request("budget_period is set together with budget_usd",
                          param="budget_period", code="invalid_value")
    if "budget_usd" in fields:
        usd, period = fields["budget_usd"], fields.get("budget_period")
        if usd is not None and period is None:
            raise bad_request("budget_usd needs budget_period (day, month or total)",
                              param="budget_period", code="invalid_value")
        if usd is None and period is not None:
            raise bad_request("budget_period needs budget_usd", param="budget_usd",
                              code="invalid_value")


def _new_limits(fields: dict[str, Any]) -> Limits:
    _check_budget(fields)
    return Limits(**{k: fields[k] for k in LIMIT_NAMES if k in fields})


def _merged_limits(old: Limits, fields: dict[str, Any]) -> Limits | None:
    """``old`` with the limit fields given (null clears one); None if none is given.
    Clearing ``budget_usd`` clears its period too."""
    changes = {k: fields[k] for k in LIMIT_NAMES if k in fields}
    if not changes:
        return None
    if "budget_usd" in changes and changes["budget_usd"] is None:
        changes["budget_period"] = None
    return dataclasses.replace(old, **changes)


# -- users -------------------------------------------------------------------------

USER_CREATE_FIELDS = {"name": _str, "email": _str_or_null, "role": _role, **LIMIT_FIELDS}
USER_PATCH_FIELDS = {"disabled": _bool, "email": _str_or_null, "role": _role, **LIMIT_FIELDS}


async def list_users(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    return 200, {"users": await ctx.db(lambda s: [u.as_json() for u in s.users()])}


async def create_user(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    f = ctx.body(USER_CREATE_FIELDS, required=("name",))
    limits = _new_limits(f)
    return 201, await ctx.db(lambda s: s.add_user(
        f["name"], email=f.get("email"), role=f.get("role", "member"),
        limits=limits).as_json())


async def get_user(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    ref = ctx.params[0]
    return 200, await ctx.db(lambda s: user_view(s, s.user(ref), detail=True))


async def patch_user(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    ref = ctx.params[0]
    f = ctx.body(USER_PATCH_FIELDS)
    _check_budget(f)

    def change(s: AccountStore) -> dict[str, Any]:
        user = s.user(ref)
        limits = _merged_limits(user.limits, f)
        return s.update_user(user.id, disabled=f.get("disabled"), email=f.get("email"),
                             clear_email="email" in f and f["email"] is None,
                             role=f.get("role"), limits=limits).as_json()

    return 200, await ctx.db(change)


# -- keys --------------------------------------------------------------------------

KEY_CREATE_FIELDS = {"name": _str_or_null, "user": _str_or_null,
                     "expires_in_s": _expiry_or_null, **LIMIT_FIELDS}
KEY_PATCH_FIELDS = {"name": _str, **LIMIT_FIELDS}


async def list_keys(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(("user",))
    user = ctx.query.get("user")
    return 200, {"keys": await ctx.db(
        lambda s: [key_view(s, k) for k in s.keys(user=user)])}


async def create_key(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    f = ctx.body(KEY_CREATE_FIELDS)
    limits = _new_limits(f)

    def create(s: AccountStore) -> dict[str, Any]:
        key, secret = s.create_key(name=f.get("name"), user=f.get("user"), limits=limits,
                                   expires_in_s=f.get("expires_in_s"))
        return {**key_view(s, key), "key": secret}

    return 201, await ctx.db(create)


async def get_key(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    key_id = ctx.params[0]
    return 200, await ctx.db(lambda s: key_view(s, s.key(key_id), detail=True))


async def patch_key(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    key_id = ctx.params[0]
    f = ctx.body(KEY_PATCH_FIELDS)
    _check_budget(f)

    def change(s: AccountStore) -> dict[str, Any]:
        key = s.key(key_id)
        return key_view(s, s.update_key(key.id, name=f.get("name"),
                                        limits=_merged_limits(key.limits, f)))

    return 200, await ctx.db(change)


async def revoke_key(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    ctx.no_body()
    key_id = ctx.params[0]
    return 200, await ctx.db(lambda s: key_view(s, s.revoke_key(key_id)))


async def rotate_key(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    ctx.no_body()
    key_id = ctx.params[0]

    def rotate(s: AccountStore) -> dict[str, Any]:
        key, secret = s.rotate_key(key_id)
        return {**key_view(s, key), "key": secret}

    return 200, await ctx.db(rotate)


# -- usage, prices, routes ---------------------------------------------------------


async def usage(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(("by", "since"))
    by = ctx.query.get("by")
    if by not in GROUP_BY:
        raise bad_request(f"the query parameter 'by' must be one of {', '.join(GROUP_BY)}",
                          param="by", code="invalid_parameter")
    since: float | None = None
    if "since" in ctx.query:
        try:
            since = parse_since(ctx.query["since"], time.time())
        except (ValueError, OverflowError) as exc:
            raise bad_request(f"the query parameter 'since': {str(exc)[:200]}", param="since",
                              code="invalid_parameter") from None
    groups = await ctx.db(lambda s: s.usage_groups(by, since=since))
    return 200, {"by": by, "since": since, "groups": group_objects(groups, by)}


PRICE_BODY_FIELDS = {"input": _number, "output": _number, "cache_read": _number_or_null,
                     "cache_write": _number_or_null}


async def list_prices(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    rows = await ctx.db(lambda s: s.prices())
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for e in PriceBook(ctx.state.config.prices, rows).entries():
        listed.append({"pattern": e.pattern, **e.price.as_dict(), "source": e.origin,
                       "shadowed": e.pattern in seen})
        seen.add(e.pattern)
    return 200, {"bundled_date": BUNDLED_PRICES_DATE, "prices": listed}


async def put_price(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    pattern = ctx.params[0]
    f = ctx.body(PRICE_BODY_FIELDS, required=("input", "output"))
    per_mtok = {k: f.get(k) for k in PRICE_FIELDS}
    return 200, await ctx.db(lambda s: s.set_price(pattern, **per_mtok))


async def delete_price(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    ctx.no_body()
    pattern = ctx.params[0]
    await ctx.db(lambda s: s.delete_price(pattern))
    return 200, {"pattern": pattern, "deleted": True}


async def list_routes(ctx: Ctx) -> tuple[int, Any]:
    ctx.query_params(())
    state = ctx.state
    routes = [{"match": r.match, "origin": r.origin,
               "targets": [{"provider": t.provider, "model": t.model,
                            "weight": r.weights[i] if r.weights else None}
                           for i, t in enumerate(r.targets)]}
              for r in state.config.routes]
    return 200, {"routes": routes, "loopback": state.router.loopback}


# -- the route table ---------------------------------------------------------------

# (path pattern, {method: handler}); "{}" is one path segment, "{*}" the rest of
# the path (a price glob may hold '/', as model names do).
ROUTES: tuple[tuple[tuple[str, ...], dict[str, Handler]], ...] = (
    (("users",), {"GET": list_users, "POST": create_user}),
    (("users", "{}"), {"GET": get_user, "PATCH": patch_user}),
    (("keys",), {"GET": list_keys, "POST": create_key}),
    (("keys", "{}"), {"GET": get_key, "PATCH": patch_key}),
    (("keys", "{}", "revoke"), {"POST": revoke_key}),
    (("keys", "{}", "rotate"), {"POST": rotate_key}),
    (("usage",), {"GET": usage}),
    (("prices",), {"GET": list_prices}),
    (("prices", "{*}"), {"PUT": put_price, "DELETE": delete_price}),
    (("routes",), {"GET": list_routes}),
)


def match(path: str) -> tuple[dict[str, Handler], list[str]] | None:
    """The methods of the admin resource at ``path`` and its (decoded) parameters."""
    if not path.startswith(ADMIN_PREFIX):
        return None
    rest = path[len(ADMIN_PREFIX):]
    segments = rest.split("/")
    for pattern, methods in ROUTES:
        params: list[str] = []
        if pattern[-1] == "{*}":
            head = len(pattern) - 1
            if len(segments) <= head or segments[:head] != list(pattern[:head]):
                continue
            tail = "/".join(segments[head:])
            if not tail:
                continue
            return methods, [unquote(tail)]
        if len(segments) != len(pattern):
            continue
        for want, got in zip(pattern, segments, strict=True):
            if want == "{}":
                if not got:
                    break
                params.append(unquote(got))
            elif want != got:
                break
        else:
            return methods, params
    return None


def serve_admin(state: GatewayState, call: Call) -> None:
    """Answer an admin request (its key was checked at admission)."""
    call.spawn(_serve(state, call))


async def _serve(state: GatewayState, call: Call) -> None:
    req = call.req
    assert req is not None
    try:
        found = match(req.path)
        if found is None:
            raise GatewayError(404, f"unknown admin endpoint {req.path[:200]}",
                               kind="not_found", code="unknown_url", type_="not_found_error")
        methods, params = found
        handler = methods.get(req.method)
        if handler is None:
            allow = ", ".join(methods)
            err = GatewayError(405, f"method {req.method} not allowed on {req.path[:200]} "
                                    f"(allowed: {allow})", kind="bad_request",
                               code="method_not_allowed")
            _send_error(call, err, [(b"allow", allow.encode())])
            return
        query: dict[str, str] = {}
        for k, v in parse_qsl(req.query, keep_blank_values=True):
            if k in query:
                raise bad_request(f"the query parameter {k[:_SHOWN_CHARS]!r} is given twice",
                                  param=k[:_SHOWN_CHARS], code="invalid_parameter")
            query[k] = v
        status, obj = await handler(Ctx(state, call, params, query))
    except asyncio.CancelledError:
        # The client left: the work on the worker thread finishes or fails alone.
        rec = call.rec
        rec.status, rec.error_kind = 499, "cancelled"
        call.finish()
        raise
    except GatewayError as err:
        _send_error(call, err)
        return
    except AccountError as err:
        _send_error(call, account_error(err))
        return
    except WorkerTimeout as exc:
        _send_error(call, GatewayError(503, f"{exc}; try again", kind="unavailable",
                                       code="database_timeout", retry_after_s=1))
        return
    except LedgerError as exc:
        log.warning("admin %s %s: %s", req.method, req.path[:200], exc,
                    extra={"request_id": call.rec.request_id})
        _send_error(call, GatewayError(503, "the database cannot be used now; try again",
                                       kind="unavailable", code="database_unavailable",
                                       retry_after_s=1))
        return
    call.send_json(obj, status)


def account_error(err: AccountError) -> GatewayError:
    if err.kind == "not_found":
        return GatewayError(404, err.message, kind="not_found", code="not_found",
                            type_="not_found_error")
    if err.kind == "conflict":
        return GatewayError(409, err.message, kind="conflict", code="conflict",
                            type_="conflict_error")
    return bad_request(err.message, code="invalid_value")


def _send_error(call: Call, err: GatewayError,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    if headers:
        call.headers = (call.headers or []) + headers
    call.send_error(err)
