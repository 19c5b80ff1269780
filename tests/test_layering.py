"""The sans-IO rule for ``protocols/``, enforced by reading the source.

``protocols/`` is pure: bytes and dicts in, bytes and events out, no I/O, no clock,
no threads (architecture.md rule 1; style-anchors.md 4.1). Every module under it is
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
