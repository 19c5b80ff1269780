"""The sans-IO rule for ``protocols/``, enforced by reading the source.

``protocols/`` is pure: bytes and dicts in, bytes and events out, no I/O, no clock,
no threads (docs/architecture.md rule 1). Every module under it is
parsed with ``ast`` and any import of an I/O, concurrency, clock or proxy module
fails the build: plain and ``from`` imports, relative imports that climb out of the
package, and ``importlib.import_module``/``__import__`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "protocols"

# Top-level module names that protocols/ must never import.
FORBIDDEN = frozenset(
    {
        # event loops and sockets
        "asyncio",
        "uvloop",
        "anyio",
        "trio",
        "socket",
        "ssl",
        "selectors",
        # threads, processes and the clock
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "time",
        # storage and HTTP framing belong to proxy/
        "apsw",
        "httptools",
        "h11",
        "h2",
        "proxy",
    }
)


def _package_of(path: Path) -> str:
    """Dotted package a file's relative imports start from."""
    return ".".join(path.relative_to(REPO).parent.parts)


def _resolve(package: str, node: ast.ImportFrom) -> str:
    """Absolute name of a ``from`` import; ``.`` is ``package``, ``..`` its parent."""
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    parts = parts[: max(len(parts) - (node.level - 1), 0)]
    return ".".join([*parts, node.module] if node.module else parts)


def imported_modules(source: str, package: str = "protocols") -> list[tuple[int, str]]:
    """Every module name ``source`` imports, with its line number."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(package, node)
            found.append((node.lineno, target))
            if not node.module:  # `from .. import proxy` imports the names as modules
                prefix = f"{target}." if target else ""
                found += [(node.lineno, prefix + a.name) for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else getattr(func, "id", "")
            )
            if (
                name in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(source: str, package: str = "protocols") -> list[str]:
    return [
        f"line {line}: {name}"
        for line, name in imported_modules(source, package)
        if name.split(".")[0] in FORBIDDEN
    ]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_protocols_package_has_modules() -> None:
    assert (PACKAGE / "sse.py") in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_protocols_module_does_no_io(path: Path) -> None:
    found = violations(path.read_text(encoding="utf-8"), _package_of(path))
    assert not found, f"{path.relative_to(REPO)} imports I/O modules: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import time as clock",
        "import os, socket",
        "import asyncio.events",
        "from time import monotonic",
        "from threading import Lock",
        "from concurrent.futures import ThreadPoolExecutor",
        "from h2.connection import H2Connection",
        "from proxy.config import Config",
        "from ..proxy import config",
        "from .. import proxy",
        "from ...proxy import x",
        "def f():\n    import ssl",
        "try:\n    import uvloop\nexcept ImportError:\n    pass",
        "import importlib\nimportlib.import_module('apsw')",
        "__import__('selectors')",
    ],
)
def test_checker_catches(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import re",
        "import orjson",
        "from typing import NamedTuple",
        "from .errors import ProtocolError",
        "from . import sse",
        "from protocols.jsonio import loads",
        "import timeit_like_name",
        "from .time import x",  # protocols.time, not the stdlib clock
        "import datetime",
    ],
)
def test_checker_allows(source: str) -> None:
    assert not violations(source)


# --- proxy/: layers import downward only, and no module imports another in a circle ---

PROXY = REPO / "proxy"

#: proxy/'s layers, top to bottom (a name covers the module and, for a package, every
#: module in it).  A module may import its own layer and the layers below, never above;
#: a new module must be placed here.  The request path runs server -> connection ->
#: dispatch -> endpoints -> exchange -> upstream (docs/request-path.md).
PROXY_LAYERS: tuple[tuple[str, ...], ...] = (
    ("proxy.__main__", "proxy.cli", "proxy.usage_cli", "proxy.price_cli", "proxy.tail_cli",
     "proxy.accounts_cli", "proxy.audit_cli", "proxy.ledger_cli"),
    ("proxy.server", "proxy.startup"),
    ("proxy.h1", "proxy.h2conn"),
    ("proxy.h1_parsers",),
    ("proxy.dispatch",),
    ("proxy.endpoints",),
    ("proxy.state",),
    ("proxy.exchange", "proxy.model_catalog", "proxy.realtime"),
    ("proxy.call",),
    ("proxy.upstream", "proxy.upstream_h2", "proxy.upstream_sink", "proxy.health",
     "proxy.limits", "proxy.provider", "proxy.routing", "proxy.loopback",
     "proxy.loopback_embeddings"),
    ("proxy.access_log", "proxy.daemon_log"),
    ("proxy.log_writer",),
    ("proxy.log_files",),
    ("proxy.errors", "proxy.request", "proxy.response_store", "proxy.headers", "proxy.wire",
     "proxy.hpack_out",
     "proxy.ledger", "proxy.config", "proxy.aio", "proxy.threads", "proxy.cli_args",
     "proxy.usage_report", "proxy.audit", "proxy.metrics", "proxy.exposition",
     "proxy.accounts.redis_meter", "proxy"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for i, names in enumerate(PROXY_LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[0]:
                    best = (len(name), i)
    return None if best is None else best[1]


def proxy_imports() -> dict[str, set[str]]:
    """Each proxy module and the proxy modules it imports, TYPE_CHECKING ones included."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PROXY.rglob("*.py")):
        name = _module_name(path)
        package = _package_of(path) if path.name != "__init__.py" else name
        targets: set[str] = set()
        for _, target in imported_modules(path.read_text(encoding="utf-8"), package):
            if target == "proxy" or target.startswith("proxy."):
                # `from proxy import __version__` names an attribute, not a module.
                while target not in graph and target.count(".") and not (
                        REPO / Path(*target.split("."))).with_suffix(".py").exists() and not (
                        REPO / Path(*target.split("."))).is_dir():
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def test_every_proxy_module_has_a_layer() -> None:
    unplaced = [m for m in proxy_imports() if _layer_of(m) is None]
    assert not unplaced, f"place these modules in PROXY_LAYERS: {unplaced}"


def test_proxy_imports_go_downward_only() -> None:
    upward = []
    for module, targets in proxy_imports().items():
        here = _layer_of(module)
        for target in targets:
            there = _layer_of(target)
            if here is not None and there is not None and there < here:
                upward.append(f"{module} -> {target}")
    assert not upward, f"imports that climb a layer: {upward}"


def test_proxy_has_no_import_cycle() -> None:
    graph = proxy_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt in graph and not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if not state.get(start):
            cycle = visit(start)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layer_checker_sees_an_upward_import(tmp_path: Path) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .server import Server\n"
    found = [t for _, t in imported_modules(source, "proxy")]
    assert "proxy.server" in found
    assert _layer_of("proxy.server") < _layer_of("proxy.exchange")


def test_every_source_folder_is_a_package() -> None:
    """`pip install .` packages what setuptools' find_packages() sees: a folder of
    modules without __init__.py is left out of a real install (tests run from the
    checkout would not notice)."""
    missing = [
        str(folder.relative_to(REPO))
        for top in (PACKAGE, PROXY)
        for folder in [top, *top.rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__"
        and any(folder.glob("*.py")) and not (folder / "__init__.py").exists()
    ]
    assert not missing, f"folders of modules without __init__.py: {missing}"
