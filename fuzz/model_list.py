"""Fuzz target for ``proxy.model_catalog.parse_model_page``: a provider's model
list (``GET /v1/models``), untrusted JSON from the provider.

Invariants, for any input:

1. Only ``CatalogError`` escapes, whatever the JSON and the provider kind.
2. Every listed name is one a client could send back as ``model``: 1-256
   characters of letters, digits and ``._:/@+-``, starting with a letter or digit.
3. Nothing is invented: at most one model per entry of the page, ``created`` is a
   non-negative integer, the display name printable and at most 256 characters.
4. The next-page token is a non-empty string or None.

Input layout: byte 0 picks the provider kind, the rest is the page's JSON (input
that is not JSON is skipped: the fetch refuses it before parsing).
``python -m fuzz.run model_list`` runs it long; failing inputs belong in
``fuzz/corpus/model_list/``, which the normal test run replays.
"""

from __future__ import annotations

import orjson

from proxy.model_catalog import _SANE_NAME, CatalogError, parse_model_page

KINDS = ("openai", "anthropic", "gemini")


def check(data: bytes) -> None:
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    try:
        body = orjson.loads(data[1:])
    except orjson.JSONDecodeError:
        return
    try:
        page, token = parse_model_page(kind, "p", body)
    except CatalogError:
        return
    entries = body.get("models" if kind == "gemini" else "data") if type(body) is dict else None
    assert len(page) <= (len(entries) if type(entries) is list else 0)
    for m in page:
        assert _SANE_NAME.fullmatch(m.id), m.id
        assert type(m.created) is int and m.created >= 0
        assert m.display_name.isprintable() and len(m.display_name) <= 256
        assert m.provider == "p"
    assert token is None or (type(token) is str and token)
