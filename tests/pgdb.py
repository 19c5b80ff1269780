"""A PostgreSQL database of its own for each test (not a test module).

Tests take the ``pg_url`` fixture by importing ``pg_url_fixture``. The server is the
one CI runs at 127.0.0.1:5432 with trust authentication (user postgres or root,
database ``test``), or ``TOKENWAY_TEST_POSTGRES_URL``; each test gets a new
database ``tw_test_<random>``, dropped after it. Without a reachable server the
test is skipped, saying so.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


@functools.cache
def admin_url() -> str | None:
    """A URL that may create databases, or None when no server answers."""
    env = os.environ.get("TOKENWAY_TEST_POSTGRES_URL")
    for url in ((env,) if env else CANDIDATES):
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True):
                return url
        except psycopg.Error:
            continue
    return None


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def admin(sql: str, *args: object) -> list[tuple]:
    url = admin_url()
    assert url is not None
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def drop_database(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(name="pg_url")
def pg_url_fixture() -> Iterator[str]:
    """The URL of a new, empty database."""
    url = admin_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (users postgres, root; "
                    "or set TOKENWAY_TEST_POSTGRES_URL)")
    name = "tw_test_" + secrets.token_hex(6)
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(url, name)
    finally:
        drop_database(name)
