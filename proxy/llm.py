"""Model endpoints: every client protocol over every provider kind.

One path for all of them: parse the body, route the model, pick the wire
format the provider speaks, build a ``protocols.translate.Translation`` (its
``stream_filter()`` is the body filter of a streamed reply: the zero-copy tap when
both sides speak the same format, else the translating filter), and hand the
request to a :class:`proxy.exchange.ProxyExchange`.  The built-in ``loopback``
model is an in-process OpenAI Chat provider, so every protocol reaches it
through the same translation.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from protocols import embeddings as emb
from protocols.errors import ProtocolError
from protocols.ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
)
from protocols.loopguard import WARNING_TEMPLATE, inject_warning, trailing_run
from protocols.model_limits import cap_output_tokens, strip_reasoning
from protocols.translate import Translation
from protocols.usage import from_openai_chat

from . import loopback
from .accounting import usage_to_row
from .errors import ANTHROPIC, GEMINI, OPENAI, GatewayError
from .exchange import SSE_HEADERS, Attempt, ProxyExchange
from .provider import ANTHROPIC_VERSION
from .upstream import HOP_BY_HOP

if TYPE_CHECKING:
    from .app import Gateway
    from .h1 import HTTPConnection, Request
    from .provider import Provider

log = logging.getLogger("tokenway.llm")

ERROR_FORMAT = {
    FORMAT_OPENAI_CHAT: OPENAI,
    FORMAT_OPENAI_RESPONSES: OPENAI,
    FORMAT_ANTHROPIC_MESSAGES: ANTHROPIC,
    FORMAT_GEMINI: GEMINI,
    "openai_embeddings": OPENAI,
}

# Client request headers never forwarded to a provider: hop-by-hop ones,
# framing we redo, credentials for the gateway (the provider key is injected),
# and encodings we could not read usage through.

NOT_FORWARDED = HOP_BY_HOP | {
    b"host", b"content-length", b"authorization", b"x-api-key", b"x-goog-api-key",
    b"accept-encoding", b"expect", b"cookie", b"forwarded", b"x-forwarded-for", b"accept",
}


def _translate_request(tr: Translation, body: dict[str, Any]) -> dict[str, Any]:
    """The upstream body, or a 400 in the client's terms naming the field."""
    try:
        return tr.request(body)
    except ProtocolError as exc:
        raise GatewayError(exc.status_hint or 400, exc.message, kind="bad_request",
                           param=exc.param) from None


class ModelEndpoints:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # -- entry points ------------------------------------------------------------------
    def chat(self, req: Request, conn: HTTPConnection) -> Any:
        return self.handle(req, conn, FORMAT_OPENAI_CHAT)

    def messages(self, req: Request, conn: HTTPConnection) -> Any:
        return self.handle(req, conn, FORMAT_ANTHROPIC_MESSAGES)

    def responses(self, req: Request, conn: HTTPConnection) -> Any:
        return self.handle(req, conn, FORMAT_OPENAI_RESPONSES)

    def gemini(self, req: Request, conn: HTTPConnection, model: str, action: str) -> Any:
        if action not in ("generateContent", "streamGenerateContent"):
            row = self.gw.new_row(req, conn, FORMAT_GEMINI, model)
            self.gw.send_error(req, conn, GatewayError(
                404, f"unknown Gemini method '{action}'", kind="not_found"), row, GEMINI)
            return None
        return self.handle(req, conn, FORMAT_GEMINI, model=model,
                           stream=action == "streamGenerateContent")

    # -- the one path --------------------------------------------------------------------
    def handle(self, req: Request, conn: HTTPConnection, client_format: str, *,
               model: str | None = None, stream: bool | None = None) -> Any:
        gw = self.gw
        efmt = ERROR_FORMAT[client_format]
        row = gw.new_row(req, conn, client_format, model)
        try:
            body = gw.parse_body(req)
            if model is None:
                model = gw.model_of(body)
            else:
                # Gemini puts the model and the streaming flag in the URL; the
                # decoder reads them from these gateway-added keys.
                body.setdefault("model", model)
                if stream is not None:
                    body["stream"] = stream
            row["model"] = model
            if stream is None:
                stream = body.get("stream") is True
            row["stream"] = stream
            modified = False
            guarded = self._loop_guard(client_format, body, row)
            if guarded is not body:
                body = guarded
                modified = True
            if model == loopback.LOOPBACK_MODEL:
                self._loopback(req, conn, body, row, client_format, stream)
                return None
            targets = gw.targets_for(model)
        except GatewayError as err:
            gw.send_error(req, conn, err, row, efmt)
            return None
        except loopback.LoopbackError as exc:
            gw.send_error(req, conn, GatewayError(exc.status, exc.message, kind="bad_request",
                                                  param=exc.param), row, efmt)
            return None
        created = int(time.time())

        def build(provider: Provider, upstream_model: str) -> Attempt:
            return self._attempt(req, body, modified, client_format, provider, model,
                                 upstream_model, stream, row["request_id"], created)

        ex = ProxyExchange(gw, req, conn, row, targets, build, stream=stream,
                           error_format=efmt)
        return ex.start()

    def _attempt(self, req: Request, body: dict[str, Any], modified: bool, client_format: str,
                 provider: Provider, model: str, upstream_model: str, stream: bool,
                 request_id: str, created: int) -> Attempt:
        """The request as ``provider`` must receive it (raises GatewayError when the
        client's request cannot be expressed for this target)."""
        up_format = provider.upstream_format(client_format)
        tr = Translation(client_format, up_format, request_id=request_id, created=created)
        up_body = _translate_request(tr, body)
        if up_format != FORMAT_GEMINI and up_body.get("model") != upstream_model:
            if up_body is body:
                up_body = dict(body)
            up_body["model"] = upstream_model
        elif up_format == FORMAT_GEMINI and ("model" in up_body or "stream" in up_body):
            up_body = {k: v for k, v in up_body.items() if k != "model" and k != "stream"}
        up_body = self._fit(provider, up_format, upstream_model, up_body)
        unchanged = up_body is body and not modified and client_format != FORMAT_GEMINI
        payload = req.body if unchanged else orjson.dumps(up_body)
        return Attempt(provider, upstream_model, provider.path(up_format, upstream_model, stream),
                       self.upstream_headers(req, provider, up_format, stream), payload,
                       tr.stream_filter() if stream else None, tr)

    @staticmethod
    def _fit(provider: Provider, fmt: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream body within what ``model`` accepts (protocols/model_limits.py):
        ``body`` itself when the provider configures no limit for it."""
        cap = provider.output_cap(model)
        if cap is not None:
            body = cap_output_tokens(fmt, body, cap)
        if not provider.reasoning(model):
            body = strip_reasoning(fmt, body)
        return body

    def _loop_guard(self, fmt: str, body: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        """Warn the model about, or stop, an agent repeating the same tool call."""
        safety = self.gw.config.agent_safety
        if not (safety.tool_loop_warn or safety.tool_loop_stop):
            return body
        n, name = trailing_run(fmt, body)
        if n < 2:
            return body
        row["tool_repeats"] = n
        if safety.tool_loop_stop and n >= safety.tool_loop_stop:
            log.warning("tool loop stopped: %r called %d times in a row (request %s)",
                        name, n, row["request_id"])
            raise GatewayError(
                400, f"tool loop stopped by the gateway: the tool '{name}' was called {n} "
                     f"times in a row with the same arguments (limit "
                     f"{safety.tool_loop_stop}); change the arguments or the approach",
                kind="tool_loop", code="tool_loop_detected")
        if safety.tool_loop_warn and n >= safety.tool_loop_warn:
            log.warning("tool loop warning: %r called %d times in a row (request %s)",
                        name, n, row["request_id"])
            return inject_warning(fmt, body, WARNING_TEMPLATE.format(name=name, count=n))
        return body

    def upstream_headers(self, req: Request, provider: Provider, up_format: str,
                 stream: bool) -> bytes:
        """The header lines for the provider, serialised: the provider's own
        (pre-serialised once) plus the client's that may travel."""
        parts = [provider.static_head]
        passthrough = provider.passthrough_auth
        foreign = provider.foreign_prefixes
        has_version = False
        for k, v in req.headers:
            if k in NOT_FORWARDED:
                if passthrough and k in (b"authorization", b"x-api-key", b"x-goog-api-key"):
                    parts.append(k + b": " + v + b"\r\n")
                continue
            if k.startswith(foreign):
                continue  # another vendor's header: consumed here, never leaked across
            if k == b"anthropic-version":
                has_version = True
            parts.append(k + b": " + v + b"\r\n")
        if up_format == FORMAT_ANTHROPIC_MESSAGES and not has_version:
            parts.append(b"anthropic-version: " + ANTHROPIC_VERSION + b"\r\n")
        parts.append(b"accept: text/event-stream\r\n" if stream else b"accept: application/json\r\n")
        return b"".join(parts)

    # -- embeddings ------------------------------------------------------------------------
    def embeddings(self, req: Request, conn: HTTPConnection) -> Any:
        gw = self.gw
        row = gw.new_row(req, conn, "openai_embeddings")
        try:
            body = gw.parse_body(req)
            model = gw.model_of(body)
            row["model"] = model
            if model == loopback.LOOPBACK_MODEL:
                out = loopback.embeddings(body)
                row["provider"] = row["served_model"] = loopback.LOOPBACK_MODEL
                usage = out.get("usage") or {}
                row["input_tokens"] = usage.get("prompt_tokens")
                row["output_tokens"] = 0
                gw.respond_json(req, conn, row, out)
                return None
            provider, upstream_model = gw.targets_for(model)[0]
            row["provider"] = provider.name
            row["served_model"] = upstream_model
            if provider.kind == "anthropic":
                raise GatewayError(400, f"model '{model}' routes to Anthropic provider "
                                        f"'{provider.name}', which has no embeddings API",
                                   kind="bad_request", param="model")
            if provider.kind == "gemini":
                up_body = emb.openai_to_gemini_batch(body, upstream_model)
                payload = orjson.dumps(up_body)
                adapter: Any = emb.GeminiEmbeddingsReply(body, model)
            else:
                if upstream_model != model:
                    body["model"] = upstream_model
                    payload = orjson.dumps(body)
                else:
                    payload = req.body
                adapter = emb.OpenAIEmbeddingsReply(upstream_model)
        except GatewayError as err:
            gw.send_error(req, conn, err, row, OPENAI)
            return None
        except (loopback.LoopbackError, ProtocolError) as exc:
            gw.send_error(req, conn, GatewayError(
                getattr(exc, "status", None) or getattr(exc, "status_hint", 400), exc.message,
                kind="bad_request", param=exc.param), row, OPENAI)
            return None
        att = Attempt(provider, upstream_model, provider.embeddings_path(upstream_model),
                      self.upstream_headers(req, provider, FORMAT_OPENAI_CHAT, False), payload, None,
                      adapter)
        ex = ProxyExchange(gw, req, conn, row, [(provider, upstream_model)],
                           lambda p, m: att, stream=False, error_format=OPENAI)
        return ex.start()

    # -- loopback --------------------------------------------------------------------------
    def _loopback(self, req: Request, conn: HTTPConnection, body: dict[str, Any],
                  row: dict[str, Any], client_format: str, stream: bool) -> None:
        gw = self.gw
        row["provider"] = "loopback"
        row["served_model"] = loopback.LOOPBACK_MODEL
        rid = row["request_id"]
        created = int(time.time())
        cid = "chatcmpl-" + rid[4:]
        tr = None
        chat_body = body
        if client_format != FORMAT_OPENAI_CHAT:
            tr = Translation(client_format, FORMAT_OPENAI_CHAT, request_id=rid, created=created)
            chat_body = _translate_request(tr, body)
            chat_body["model"] = body.get("model") or loopback.LOOPBACK_MODEL
        hdrs = [(b"x-request-id", rid.encode())]
        usage: Any = from_openai_chat(loopback.chat_usage(chat_body))
        if stream:
            frames = loopback.chat_stream(chat_body, request_id=cid, created=created)
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
            conn.start_stream(200, SSE_HEADERS + hdrs)
            n = 0
            for frame in frames:
                out = frame if tr is None else tr.feed(frame)
                if out:
                    conn.write(out)
                    n += len(out)
            if tr is not None:
                out = tr.finish()
                if out:
                    conn.write(out)
                    n += len(out)
                usage = tr.usage or usage
            conn.end_stream()
            row["bytes_out"] = n
            row["status"] = 200
        else:
            reply = loopback.chat_completion(chat_body, request_id=cid, created=created)
            if tr is not None:
                reply = tr.response(reply)
                usage = tr.usage or usage
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
            gw.respond_json(req, conn, row, reply, finish=False)
        usage_to_row(usage, row)
        gw.finish_row(row)

