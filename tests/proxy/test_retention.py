"""Daily rollups and pruning on SQLite and PostgreSQL: reports give the same totals
before a rollup, after it and after old days are pruned; late rows count once."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from proxy.ledger import Ledger, open_backend
from proxy.ledger.reads import GROUP_BY
from proxy.ledger.retention import DAY_S, cutoff_day
from proxy.usage_cli import usage_main
from tests.pgdb import pg_url_fixture  # noqa: F401 (the pg_url fixture)
from tests.proxy.ledger_rows import make_rec

DAY0 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC, a day boundary
assert DAY0 % DAY_S == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return str(request.getfixturevalue("pg_url"))


def rows_over_days() -> list[Any]:
    """Four days of rows: keys, models, providers, errors, unknown costs."""
    recs = []
    i = 0
    for day in range(4):
        for n in range(25):
            i += 1
            recs.append(make_rec(
                i, ts=DAY0 + day * DAY_S + n * 3000.0, request_id=f"r{i}",
                api_key_id=("key_a", "key_b", None)[n % 3],
                served_model=("m-1", "m-2")[n % 2], provider=("p", "q")[n % 2 == 0 and day % 2],
                status=500 if n % 7 == 0 else 200, error_kind="upstream_error" if n % 7 == 0
                else None, cost_usd=None if n % 5 == 0 else 0.001 * n,
                input_tokens=10 * n, output_tokens=n))
    return recs


def store(where: str, recs: list[Any]) -> None:
    ledger = Ledger(where if "://" not in where else "unused", backend=open_backend(where))
    for rec in recs:
        ledger.record(rec)
    ledger.start()
    assert ledger.close()


def report(where: str, since: float | None) -> dict[str, list[dict[str, Any]]]:
    backend = open_backend(where, readonly=True)
    backend.open()
    try:
        out = {by: backend.query_groups(by, since=since) for by in GROUP_BY}
    finally:
        backend.close()
    for groups in out.values():
        for g in groups:
            if g["cost_usd"] is not None:
                g["cost_usd"] = round(g["cost_usd"], 9)
    return {by: sorted(groups, key=lambda g: str(g["group"])) for by, groups in out.items()}


def run(where: str, what: str, *args: Any) -> Any:
    backend = open_backend(where)
    backend.open()
    try:
        return getattr(backend, what)(*args)
    finally:
        backend.close()


def test_reports_agree_before_and_after_rollup_and_prune(where: str) -> None:
    store(where, rows_over_days())
    windows = (None, DAY0 + DAY_S + 3600.0, DAY0 + 2 * DAY_S)  # all, partial first day, whole
    before = {w: report(where, w) for w in windows}
    assert sum(g["requests"] for g in before[None]["day"]) == 100
    assert run(where, "rollup") == 100
    assert run(where, "rollup") == 0  # nothing new: nothing taken twice
    assert {w: report(where, w) for w in windows} == before
    # A late row for an old day (a spill journal replayed days later) counts once,
    # before and after the next rollup.
    store(where, [make_rec(999, ts=DAY0 + 100.0, request_id="late", api_key_id="key_a",
                           served_model="m-1", provider="p", cost_usd=0.5)])
    late = report(where, None)
    assert sum(g["requests"] for g in late["day"]) == 101
    assert run(where, "rollup") == 1
    assert report(where, None) == late
    # Pruning the first two days keeps their totals.
    deleted = run(where, "prune", DAY0 + 2 * DAY_S + 10.0)
    assert deleted == 50  # the late row is the newest: kept, and counted once still
    assert report(where, None) == late
    assert report(where, DAY0 + 2 * DAY_S) == before[DAY0 + 2 * DAY_S]
    backend = open_backend(where, readonly=True)
    backend.open()
    try:
        rows = backend.query()
    finally:
        backend.close()
    assert len(rows) == 51
    assert [r["request_id"] for r in rows if r["ts"] < DAY0 + 2 * DAY_S] == ["late"]


def test_prune_keeps_the_newest_row(where: str) -> None:
    store(where, [make_rec(i, ts=DAY0 + i, request_id=f"r{i}") for i in range(5)])
    assert run(where, "prune", DAY0 + 10 * DAY_S) == 4
    store(where, [make_rec(9, ts=DAY0 + 11 * DAY_S, request_id="new")])
    # The new row is not mistaken for one already rolled up.
    assert sum(g["requests"] for g in report(where, None)["day"]) == 6


def test_the_cutoff_is_a_utc_day_boundary() -> None:
    assert cutoff_day(DAY0 + 5.0) == DAY0
    assert cutoff_day(DAY0 - 5.0) == DAY0 - DAY_S


def test_gateway_ledger_prune_and_rollup_commands(tmp_path: pathlib.Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.ledger_cli import ledger_main

    db = str(tmp_path / "ledger.db")
    store(db, rows_over_days())
    assert ledger_main(["rollup", "--db", db]) == 0
    assert "100 row(s) added to the daily totals" in capsys.readouterr().out
    assert ledger_main(["prune", "--older-than", "nonsense", "--db", db]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert usage_main(["--by", "day", "--db", db, "--json"]) == 0
    by_day = capsys.readouterr().out
    # Everything is older than a day: the whole UTC days before today's go.
    assert ledger_main(["prune", "--older-than", "1d", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "deleted 99 row(s)" in out and "totals per day, key, model and provider" in out
    assert usage_main(["--by", "day", "--db", db, "--json"]) == 0
    assert capsys.readouterr().out == by_day


# -- gateway ledger copy ------------------------------------------------------------


def _accounts(db: str) -> str:
    from proxy.accounts.model import Limits
    from proxy.accounts.store import AccountStore

    with AccountStore(db) as store:
        store.add_user("ann", limits=Limits(rpm=100))
        _, secret = store.create_key(name="ci", user="ann")
        store.set_price("m-*", input=1.0, output=2.0)
    return secret


def test_copy_sqlite_to_postgresql_exactly_once_and_resumable(
        tmp_path: pathlib.Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.accounts.keys import key_hash
    from proxy.accounts.store import AccountStore
    from proxy.ledger import copy as ledger_copy
    from proxy.ledger import parse_storage_url
    from proxy.ledger_cli import ledger_main

    db = str(tmp_path / "ledger.db")
    secret = _accounts(db)
    store(db, rows_over_days())
    run(db, "prune", DAY0 + DAY_S + 10.0)  # day 0 lives on only in the totals
    expected = report(db, None)
    # A copy that stops after its first batch, then runs again to the end.
    monkeypatch.setattr(ledger_copy, "BATCH_ROWS", 20)
    real = ledger_copy.copy_ledger

    def stop_after_one_batch(source, target, copy_id, progress=None):
        def once(n: int) -> None:
            raise KeyboardInterrupt
        return real(source, target, copy_id, once)

    monkeypatch.setattr("proxy.ledger_cli.copy_ledger", stop_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        ledger_main(["copy", "--db", db, "--to", pg_url])
    monkeypatch.setattr("proxy.ledger_cli.copy_ledger", real)
    assert ledger_main(["copy", "--db", db, "--to", pg_url]) == 0
    assert "copied" in capsys.readouterr().out
    assert ledger_main(["copy", "--db", db, "--to", pg_url]) == 0  # again: nothing more
    assert "0 row(s)" in capsys.readouterr().out
    # Same rows (75 left after the prune), same reports, the key still works.
    source_rows = open_backend(db, readonly=True)
    source_rows.open()
    target_rows = open_backend(pg_url, readonly=True)
    target_rows.open()
    try:
        src, dst = source_rows.query(), target_rows.query()
    finally:
        source_rows.close()
        target_rows.close()
    assert len(src) == len(dst) == 75
    assert [r["request_id"] for r in src] == [r["request_id"] for r in dst]
    assert report(pg_url, None) == expected
    with AccountStore(parse_storage_url(pg_url)) as pg:
        snap = pg.snapshot()
    assert [k.key.name for k in snap.keys] == ["ci"] and [u.name for u in snap.users] == ["ann"]
    assert snap.keys[0].digest == key_hash(secret.encode())
    assert [p["pattern"] for p in snap.prices] == ["m-*"]
    # Into a database that holds rows of its own: refused.
    other = str(tmp_path / "other.db")
    store(other, [make_rec(1, ts=DAY0, request_id="x")])
    assert ledger_main(["copy", "--db", db, "--to", "sqlite:///" + other]) == 1
    assert "already holds rows" in capsys.readouterr().err
