"""``previous_response_id`` for Responses clients on any provider.

A request naming a previous response gets the conversation stored under that id
(``proxy.response_store``) in front of its own input, before it is translated;
the translated answer is stored in turn (unless the request says ``store:
false``).  A Responses-speaking provider (OpenAI's own API) keeps its own
responses: an id the gateway does not hold goes to it unchanged when the
route's first target is one.  Anywhere else an unknown id gets the error the
Responses API gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols.ir import FORMAT_OPENAI_RESPONSES

from ..call import Call
from ..errors import GatewayError, bad_request
from ..provider import Provider
from ..response_store import ANONYMOUS, input_items
from ..state import GatewayState

OnResponse = Callable[[dict[str, Any]], None]


def chain(state: GatewayState, call: Call, body: dict[str, Any],
          targets: list[tuple[Provider, str]]) -> tuple[dict[str, Any], OnResponse | None]:
    """The body to send (with the stored history in front when the request names a
    previous response) and what keeps the answer, or None when it is not kept."""
    req = call.req
    ident = req.identity if req is not None else None
    scope = ident.key_id if ident is not None else ANONYMOUS
    prev = body.get("previous_response_id")
    if prev is not None:
        if type(prev) is not str or not prev:
            raise bad_request("Invalid 'previous_response_id': expected a response id.",
                              param="previous_response_id")
        stored = state.responses.get(scope, prev)
        if stored is None:
            first = targets[0][0] if targets else None
            if first is not None and first.upstream_format(FORMAT_OPENAI_RESPONSES) \
                    == FORMAT_OPENAI_RESPONSES:
                return body, None  # the provider's own stored response
            raise GatewayError(400, f"Previous response with id '{prev[:100]}' not found.",
                               kind="bad_request", param="previous_response_id",
                               code="previous_response_not_found")
        body = {k: v for k, v in body.items() if k != "previous_response_id"}
        body["input"] = stored + input_items(body.get("input"))
    if body.get("store") is False:
        return body, None
    so_far = input_items(body.get("input"))
    responses = state.responses

    def keep(response: dict[str, Any]) -> None:
        rid = response.get("id")
        output = response.get("output")
        if type(rid) is str and type(output) is list:
            responses.put(scope, rid, so_far + output)

    return body, keep
