"""Dispatch: the endpoint table, authentication, and every request's ``Call``.

``Dispatcher.handle`` is what a client connection calls for each parsed
request.  It makes the request's ``Call`` (and with it the ledger record),
checks the gateway key, and runs the endpoint.  A handler that raises is
answered here, in the client's protocol, with a 500 and a ledger row.
``reject`` records a request that broke HTTP framing or a limit and gives the
connection its error body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from protocols.ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
)

from .accounts.directory import Identity, Refused
from .call import Call, ClientConnection
from .endpoints import ADMIN, COUNT_TOKENS, REALTIME
from .endpoints.info import serve_health, serve_models, serve_root
from .endpoints.metrics import serve_metrics
from .endpoints.models import GEMINI_ACTIONS, serve_gemini, serve_model
from .errors import GatewayError, error_reply
from .headers import CREDENTIAL_HEADERS
from .state import GatewayState
from .wire import Request

log = logging.getLogger("tokenway.dispatch")

GEMINI_PREFIX = "/v1beta/models/"
# Everything under it needs an admin key, whatever else authentication says.
ADMIN_SPACE = "/admin"
EMBEDDINGS = "openai_embeddings"
INFO = "info"

Handler = Callable[[Call], None]


def endpoint_sets_of(path: str) -> tuple[str, ...]:
    """The endpoint sets (``[[listeners]] endpoints``) that serve ``path``: a
    listener answers it when it has one of them.  ``/v1/models`` belongs to
    OpenAI and Anthropic clients both; unknown paths count as OpenAI's (they get
    the 404 they would get anyway)."""
    if path.startswith(ADMIN_SPACE) and (len(path) == len(ADMIN_SPACE)
                                         or path[len(ADMIN_SPACE)] == "/"):
        return ("admin",)
    if path == "/metrics":
        return ("metrics",)
    if path == "/health" or path == "/":
        return ("health",)
    if path.startswith(GEMINI_PREFIX):
        return ("gemini",)
    if path == "/v1/models":
        return ("openai", "anthropic")
    if "/messages" in path or path.startswith("/anthropic/"):
        return ("anthropic",)
    return ("openai",)


class ListenerGate:
    """One listener's head check: a path outside its endpoint sets is 404 (in the
    client's protocol, recorded), before authentication; the rest goes to the
    dispatcher.  ``endpoints`` may be replaced by a reload."""

    __slots__ = ("admit_all", "endpoints")

    def __init__(self, dispatcher: Dispatcher, endpoints: tuple[str, ...]) -> None:
        self.admit_all = dispatcher.admit
        self.endpoints = frozenset(endpoints)

    def admit(self, req: Request) -> None:
        allowed = self.endpoints
        if not any(s in allowed for s in endpoint_sets_of(req.path)):
            req.route = None
            req.rejection = GatewayError(
                404, f"unknown endpoint {req.method} {req.path[:200]}: this address serves "
                     f"{', '.join(sorted(allowed))}", kind="not_found", code="unknown_url")
            return
        self.admit_all(req)


def error_format_for_path(path: str | None) -> str:
    """The protocol a request to ``path`` speaks, for errors found before routing."""
    if path is None:
        return FORMAT_OPENAI_CHAT
    if path.startswith(GEMINI_PREFIX):
        return FORMAT_GEMINI
    if "/messages" in path or path.startswith("/anthropic/"):
        return FORMAT_ANTHROPIC_MESSAGES
    if path == "/v1/responses":
        return FORMAT_OPENAI_RESPONSES
    return FORMAT_OPENAI_CHAT


class Dispatcher:
    def __init__(self, state: GatewayState, server_stats: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        s = state
        chat, msgs = FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC_MESSAGES
        responses = FORMAT_OPENAI_RESPONSES

        def model(fmt: str) -> Handler:
            return lambda call: serve_model(s, call, fmt)

        # The admin API, token counting, embeddings and the Realtime API are imported
        # with their first request: with what only they use (the admin thread pool,
        # the CSV report, the token estimator, the embeddings codecs) they are about
        # 1 MiB of a gateway that never serves them.
        def count_tokens(call: Call) -> None:
            from .endpoints.count_tokens import serve_count_tokens

            serve_count_tokens(s, call)

        def embeddings(call: Call) -> None:
            from .endpoints.embeddings import serve_embeddings

            serve_embeddings(s, call)

        def realtime(call: Call) -> None:
            from .endpoints.realtime import serve_realtime

            serve_realtime(s, call)

        def admin(call: Call) -> None:
            from .endpoints.admin import serve_admin

            serve_admin(s, call)

        def models(call: Call) -> None:
            serve_models(s, call)

        def health(call: Call) -> None:
            serve_health(s, call, server_stats, details=self._health_details(call))

        def metrics(call: Call) -> None:
            serve_metrics(s, call, server_stats)

        # (method, path) -> (client protocol, error format, handler, needs a key).
        # The probes, the models list and the metrics ("info") answer from memory
        # and are not recorded: a load balancer's health checks would fill the ledger.
        self.routes: dict[tuple[str, str], tuple[str, str, Handler, bool]] = {
            ("POST", "/v1/chat/completions"): (chat, chat, model(chat), True),
            ("POST", "/v1/responses"): (responses, responses, model(responses), True),
            ("POST", "/v1/messages"): (msgs, msgs, model(msgs), True),
            ("POST", "/anthropic/v1/messages"): (msgs, msgs, model(msgs), True),
            ("POST", "/v1/messages/count_tokens"): (COUNT_TOKENS, msgs, count_tokens, True),
            ("POST", "/anthropic/v1/messages/count_tokens"): (COUNT_TOKENS, msgs, count_tokens,
                                                              True),
            ("POST", "/v1/embeddings"): (EMBEDDINGS, chat, embeddings, True),
            ("GET", "/v1/realtime"): (REALTIME, chat, realtime, True),
            ("GET", "/v1/models"): (INFO, chat, models, True),
            ("HEAD", "/v1/models"): (INFO, chat, models, True),
            ("GET", "/anthropic/v1/models"): (INFO, msgs, models, True),
            ("GET", "/health"): (INFO, chat, health, False),
            ("HEAD", "/health"): (INFO, chat, health, False),
            ("GET", "/metrics"): (INFO, chat, metrics, True),
            ("HEAD", "/metrics"): (INFO, chat, metrics, True),
            ("GET", "/"): (INFO, chat, serve_root, False),
            ("HEAD", "/"): (INFO, chat, serve_root, False),
        }
        self.paths = {path for _, path in self.routes}
        state.metrics.set_endpoints((*self.paths, ADMIN_SPACE),
                                    {GEMINI_PREFIX: GEMINI_ACTIONS, ADMIN_SPACE + "/": ()})
        self.admin_route: tuple[str, str, Handler, bool] = (ADMIN, chat, admin, True)

    # -- the connection's entry points ------------------------------------------------

    def admit(self, req: Request) -> None:
        """Decide from the head alone: the endpoint ``req`` goes to
        (``req.route``), or the error it is refused with (``req.rejection``:
        unknown endpoint, wrong method, missing or wrong gateway key), before any
        of its body is read."""
        path = req.path
        if path.startswith(ADMIN_SPACE) and (len(path) == len(ADMIN_SPACE)
                                             or path[len(ADMIN_SPACE)] == "/"):
            req.route = self.admin_route
            req.rejection = self._authorize_admin(req)
            return
        route = self.routes.get((req.method, req.path))
        if route is not None:
            req.route = route
            if req.upgrade and route[0] != REALTIME:
                # Only the Realtime API is a WebSocket: refused as any other
                # upgrade is (one answer, then the connection closes).
                req.rejection = GatewayError(501, f"{req.path[:200]} does not take a "
                                                  "protocol upgrade", kind="bad_request")
            elif route[3] and self.state.accounts.required:
                req.rejection = self._authenticate(req)
            return
        if req.path.startswith(GEMINI_PREFIX):
            model, sep, action = req.path[len(GEMINI_PREFIX):].rpartition(":")
            if req.method != "POST" or not sep or not model:
                req.rejection = GatewayError(
                    404, f"unknown endpoint {req.method} {req.path[:200]}", kind="not_found")
            elif self.state.accounts.required and (refusal := self._authenticate(req)):
                req.rejection = refusal
            else:
                state = self.state
                name = unquote(model)
                req.route = (FORMAT_GEMINI, FORMAT_GEMINI,
                             lambda c: serve_gemini(state, c, name, action), True)
            return
        if req.path in self.paths:
            req.rejection = GatewayError(405, f"method {req.method} not allowed on {req.path}",
                                         kind="bad_request")
        else:
            req.rejection = GatewayError(404, f"unknown endpoint {req.method} {req.path[:200]}",
                                         kind="not_found", code="unknown_url")

    def handle(self, req: Request, conn: ClientConnection) -> None:
        if req.route is None and req.rejection is None:
            self.admit(req)  # a caller that skipped the head-time check
        route = req.route
        if req.rejection is not None:
            if route is not None:
                protocol, fmt = route[0], route[1]
                if protocol == INFO:
                    protocol = "other"  # refused requests are recorded, info ones too
            else:
                protocol = FORMAT_GEMINI if req.path.startswith(GEMINI_PREFIX) else "other"
                fmt = error_format_for_path(req.path)
            self.new_call(req, conn, protocol, fmt).send_error(req.rejection)
            return
        protocol, error_format, handler, _ = route
        call = self.new_call(req, conn, protocol, error_format)
        try:
            handler(call)
        except Exception:
            log.exception("handler failed", extra={"request_id": call.rec.request_id})
            call.fail_internal()

    def reject(self, conn: ClientConnection, status: int, message: str,
               path: str | None) -> bytes:
        """A request that broke HTTP framing or a limit still gets its ledger row;
        returns the error body, in the protocol its path speaks."""
        fmt = error_format_for_path(path)
        call = self.new_call(None, conn, "http", fmt)
        rec = call.rec
        rec.endpoint = path[:256] if path is not None else None
        rec.status = status
        rec.error_kind = "client_timeout" if status == 408 else "bad_request"
        call.finish()
        _, body = error_reply(fmt, GatewayError(status, message, kind=rec.error_kind))
        return body

    def new_call(self, req: Request | None, conn: ClientConnection, protocol: str,
                 error_format: str) -> Call:
        sink = _unrecorded if protocol == INFO else self.state.finish_record
        return Call(req, conn, protocol, error_format, sink)

    # -- authentication -----------------------------------------------------------------

    def identify(self, req: Request) -> Identity | Refused | None:
        """The key a request presents: its identity, a ``Refused`` for a known key
        that cannot be used now, or None.  Every place a client can put a key
        counts (``x-api-key``, ``x-goog-api-key``, ``Authorization: Bearer``,
        Gemini's ``?key=``, a WebSocket's ``openai-insecure-api-key.``
        subprotocol), so a client can send the gateway key in one and, for
        a ``passthrough`` provider, its own provider key in another."""
        # One pass over the head for the three headers that carry keys: the chat
        # path reads no other by name, and req.header() would first map them all.
        # Repeated ones are joined by ", ", as req.header() joins them.
        api_key = goog_key = auth = None
        for k, v in req.headers:
            if k in CREDENTIAL_HEADERS:
                if k == b"authorization":
                    auth = v if auth is None else auth + b", " + v
                elif k == b"x-api-key":
                    api_key = v if api_key is None else api_key + b", " + v
                else:
                    goog_key = v if goog_key is None else goog_key + b", " + v
        presented = []
        if api_key is not None:
            presented.append(api_key)
        if goog_key is not None:
            presented.append(goog_key)
        if auth is not None and auth[:7].lower() == b"bearer ":
            presented.append(auth[7:].strip())
        if req.path.startswith(GEMINI_PREFIX) and "key=" in req.query:
            presented.append(parse_qs(req.query).get("key", [""])[0].encode())
        if req.upgrade:
            from .endpoints.realtime import KEY_SUBPROTOCOL, subprotocols_of

            # A browser's WebSocket carries its key as a subprotocol.
            for proto in subprotocols_of(req.header(b"sec-websocket-protocol")):
                if proto.startswith(KEY_SUBPROTOCOL):
                    presented.append(proto[len(KEY_SUBPROTOCOL):].encode("latin-1"))
        return self.state.accounts.directory.authenticate(presented)

    def _authenticate(self, req: Request) -> GatewayError | None:
        """None when the request presents a usable key (kept in ``req.identity``),
        else the 401 it gets."""
        found = self.identify(req)
        if isinstance(found, Identity):
            req.identity = found
            return None
        if isinstance(found, Refused):
            return GatewayError(401, found.message, kind="auth", code="invalid_api_key")
        return _unauthorized()

    def _authorize_admin(self, req: Request) -> GatewayError | None:
        """The admin API takes only a usable key whose user is an admin: on loopback
        with authentication off too. No key or an unusable one: 401; a key that is
        not an admin's (a member's, a user-less one, a configured one): 403."""
        found = self.identify(req)
        if isinstance(found, Identity):
            if found.is_admin:
                req.identity = found
                return None
            req.identity = found  # the row names who was refused
            return GatewayError(403, f"API key {found.key_id} is not an admin's: the admin "
                                     "API needs the key of a user with the admin role",
                                kind="forbidden", code="admin_required")
        if isinstance(found, Refused):
            return GatewayError(401, found.message, kind="auth", code="invalid_api_key",
                                type_="authentication_error")
        return GatewayError(401, "the admin API needs an admin's API key: send it as "
                                 "'Authorization: Bearer KEY' or 'x-api-key: KEY'",
                            kind="auth", code="invalid_api_key", type_="authentication_error")

    def _health_details(self, call: Call) -> bool:
        req = call.req
        if req is None:
            return False
        return not self.state.accounts.required or isinstance(self.identify(req), Identity)


def _unrecorded(rec: Any) -> None:
    """The sink of the info endpoints' calls."""


def _unauthorized() -> GatewayError:
    return GatewayError(
        401, "missing or invalid gateway API key: send it as 'Authorization: Bearer "
             "KEY' or 'x-api-key: KEY'", kind="auth", code="invalid_api_key")
