"""The ledger's row shape and its SQLite schema history.

One row per request the gateway answered (or failed to answer). This module is
plain data: the column order shared by the writer, the backends and the CLI, each
column's kind and length bound (``values.py`` enforces them), and the ordered list
of SQLite migration steps. It does no I/O and imports no driver; a PostgreSQL
backend would bring its own DDL list next to this one.

Schema versioning follows apsw ``doc/tips.rst``: ``PRAGMA user_version`` holds
the number of migration steps applied, and the steps missing from a database are
applied in order inside one transaction.
"""

from __future__ import annotations

from typing import NamedTuple

TABLE = "requests"

# Replay progress of the spill journals (spill.py): written in the same
# transaction as the replayed rows, so that each journaled row is stored once.
SPILL_TABLE = "spill_replays"

# The order of values in every stored tuple: a record's ``as_row()`` returns its
# values in this order. None is stored as NULL (unknown), except where a column
# has a default below.
LEDGER_COLUMNS: tuple[str, ...] = (
    "ts",  # unix seconds (float) when the request started
    "request_id",
    "endpoint",  # path as received, e.g. "/v1/chat/completions"
    "client_protocol",  # "openai_chat", "anthropic_messages", "gemini", ...
    "model",  # as the client asked for it
    "served_model",  # as the provider reported it
    "provider",
    "status",  # HTTP status sent to the client
    "error_kind",  # NULL when the request succeeded
    "stream",  # 0/1
    # Token counts: NULL means unknown, 0 means known to be zero.
    "input_tokens",  # every prompt token, cached ones included (OpenAI convention)
    "output_tokens",
    "cached_tokens",  # prompt tokens read from the provider's cache
    "cache_write_tokens",  # prompt tokens written to the provider's cache
    "reasoning_tokens",  # part of output_tokens, when the provider says
    "latency_ms",  # request start to last byte sent to the client
    "ttfb_ms",  # request start to first response byte sent to the client
    "bytes_in",  # request body bytes from the client
    "bytes_out",  # response body bytes to the client
    "attempts",  # upstream attempts, 1 unless retried
    "api_key_id",
    "client_addr",  # "host:port" of the client socket
    "tool_repeats",  # identical trailing tool calls seen in the request (loop guard)
)

# Values the writer stores when a row leaves the column out (or gives None).
# Everything else defaults to NULL.
COLUMN_DEFAULTS: dict[str, int] = {"stream": 0, "attempts": 1}

# The storage class each column must hold (https://www.sqlite.org/datatype3.html,
# section 2). A value of another class is stored as NULL and counted (values.py).
REAL = "real"
INTEGER = "integer"
TEXT = "text"
COLUMN_KINDS: dict[str, str] = {
    "ts": REAL,
    "request_id": TEXT,
    "endpoint": TEXT,
    "client_protocol": TEXT,
    "model": TEXT,
    "served_model": TEXT,
    "provider": TEXT,
    "status": INTEGER,
    "error_kind": TEXT,
    "stream": INTEGER,
    "input_tokens": INTEGER,
    "output_tokens": INTEGER,
    "cached_tokens": INTEGER,
    "cache_write_tokens": INTEGER,
    "reasoning_tokens": INTEGER,
    "latency_ms": REAL,
    "ttfb_ms": REAL,
    "bytes_in": INTEGER,
    "bytes_out": INTEGER,
    "attempts": INTEGER,
    "api_key_id": TEXT,
    "client_addr": TEXT,
    "tool_repeats": INTEGER,
}

# Longest text stored per text column, in characters; longer values are cut to
# this length and counted. Each bound is several times the longest real value:
# request ids are 28 characters ("req_" + 12 + 12 hex), endpoints are request
# paths (Gemini's "/v1beta/models/<model>:streamGenerateContent" is the longest
# kind, under 120), model names from providers stay under 100, client_addr is
# "host:port" (an IPv6 address with a zone is under 70). A client can put any
# string in "model", so without a bound one request could store megabytes.
TEXT_MAX_CHARS: dict[str, int] = {
    "request_id": 128,
    "endpoint": 1024,
    "client_protocol": 64,
    "model": 256,
    "served_model": 256,
    "provider": 128,
    "error_kind": 64,
    "api_key_id": 128,
    "client_addr": 128,
}

# Values the gateway writes to error_kind; documentation for readers of the
# table, not a constraint (new kinds must not need a migration).
ERROR_KINDS: tuple[str, ...] = (
    "cancelled",
    "upstream_timeout",
    "upstream_unreachable",
    "upstream_error",
    "bad_request",
    "auth",
    "stream_cut",
    "internal",
    "tool_loop",
)


class Migration(NamedTuple):
    """One schema step: after it runs, ``PRAGMA user_version`` is ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append only: a shipped step is never edited, because databases in the field
# already carry its user_version. The table is not STRICT on purpose: in a
# STRICT table one value of the wrong type fails its whole statement, while
# here the writer stores it and then repairs that one value (values.py).
SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "one row per request, indexed by time",
        (
            f"""CREATE TABLE {TABLE} (
                ts REAL NOT NULL,
                request_id TEXT,
                endpoint TEXT,
                client_protocol TEXT,
                model TEXT,
                served_model TEXT,
                provider TEXT,
                status INTEGER,
                error_kind TEXT,
                stream INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER,
                output_tokens INTEGER,
                cached_tokens INTEGER,
                cache_write_tokens INTEGER,
                reasoning_tokens INTEGER,
                latency_ms REAL,
                ttfb_ms REAL,
                bytes_in INTEGER,
                bytes_out INTEGER
            )""",
            f"CREATE INDEX {TABLE}_ts ON {TABLE}(ts)",
        ),
    ),
    Migration(
        2,
        "retry count, API key and client address; index by model",
        (
            f"ALTER TABLE {TABLE} ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
            f"ALTER TABLE {TABLE} ADD COLUMN api_key_id TEXT",
            f"ALTER TABLE {TABLE} ADD COLUMN client_addr TEXT",
            f"CREATE INDEX {TABLE}_model ON {TABLE}(model)",
        ),
    ),
    Migration(
        3,
        "duplicate tool-call run length seen by the loop guard",
        (f"ALTER TABLE {TABLE} ADD COLUMN tool_repeats INTEGER",),
    ),
    Migration(
        4,
        "spill journal replay progress: bytes of each journal already stored",
        (
            f"""CREATE TABLE {SPILL_TABLE} (
                journal_id TEXT PRIMARY KEY,
                replayed_bytes INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
)

SCHEMA_VERSION = SQLITE_MIGRATIONS[-1].version
