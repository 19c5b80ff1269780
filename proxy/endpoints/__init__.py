"""The gateway's endpoints: what each kind of request is answered with.

- ``models``: the model endpoints of all four client protocols, one path;
- ``attempts``: the request as each target must receive it;
- ``loopback_model``: the built-in ``loopback`` model;
- ``embeddings``, ``count_tokens``: those two APIs;
- ``info``: the models list, ``/health`` and the root probe.

``proxy.dispatch`` maps paths to them; they hand model requests to
``proxy.exchange``.
"""

# The client protocol (ledger ``client_protocol``) of the endpoints that
# proxy.dispatch imports only with their first request: it routes to them by name.
ADMIN = "admin"
COUNT_TOKENS = "anthropic_count_tokens"
REALTIME = "openai_realtime"
