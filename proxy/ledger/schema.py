"""The ledger's row shape and its schema history, SQLite's and PostgreSQL's.

One row per request the gateway answered (or failed to answer). This module is
plain data: the column order shared by the writer, the backends and the CLI, each
column's kind and length bound (``values.py`` enforces them), and the ordered list
of migration steps of each backend. It does no I/O and imports no driver.

Schema versioning follows apsw ``doc/tips.rst``: ``PRAGMA user_version`` holds
the number of migration steps applied, and the steps missing from a database are
applied in order inside one transaction.
"""

from __future__ import annotations

from typing import NamedTuple

TABLE = "requests"

# Accounts (proxy/accounts/): who may call the gateway, their limits, the prices,
# and each key's spend per UTC day (kept by the ledger writer in the same
# transaction as the rows, so a budget check never scans the requests table).
USERS_TABLE = "users"
KEYS_TABLE = "api_keys"
PRICES_TABLE = "prices"
SPEND_TABLE = "key_spend"
# One row, one number: bumped by every change to users, keys or prices, so a
# running gateway notices a change with one cheap read (proxy/accounts/sync.py).
ACCOUNTS_VERSION_TABLE = "accounts_version"

# Totals per UTC day, API key, model and provider (retention.py), and the last row
# number they include: reports over old days read these, and pruned days live on
# in them.
DAILY_TABLE = "ledger_daily"
ROLLUP_TABLE = "ledger_rollup"

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
    "cost_usd",  # what the request cost at the prices known then; NULL: price unknown
    "cost_source",  # where that price came from: "config", "bundled", "unknown"
    "end_user",  # the end user the client named (OpenAI `user`, Anthropic metadata.user_id)
    # Another provider's built-in tools the target could not run, left out of the
    # request (protocols/builtin_tools.py); NULL when none was.
    "dropped_tools",
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
    "cost_usd": REAL,
    "cost_source": TEXT,
    "end_user": TEXT,
    "dropped_tools": INTEGER,
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
    "cost_source": 16,
    # OpenAI documents `user` and `safety_identifier` as up to 64 characters;
    # Anthropic's metadata.user_id has no documented bound.
    "end_user": 256,
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
    "forbidden",
    "rate_limited",
    "budget_exceeded",
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
    Migration(
        5,
        "accounts: users, hashed API keys, limits, prices, spend per key and day; "
        "cost and end user per request",
        (
            f"ALTER TABLE {TABLE} ADD COLUMN cost_usd REAL",
            f"ALTER TABLE {TABLE} ADD COLUMN cost_source TEXT",
            f"ALTER TABLE {TABLE} ADD COLUMN end_user TEXT",
            f"""CREATE TABLE {USERS_TABLE} (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                email TEXT,
                role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
                disabled INTEGER NOT NULL DEFAULT 0,
                created REAL NOT NULL,
                models TEXT,
                rpm INTEGER,
                tpm INTEGER,
                budget_usd REAL,
                budget_period TEXT CHECK (budget_period IN ('day', 'month', 'total'))
            )""",
            f"""CREATE TABLE {KEYS_TABLE} (
                id TEXT PRIMARY KEY,
                hash BLOB NOT NULL UNIQUE,
                hint TEXT NOT NULL,
                name TEXT,
                user_id TEXT REFERENCES {USERS_TABLE}(id),
                created REAL NOT NULL,
                expires REAL,
                revoked REAL,
                models TEXT,
                rpm INTEGER,
                tpm INTEGER,
                budget_usd REAL,
                budget_period TEXT CHECK (budget_period IN ('day', 'month', 'total'))
            )""",
            f"""CREATE TABLE {PRICES_TABLE} (
                pattern TEXT PRIMARY KEY,
                input REAL,
                output REAL,
                cache_read REAL,
                cache_write REAL,
                updated REAL NOT NULL
            )""",
            f"""CREATE TABLE {SPEND_TABLE} (
                api_key_id TEXT NOT NULL,
                day TEXT NOT NULL,
                cost_usd REAL NOT NULL DEFAULT 0,
                requests INTEGER NOT NULL DEFAULT 0,
                tokens INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (api_key_id, day)
            ) WITHOUT ROWID""",
            f"CREATE TABLE {ACCOUNTS_VERSION_TABLE} (version INTEGER NOT NULL)",
            f"INSERT INTO {ACCOUNTS_VERSION_TABLE} VALUES (0)",
            # Rows written before this step that already name a key.
            f"""INSERT INTO {SPEND_TABLE} (api_key_id, day, cost_usd, requests, tokens)
                SELECT api_key_id, date(ts, 'unixepoch'), 0, count(*),
                       coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0)
                FROM {TABLE} WHERE api_key_id IS NOT NULL GROUP BY 1, 2""",
        ),
    ),
    Migration(
        6,
        "daily totals per key, model and provider, and how far they reach",
        (
            f"""CREATE TABLE {DAILY_TABLE} (
                day TEXT NOT NULL,
                api_key_id TEXT NOT NULL,
                model TEXT NOT NULL,
                provider TEXT NOT NULL,
                requests INTEGER NOT NULL,
                errors INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cost_usd REAL,
                unknown_cost INTEGER NOT NULL,
                PRIMARY KEY (day, api_key_id, model, provider)
            ) WITHOUT ROWID""",
            f"CREATE TABLE {ROLLUP_TABLE} (through_id INTEGER NOT NULL)",
            f"INSERT INTO {ROLLUP_TABLE} VALUES (0)",
        ),
    ),
    Migration(
        7,
        "built-in tools left out of a request its target could not run",
        (f"ALTER TABLE {TABLE} ADD COLUMN dropped_tools INTEGER",),
    ),
    # No query reads requests_model: every model filter (``query``) is "model = ?
    # OR served_model = ?" and served_model has no index, so SQLite walks
    # requests_ts; the reports group the daily totals or a ts range. Keeping it
    # up cost the writer ~0.4 us a row (bench/RESULTS.md, 2026-12-07 18:30).
    Migration(
        8,
        "drop the index on model, which no query used",
        (f"DROP INDEX IF EXISTS {TABLE}_model",),
    ),
)

SCHEMA_VERSION = SQLITE_MIGRATIONS[-1].version

# --- PostgreSQL ---------------------------------------------------------------------
#
# Its own history, numbered from 1 (docs/fleet.md): step 1 is the whole schema of
# SQLite step 5, in PostgreSQL's types. The steps applied are recorded, one row each,
# in MIGRATIONS_TABLE (version, description, when), the counterpart of SQLite's
# ``PRAGMA user_version``. Every INTEGER is a bigint, SQLite's signed 64-bit range
# (values.py); every REAL a double precision; ``requests.id`` numbers the rows as
# SQLite's rowid does (``gateway tail`` reads the rows after the last one shown).
# Append only, as above.

MIGRATIONS_TABLE = "schema_migrations"

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "requests, spill replay progress, users, hashed API keys, prices, spend per key "
        "and day, accounts change counter",
        (
            f"""CREATE TABLE {TABLE} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                ts double precision NOT NULL,
                request_id text,
                endpoint text,
                client_protocol text,
                model text,
                served_model text,
                provider text,
                status bigint,
                error_kind text,
                stream bigint NOT NULL DEFAULT 0,
                input_tokens bigint,
                output_tokens bigint,
                cached_tokens bigint,
                cache_write_tokens bigint,
                reasoning_tokens bigint,
                latency_ms double precision,
                ttfb_ms double precision,
                bytes_in bigint,
                bytes_out bigint,
                attempts bigint NOT NULL DEFAULT 1,
                api_key_id text,
                client_addr text,
                tool_repeats bigint,
                cost_usd double precision,
                cost_source text,
                end_user text
            )""",
            f"CREATE INDEX {TABLE}_ts ON {TABLE}(ts)",
            f"CREATE INDEX {TABLE}_model ON {TABLE}(model)",
            f"""CREATE TABLE {SPILL_TABLE} (
                journal_id text PRIMARY KEY,
                replayed_bytes bigint NOT NULL
            )""",
            f"""CREATE TABLE {USERS_TABLE} (
                id text PRIMARY KEY,
                name text NOT NULL UNIQUE,
                email text,
                role text NOT NULL CHECK (role IN ('admin', 'member')),
                disabled bigint NOT NULL DEFAULT 0,
                created double precision NOT NULL,
                models text,
                rpm bigint,
                tpm bigint,
                budget_usd double precision,
                budget_period text CHECK (budget_period IN ('day', 'month', 'total'))
            )""",
            f"""CREATE TABLE {KEYS_TABLE} (
                id text PRIMARY KEY,
                hash bytea NOT NULL UNIQUE,
                hint text NOT NULL,
                name text,
                user_id text REFERENCES {USERS_TABLE}(id),
                created double precision NOT NULL,
                expires double precision,
                revoked double precision,
                models text,
                rpm bigint,
                tpm bigint,
                budget_usd double precision,
                budget_period text CHECK (budget_period IN ('day', 'month', 'total'))
            )""",
            f"""CREATE TABLE {PRICES_TABLE} (
                pattern text PRIMARY KEY,
                input double precision,
                output double precision,
                cache_read double precision,
                cache_write double precision,
                updated double precision NOT NULL
            )""",
            f"""CREATE TABLE {SPEND_TABLE} (
                api_key_id text NOT NULL,
                day text NOT NULL,
                cost_usd double precision NOT NULL DEFAULT 0,
                requests bigint NOT NULL DEFAULT 0,
                tokens bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (api_key_id, day)
            )""",
            f"CREATE TABLE {ACCOUNTS_VERSION_TABLE} (version bigint NOT NULL)",
            f"INSERT INTO {ACCOUNTS_VERSION_TABLE} VALUES (0)",
        ),
    ),
    Migration(
        2,
        "daily totals per key, model and provider, and how far they reach",
        (
            f"""CREATE TABLE {DAILY_TABLE} (
                day text NOT NULL,
                api_key_id text NOT NULL,
                model text NOT NULL,
                provider text NOT NULL,
                requests bigint NOT NULL,
                errors bigint NOT NULL,
                input_tokens bigint NOT NULL,
                output_tokens bigint NOT NULL,
                cost_usd double precision,
                unknown_cost bigint NOT NULL,
                PRIMARY KEY (day, api_key_id, model, provider)
            )""",
            f"CREATE TABLE {ROLLUP_TABLE} (through_id bigint NOT NULL)",
            f"INSERT INTO {ROLLUP_TABLE} VALUES (0)",
        ),
    ),
    Migration(
        3,
        "built-in tools left out of a request its target could not run",
        (f"ALTER TABLE {TABLE} ADD COLUMN dropped_tools bigint",),
    ),
    # As SQLite step 8: no query reads requests_model (the model filter is "model =
    # %s OR served_model = %s", or a regex, and served_model has no index). Keeping
    # it up cost the server 0.4-0.7 us of CPU a row of its ~16 (bench/RESULTS.md,
    # 2026-12-07 20:00).
    Migration(
        4,
        "drop the index on model, which no query used",
        (f"DROP INDEX IF EXISTS {TABLE}_model",),
    ),
)

POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[-1].version
