"""``POST /v1/messages/count_tokens``: answered locally and cheaply, never billed.

When the model routes to an Anthropic provider whose ``count_tokens`` setting
is ``upstream`` (the default for that kind), the provider's own endpoint gives
the exact figure; otherwise the gateway estimates (``protocols.tokens``).  The
ledger row carries no token counts: counting is not inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from protocols.ir import FORMAT_ANTHROPIC_MESSAGES
from protocols.tokens import estimate_input_tokens

from . import loopback
from .errors import ANTHROPIC, GatewayError, bad_request
from .exchange import Attempt, ProxyExchange

if TYPE_CHECKING:
    from .app import Gateway
    from .h1 import HTTPConnection, Request

CLIENT_PROTOCOL = "anthropic_count_tokens"


class CountTokens:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def handle(self, req: Request, conn: HTTPConnection) -> Any:
        gw = self.gw
        row = gw.new_row(req, conn, CLIENT_PROTOCOL)
        try:
            body = gw.parse_body(req)
            model = gw.model_of(body)
            row["model"] = model
            if type(body.get("messages")) is not list:
                raise bad_request("messages: field required (a list of messages)",
                                  param="messages")
            provider = upstream_model = None
            if model != loopback.LOOPBACK_MODEL:
                provider, upstream_model = gw.targets_for(model)[0]
        except GatewayError as err:
            gw.send_error(req, conn, err, row, ANTHROPIC)
            return None
        if (provider is not None and provider.kind == "anthropic"
                and provider.config.count_tokens == "upstream"):
            row["provider"] = provider.name
            row["served_model"] = upstream_model
            payload = req.body
            if upstream_model != model:
                body["model"] = upstream_model
                payload = orjson.dumps(body)
            headers = gw.models_ep.upstream_headers(req, provider, "anthropic_messages", False)
            att = Attempt(provider, upstream_model, provider.count_tokens_path(), headers,
                          payload, None, None)
            ex = ProxyExchange(gw, req, conn, row, [(provider, upstream_model)],
                               lambda p, m: att, stream=False, error_format=ANTHROPIC)
            return ex.start()
        row["provider"] = "local"
        estimate = estimate_input_tokens(FORMAT_ANTHROPIC_MESSAGES, body)
        gw.respond_json(req, conn, row, {"input_tokens": estimate})
        return None
