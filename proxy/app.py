"""The gateway's request handlers: endpoint table, auth, routing, ledger rows.

``Gateway.handle`` is called by the HTTP connection for every request.  It
answers small things inline (health, models, loopback, errors) and hands
proxied requests to :class:`proxy.exchange.ProxyExchange`.  It returns None
when the request was answered synchronously, or a coroutine when the
exchange has to open a provider connection first.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from protocols.observe import ChatStreamObserver

from . import __version__, loopback
from .config import Config, ProviderConfig
from .errors import (
    UPSTREAM,
    GatewayError,
    anthropic_error_body,
    bad_request,
    openai_error_body,
)
from .exchange import SSE_HEADERS, ProxyExchange
from .routing import Router
from .upstream import HOP_BY_HOP, UpstreamPool

if TYPE_CHECKING:
    from .h1 import HTTPConnection, Request
    from .server import Server

log = logging.getLogger("tokenway.app")

# Client request headers never forwarded to a provider: hop-by-hop ones,
# framing we redo, credentials for the gateway (the provider key is
# injected), and encodings we could not read usage through.
_NOT_FORWARDED = HOP_BY_HOP | {
    b"host", b"content-length", b"authorization", b"x-api-key", b"x-goog-api-key",
    b"accept-encoding", b"expect", b"cookie", b"forwarded", b"x-forwarded-for",
}

OPENAI = "openai"  # error format names
ANTHROPIC = "anthropic"


class Provider:
    """A configured provider plus the bytes the hot path needs, computed once."""

    __slots__ = (
        "config", "name", "kind", "scheme", "host", "port", "ca_bundle", "verify_tls",
        "connect_timeout_s", "first_byte_timeout_s", "idle_timeout_s", "host_header",
        "base_path", "static_headers", "passthrough_auth",
    )

    def __init__(self, cfg: ProviderConfig) -> None:
        self.config = cfg
        self.name = cfg.name
        self.kind = cfg.kind
        self.scheme = cfg.scheme
        self.host = cfg.host
        self.port = cfg.port
        self.ca_bundle = cfg.ca_bundle
        self.verify_tls = cfg.verify_tls
        self.connect_timeout_s = cfg.connect_timeout_s
        self.first_byte_timeout_s = cfg.first_byte_timeout_s
        self.idle_timeout_s = cfg.idle_timeout_s
        self.host_header = cfg.authority.encode()
        self.base_path = cfg.base_path.encode()
        self.passthrough_auth = cfg.auth_mode == "passthrough"
        hs: list[tuple[bytes, bytes]] = [(b"accept-encoding", b"identity")]
        if cfg.api_key and not self.passthrough_auth:
            if cfg.kind == "anthropic":
                hs.append((b"x-api-key", cfg.api_key.encode()))
            elif cfg.kind == "gemini":
                hs.append((b"x-goog-api-key", cfg.api_key.encode()))
            else:
                hs.append((b"authorization", b"Bearer " + cfg.api_key.encode()))
        for k, v in cfg.headers:
            hs.append((k.lower().encode(), v.encode()))
        self.static_headers = hs


_ID_PREFIX = "req_" + os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run: a random prefix plus a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


class Gateway:
    def __init__(self, config: Config, ledger: Any, server: Server) -> None:
        self.server = server
        self.ledger = ledger
        self.pool = UpstreamPool(server.loop)
        self.started = time.time()
        self.apply_config(config)
        self._routes = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("GET", "/v1/models"): self.models,
            ("HEAD", "/v1/models"): self.models,
            ("GET", "/health"): self.health,
            ("HEAD", "/health"): self.health,
        }
        self._paths = {path for _, path in self._routes}

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.router = Router(config)
        self.providers = {name: Provider(p) for name, p in config.providers.items()}
        self.keys = tuple(k.encode() for k in config.auth.keys)
        owners: dict[str, str] = {}
        for route in config.routes:
            for t in route.targets:
                owners.setdefault(t.model or route.match, t.provider)
        data = [{"id": m, "object": "model", "created": 0,
                 "owned_by": "tokenway" if m == loopback.LOOPBACK_MODEL else owners.get(m, "tokenway")}
                for m in self.router.models()]
        self._models_body = orjson.dumps({"object": "list", "data": data})

    # dispatch ---------------------------------------------------------------------
    def handle(self, req: Request, conn: HTTPConnection) -> Any:
        handler = self._routes.get((req.method, req.path))
        if handler is None:
            row = self.new_row(req, conn, "other")
            if req.path in self._paths:
                err = GatewayError(405, f"method {req.method} not allowed on {req.path}",
                                   kind="bad_request")
            else:
                err = GatewayError(404, f"unknown endpoint {req.method} {req.path}",
                                   kind="not_found", code="unknown_url")
            self.send_error(req, conn, err, row, OPENAI)
            return None
        if self.keys and req.path != "/health" and not self._authorized(req):
            row = self.new_row(req, conn, "openai")
            self.send_error(req, conn, GatewayError(
                401, "missing or invalid gateway API key: send it as 'Authorization: Bearer "
                     "KEY' or 'x-api-key: KEY'", kind="auth", code="invalid_api_key"),
                row, OPENAI)
            return None
        return handler(req, conn)

    def _authorized(self, req: Request) -> bool:
        presented = req.header(b"x-api-key")
        if presented is None:
            auth = req.header(b"authorization")
            if auth is None or auth[:7].lower() != b"bearer ":
                return False
            presented = auth[7:].strip()
        ok = False
        for key in self.keys:  # compare against every key: timing says nothing
            ok |= hmac.compare_digest(presented, key)
        return ok

    # rows --------------------------------------------------------------------------
    def new_row(self, req: Request | None, conn: HTTPConnection, client_protocol: str,
                model: str | None = None, stream: bool = False) -> dict[str, Any]:
        return {
            "ts": time.time(),
            "_t0": time.monotonic(),
            "request_id": new_request_id(),
            "endpoint": req.path if req is not None else None,
            "client_protocol": client_protocol,
            "model": model,
            "served_model": None,
            "provider": None,
            "status": 0,
            "error_kind": None,
            "stream": stream,
            "input_tokens": None,
            "output_tokens": None,
            "cached_tokens": None,
            "cache_write_tokens": None,
            "reasoning_tokens": None,
            "latency_ms": None,
            "ttfb_ms": None,
            "bytes_in": len(req.body) if req is not None else 0,
            "bytes_out": 0,
            "attempts": 1,
            "client_addr": conn.client_addr,
        }

    def finish_row(self, row: dict[str, Any]) -> None:
        row["latency_ms"] = (time.monotonic() - row.pop("_t0")) * 1000.0
        self.ledger.record(row)

    def record_rejected(self, conn: HTTPConnection, status: int, message: str) -> None:
        """A request that broke HTTP framing or a limit still gets its ledger row."""
        row = self.new_row(None, conn, "http")
        row["status"] = status
        row["error_kind"] = "bad_request" if status != 408 else "client_timeout"
        self.finish_row(row)

    @staticmethod
    def apply_usage(usage: dict[str, Any], row: dict[str, Any]) -> None:
        """Copy an OpenAI-shaped usage object into ledger columns."""
        row["input_tokens"] = usage.get("prompt_tokens")
        row["output_tokens"] = usage.get("completion_tokens")
        ptd = usage.get("prompt_tokens_details") or {}
        row["cached_tokens"] = ptd.get("cached_tokens")
        row["cache_write_tokens"] = ptd.get("cache_write_tokens")
        ctd = usage.get("completion_tokens_details") or {}
        row["reasoning_tokens"] = ctd.get("reasoning_tokens")

    def read_usage(self, body: bytes, row: dict[str, Any]) -> None:
        """Read model and usage from a non-stream OpenAI JSON answer."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if type(obj) is dict:
            usage = obj.get("usage")
            if type(usage) is dict:
                self.apply_usage(usage, row)
            model = obj.get("model")
            if type(model) is str:
                row["served_model"] = model

    # errors ------------------------------------------------------------------------
    def send_error(self, req: Request, conn: HTTPConnection, err: GatewayError,
                   row: dict[str, Any], fmt: str) -> None:
        row["status"] = err.status
        row["error_kind"] = err.kind
        body = err.anthropic_body() if fmt == ANTHROPIC else err.openai_body()
        headers = [(b"x-request-id", row["request_id"].encode())]
        if err.retry_after_s is not None:
            headers.append((b"retry-after", b"%d" % max(1, round(err.retry_after_s))))
        if err.source == UPSTREAM:
            log.warning("%s %s -> %d %s", req.method, req.path, err.status, err.message)
        conn.respond(err.status, body, headers)
        row["bytes_out"] = len(body)
        self.finish_row(row)

    @staticmethod
    def relay_error_body(status: int, body: bytes, fmt: str) -> bytes:
        """Relay a provider's error with its status, in the client's error format."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if fmt == OPENAI and type(obj) is dict and type(obj.get("error")) is dict:
            return body  # already OpenAI-shaped
        text = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        if type(obj) is dict and type(obj.get("error")) is dict:
            text = str(obj["error"].get("message") or text)
        msg = f"provider returned HTTP {status}: {text}"
        if fmt == ANTHROPIC:
            return anthropic_error_body(status, msg)
        return openai_error_body(status, msg, type_="upstream_error" if status >= 500 else None)

    # endpoints -------------------------------------------------------------------------
    def health(self, req: Request, conn: HTTPConnection) -> None:
        body = orjson.dumps({
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "connections": len(self.server.connections),
            "upstream": self.pool.stats(),
            "ledger": self.ledger.stats(),
        })
        conn.respond(200, body)

    def models(self, req: Request, conn: HTTPConnection) -> None:
        conn.respond(200, self._models_body)

    def _parse_body(self, req: Request) -> dict[str, Any]:
        ctype = req.header(b"content-type")
        if ctype is not None and b"json" not in ctype.lower():
            raise GatewayError(415, "request body must be JSON (content-type: application/json)",
                               kind="bad_request")
        if not req.body:
            raise bad_request("request body is empty: expected a JSON object")
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None
        if type(body) is not dict:
            raise bad_request("request body must be a JSON object")
        return body

    def _model_of(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            raise bad_request("you must provide a model parameter", param="model")
        if type(model) is not str or not model:
            raise bad_request("'model' must be a non-empty string", param="model")
        return model

    def chat_completions(self, req: Request, conn: HTTPConnection) -> Any:
        return self._openai_json(req, conn, "openai_chat", "/chat/completions", chat=True)

    def embeddings(self, req: Request, conn: HTTPConnection) -> Any:
        return self._openai_json(req, conn, "openai_embeddings", "/embeddings", chat=False)

    def _openai_json(self, req: Request, conn: HTTPConnection, protocol: str, suffix: str,
                     *, chat: bool) -> Any:
        row = self.new_row(req, conn, protocol)
        try:
            body = self._parse_body(req)
            model = self._model_of(body)
            row["model"] = model
            stream = chat and body.get("stream") is True
            row["stream"] = stream
            if model == loopback.LOOPBACK_MODEL:
                self._loopback(req, conn, body, row, chat, stream)
                return None
            resolved = self.router.resolve(model)
            if resolved is None:
                raise GatewayError(404, f"no route for model '{model}': add a [[routes]] entry "
                                        f"or use model 'loopback'", kind="not_found",
                                   param="model", code="model_not_found")
            pcfg, upstream_model = resolved.targets[0]
            provider = self.providers[pcfg.name]
            if provider.kind != "openai":
                raise GatewayError(501, f"model '{model}' routes to provider '{provider.name}' "
                                        f"of kind '{provider.kind}'; this endpoint proxies only "
                                        f"to OpenAI-compatible providers",
                                   kind="bad_request", param="model")
        except GatewayError as err:
            self.send_error(req, conn, err, row, OPENAI)
            return None
        except loopback.LoopbackError as exc:
            self.send_error(req, conn, GatewayError(exc.status, exc.message, kind="bad_request",
                                                    param=exc.param), row, OPENAI)
            return None
        row["provider"] = provider.name
        row["served_model"] = upstream_model
        changed = False
        if upstream_model != model:
            body["model"] = upstream_model
            changed = True
        strip_usage = False
        if stream:
            opts = body.get("stream_options")
            if not (type(opts) is dict and opts.get("include_usage") is True):
                # Ask the provider for usage so it is never estimated; the extra
                # chunk is stripped back out for the client that did not ask.
                opts = dict(opts) if type(opts) is dict else {}
                opts["include_usage"] = True
                body["stream_options"] = opts
                strip_usage = True
                changed = True
        payload = orjson.dumps(body) if changed else req.body
        headers = list(provider.static_headers)
        passthrough = provider.passthrough_auth
        for k, v in req.headers:
            if k not in _NOT_FORWARDED:
                headers.append((k, v))
            elif passthrough and (k == b"authorization" or k == b"x-api-key"):
                headers.append((k, v))
        if stream:
            headers.append((b"accept", b"text/event-stream"))
        ex = ProxyExchange(
            self, req, conn, row, provider, provider.base_path + suffix.encode(), headers,
            payload, stream=stream,
            body_filter=ChatStreamObserver(strip_usage=strip_usage) if stream else None,
            error_format=OPENAI)
        return ex.start()

    def _loopback(self, req: Request, conn: HTTPConnection, body: dict[str, Any],
                  row: dict[str, Any], chat: bool, stream: bool) -> None:
        row["provider"] = "loopback"
        row["served_model"] = loopback.LOOPBACK_MODEL
        rid = row["request_id"]
        hdrs = [(b"x-request-id", rid.encode())]
        if not chat:
            out = loopback.embeddings(body)
            usage = out.get("usage") or {}
            row["input_tokens"] = usage.get("prompt_tokens")
            row["output_tokens"] = 0
            data = orjson.dumps(out)
            row["status"] = 200
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
            conn.respond(200, data, hdrs)
            row["bytes_out"] = len(data)
            self.finish_row(row)
            return
        created = int(time.time())
        cid = "chatcmpl-" + rid[4:]
        usage = loopback.chat_usage(body)
        if stream:
            frames = loopback.chat_stream(body, request_id=cid, created=created)
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
            conn.start_stream(200, SSE_HEADERS + hdrs)
            n = 0
            for frame in frames:
                conn.write(frame)
                n += len(frame)
            conn.end_stream()
            row["bytes_out"] = n
        else:
            data = orjson.dumps(loopback.chat_completion(body, request_id=cid, created=created))
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
            conn.respond(200, data, hdrs)
            row["bytes_out"] = len(data)
        row["status"] = 200
        self.apply_usage(usage, row)
        self.finish_row(row)
