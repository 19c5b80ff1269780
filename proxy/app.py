"""The gateway's request dispatch: endpoint table, auth, routing, ledger rows.

``Gateway.handle`` is called by the HTTP connection for every request.  It
answers small things inline (health, models, errors) and hands model requests
to :mod:`proxy.llm`.  It returns None when the request was answered
synchronously, or a coroutine when a provider connection must be opened first.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any

import orjson

from . import __version__, loopback
from .accounting import usage_to_row
from .config import Config
from .count_tokens import CountTokens
from .errors import (
    ANTHROPIC,
    GEMINI,
    OPENAI,
    UPSTREAM,
    GatewayError,
    bad_request,
    error_body,
)
from .health import HealthBoard
from .ledger import DictRecord
from .limits import ConcurrencyLimit
from .llm import ModelEndpoints
from .provider import Provider
from .routing import Router
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from .h1 import HTTPConnection, Request
    from .server import Server

log = logging.getLogger("tokenway.app")

_ID_PREFIX = "req_" + os.urandom(6).hex()
_id_counter = itertools.count(1)

GEMINI_PREFIX = "/v1beta/models/"


def new_request_id() -> str:
    """Unique per process run: a random prefix plus a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


def _error_format_for_path(path: str) -> str:
    if path.startswith(GEMINI_PREFIX):
        return GEMINI
    if "/messages" in path or path.startswith("/anthropic/"):
        return ANTHROPIC
    return OPENAI


class Gateway:
    def __init__(self, config: Config, ledger: Any, server: Server) -> None:
        self.server = server
        self.ledger = ledger
        self.loop = server.loop
        self.pool = UpstreamPool(server.loop)
        r = config.routing
        self.health = HealthBoard(failure_threshold=r.failure_threshold,
                                  cooldown_s=r.cooldown_s, cooldown_max_s=r.cooldown_max_s)
        self.limits: dict[str, ConcurrencyLimit] = {}
        self.started = time.time()
        self.models_ep = ModelEndpoints(self)
        self.count_tokens_ep = CountTokens(self)
        self.apply_config(config)
        m = self.models_ep
        ct = self.count_tokens_ep.handle
        self._routes = {
            ("POST", "/v1/chat/completions"): m.chat,
            ("POST", "/v1/responses"): m.responses,
            ("POST", "/v1/messages"): m.messages,
            ("POST", "/anthropic/v1/messages"): m.messages,
            ("POST", "/v1/messages/count_tokens"): ct,
            ("POST", "/anthropic/v1/messages/count_tokens"): ct,
            ("POST", "/v1/embeddings"): m.embeddings,
            ("GET", "/v1/models"): self.models,
            ("HEAD", "/v1/models"): self.models,
            ("GET", "/anthropic/v1/models"): self.models,
            ("GET", "/health"): self.health_page,
            ("HEAD", "/health"): self.health_page,
            ("HEAD", "/"): self.root,
            ("GET", "/"): self.root,
        }
        self._paths = {path for _, path in self._routes}

    def apply_config(self, config: Config) -> None:
        """Install a (new) configuration.  In-flight exchanges keep the objects they
        already hold, so a reload never drops a running stream."""
        self.config = config
        self.router = Router(config)
        self.providers = {name: Provider(p) for name, p in config.providers.items()}
        r = config.routing
        self.health.configure(failure_threshold=r.failure_threshold,
                              cooldown_s=r.cooldown_s, cooldown_max_s=r.cooldown_max_s)
        limits = {}
        for name, p in config.providers.items():
            if p.max_concurrency:
                old = self.limits.get(name)
                if old is not None and old.max == p.max_concurrency:
                    old.queue_size, old.queue_timeout_s = p.queue_size, p.queue_timeout_s
                    limits[name] = old
                else:
                    limits[name] = ConcurrencyLimit(p.max_concurrency, p.queue_size,
                                                    p.queue_timeout_s)
        self.limits = limits
        self.keys = tuple(k.encode() for k in config.auth.keys)
        owners: dict[str, str] = {}
        for route in config.routes:
            for t in route.targets:
                owners.setdefault(t.model or route.match, t.provider)
        names = self.router.models()
        self._models_openai = orjson.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0,
             "owned_by": "tokenway" if m == loopback.LOOPBACK_MODEL else owners.get(m, "tokenway")}
            for m in names]})
        # Anthropic's list shape (GET /v1/models with anthropic-version).
        data = [{"type": "model", "id": m, "display_name": m,
                 "created_at": "2025-01-01T00:00:00Z"} for m in names]
        self._models_anthropic = orjson.dumps({
            "data": data, "has_more": False,
            "first_id": names[0] if names else None, "last_id": names[-1] if names else None})

    # dispatch ---------------------------------------------------------------------
    def handle(self, req: Request, conn: HTTPConnection) -> Any:
        handler = self._routes.get((req.method, req.path))
        if handler is None:
            if req.path.startswith(GEMINI_PREFIX):
                return self._gemini(req, conn)
            row = self.new_row(req, conn, "other")
            fmt = _error_format_for_path(req.path)
            if req.path in self._paths:
                err = GatewayError(405, f"method {req.method} not allowed on {req.path}",
                                   kind="bad_request")
            else:
                err = GatewayError(404, f"unknown endpoint {req.method} {req.path}",
                                   kind="not_found", code="unknown_url")
            self.send_error(req, conn, err, row, fmt)
            return None
        if self.keys and req.path != "/health" and req.path != "/" and not self._authorized(req):
            self._unauthorized(req, conn)
            return None
        return handler(req, conn)

    def _gemini(self, req: Request, conn: HTTPConnection) -> Any:
        rest = req.path[len(GEMINI_PREFIX):]
        model, sep, action = rest.rpartition(":")
        if req.method != "POST" or not sep or not model:
            row = self.new_row(req, conn, "gemini")
            self.send_error(req, conn, GatewayError(
                404, f"unknown endpoint {req.method} {req.path}", kind="not_found"), row, GEMINI)
            return None
        if self.keys and not self._authorized(req):
            self._unauthorized(req, conn)
            return None
        from urllib.parse import unquote

        return self.models_ep.gemini(req, conn, unquote(model), action)

    def _authorized(self, req: Request) -> bool:
        presented = req.header(b"x-api-key") or req.header(b"x-goog-api-key")
        if presented is None:
            auth = req.header(b"authorization")
            if auth is None or auth[:7].lower() != b"bearer ":
                if req.path.startswith(GEMINI_PREFIX) and "key=" in req.query:
                    from urllib.parse import parse_qs

                    presented = parse_qs(req.query).get("key", [""])[0].encode()
                else:
                    return False
            else:
                presented = auth[7:].strip()
        ok = False
        for key in self.keys:  # compare against every key: timing says nothing
            ok |= hmac.compare_digest(presented, key)
        return ok

    def _unauthorized(self, req: Request, conn: HTTPConnection) -> None:
        fmt = _error_format_for_path(req.path)
        row = self.new_row(req, conn, fmt)
        self.send_error(req, conn, GatewayError(
            401, "missing or invalid gateway API key: send it as 'Authorization: Bearer "
                 "KEY' or 'x-api-key: KEY'", kind="auth", code="invalid_api_key"), row, fmt)

    # request helpers ---------------------------------------------------------------
    def parse_body(self, req: Request) -> dict[str, Any]:
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

    @staticmethod
    def model_of(body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            raise bad_request("you must provide a model parameter", param="model")
        if type(model) is not str or not model:
            raise bad_request("'model' must be a non-empty string", param="model")
        return model

    def targets_for(self, model: str) -> list[tuple[Provider, str]]:
        """The targets a request for ``model`` tries, in failover order: the first
        matching route's targets, the first one drawn by weight when it has weights."""
        resolved = self.router.resolve(model)
        if resolved is None:
            raise GatewayError(404, f"no route for model '{model}': add a [[routes]] entry "
                                    f"or use model 'loopback'", kind="not_found",
                               param="model", code="model_not_found")
        providers = self.providers
        targets = [(providers[p.name], m) for p, m in resolved.targets]
        weights = resolved.route.weights
        if weights and len(targets) > 1:
            i = random.choices(range(len(targets)), weights=weights)[0]
            if i:
                targets.insert(0, targets.pop(i))
        return targets

    def limit_for(self, provider: Provider) -> ConcurrencyLimit | None:
        return self.limits.get(provider.name)

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
        self.ledger.record(DictRecord(row))

    def record_rejected(self, conn: HTTPConnection, status: int, message: str) -> None:
        """A request that broke HTTP framing or a limit still gets its ledger row."""
        row = self.new_row(None, conn, "http")
        row["status"] = status
        row["error_kind"] = "bad_request" if status != 408 else "client_timeout"
        self.finish_row(row)

    def read_usage(self, body: bytes, row: dict[str, Any]) -> None:
        """Read model and usage from a non-stream OpenAI JSON answer."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if type(obj) is dict:
            usage = obj.get("usage")
            if type(usage) is dict:
                usage_to_row(usage, row)
            model = obj.get("model")
            if type(model) is str:
                row["served_model"] = model

    def respond_json(self, req: Request, conn: HTTPConnection, row: dict[str, Any],
                     obj: Any, *, finish: bool = True) -> None:
        data = orjson.dumps(obj)
        row["status"] = 200
        if row.get("ttfb_ms") is None:
            row["ttfb_ms"] = (time.monotonic() - row["_t0"]) * 1000.0
        conn.respond(200, data, [(b"x-request-id", row["request_id"].encode())])
        row["bytes_out"] = len(data)
        if finish:
            self.finish_row(row)

    # errors ------------------------------------------------------------------------
    def send_error(self, req: Request, conn: HTTPConnection, err: GatewayError,
                   row: dict[str, Any], fmt: str) -> None:
        row["status"] = err.status
        row["error_kind"] = err.kind
        body = err.body(fmt)
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
        if fmt == OPENAI and status >= 500:
            from .errors import openai_error_body

            return openai_error_body(status, msg, type_="upstream_error")
        return error_body(fmt, status, msg)

    # endpoints -------------------------------------------------------------------------
    def health_page(self, req: Request, conn: HTTPConnection) -> None:
        body = orjson.dumps({
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "connections": len(self.server.connections),
            "upstream": self.pool.stats(),
            "ledger": self.ledger.stats(),
            "targets": self.health.snapshot(self.loop.time()),
            "limits": {name: lim.stats() for name, lim in self.limits.items()},
        })
        conn.respond(200, body)

    def root(self, req: Request, conn: HTTPConnection) -> None:
        # Claude Code probes the base URL with HEAD before its first request.
        conn.respond(200, b'{"service":"tokenway"}')

    def models(self, req: Request, conn: HTTPConnection) -> None:
        anthropic = req.header(b"anthropic-version") is not None or req.path.startswith("/anthropic/")
        conn.respond(200, self._models_anthropic if anthropic else self._models_openai)


__all__ = ["Gateway", "new_request_id"]
