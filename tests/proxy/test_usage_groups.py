"""`gateway usage --by key|user|model|provider|day`: totals grouped by the database."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.accounts.store import AccountStore
from proxy.ledger import query_groups
from proxy.usage_cli import usage_main
from tests.proxy.test_usage_cli import write_ledger

DAY = 86_400.0


@pytest.fixture
def db(tmp_path: pathlib.Path) -> tuple[str, dict[str, str]]:
    path = str(tmp_path / "groups.db")
    with AccountStore(path) as store:
        store.add_user("alice")
        k1, _ = store.create_key(name="ci", user="alice")
        k2, _ = store.create_key(name="laptop", user="alice")
        k3, _ = store.create_key(name="orphan")
    now = time.time()
    base = {"endpoint": "/v1/chat/completions", "client_protocol": "openai_chat",
            "provider": "openai", "status": 200, "stream": False}
    write_ledger(path, [
        {**base, "ts": now - 3 * DAY, "request_id": "a", "model": "gpt-4o",
         "served_model": "gpt-4o-2024-08-06", "api_key_id": k1.id, "input_tokens": 100,
         "output_tokens": 10, "cost_usd": 0.5, "cost_source": "bundled"},
        {**base, "ts": now - 60, "request_id": "b", "model": "gpt-4o",
         "served_model": "gpt-4o-2024-08-06", "api_key_id": k2.id, "input_tokens": 200,
         "output_tokens": 20, "cost_usd": 0.25, "cost_source": "bundled"},
        {**base, "ts": now - 30, "request_id": "c", "model": "house", "served_model": "house",
         "provider": "local", "api_key_id": k3.id, "input_tokens": 7, "output_tokens": 3,
         "cost_usd": None, "cost_source": "unknown"},
        {**base, "ts": now - 20, "request_id": "d", "model": "gpt-4o", "status": 504,
         "error_kind": "upstream_timeout", "cost_usd": None, "cost_source": "bundled"},
        {**base, "ts": now - 10, "request_id": "e", "model": None, "provider": None,
         "status": 400, "error_kind": "bad_request", "cost_usd": 0.0, "cost_source": "unknown"},
    ])
    return path, {"ci": k1.id, "laptop": k2.id, "orphan": k3.id}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert usage_main(list(argv)) == 0
    return capsys.readouterr().out


def by(capsys, db, what: str, *extra: str) -> dict[Any, dict[str, Any]]:
    out = json.loads(run(capsys, "--db", db, "--by", what, "--json", *extra))
    return {g["group"]: g for g in out}


def test_by_key_names_the_key(db, capsys) -> None:
    path, ids = db
    groups = by(capsys, path, "key")
    assert groups[ids["ci"]]["name"] == "ci" and groups[ids["ci"]]["cost_usd"] == 0.5
    assert groups[ids["orphan"]]["unknown_cost"] == 1
    assert groups[ids["orphan"]]["cost_usd"] is None  # unknown, not zero
    none = groups[None]
    assert (none["requests"], none["errors"], none["unknown_cost"]) == (2, 2, 1)
    # Biggest spender first.
    assert next(iter(groups)) == ids["ci"]


def test_by_user_joins_keys_to_users(db, capsys) -> None:
    path, _ = db
    groups = by(capsys, path, "user")
    alice = groups["alice"]
    assert (alice["requests"], alice["input_tokens"], alice["output_tokens"]) == (2, 300, 30)
    assert alice["cost_usd"] == pytest.approx(0.75) and alice["unknown_cost"] == 0
    assert groups[None]["requests"] == 3  # a key without a user, and no key at all
    table = run(capsys, "--db", path, "--by", "user")
    assert table.splitlines()[0].split() == ["USER", "REQUESTS", "ERRORS", "IN", "OUT",
                                             "COST_USD", "UNKNOWN_COST"]
    assert "(none)" in table


def test_by_model_uses_the_served_model(db, capsys) -> None:
    path, _ = db
    groups = by(capsys, path, "model")
    assert groups["gpt-4o-2024-08-06"]["requests"] == 2
    assert groups["gpt-4o"]["errors"] == 1 and groups["gpt-4o"]["unknown_cost"] == 1
    assert groups["house"]["unknown_cost"] == 1


def test_by_provider(db, capsys) -> None:
    path, _ = db
    groups = by(capsys, path, "provider")
    assert groups["openai"]["requests"] == 3 and groups["local"]["requests"] == 1


def test_by_day_since(db, capsys) -> None:
    path, _ = db
    days = by(capsys, path, "day")
    assert sum(g["requests"] for g in days.values()) == 5
    assert list(days) == sorted(days)  # oldest day first
    recent = by(capsys, path, "day", "--since", "1h")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert set(recent) <= {today, (datetime.fromtimestamp(time.time() - 3600, UTC)
                                   .strftime("%Y-%m-%d"))}
    assert sum(g["requests"] for g in recent.values()) == 4


def test_csv(db, capsys) -> None:
    path, ids = db
    rows = list(csv.DictReader(io.StringIO(run(capsys, "--db", path, "--by", "key",
                                               "--csv"))))
    assert list(rows[0]) == ["key", "name", "requests", "errors", "input_tokens",
                             "output_tokens", "cost_usd", "unknown_cost"]
    orphan = next(r for r in rows if r["key"] == ids["orphan"])
    assert orphan["cost_usd"] == "" and orphan["unknown_cost"] == "1"
    plain = list(csv.DictReader(io.StringIO(run(capsys, "--db", path, "--csv"))))
    assert len(plain) == 5 and plain[0]["cost_usd"] == "0.5"


def test_table_totals_keep_unknown_apart(db, capsys) -> None:
    path, _ = db
    lines = run(capsys, "--db", path, "--by", "provider").splitlines()
    total = lines[-1].split()
    assert total[0] == "total" and total[1:] == ["5", "2", "307", "33", "0.750000", "2"]


def test_groups_come_by_cost_then_requests(db) -> None:
    path, _ = db
    # openai cost 0.75; no provider (one request, 0.0) and local (one, unknown) tie on
    # cost and count, and SQLite sorts NULL first.
    assert [g["group"] for g in query_groups(path, "provider")] == ["openai", None, "local"]


def test_by_refuses_model_filter(db, capsys) -> None:
    path, _ = db
    assert usage_main(["--db", path, "--by", "key", "--model", "x"]) == 2
    assert usage_main(["--db", path, "--by", "nope"]) == 2
    assert usage_main(["--db", path, "--json", "--csv"]) == 2
