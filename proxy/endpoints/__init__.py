"""The gateway's endpoints: what each kind of request is answered with.

- ``models``: the model endpoints of all four client protocols, one path;
- ``attempts``: the request as each target must receive it;
- ``loopback_model``: the built-in ``loopback`` model;
- ``embeddings``, ``count_tokens``: those two APIs;
- ``info``: the models list, ``/health`` and the root probe.

``proxy.dispatch`` maps paths to them; they hand model requests to
``proxy.exchange``.
"""
