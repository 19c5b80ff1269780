"""Providers' own model lists, for the glob routes of ``GET /v1/models``.

A route such as ``match = "claude-*"`` whose target keeps the requested name can
serve any model its provider knows, so an exact list of route names says
nothing about it.  The catalog asks each such provider for its list (OpenAI
kind: ``GET {base_url}/models``, https://platform.openai.com/docs/api-reference/models/list;
Anthropic: ``GET /v1/models``, paged with ``after_id``,
https://docs.anthropic.com/en/api/models-list; Gemini: ``GET /v1beta/models``,
paged with ``pageToken``, https://ai.google.dev/api/models#method:-models.list)
and keeps the names the route's glob admits.

Fetched in the background at start, again on every reload and every
``REFRESH_S``; a fetch that fails keeps that provider's last good list and is
logged.  Each page is one GET on a connection of its own (outside the pool,
so a slow list never holds a slot client requests need), with the provider's
own key, TLS settings and connect timeout; these are not client requests, so
they are not in the ledger and do not count toward a provider's circuit.
``[providers.X] list_models = false`` turns it off for one provider (the
default for ``auth = "passthrough"`` providers: the gateway has no key of
theirs to ask with).  Everything a
provider sends is bounded: bytes per page, pages, names, name length.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import httptools
import orjson

from . import aio
from .provider import ANTHROPIC_VERSION, Provider
from .upstream import UpstreamPool

log = logging.getLogger("tokenway.models")

# Provider lists change when a vendor ships a model: a few times a month.
REFRESH_S = 15 * 60.0
# One provider's whole list (all pages) must arrive within this.
FETCH_TIMEOUT_S = 30.0
# OpenAI's list is ~100 KiB (about 100 models); Gemini's pages of 1000 ~1 MiB.
MAX_PAGE_BYTES = 4 * 1024 * 1024
MAX_PAGES = 20
# Names kept per provider after the glob filter: a /v1/models body stays small.
MAX_NAMES_PER_PROVIDER = 2000
# A name a client could send back as `model` (call.MAX_MODEL_CHARS) and nothing
# that could bend a JSON consumer or a log line.
_SANE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}")


class ListedModel(NamedTuple):
    id: str
    provider: str
    created: int  # unix seconds; 0 when the provider does not say
    display_name: str


class CatalogError(Exception):
    """A provider's model list could not be read."""


class ModelCatalog:
    """The models glob routes can serve, by provider, kept current in the background.

    ``configure`` says which providers to ask and which globs filter their
    lists; ``start`` begins fetching (the server calls it once it listens);
    ``on_change`` is called on the event loop whenever the listed names change.
    """

    def __init__(self, pool: UpstreamPool, on_change: Callable[[], None]) -> None:
        self.pool = pool
        self.on_change = on_change
        self._wanted: dict[str, tuple[Provider, tuple[str, ...]]] = {}
        self._listed: dict[str, tuple[ListedModel, ...]] = {}
        self._task: asyncio.Task[Any] | None = None
        self._started = False
        # Per provider: the last fetch's outcome, for /health.
        self.status: dict[str, str] = {}

    def configure(self, wanted: dict[str, tuple[Provider, tuple[str, ...]]]) -> None:
        """The providers to list and the globs each list is filtered by; a running
        catalog fetches again at once (a reload may have changed keys or URLs)."""
        self._wanted = wanted
        dropped = [name for name in self._listed if name not in wanted]
        for name in dropped:
            del self._listed[name]
            self.status.pop(name, None)
        if dropped:
            self.on_change()
        if self._started:
            self._restart()

    def start(self) -> None:
        self._started = True
        self._restart()

    async def stop(self) -> None:
        """No more fetches; the one under way is cancelled and waited for."""
        self._started = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def models(self) -> list[ListedModel]:
        """Every listed model, in the order providers were configured."""
        out: list[ListedModel] = []
        for name in self._wanted:
            out.extend(self._listed.get(name, ()))
        return out

    def _restart(self) -> None:
        if self._task is not None:
            self._task.cancel()  # ends at its next await; nothing waits on it
            self._task = None
        if self._wanted:
            self._task = aio.spawn(self._run(), name="model-catalog")

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    async def refresh(self) -> None:
        """Fetch every wanted provider's list once (concurrently)."""
        wanted = dict(self._wanted)
        results = await asyncio.gather(
            *(self._fetch_one(p, globs) for p, globs in wanted.values()),
            return_exceptions=True)
        changed = False
        for name, result in zip(wanted, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                reason = str(result) or type(result).__name__
                if self.status.get(name) != f"error: {reason}":
                    log.warning("model list of provider %r: %s; keeping %d listed model(s)",
                                name, reason, len(self._listed.get(name, ())))
                self.status[name] = f"error: {reason}"
                continue
            self.status[name] = f"ok: {len(result)} model(s)"
            if self._listed.get(name) != result:
                self._listed[name] = result
                changed = True
        if changed:
            self.on_change()

    async def _fetch_one(self, provider: Provider,
                         globs: tuple[str, ...]) -> tuple[ListedModel, ...]:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                found = await _list_provider(self.pool, provider)
        except TimeoutError:
            raise CatalogError(f"no complete list within {FETCH_TIMEOUT_S:g} s") from None
        matchers = [re.compile(fnmatch.translate(g)).match for g in globs]
        kept: dict[str, ListedModel] = {}
        for m in found:
            if m.id not in kept and any(match(m.id) for match in matchers):
                kept[m.id] = m
                if len(kept) >= MAX_NAMES_PER_PROVIDER:
                    break
        return tuple(kept.values())


async def _list_provider(pool: UpstreamPool, provider: Provider) -> list[ListedModel]:
    """All pages of ``provider``'s model list."""
    found: list[ListedModel] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        if provider.kind == "gemini":
            path = "/v1beta/models?pageSize=1000"
            if token:
                path += "&pageToken=" + quote(token, safe="")
        elif provider.kind == "anthropic":
            path = "/v1/models?limit=1000"
            if token:
                path += "&after_id=" + quote(token, safe="")
        else:
            path = "/models"
        body = await _get_json(pool, provider, path)
        page, token = parse_model_page(provider.kind, provider.name, body)
        found.extend(page)
        if not token:
            return found
    return found  # MAX_PAGES reached: what arrived so far


def parse_model_page(kind: str, provider: str,
                     body: Any) -> tuple[list[ListedModel], str | None]:
    """The models on one page of a provider's list and the token of the next page
    (None: last page).  Entries that are not well-formed are skipped."""
    if type(body) is not dict:
        raise CatalogError("the model list is not a JSON object")
    out: list[ListedModel] = []
    if kind == "gemini":
        items = body.get("models")
        for item in items if type(items) is list else ():
            if type(item) is not dict:
                continue
            name = item.get("name")
            methods = item.get("supportedGenerationMethods")
            if type(name) is not str or not name.startswith("models/"):
                continue
            if type(methods) is list and "generateContent" not in methods:
                continue  # embedding-only and other models cannot chat
            _add(out, name[len("models/"):], provider, 0, item.get("displayName"))
        nxt = body.get("nextPageToken")
        return out, nxt if type(nxt) is str and nxt else None
    items = body.get("data")
    if type(items) is not list:
        raise CatalogError("the model list has no 'data' array")
    for item in items:
        if type(item) is not dict:
            continue
        if kind == "anthropic":
            _add(out, item.get("id"), provider, _iso_seconds(item.get("created_at")),
                 item.get("display_name"))
        else:
            created = item.get("created")
            _add(out, item.get("id"), provider,
                 created if type(created) is int and created >= 0 else 0, None)
    if kind == "anthropic" and body.get("has_more") is True:
        last = body.get("last_id")
        if type(last) is str and last:
            return out, last
    return out, None


def _add(out: list[ListedModel], name: Any, provider: str, created: int,
         display: Any) -> None:
    if type(name) is not str or not _SANE_NAME.fullmatch(name):
        return
    if type(display) is not str or not display.isprintable() or len(display) > 256:
        display = name
    out.append(ListedModel(name, provider, created, display))


def _iso_seconds(value: Any) -> int:
    if type(value) is not str:
        return 0
    try:
        return max(0, int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return 0


class _OneResponse(asyncio.Protocol):
    """A connection that carries one GET and keeps its bounded answer."""

    def __init__(self, fut: asyncio.Future[tuple[int, bytes]]) -> None:
        self.fut = fut
        self.parser = httptools.HttpResponseParser(self)
        self.parts: list[bytes] = []
        self.size = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # the page was too big: already failed
        except httptools.HttpParserError as exc:
            self._fail(f"malformed HTTP response: {exc}")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_PAGE_BYTES:
            self._fail(f"a page of the model list is over {MAX_PAGE_BYTES} bytes")
            raise CatalogError("too big")  # stops the parser
        self.parts.append(body)

    def on_message_complete(self) -> None:
        if not self.fut.done():
            self.fut.set_result((self.parser.get_status_code(), b"".join(self.parts)))
        self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the provider closed the connection mid-response")
        # The parser holds this protocol for its callbacks: without this the pair
        # is a reference cycle, freed only by the cycle collector.
        self.parser = None  # type: ignore[assignment]

    def _fail(self, message: str) -> None:
        if not self.fut.done():
            self.fut.set_exception(CatalogError(message))
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def request_head(provider: Provider, path: str) -> bytes:
    """The GET request for ``path`` under the provider's base URL, with its key."""
    head = [b"GET " + provider.base_path + path.encode("ascii") + b" HTTP/1.1\r\n",
            b"host: " + provider.host_header + b"\r\n", provider.static_head,
            b"connection: close\r\n"]
    if provider.kind == "anthropic":
        head.append(b"anthropic-version: " + ANTHROPIC_VERSION + b"\r\n")
    head.append(b"\r\n")
    return b"".join(head)


async def _get_json(pool: UpstreamPool, provider: Provider, path: str) -> Any:
    """One page, over a connection of its own: outside the pool and its
    ``max_connections``, so a slow list never takes a client request's slot."""
    loop = asyncio.get_running_loop()
    key = pool.key_for(provider)
    fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    try:
        async with asyncio.timeout(provider.connect_timeout_s):
            transport, _ = await loop.create_connection(
                lambda: _OneResponse(fut), provider.host, provider.port,
                ssl=pool.tls_context(key),
                server_hostname=provider.host if key[0] == "https" else None)
    except TimeoutError:
        raise CatalogError(f"connecting to {provider.host}:{provider.port} timed out") from None
    except OSError as exc:
        raise CatalogError(f"cannot connect to {provider.host}:{provider.port}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        transport.write(request_head(provider, path))
        status, body = await fut
    finally:
        transport.abort()
    if status != 200:
        raise CatalogError(f"GET {provider.config.base_url.rstrip('/')}{path.split('?')[0]} "
                           f"answered {status}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CatalogError("the model list is not valid JSON") from None


def listing_targets(routes: Iterable[Any], providers: dict[str, Provider],
                    is_glob: Callable[[str], bool]) -> dict[str, tuple[Provider, tuple[str, ...]]]:
    """For each provider, the globs of the routes that send it the requested name
    unchanged: what its list is filtered by."""
    wanted: dict[str, list[str]] = {}
    for route in routes:
        if not is_glob(route.match):
            continue
        for target in route.targets:
            p = providers.get(target.provider)
            if target.model is None and p is not None and p.config.list_models:
                globs = wanted.setdefault(target.provider, [])
                if route.match not in globs:
                    globs.append(route.match)
    return {name: (providers[name], tuple(globs)) for name, globs in wanted.items()}
