"""Which headers cross the gateway, in each direction.

Client -> provider (``NOT_FORWARDED``): never hop-by-hop headers (RFC 9110
§7.6.1), framing the gateway redoes, the client's credentials for the gateway
(the provider key is injected), cookies and forwarding chains, encodings usage
could not be read through, and the headers that choose who a provider bills
(``openai-organization``, ``openai-project``): that is the operator's choice,
set per provider in ``[providers.X] headers``.

Provider -> client (``NOT_RELAYED``): hop-by-hop headers, framing and identity
the gateway writes itself, cookies, and the provider's account identifiers.
"""

from __future__ import annotations

from .wire import HOP_BY_HOP

# The provider account a request is billed to: set by the operator, never by a
# client, and never shown to one.
ACCOUNT_HEADERS = frozenset({b"openai-organization", b"openai-project"})

# The client's credentials for the gateway.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})

NOT_FORWARDED = HOP_BY_HOP | CREDENTIAL_HEADERS | ACCOUNT_HEADERS | {
    b"host", b"content-length", b"accept-encoding", b"expect", b"cookie", b"forwarded",
    b"x-forwarded-for", b"accept",
}

NOT_RELAYED = HOP_BY_HOP | ACCOUNT_HEADERS | {
    b"content-length", b"date", b"server", b"set-cookie", b"content-encoding",
    b"alt-svc", b"cf-ray", b"x-request-id",
}
