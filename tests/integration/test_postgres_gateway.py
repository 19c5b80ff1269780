"""gatewayd on PostgreSQL, as a fleet runs it: real daemons started with
``--database-url postgresql://...``, a fake OpenAI provider, the real openai SDK, and
the ``gateway`` commands against the same URL.

- every request is one row in PostgreSQL;
- an outage of the database loses nothing: rows go to each daemon's local spill
  journal, ``/health`` shows the backlog, and the rows are replayed once, each row
  exactly once, when the database is back;
- a key created with ``gateway key create`` works on every daemon, and once revoked
  with ``gateway key revoke`` it is refused by every daemon (they poll the accounts
  change counter every 0.25 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest

from proxy.cli import gateway_main
from tests.integration.test_cli import LogLines
from tests.integration.upstreams import FakeUpstream
from tests.pgdb import admin, pg_url_fixture  # noqa: F401 (the pg_url fixture)

PY = sys.executable
HIDDEN = "pw-never-logged"  # trust authentication ignores it; it must never be printed
WAIT_S = 20.0  # upper bound for what the daemons do on their own; never reached


class Daemon:
    def __init__(self, tmp: Path, name: str, pg_url: str, upstream: FakeUpstream,
                 args: tuple[str, ...] = (), config: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
        env.update(TOKENWAY_OPENAI_BASE_URL=upstream.base_url,
                   TOKENWAY_OPENAI_API_KEY="sk-upstream-secret")
        self.journal = tmp / name  # the local spill journal is <this>.spill
        extra = list(args)
        if config is not None:
            (tmp / f"{name}.toml").write_text(config)
            extra += ["--config", str(tmp / f"{name}.toml")]
        self.proc = subprocess.Popen(
            [PY, "-m", "proxy", "--listen", "127.0.0.1:0", "--database-url", pg_url,
             "--db", str(self.journal), *extra], stderr=subprocess.PIPE, text=True, env=env,
            cwd=tmp)
        assert self.proc.stderr is not None
        self.log = LogLines(self.proc.stderr)
        assert self.log.wait_for("listening on", timeout_s=WAIT_S), self.log.lines
        line = next(x for x in self.log.lines if "listening on" in x)
        self.url = line.split("listening on ", 1)[1].split()[0]

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
            return json.loads(r.read())

    def wait_health(self, ok: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while True:
            h = self.health()
            if ok(h["ledger"]):
                return h
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {h['ledger']}"
            time.sleep(0.05)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        return self.log.rest()


@pytest.fixture
def daemons(tmp_path: Path, pg_url: str):
    upstream = FakeUpstream().start()
    started: list[Daemon] = []

    def start(name: str, url: str | None = None, args: tuple[str, ...] = (),
              config: str | None = None) -> Daemon:
        d = Daemon(tmp_path, name, url or pg_url, upstream, args, config)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    upstream.stop()


def chat(d: Daemon, key: str = "unused") -> Any:
    with openai.OpenAI(base_url=d.url + "/v1", api_key=key, max_retries=0, timeout=10) as c:
        return c.chat.completions.create(model="gpt-4.1",
                                         messages=[{"role": "user", "content": "hi"}])


def stored(pg_url: str) -> tuple[int, int]:
    """(rows, distinct request ids) in the ledger."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM requests").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{HIDDEN}@{host}"


def test_requests_are_rows_and_an_outage_is_replayed_once(daemons: Any, pg_url: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    a, b = daemons("a", with_password(pg_url)), daemons("b")
    for i in range(12):
        answer = chat(a if i % 2 else b)
        assert answer.choices[0].message.content == "Hello from upstream!"
    for d in (a, b):
        d.wait_health(lambda s: s["queued"] == 0 and s["written"] == 6, "rows stored")
    assert stored(pg_url) == (12, 12)

    name = pg_url.rsplit("/", 1)[1]
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)
        for i in range(20):
            chat(a if i % 2 else b)  # served from memory: the database is not asked
        for d in (a, b):
            h = d.wait_health(lambda s: s["journal_rows"] == 10 and s["queued"] == 0,
                              "rows journaled")
            assert h["ledger"]["state"] == "spilling" and h["ledger"]["spilled"] == 10
            assert Path(f"{d.journal}.spill").exists()
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    for d in (a, b):
        h = d.wait_health(lambda s: s["journal_rows"] == 0 and s["state"] == "ok",
                          "journal replayed")
        assert (h["ledger"]["written"], h["ledger"]["replayed"]) == (16, 10)
    assert stored(pg_url) == (32, 32)

    logs = a.stop() + b.stop()
    assert "spilling rows to" in logs and "writable again" in logs
    assert f"ledger: {pg_url} (PostgreSQL; spill journal " in logs
    shown = with_password(pg_url).replace(HIDDEN, "***")
    assert f"ledger: {shown} (PostgreSQL; spill journal " in logs
    assert HIDDEN not in logs
    assert stored(pg_url) == (32, 32)
    # gateway usage reads the same database.
    assert gateway_main(["usage", "--database-url", pg_url, "--by", "provider"]) == 0
    out = capsys.readouterr().out
    assert "openai" in out and " 32 " in out


def test_a_key_revoked_on_one_machine_is_refused_by_all(daemons: Any, pg_url: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    a = daemons("a")
    assert gateway_main(["user", "add", "ana", "--database-url", pg_url]) == 0
    capsys.readouterr()
    assert gateway_main(["key", "create", "--user", "ana", "--name", "laptop",
                         "--database-url", pg_url, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    secret, key_id = created["key"], created["id"]
    b = daemons("b")  # started after: it reads the key at start; `a` picks it up live

    def accepted(d: Daemon) -> bool:
        try:
            chat(d, secret)
            return True
        except openai.AuthenticationError:
            return False

    def wait(cond: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    wait(lambda: accepted(a) and accepted(b), "the new key on both daemons")
    # The admin API's usage report reads the same database.
    assert gateway_main(["user", "add", "boss", "--role", "admin", "--database-url",
                         pg_url]) == 0
    capsys.readouterr()
    assert gateway_main(["key", "create", "--user", "boss", "--name", "ops", "--json",
                         "--database-url", pg_url]) == 0
    admin_key = json.loads(capsys.readouterr().out)["key"]
    wait(lambda: accepted_admin(a, admin_key), "the admin key")

    def key_requests() -> int:
        req = urllib.request.Request(a.url + "/admin/v1/usage?by=key",
                                     headers={"Authorization": f"Bearer {admin_key}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            groups = json.loads(r.read())["groups"]
        return sum(g["requests"] for g in groups if g["group"] == key_id)

    # At least one request with the key on each daemon, once both writers stored them.
    wait(lambda: key_requests() >= 2, "the key's requests in the admin API's report")
    with pytest.raises(openai.AuthenticationError):
        chat(a, "tw-not-a-key")
    assert gateway_main(["key", "revoke", key_id, "--database-url", pg_url]) == 0
    wait(lambda: not accepted(a) and not accepted(b), "the revoked key refused everywhere")
    rows = [r for r in json.loads(_usage_json(pg_url, capsys)) if r["api_key_id"] == key_id]
    assert rows and all(r["status"] == 200 for r in rows)


def accepted_admin(d: Daemon, key: str) -> bool:
    req = urllib.request.Request(d.url + "/admin/v1/users",
                                 headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def _usage_json(pg_url: str, capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert gateway_main(["usage", "--database-url", pg_url, "--json", "--limit", "0"]) == 0
    return capsys.readouterr().out


def test_gatewayd_refuses_a_bad_url_without_showing_the_password(tmp_path: Path) -> None:
    p = subprocess.run([PY, "-m", "proxy", "--listen", "127.0.0.1:0", "--database-url",
                        "postgresql://tw:pw-s3cret@db:99999/ledger"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("TOKENWAY_")})
    assert p.returncode == 2
    assert "storage.url (from --database-url): 'postgresql://tw:***@db:99999/ledger': bad port" \
        in p.stderr
    assert "pw-s3cret" not in p.stderr + p.stdout


def test_workers_on_postgresql_each_write_their_batches(daemons: Any, pg_url: str) -> None:
    d = daemons("w", args=("--workers", "2"))
    for _ in range(40):
        chat(d)
    d.stop()
    assert stored(pg_url) == (40, 40)


def _redis_prefix() -> str:
    import secrets as _secrets

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip("no Redis answers at 127.0.0.1:6379")
    return "tw-test-" + _secrets.token_hex(4)


def _drop_prefix(prefix: str) -> None:
    import redis

    r = redis.Redis(host="127.0.0.1", port=6379)
    for k in r.scan_iter(prefix + "*"):
        r.delete(k)
    r.close()


def _split_burst(pair: list[Daemon], secret: str, n: int, **kw: Any) -> list[Any]:
    """``n`` requests at once, every other one to the other daemon, once both know
    the key (they poll every 0.25 s)."""
    import asyncio

    async def burst() -> list[Any]:
        clients = [openai.AsyncOpenAI(base_url=d.url + "/v1", api_key=secret, max_retries=0)
                   for d in pair]

        async def one(i: int) -> Any:
            try:
                return await clients[i % 2].chat.completions.create(
                    model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], **kw)
            except openai.APIStatusError as exc:
                return exc
        try:
            deadline = time.monotonic() + WAIT_S
            for c in clients:
                while True:
                    try:
                        await c.models.list()
                        break
                    except openai.AuthenticationError:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)
            return await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            for c in clients:
                await c.close()

    return asyncio.run(burst())


# Redis gets 5 s a round trip: past the 100 ms default on a loaded machine an
# admission would count as an outage and go unmetered.
def _limits_config(prefix: str) -> str:
    return (f'[limits]\nredis_url = "redis://127.0.0.1:6379/0"\n'
            f'key_prefix = "{prefix}"\ntimeout = "5s"\n')


def test_two_machines_share_a_keys_limits_through_redis(daemons: Any, pg_url: str) -> None:
    """Two gateways on one PostgreSQL and one Redis: a key's requests per minute hold
    across both (one atomic script per admission in Redis)."""
    from proxy.accounts.model import Limits
    from proxy.accounts.store import AccountStore
    from proxy.ledger import parse_storage_url

    prefix = _redis_prefix()
    with AccountStore(parse_storage_url(pg_url)) as store:
        _, secret = store.create_key(name="shared", limits=Limits(rpm=10))
    pair = [daemons(f"m{i}", config=_limits_config(prefix)) for i in range(2)]
    try:
        results = _split_burst(pair, secret, 100)
    finally:
        _drop_prefix(prefix)
    ok = [x for x in results if not isinstance(x, Exception)]
    refused = [x for x in results if isinstance(x, openai.RateLimitError)]
    assert len(ok) == 10 and len(refused) == 90
    for d in pair:
        d.stop()
    rows, _ = stored(pg_url)
    assert rows == 100


def test_two_machines_share_a_keys_budget_through_redis(daemons: Any, pg_url: str) -> None:
    """Two gateways on one PostgreSQL and one Redis: 100 parallel requests split between
    them spend a key's budget together, overshooting it by at most one request's
    estimate per gateway, and every request is one row."""
    from proxy.accounts.meter import BYTES_PER_TOKEN
    from proxy.accounts.model import Limits
    from proxy.accounts.store import AccountStore
    from proxy.ledger import parse_storage_url

    per_mtok = 1000.0  # USD per million tokens: a budget of 0.2 is a few requests
    budget, max_tokens = 0.2, 50
    prefix = _redis_prefix()
    config = _limits_config(prefix) + (f'\n[prices."gpt-4*"]\ninput = {per_mtok}\n'
                                       f'output = {per_mtok}\n')
    with AccountStore(parse_storage_url(pg_url)) as store:
        _, secret = store.create_key(name="budgeted", limits=Limits(
            budget_usd=budget, budget_period="total"))
    pair = [daemons(f"b{i}", config=config) for i in range(2)]
    try:
        results = _split_burst(pair, secret, 100, max_tokens=max_tokens)
    finally:
        _drop_prefix(prefix)
    ok = [x for x in results if not isinstance(x, Exception)]
    refused = [x for x in results if isinstance(x, openai.RateLimitError)]
    assert ok and refused and len(ok) + len(refused) == 100
    assert {x.body["code"] for x in refused} == {"insufficient_quota"}
    for d in pair:
        d.stop()
    with psycopg.connect(pg_url) as conn:
        served = conn.execute("SELECT count(*), sum(cost_usd), max(bytes_in) FROM requests "
                              "WHERE status = 200").fetchone()
        total = conn.execute("SELECT count(*) FROM requests").fetchone()
    assert served is not None and total is not None
    count, spent, bytes_in = served
    assert count == len(ok) and total[0] == 100
    estimate = (bytes_in // BYTES_PER_TOKEN + 1 + max_tokens) * per_mtok / 1e6
    assert spent <= budget + 2 * estimate  # at most one estimate per gateway
