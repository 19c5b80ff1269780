"""Model endpoints: every client protocol over every provider kind, one path.

Read the body, apply the loop guard, route the model, and hand an exchange the
targets with a function that builds each target's attempt
(``proxy.endpoints.attempts``).  The built-in ``loopback`` model is answered in
process (``proxy.endpoints.loopback_model``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from protocols.ir import FORMAT_GEMINI, FORMAT_OPENAI_RESPONSES
from protocols.loopguard import WARNING_TEMPLATE, inject_warning, trailing_run

from .. import loopback
from ..call import Call
from ..errors import GatewayError
from ..exchange import Attempt, ProxyExchange
from ..provider import Provider
from ..state import GatewayState
from .access import check_access, when_admitted
from .attempts import model_attempt
from .loopback_model import serve_loopback
from .response_chain import chain

log = logging.getLogger("tokenway.models")

GEMINI_ACTIONS = ("generateContent", "streamGenerateContent")


def serve_model(state: GatewayState, call: Call, client_format: str, *,
                model: str | None = None, stream: bool | None = None) -> None:
    """Answer one model request of ``client_format`` (the Gemini endpoint passes
    the model and the streaming flag from its URL)."""
    rec = call.rec
    try:
        body = call.json_body()
        if model is None:
            model = call.model_of(body)
        else:
            rec.model = model
            # Gemini puts the model and the streaming flag in the URL; the
            # decoder reads them from these gateway-added keys.
            body.setdefault("model", model)
            if stream is not None:
                body["stream"] = stream
        if stream is None:
            stream = body.get("stream") is True
        rec.stream = stream
        admission = check_access(state, call, client_format, model, body)
    except GatewayError as err:
        call.send_error(err)
        return
    name, streamed = model, stream
    if admission is not None:  # the key's limits are in Redis: continue once admitted
        when_admitted(call, admission, lambda: _serve_admitted(
            state, call, client_format, name, body, streamed))
        return
    _serve_admitted(state, call, client_format, name, body, streamed)


def _serve_admitted(state: GatewayState, call: Call, client_format: str, model: str,
                    body: dict[str, Any], stream: bool) -> None:
    """The rest of ``serve_model`` once the key's limits let the request in."""
    rec = call.rec
    try:
        guarded = loop_guard(state, call, client_format, body)
        modified = guarded is not body
        body = guarded
        if model == loopback.LOOPBACK_MODEL and state.router.loopback:
            serve_loopback(call, body, client_format, stream)
            return
        targets = state.targets_for(model)
        on_response = None
        if client_format == FORMAT_OPENAI_RESPONSES:
            chained, on_response = chain(state, call, body, targets)
            if chained is not body:
                body, modified = chained, True
    except GatewayError as err:
        call.send_error(err)
        return
    except loopback.LoopbackError as exc:
        call.send_error(GatewayError(exc.status, exc.message, kind="bad_request",
                                     param=exc.param))
        return
    created = int(time.time())
    req = call.req
    assert req is not None
    keys = state.is_gateway_key
    builtin_tools = state.config.routing.builtin_tools

    def build(provider: Provider, upstream_model: str) -> Attempt:
        att = model_attempt(req, call.forwardable_body, body, modified, client_format,
                            provider, upstream_model, stream, rec.request_id, created, keys,
                            builtin_tools)
        dropped = att.reply.dropped_tools
        rec.dropped_tools = len(dropped) or None  # the attempt that answers decides
        if dropped:
            log.info("left out built-in tool(s) %s: provider %s cannot run them",
                     ", ".join(dropped), provider.name, extra={"request_id": rec.request_id})
        return att

    ProxyExchange(call, state.upstreams, targets, build, stream=stream,
                  on_response=on_response).start()


def serve_gemini(state: GatewayState, call: Call, model: str, action: str) -> None:
    if action not in GEMINI_ACTIONS:
        call.rec.model = model
        call.send_error(GatewayError(404, f"unknown Gemini method '{action}'",
                                     kind="not_found"))
        return
    serve_model(state, call, FORMAT_GEMINI, model=model,
                stream=action == "streamGenerateContent")


def loop_guard(state: GatewayState, call: Call, fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """Warn the model about, or stop, an agent repeating the same tool call."""
    safety = state.config.agent_safety
    if not (safety.tool_loop_warn or safety.tool_loop_stop):
        return body
    n, name = trailing_run(fmt, body)
    if n < 2:
        return body
    rec = call.rec
    rec.tool_repeats = n
    if safety.tool_loop_stop and n >= safety.tool_loop_stop:
        log.warning("tool loop stopped: %r called %d times in a row", name, n,
                    extra={"request_id": rec.request_id})
        raise GatewayError(
            400, f"tool loop stopped by the gateway: the tool '{name}' was called {n} "
                 f"times in a row with the same arguments (limit "
                 f"{safety.tool_loop_stop}); change the arguments or the approach",
            kind="tool_loop", code="tool_loop_detected")
    if safety.tool_loop_warn and n >= safety.tool_loop_warn:
        log.warning("tool loop warning: %r called %d times in a row", name, n,
                    extra={"request_id": rec.request_id})
        return inject_warning(fmt, body, WARNING_TEMPLATE.format(name=name, count=n))
    return body
