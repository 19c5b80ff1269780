"""``POST /v1/embeddings``: OpenAI embeddings over OpenAI-compatible and Gemini
providers (``batchEmbedContents``), and the built-in ``loopback`` model.  The
route's targets with an embeddings API are tried in order, with the retries and
circuit breaker every model request has (``proxy.exchange``)."""

from __future__ import annotations

from typing import Any

from protocols import embeddings as emb
from protocols.errors import ProtocolError
from protocols.ir import FORMAT_OPENAI_CHAT
from protocols.usage import from_openai_chat

from .. import loopback, loopback_embeddings
from ..call import Call
from ..errors import GatewayError
from ..exchange import Attempt, ProxyExchange
from ..provider import Provider
from ..state import GatewayState
from .access import check_access, when_admitted
from .attempts import encode_body, upstream_headers


def serve_embeddings(state: GatewayState, call: Call) -> None:
    try:
        body = call.json_body()
        model = call.model_of(body)
        admission = check_access(state, call, FORMAT_OPENAI_CHAT, model, body)
    except GatewayError as err:
        call.send_error(err)
        return
    if admission is not None:  # the key's limits are in Redis: continue once admitted
        when_admitted(call, admission, lambda: _serve_admitted(state, call, body, model))
        return
    _serve_admitted(state, call, body, model)


def _serve_admitted(state: GatewayState, call: Call, body: dict[str, Any], model: str) -> None:
    rec = call.rec
    req = call.req
    assert req is not None
    try:
        if model == loopback.LOOPBACK_MODEL and state.router.loopback:
            out = loopback_embeddings.embeddings(body)
            rec.provider = rec.served_model = loopback.LOOPBACK_MODEL
            rec.set_usage(from_openai_chat(out["usage"]))
            call.send_json(out)
            return
        # Every target of the route that has an embeddings API, in failover order.
        targets = [(p, m) for p, m in state.targets_for(model) if p.kind != "anthropic"]
        if not targets:
            raise GatewayError(400, f"model '{model[:100]}' routes only to Anthropic "
                                    "providers, which have no embeddings API",
                               kind="bad_request", param="model")
        headers: dict[str, bytes] = {}  # per provider: the request headers it gets

        def build(provider: Provider, upstream_model: str) -> Attempt:
            reply: Any
            if provider.kind == "gemini":
                try:
                    payload = encode_body(emb.openai_to_gemini_batch(body, upstream_model))
                except ProtocolError as exc:  # this target cannot take it: the next may
                    raise GatewayError(exc.status_hint or 400, exc.message, kind="bad_request",
                                       param=exc.param) from None
                reply = emb.GeminiEmbeddingsReply(body, model)
            elif upstream_model != model:
                payload = encode_body({**body, "model": upstream_model})
                reply = emb.OpenAIEmbeddingsReply(model)
            else:
                payload = call.forwardable_body()
                reply = emb.OpenAIEmbeddingsReply(model)
            hs = headers.get(provider.name)
            if hs is None:
                hs = headers[provider.name] = upstream_headers(
                    req, provider, FORMAT_OPENAI_CHAT, False, state.is_gateway_key)
            return Attempt(provider, upstream_model, provider.embeddings_path(upstream_model),
                           hs, payload, None, reply)

        # A body Gemini cannot take is the client's error: found before any attempt.
        first, first_model = targets[0]
        if first.kind == "gemini":
            emb.openai_to_gemini_batch(body, first_model)
    except GatewayError as err:
        call.send_error(err)
        return
    except loopback.LoopbackError as exc:
        call.send_error(GatewayError(exc.status, exc.message, kind="bad_request",
                                     param=exc.param))
        return
    except ProtocolError as exc:
        call.send_error(GatewayError(exc.status_hint or 400, exc.message, kind="bad_request",
                                     param=exc.param))
        return
    ProxyExchange(call, state.upstreams, targets, build, stream=False).start()
