"""``gateway user`` and ``gateway key``: the real console entry, a real database, and a
real gateway on a socket that must honour what the commands did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.accounts.store import AccountStore
from proxy.cli import gateway_main
from tests.accounts.test_keys_and_limits import TEAM_CONFIG, chat, synced

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = gateway_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "ledger.db")
    monkeypatch.setenv("TOKENWAY_DB", path)
    return path


def test_user_add_list_disable_enable(capsys, db):
    assert run(capsys, "user", "add", "alice", "--email", "alice@example.com",
               "--role", "admin")[0] == 0
    code, out, _ = run(capsys, "user", "add", "bob")
    assert code == 0 and "member bob" in out
    users = run_json(capsys, "user", "list")
    assert [(u["name"], u["role"], u["email"], u["disabled"]) for u in users] == [
        ("alice", "admin", "alice@example.com", False), ("bob", "member", None, False)]
    code, out, _ = run(capsys, "user", "disable", "bob")
    assert code == 0 and "disabled bob" in out
    assert [u["disabled"] for u in run_json(capsys, "user", "list")] == [False, True]
    assert run(capsys, "user", "enable", "bob")[0] == 0
    code, out, _ = run(capsys, "user", "list")
    assert code == 0 and "bob" in out and "disabled" not in out
    with AccountStore(db) as store:  # the same tables the daemon reads
        assert store.user("alice").role == "admin"


def test_refusals_and_bad_arguments_have_their_exit_codes(capsys, db, tmp_path):
    assert run(capsys, "user", "add", "alice")[0] == 0
    code, _, err = run(capsys, "user", "add", "alice")
    assert code == 1 and "exists" in err
    assert run(capsys, "user", "disable", "nobody")[0] == 1
    code, _, err = run(capsys, "key", "show", "key_000000000000")
    assert code == 1 and "no key" in err
    assert run(capsys, "key", "revoke", "key_000000000000")[0] == 1
    assert run(capsys, "key", "rotate", "key_000000000000")[0] == 1
    assert run(capsys, "key", "create", "--name", "k", "--user", "nobody")[0] == 1
    for argv in (["key", "create", "--name", "k", "--expires", "3 fortnights"],
                 ["key", "create", "--name", "k", "--expires", "0s"],
                 ["key", "create", "--name", "k", "--rpm", "-5"],
                 ["key", "create", "--name", "k", "--budget-usd", "5"],
                 ["key", "create", "--name", "k", "--budget-period", "day"],
                 ["key", "create", "--name", "k", "--budget-usd", "x", "--budget-period",
                  "day"],
                 ["key", "create", "--name", "k", "--models", "gpt-4o,,x"],
                 ["key", "create", "--name", "has space"],
                 ["key", "create"],
                 ["user", "add", "carol", "--role", "root"],
                 ["user", "add", "carol", "--email", "not-an-address"],
                 ["user", "frobnicate"],
                 ["key"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert err, argv
    # Listing never creates a database.
    missing = str(tmp_path / "missing.db")
    code, _, err = run(capsys, "key", "list", "--db", missing)
    assert code == 1 and "no ledger database" in err and not os.path.exists(missing)


def test_durations_are_read_and_the_expiry_is_stored(capsys, db):
    before = time.time()
    for text, seconds in (("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400),
                          ("3600s", 3600)):
        made = run_json(capsys, "key", "create", "--name", "exp", "--expires", text)
        assert made["expires"] - made["created"] == pytest.approx(seconds)
        assert made["created"] >= before and made["state"] == "active"


@pytest.fixture
def team_gateway(make_gateway, upstream, db):
    with AccountStore(db) as store:
        store.add_user("alice", email="alice@example.com")
    gw = make_gateway(config_text=TEAM_CONFIG.format(url=upstream.base_url))
    store = AccountStore(db)
    yield gw, store
    store.close()


def test_a_created_key_works_then_is_refused_once_revoked(capsys, team_gateway):
    gw, store = team_gateway
    made = run_json(capsys, "key", "create", "--name", "ci", "--user", "alice",
                    "--models", "gpt-4o*", "--rpm", "100")
    assert made["id"].startswith("key_") and made["key"].startswith("tw-")
    assert made["user"] == "alice" and made["models"] == ["gpt-4o*"] and made["rpm"] == 100
    synced(gw, store)
    assert chat(gw, made["key"]).status_code == 200
    assert gw.wait_rows(1)[-1]["api_key_id"] == made["id"]
    listed = run_json(capsys, "key", "list", "--user", "alice")
    assert [k["id"] for k in listed] == [made["id"]]
    assert made["key"] not in json.dumps(listed)  # the secret is shown once only

    code, out, _ = run(capsys, "key", "revoke", made["id"])
    assert code == 0 and "revoked" in out
    synced(gw, store)
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(gw, made["key"])
    assert run_json(capsys, "key", "show", made["id"])["state"] == "revoked"
    # A revoked key cannot be given a new secret.
    assert run(capsys, "key", "rotate", made["id"])[0] == 1


def test_rotate_prints_a_new_secret_and_retires_the_old(capsys, team_gateway):
    gw, store = team_gateway
    code, out, err = run(capsys, "key", "create", "--name", "rot")
    assert code == 0 and "not shown again" in err
    old = next(line.split()[1] for line in out.splitlines() if line.startswith("key: "))
    key_id = out.split()[1]
    code, out, err = run(capsys, "key", "rotate", key_id)
    assert code == 0 and "not shown again" in err
    new = next(line.split()[1] for line in out.splitlines() if line.startswith("key: "))
    assert new != old and new.startswith("tw-")
    synced(gw, store)
    assert chat(gw, new).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        chat(gw, old)


def test_show_reports_spend_and_what_is_left_of_the_budget(capsys, team_gateway):
    gw, store = team_gateway
    store.set_price("gpt-4o", input=1000.0, output=1000.0)  # a visible cost per request
    made = run_json(capsys, "key", "create", "--name", "spender", "--user", "alice",
                    "--budget-usd", "100", "--budget-period", "day")
    synced(gw, store)
    assert chat(gw, made["key"]).status_code == 200
    gw.wait_rows(1)
    deadline = time.monotonic() + 10
    while True:
        shown = run_json(capsys, "key", "show", made["id"])
        if shown["spend"]["total_usd"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    cost = gw.rows()[-1]["cost_usd"]
    assert cost and shown["spend"] == pytest.approx(
        {"today_usd": cost, "month_usd": cost, "total_usd": cost})
    assert shown["budget"] == pytest.approx({"usd": 100.0, "period": "day", "spent_usd": cost,
                                             "remaining_usd": 100.0 - cost})
    code, out, _ = run(capsys, "key", "show", made["id"])
    assert code == 0 and "budget left:" in out and "spend today:" in out
    user = run_json(capsys, "user", "show", "alice")
    assert user["keys"] == [made["id"]] and user["spend"]["total_usd"] == pytest.approx(cost)


def test_the_installed_command_runs_in_its_own_process(tmp_path):
    db = str(tmp_path / "ledger.db")
    env = {**os.environ, "TOKENWAY_DB": db}
    script = Path(sys.executable).with_name("gateway")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c",
                                                 "import sys; from proxy.cli import "
                                                 "gateway_main; sys.exit(gateway_main())"]
    done = subprocess.run([*cmd, "key", "create", "--name", "proc", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    with AccountStore(db) as store:
        assert store.key(made["id"]).name == "proc"
    done = subprocess.run([*cmd, "key", "create", "--name", "proc", "--expires", "soon"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "duration" in done.stderr
    done = subprocess.run([*cmd, "key", "show", "key_000000000000", "--db", db],
                          env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1


def test_gateway_help_lists_every_command_and_each_answers_its_own_help(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert code == 0 and listed == ["usage", "tail", "audit", "ledger", "routes", "price", "user",
                                    "key", "reload", "version"]
    for name in listed[:-1]:
        try:
            code = gateway_main([name, "--help"])
        except SystemExit as e:  # argparse's own exit
            code = e.code
        assert code == 0, name
        assert f"gateway {name}" in capsys.readouterr().out
    code, out, err = run(capsys, "no-such-command")
    assert code == 2 and "unknown command" in err
