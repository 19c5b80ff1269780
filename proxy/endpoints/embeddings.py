"""``POST /v1/embeddings``: OpenAI embeddings over OpenAI-compatible and Gemini
providers (``batchEmbedContents``), and the built-in ``loopback`` model."""

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
from ..state import GatewayState
from .access import check_access
from .attempts import encode_body, upstream_headers


def serve_embeddings(state: GatewayState, call: Call) -> None:
    rec = call.rec
    req = call.req
    assert req is not None
    try:
        body = call.json_body()
        model = call.model_of(body)
        check_access(state, call, FORMAT_OPENAI_CHAT, model, body)
        if model == loopback.LOOPBACK_MODEL and state.router.loopback:
            out = loopback_embeddings.embeddings(body)
            rec.provider = rec.served_model = loopback.LOOPBACK_MODEL
            rec.set_usage(from_openai_chat(out["usage"]))
            call.send_json(out)
            return
        provider, upstream_model = state.targets_for(model)[0]
        rec.provider = provider.name
        rec.served_model = upstream_model
        if provider.kind == "anthropic":
            raise GatewayError(400, f"model '{model}' routes to Anthropic provider "
                                    f"'{provider.name}', which has no embeddings API",
                               kind="bad_request", param="model")
        reply: Any
        if provider.kind == "gemini":
            payload = encode_body(emb.openai_to_gemini_batch(body, upstream_model))
            reply = emb.GeminiEmbeddingsReply(body, model)
        else:
            if upstream_model != model:
                body["model"] = upstream_model
                payload = encode_body(body)
            else:
                payload = call.forwardable_body()
            reply = emb.OpenAIEmbeddingsReply(model)
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
    att = Attempt(provider, upstream_model, provider.embeddings_path(upstream_model),
                  upstream_headers(req, provider, FORMAT_OPENAI_CHAT, False, state.is_gateway_key),
                  payload, None, reply)
    ProxyExchange(call, state.upstreams, [(provider, upstream_model)],
                  lambda p, m: att, stream=False).start()
