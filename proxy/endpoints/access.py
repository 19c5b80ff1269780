"""What a key may do with a request: its model allow-list and its limits.

Called by the model endpoints once the body is read and the model known. An
unlimited key (or no key, with authentication off) costs one attribute read.
The refusals are in the client's own format: 403 for a model outside the
allow-list (OpenAI ``permission_error``, Anthropic ``permission_error``, Gemini
``PERMISSION_DENIED``), 429 for a rate limit and for a spent budget (OpenAI
``insufficient_quota``, Anthropic ``rate_limit_error``, Gemini
``RESOURCE_EXHAUSTED``), with ``Retry-After`` when a window will free room.

With the counters in Redis (``[limits] redis_url``), a limited key's admission is a
round trip: ``check_access`` then returns it, and the endpoint continues once it let
the request in (``when_admitted``). A key without limits
never waits. Redis down in closed mode is a 503 (``limits_unavailable``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocols.request_facts import end_user, output_tokens_asked

from ..accounts.directory import Identity
from ..accounts.meter import Denied, LimitsUnavailable
from ..call import Call
from ..errors import INTERNAL, GatewayError
from ..state import GatewayState

if TYPE_CHECKING:  # loaded only with [limits] redis_url (accounts.service)
    from ..accounts.redis_meter import Admission, SharedMeter

log = logging.getLogger("tokenway.access")


class Pending:
    """A limited key's admission out to Redis (``when_admitted`` waits for it)."""

    __slots__ = ("shared", "admission", "ident")

    def __init__(self, shared: SharedMeter, admission: Admission, ident: Identity) -> None:
        self.shared = shared
        self.admission = admission
        self.ident = ident


# Longest end-user id kept (the ledger column's bound).
MAX_END_USER_CHARS = 256


def check_access(state: GatewayState, call: Call, fmt: str, model: str,
                 body: dict[str, Any]) -> Pending | None:
    """Record the request's end user; refuse (``GatewayError``) what its key may
    not do; charge its limits and set the headers that say what is left. Returns
    the admission to await when the limits are in Redis (it raises the refusal),
    else None: decided."""
    rec = call.rec
    who = end_user(fmt, body)
    if who is not None:
        rec.end_user = who[:MAX_END_USER_CHARS]
    req = call.req
    ident = req.identity if req is not None else None
    if ident is None or req is None:
        return None
    if ident.models_limited and not ident.may_use(model):
        raise _not_allowed(ident, model)
    if not ident.quotas:
        return None
    usd_per = None
    if ident.budgeted:
        usd_per = state.estimator(model)
        if usd_per is None:
            raise GatewayError(403, f"no price is known for the model '{model[:100]}', so "
                                    f"the budget of API key {ident.key_id} cannot be kept: "
                                    "set one with 'gateway price set' or [prices] in the "
                                    "configuration",
                               kind="forbidden", param="model", code="model_price_unknown")
    shared = state.accounts.shared
    if shared is not None:
        try:
            adm = shared.submit(ident, len(req.body), output_tokens_asked(fmt, body), usd_per)
        except LimitsUnavailable:
            raise _unavailable(ident) from None
        if adm is None:
            return None  # Redis is down, and on_redis_down = "open"
        return Pending(shared, adm, ident)
    meter = state.accounts.meter
    try:
        charge = meter.admit(ident, len(req.body), output_tokens_asked(fmt, body), usd_per)
    except Denied as d:
        call.headers = meter.headers(ident)
        raise _refusal(d) from None
    if charge is not None:
        rec.charge = charge
        call.headers = charge.headers
    return None


def _unavailable(ident: Identity) -> GatewayError:
    return GatewayError(503, f"the limits of API key {ident.key_id} cannot be checked now "
                             "(the gateway's limit store does not answer); try again shortly",
                        kind="limits_unavailable", source=INTERNAL, code="limits_unavailable",
                        retry_after_s=1.0)


def when_admitted(call: Call, pending: Pending, proceed: Callable[[], None]) -> None:
    """Run ``proceed`` once the admission let the request in; else answer its refusal.
    A callback on the reply rather than a task (a task per request cost the gateway
    about 8 us of CPU in bench.micro.shared_limits); the wait ends within the
    ``[limits] timeout`` of the round trip it is in and of the one before it."""
    pending.admission.reply.add_done_callback(lambda _: _admitted(call, pending, proceed))


def _admitted(call: Call, pending: Pending, proceed: Callable[[], None]) -> None:
    shared, adm = pending.shared, pending.admission
    if call.conn.closed:  # the client left meanwhile: give back what it charged
        shared.cancelled(adm)
        if not call.finished:
            call.rec.status = 499
            call.rec.error_kind = "cancelled"
            call.finish()
        return
    try:
        charge = shared.outcome(adm)
    except Denied as d:
        call.headers = d.headers or []
        call.send_error(_refusal(d))
        return
    except LimitsUnavailable:
        call.send_error(_unavailable(pending.ident))
        return
    call.rec.charge = charge
    if charge is not None:
        call.headers = charge.headers
    try:
        proceed()
    except Exception:
        log.exception("request failed", extra={"request_id": call.rec.request_id})
        call.fail_internal()


def _refusal(d: Denied) -> GatewayError:
    if d.kind == "budget_exceeded":
        return GatewayError(429, d.message, kind="budget_exceeded", type_="insufficient_quota",
                            code="insufficient_quota", retry_after_s=d.retry_after_s)
    return GatewayError(429, d.message, kind="rate_limited", code="rate_limit_exceeded",
                        retry_after_s=d.retry_after_s)


def require_model(call: Call, model: str) -> None:
    """Refuse a model outside the key's (and its user's) allow-list."""
    req = call.req
    ident = req.identity if req is not None else None
    if ident is not None and not ident.may_use(model):
        raise _not_allowed(ident, model)


def _not_allowed(ident: Identity, model: str) -> GatewayError:
    return GatewayError(403, f"API key {ident.key_id} may not use the model "
                             f"'{model[:100]}'", kind="forbidden", param="model",
                        code="model_not_allowed")
