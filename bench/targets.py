"""What the benchmark puts in front of the fake upstream: one class per target.

A target is anything that accepts client requests on a loopback port and forwards them
to the fake provider. The interface is small on purpose, so that a new peer is one class:

    unavailable(ctx) -> str | None   # why it cannot run here (checked before start)
    start(upstream_url, ctx) -> Started(base_url, pid)   # spawn; do not wait for ready
    stop()                           # SIGTERM by pid, then SIGKILL the tree after a grace

    request_headers(api) -> dict     # auth and routing headers for "chat" or "messages"

plus attributes: `name`, `kind` (upstream | proxy | gateway | peer), `apis` (the client APIs
it serves: "chat", "messages", "responses"), `key` (the client's API key),
`start_timeout_s`, `groups` (the scenario groups it runs; None: all) and `checks_keys`
(whether a wrong client key is rejected: only such targets run the invalid-key flood).
The runner measures start-to-first-200 itself by polling a real proxied request, reads
CPU and RSS of the returned pid's process tree, and never lets one target's failure stop
the others.

Peers (LiteLLM, Portkey, claude-code-router) are installed the way their own docs
describe (pinned versions, below), each into a cache folder outside the repository
(~/.cache/tokenway-bench, or $TOKENWAY_BENCH_CACHE) the first time they are asked for.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import procstat

REPO_ROOT = Path(__file__).resolve().parent.parent
# The gateway runs as `pip install .` leaves it: its modules compiled to bytecode
# beforehand (pip writes the .pyc files at install), not compiled at every start,
# which a PYTHONDONTWRITEBYTECODE in the bench's environment would otherwise cause
# (+0.11 s to the first answer, +1.6 MiB idle RSS: bench/RESULTS.md, 2026-12-07). The
# cache is kept apart from the checkout (PYTHONPYCACHEPREFIX) and written by
# `compileall` before the first start (`TokenwayTarget.unavailable`).
BYTECODE_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "tokenway-bench-pycache"
STOP_GRACE_S = 10.0
BENCH_API_KEY = "sk-bench"


@dataclass
class Context:
    """Per-run settings every target may need."""

    tmpdir: Path
    target_cpus: set[int] | None = None
    workers: int = 1
    models: list[str] = field(default_factory=lambda: ["gpt-bench"])
    cache_dir: Path = Path(os.environ.get("TOKENWAY_BENCH_CACHE",
                                          Path.home() / ".cache" / "tokenway-bench"))
    install: bool = True
    tokenway_args: list[str] = field(default_factory=list)
    tokenway_env: dict[str, str] = field(default_factory=dict)
    log: object = None  # callable(str) for progress lines

    def say(self, msg: str) -> None:
        if callable(self.log):
            self.log(msg)


@dataclass
class Started:
    base_url: str
    pid: int


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_port() -> int:
    """A loopback port below the ephemeral range that nothing listens on: connecting to it
    is refused at once. (A port that can be bound is not listening; outside the ephemeral
    range no client socket of the run is ever given it.)"""
    import socket

    for port in range(20_000, 20_500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def last_lines(path: Path, n: int = 3, width: int = 300) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-width:]


def _run(cmd: list[str], timeout_s: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, **kw)


class Target:
    name = "target"
    kind = "proxy"
    peer = False
    apis = frozenset({"chat"})
    start_timeout_s = 30.0
    # The scenario groups this target runs (None: every group whose API it serves).
    groups: frozenset[str] | None = None
    # Whether it rejects a wrong client key (only such targets run the invalid-key flood).
    checks_keys = False
    note = ""

    def __init__(self) -> None:
        self.key = BENCH_API_KEY
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.version: str | None = None
        self.cmdline: list[str] | None = None

    def unavailable(self, ctx: Context) -> str | None:
        return None

    def start(self, upstream_url: str, ctx: Context) -> Started:
        raise NotImplementedError

    def request_headers(self, api: str) -> dict[str, str]:
        """What an official SDK would send: Bearer auth for OpenAI, x-api-key for Anthropic."""
        if api == "messages":
            return {"x-api-key": self.key, "anthropic-version": "2023-06-01"}
        return {"Authorization": f"Bearer {self.key}"}

    def exited(self) -> str | None:
        """Why the process died, if it did."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = last_lines(self.log_path) if self.log_path else ""
            return f"exited with code {self.proc.returncode}" + (f": {tail}" if tail else "")
        return None

    # helpers for subclasses
    def _spawn(self, cmd: list[str], ctx: Context, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.Popen:
        self.log_path = ctx.tmpdir / f"{self.name}.log"
        log = open(self.log_path, "ab")  # the child keeps its own copy of the fd
        cpus = ctx.target_cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                         start_new_session=True, preexec_fn=pin)
        finally:
            log.close()
        self.cmdline = cmd
        with open(self.log_path, "a") as f:
            f.write(f"# started pid {self.proc.pid}: {shlex.join(cmd)}\n")
        return self.proc

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        pids = procstat.tree(proc.pid)
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        # Anything of ours still alive after the grace (or orphaned children): SIGKILL by pid.
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class DirectTarget(Target):
    """The fake upstream itself, with no hop in front: the lower bound of every figure."""

    name = "direct"
    kind = "upstream"
    apis = frozenset({"chat", "messages", "responses"})

    def __init__(self, upstream_pid: int) -> None:
        super().__init__()
        self.upstream_pid = upstream_pid
        self.version = "bench.fake_upstream"

    def start(self, upstream_url: str, ctx: Context) -> Started:
        return Started(upstream_url.removesuffix("/v1"), self.upstream_pid)

    def stop(self) -> None:
        pass  # the runner owns the fake upstream


NGINX_CONF = """\
# Generated by bench.targets.NginxTarget: a plain reverse proxy, no logic.
worker_processes {workers};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    # Keep client and upstream connections for the whole run, as a gateway would.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream fake {{
        server {upstream};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


class NginxTarget(Target):
    """nginx as the no-logic HTTP hop, one worker by default."""

    name = "nginx"
    kind = "proxy"
    apis = frozenset({"chat", "messages", "responses"})
    start_timeout_s = 10.0

    def unavailable(self, ctx: Context) -> str | None:
        if not shutil.which("nginx"):
            return "nginx not installed (apt-get install -y nginx)"
        return None

    def start(self, upstream_url: str, ctx: Context) -> Started:
        from urllib.parse import urlsplit

        u = urlsplit(upstream_url)
        prefix = ctx.tmpdir / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=max(1, ctx.workers), prefix=prefix,
                                          upstream=f"{u.hostname}:{u.port}", port=port))
        try:
            out = _run(["nginx", "-v"], 10)
            self.version = (out.stderr or out.stdout).strip().split("/")[-1]
        except (OSError, subprocess.SubprocessError):
            pass
        proc = self._spawn(["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                           ctx)
        return Started(f"http://127.0.0.1:{port}", proc.pid)


class FloorTarget(Target):
    """The bare Python forwarder (bench/floor.py): uvloop + httptools + orjson doing the
    work of the gateway's Chat passthrough and nothing else. tokenway / floor is what the
    gateway costs over the least a Python forwarder must do."""

    name = "floor"
    kind = "proxy"
    apis = frozenset({"chat"})
    # Where tokenway's Chat passthrough runs (non-stream and stream).
    groups = frozenset({"chat", "sse", "stream_check", "paced", "translated"})
    start_timeout_s = 10.0
    note = "bench/floor.py"

    def unavailable(self, ctx: Context) -> str | None:
        try:
            out = _run([sys.executable, "-c", "import uvloop, httptools, orjson"], 30,
                       cwd=REPO_ROOT)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run python: {exc}"
        if out.returncode != 0:
            return f"needs uvloop, httptools and orjson: {out.stderr.strip()[-200:]}"
        self.version = "bench.floor"
        return None

    def start(self, upstream_url: str, ctx: Context) -> Started:
        port = free_port()
        path = os.environ.get("PYTHONPATH")
        env = {"PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else "")}
        proc = self._spawn([sys.executable, "-m", "bench.floor", "--listen",
                            f"127.0.0.1:{port}", "--upstream", upstream_url.removesuffix("/v1")],
                           ctx, env=env, cwd=REPO_ROOT)
        return Started(f"http://127.0.0.1:{port}", proc.pid)


TOKENWAY_CONFIG = """\
# Generated by bench.targets.TokenwayTarget.
{routing}
[providers.openai]
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

[providers.openai2]              # the same fake under a second name: weighted routes
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

[providers.anthropic]            # Anthropic kind: the bare host, the gateway adds /v1/messages
kind = "anthropic"
base_url = "{bare}"
api_key = "{key}"

[providers.dead]                 # a port nothing listens on: every connect is refused
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "{key}"

# The same fake under three more names, for the soak's failing requests: each fault has
# a provider of its own, so its failures (and open circuit) touch no other route.
[providers.flaky]                # answers 500 (fake model knob -e500)
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

[providers.limited]              # answers 429 with retry-after: 1 (-e429)
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

[providers.cutter]               # drops the connection midway through a stream (-x5)
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

# The passthrough path: chat (and the Anthropic client's translated path) to OpenAI.
[[routes]]
match = "gpt-*"
to = ["openai"]

# The Responses client's translated path goes to an Anthropic upstream.
[[routes]]
match = "claude-*"
to = ["anthropic"]

# Failover: the first target refuses connections, the second serves.
[[routes]]
match = "failover-*"
to = ["dead", "openai"]

# A table of five routes where the matching one comes last, its targets weighted.
[[routes]]
match = "team-a-*"
to = ["openai"]
[[routes]]
match = "team-b-*"
to = ["openai2"]
[[routes]]
match = "team-c-*"
to = ["openai", "openai2"]
[[routes]]
match = "team-d-*"
to = ["anthropic"]
[[routes]]
match = "weighted-*"
to = ["openai", "openai2"]
weights = [3, 1]

# The soak's failing requests, after the five-route table (the weighted route stays the
# last of those five). Each target renames the model to the fake's fault knob.
[[routes]]
match = "fault-500-*"
to = ["flaky:gpt-bench-e500"]
[[routes]]
match = "fault-429-*"
to = ["limited:gpt-bench-e429"]
[[routes]]
match = "fault-cut-*"
to = ["cutter:gpt-bench-n20-i2-x5"]
[[routes]]
match = "fault-dead-*"
to = ["dead"]
[[routes]]
match = "fault-failover-*"
to = ["flaky:gpt-bench-e500", "openai2:gpt-bench"]
"""


class TokenwayTarget(Target):
    """This project's gateway: `python -m proxy --listen 127.0.0.1:PORT --db PATH
    --config TMP/NAME.toml`.

    The generated config (TOKENWAY_CONFIG above) routes `gpt-*` to the fake's OpenAI side
    (passthrough for Chat clients, translated for Anthropic clients), `claude-*` to the
    fake's Anthropic side (translated for Responses clients), `failover-*` to a dead port
    then the fake, and `weighted-*` through a five-route table to two weighted targets.

    Variants (the same gateway, set up differently; each runs only its `groups`):
    `tokenway-w2` (`--workers 2`), `tokenway-keys` (TOKENWAY_API_KEYS set: the invalid-key
    flood) and `tokenway-nobreaker` (`routing.failure_threshold` so high that the dead
    target's circuit never opens, so every request pays the refused connect).
    """

    name = "tokenway"
    kind = "gateway"
    apis = frozenset({"chat", "messages", "responses"})
    start_timeout_s = 15.0
    HELP_TIMEOUT_S = 30.0

    def __init__(self, name: str = "tokenway", *, workers: int | None = None,
                 env: dict[str, str] | None = None, routing: str = "",
                 groups: frozenset[str] | None = None, checks_keys: bool = False,
                 note: str = "", module: str = "proxy") -> None:
        super().__init__()
        self.name = name
        self.module = module  # `python -m MODULE` starts it
        self.fixed_workers = workers
        self.extra_env = dict(env or {})
        self.routing = routing
        self.groups = groups
        self.checks_keys = checks_keys
        self.note = note
        self.dead_port = 0

    def command(self, port: int, db: Path, conf: Path, ctx: Context) -> list[str]:
        cmd = [sys.executable, "-m", self.module, "--listen", f"127.0.0.1:{port}", "--db",
               str(db), "--config", str(conf)]
        workers = self.fixed_workers if self.fixed_workers is not None else ctx.workers
        if workers > 1:
            cmd += ["--workers", str(workers)]
        return cmd + list(ctx.tokenway_args)

    def _env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else ""),
                "PYTHONPYCACHEPREFIX": str(BYTECODE_DIR),
                "PYTHONDONTWRITEBYTECODE": ""}  # empty: bytecode is written and read

    def unavailable(self, ctx: Context) -> str | None:
        try:
            env = dict(os.environ, **self._env())
            _run([sys.executable, "-m", "compileall", "-q", "proxy", "protocols"],
                 self.HELP_TIMEOUT_S, cwd=REPO_ROOT, env=env)
            out = _run([sys.executable, "-m", "proxy", "--help"], self.HELP_TIMEOUT_S,
                       cwd=REPO_ROOT, env=env)
        except subprocess.TimeoutExpired:
            return f"`python -m proxy --help` did not finish in {self.HELP_TIMEOUT_S:.0f} s"
        except OSError as exc:
            return f"cannot run python: {exc}"
        if out.returncode != 0:
            lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit code {out.returncode}"
            return f"`python -m proxy --help` failed: {why[:200]}"
        if "--version" in out.stdout:
            try:
                ver = _run([sys.executable, "-m", "proxy", "--version"], self.HELP_TIMEOUT_S,
                           cwd=REPO_ROOT, env=env)
                self.version = (ver.stdout or ver.stderr).strip().split()[-1] or None
            except (OSError, subprocess.SubprocessError, IndexError):
                pass
        return None

    def config_text(self, upstream_url: str) -> str:
        from urllib.parse import urlsplit

        u = urlsplit(upstream_url)
        self.dead_port = dead_port()
        routing = f"[routing]\n{self.routing}\n" if self.routing else ""
        return TOKENWAY_CONFIG.format(routing=routing, upstream=upstream_url,
                                      bare=f"{u.scheme}://{u.hostname}:{u.port}",
                                      key=BENCH_API_KEY, dead_port=self.dead_port)

    def db_path(self, ctx: Context) -> Path:
        """Its SQLite ledger (the same file across restarts)."""
        return ctx.tmpdir / f"{self.name}.db"

    def start(self, upstream_url: str, ctx: Context) -> Started:
        port = free_port()
        env = self._env()
        env.update(self.extra_env)
        env.update(ctx.tokenway_env)
        conf = ctx.tmpdir / f"{self.name}.toml"
        conf.write_text(self.config_text(upstream_url))
        proc = self._spawn(self.command(port, self.db_path(ctx), conf, ctx), ctx,
                           env=env, cwd=REPO_ROOT)
        return Started(f"http://127.0.0.1:{port}", proc.pid)

    def listening_line(self) -> str | None:
        """The `listening on http://HOST:PORT` line, once the gateway has logged it."""
        if self.log_path is None:
            return None
        try:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "listening on http://" in line:
                    return line.strip()
        except OSError:
            pass
        return None


class AccountsTarget(TokenwayTarget):
    """`tokenway-accounts`: the gateway with a stored API key (created in its ledger
    file before start) that has every kind of limit, under a user that has them too,
    and a price for every model, so each request pays the key lookup, the allow-list,
    the requests-per-minute, tokens-per-minute and budget admission of key and user,
    the remaining-quota headers, the cost of the row and the settlement. The limits
    are too large to be reached: the figure is what the accounting costs, side by side
    with `tokenway` (no key at all) in the same cells."""


    def __init__(self) -> None:
        super().__init__("tokenway-accounts", groups=frozenset({"chat"}),
                         note="stored key + user with rpm, tpm, budget; priced models")

    def config_text(self, upstream_url: str) -> str:
        return super().config_text(upstream_url) + (
            '\n[prices."*"]\ninput = 1.0\noutput = 2.0\n')

    def start(self, upstream_url: str, ctx: Context) -> Started:
        from proxy.accounts.model import MAX_BUDGET_USD, MAX_RATE, MAX_TPM, Limits
        from proxy.accounts.store import AccountStore

        if self.key == BENCH_API_KEY:  # first start of the run: create user and key
            big = Limits(models=("gpt-*", "claude-*", "failover-*", "weighted-*", "fault-*"),
                         rpm=MAX_RATE, tpm=MAX_TPM, budget_usd=MAX_BUDGET_USD,
                         budget_period="month")
            with AccountStore(str(self.db_path(ctx))) as store:
                store.add_user("bench", limits=big)
                _, self.key = store.create_key(name="bench", user="bench", limits=big)
        return super().start(upstream_url, ctx)


class SharedLimitsTarget(AccountsTarget):
    """`tokenway-accounts-redis`: `tokenway-accounts` with its counters in the Redis at
    127.0.0.1:6379 (`[limits] redis_url`, docs/fleet.md), under a key prefix of this
    run's own: side by side with `tokenway-accounts` in the same cells, the difference
    is what sharing the limits costs the gateway (Redis's own CPU is not counted)."""

    def __init__(self) -> None:
        TokenwayTarget.__init__(self, "tokenway-accounts-redis", groups=frozenset({"chat"}),
                                note="tokenway-accounts with rpm/tpm/budget in Redis")

    def config_text(self, upstream_url: str) -> str:
        return super().config_text(upstream_url) + (
            f'\n[limits]\nredis_url = "redis://127.0.0.1:6379/0"\n'
            f'key_prefix = "tokenway-bench:{os.getpid()}:"\n')


class AccessLogTarget(TokenwayTarget):
    """`tokenway-accesslog`: the gateway writing a JSON access log to a file in the
    run's temporary directory (docs/logging.md); side by side with `tokenway` (access
    log off, the default) in the same cells, the difference is what the log costs."""

    def __init__(self) -> None:
        super().__init__("tokenway-accesslog", groups=frozenset({"chat"}),
                         note="access log on (JSON lines to a file)")

    def start(self, upstream_url: str, ctx: Context) -> Started:
        self.extra_env["TOKENWAY_ACCESS_LOG"] = str(ctx.tmpdir / f"{self.name}-access.log")
        return super().start(upstream_url, ctx)


def tokenway_variants() -> list[TokenwayTarget]:
    """The gateway set up for the groups that need something the baseline must not have
    (so the baseline's figures stay comparable with earlier runs)."""
    return [
        TokenwayTarget("tokenway-w2", workers=2, groups=frozenset({"workers"}),
                       note="--workers 2"),
        TokenwayTarget("tokenway-keys", env={"TOKENWAY_API_KEYS": BENCH_API_KEY},
                       groups=frozenset({"authflood"}), checks_keys=True,
                       note="TOKENWAY_API_KEYS set"),
        TokenwayTarget("tokenway-nobreaker", routing="failure_threshold = 1000000000",
                       groups=frozenset({"routing"}),
                       note="circuit breaker never opens"),
        # The same gateway with a ledger of its own, stopped with SIGTERM after each
        # `ledger` cell (and started again) so that its rows can be counted.
        TokenwayTarget("tokenway-ledger", groups=frozenset({"ledger"}),
                       note="own ledger, SIGTERM after each cell"),
        # The same gateway with Ledger.record() a no-op (bench/noledger.py): the
        # difference in CPU per request is what the ledger costs the process.
        TokenwayTarget("tokenway-noledger", groups=frozenset({"chat"}),
                       module="bench.noledger", note="ledger record() a no-op"),
        AccountsTarget(),
        SharedLimitsTarget(),
        AccessLogTarget(),
    ]


VARIANT_NAMES = ("tokenway-w2", "tokenway-keys", "tokenway-nobreaker", "tokenway-ledger",
                 "tokenway-noledger", "tokenway-accounts", "tokenway-accounts-redis",
                 "tokenway-accesslog")


# ---------------------------------------------------------------------------
# Peers: only with --peers. Installation is cached outside the repository.
# ---------------------------------------------------------------------------

PIP_INSTALL_TIMEOUT_S = 1200.0
NPM_INSTALL_TIMEOUT_S = 600.0


class LiteLLMTarget(Target):
    """LiteLLM proxy: `litellm[proxy]` in its own venv."""

    name = "litellm"
    kind = "peer"
    peer = True
    apis = frozenset({"chat", "messages"})
    checks_keys = True  # the master key
    start_timeout_s = 120.0
    MASTER_KEY = "sk-local-bench-0123456789abcdef0123456789abcdef"

    def _venv(self, ctx: Context) -> Path:
        return ctx.cache_dir / "venv-litellm"

    def unavailable(self, ctx: Context) -> str | None:
        venv = self._venv(ctx)
        exe = venv / "bin" / "litellm"
        if not exe.exists():
            if not ctx.install:
                return f"not installed in {venv} (drop --no-install to install it)"
            ctx.say(f"installing litellm[proxy] into {venv} (a few minutes, ~750 MB)")
            try:
                venv.parent.mkdir(parents=True, exist_ok=True)
                out = _run([sys.executable, "-m", "venv", "--clear", str(venv)], 300)
                if out.returncode == 0:
                    out = _run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                               PIP_INSTALL_TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"install failed: {exc}"
            if out.returncode != 0 or not exe.exists():
                return f"install failed: {(out.stderr or out.stdout).strip()[-300:]}"
        try:
            out = _run([str(venv / "bin" / "python"), "-c",
                        "import importlib.metadata as m; print(m.version('litellm'))"], 60)
            self.version = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
        return None

    def start(self, upstream_url: str, ctx: Context) -> Started:
        port = free_port()
        lines = ["model_list:"]
        for model in ctx.models:
            lines.append(f"  - model_name: {json.dumps(model)}")
            lines.append(f"    litellm_params: {{model: {json.dumps('openai/' + model)}, "
                         f"api_base: {json.dumps(upstream_url)}, api_key: {BENCH_API_KEY}}}")
        lines += ["litellm_settings: {telemetry: false, drop_params: true, "
                  "set_verbose: false, json_logs: false}",
                  "general_settings:", f"  master_key: {self.MASTER_KEY}"]
        conf = ctx.tmpdir / "litellm-config.yaml"
        conf.write_text("\n".join(lines) + "\n")
        env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_ADMIN_UI": "True",
               "NO_DOCS": "True", "NO_REDOC": "True"}
        cmd = [str(self._venv(ctx) / "bin" / "litellm"), "--config", str(conf),
               "--host", "127.0.0.1", "--port", str(port)]
        if ctx.workers > 1:
            cmd += ["--num_workers", str(ctx.workers)]
        self.key = self.MASTER_KEY
        proc = self._spawn(cmd, ctx, env=env, cwd=ctx.tmpdir)
        return Started(f"http://127.0.0.1:{port}", proc.pid)


class _NpmPeer(Target):
    """A peer installed with npm into its own cache folder."""

    package = ""
    overrides: dict[str, str] = {}
    folder = ""

    def _dir(self, ctx: Context) -> Path:
        return ctx.cache_dir / self.folder

    def _installed(self, ctx: Context) -> Path:
        return self._dir(ctx) / "node_modules" / self.package.rsplit("@", 1)[0] / "package.json"

    def unavailable(self, ctx: Context) -> str | None:
        if not shutil.which("node") or not shutil.which("npm"):
            return "node/npm not installed"
        marker = self._installed(ctx)
        if not marker.exists():
            if not ctx.install:
                return f"not installed in {self._dir(ctx)} (drop --no-install to install it)"
            name, version = self.package.rsplit("@", 1)
            ctx.say(f"installing {self.package} with npm into {self._dir(ctx)}")
            d = self._dir(ctx)
            d.mkdir(parents=True, exist_ok=True)
            pkg = {"name": f"bench-{self.folder}", "private": True,
                   "dependencies": {name: version}}
            if self.overrides:
                pkg["overrides"] = self.overrides
            (d / "package.json").write_text(json.dumps(pkg, indent=2) + "\n")
            try:
                out = _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           NPM_INSTALL_TIMEOUT_S, cwd=d)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"npm install failed: {exc}"
            if out.returncode != 0 or not marker.exists():
                return f"npm install failed: {(out.stderr or out.stdout).strip()[-300:]}"
        try:
            self.version = json.loads(marker.read_text()).get("version")
        except (OSError, ValueError):
            pass
        return None


# A `node -r` preload: give every listen() without a host 127.0.0.1 (Portkey binds all
# interfaces and has no flag for it).
LOOPBACK_PRELOAD_JS = """\
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 && typeof a0 === 'object' && !Array.isArray(a0)) {
    if (!a0.host && a0.path === undefined) args[0] = Object.assign({}, a0, {host: '127.0.0.1'});
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\\d+$/.test(a0))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
"""


class PortkeyTarget(_NpmPeer):
    """Portkey gateway 1.15.2 with @hono/node-server pinned."""

    name = "portkey"
    kind = "peer"
    peer = True
    apis = frozenset({"chat", "messages"})
    upstream_url = ""
    package = "@portkey-ai/gateway@1.15.2"
    overrides = {"@hono/node-server": "1.13.5"}
    folder = "portkey"

    def start(self, upstream_url: str, ctx: Context) -> Started:
        d = self._dir(ctx)
        preload = d / "loopback.cjs"
        preload.write_text(LOOPBACK_PRELOAD_JS)
        port = free_port()
        script = d / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        self.upstream_url = upstream_url
        proc = self._spawn(["node", "-r", str(preload), str(script), f"--port={port}",
                            "--headless"], ctx, env={"NODE_ENV": "production"}, cwd=d)
        return Started(f"http://127.0.0.1:{port}", proc.pid)

    def request_headers(self, api: str) -> dict[str, str]:
        # No config file: the provider and the custom host ride on every request.
        provider = "anthropic" if api == "messages" else "openai"
        return {**super().request_headers(api), "x-portkey-provider": provider,
                "x-portkey-custom-host": self.upstream_url}


class CCRTarget(_NpmPeer):
    """claude-code-router 2.0.0: Anthropic in, OpenAI out."""

    name = "ccr"
    kind = "peer"
    peer = True
    apis = frozenset({"messages"})
    package = "@musistudio/claude-code-router@2.0.0"
    folder = "ccr"

    def start(self, upstream_url: str, ctx: Context) -> Started:
        home = ctx.tmpdir / "ccrhome"
        (home / ".claude-code-router").mkdir(parents=True, exist_ok=True)
        port = free_port()
        model = ctx.models[0]
        config = {
            "LOG": False, "LOG_LEVEL": "error", "HOST": "127.0.0.1", "PORT": port,
            "API_TIMEOUT_MS": 60000, "NON_INTERACTIVE_MODE": True,
            "Providers": [{"name": "fake", "api_base_url": upstream_url + "/chat/completions",
                           "api_key": BENCH_API_KEY, "models": ctx.models}],
            "Router": {"default": f"fake,{model}"},
        }
        (home / ".claude-code-router" / "config.json").write_text(json.dumps(config, indent=2))
        package = self._dir(ctx) / "node_modules" / "@musistudio" / "claude-code-router"
        cli = package / "dist" / "cli.js"
        proc = self._spawn(["node", str(cli), "start"], ctx, env={"HOME": str(home)},
                           cwd=self._dir(ctx))
        return Started(f"http://127.0.0.1:{port}", proc.pid)


PEER_CLASSES: dict[str, type[Target]] = {
    "litellm": LiteLLMTarget,
    "portkey": PortkeyTarget,
    "ccr": CCRTarget,
}
CORE_NAMES = ("direct", "nginx", "floor", "tokenway")
# Started with tokenway when a selected group needs them (or when named in --only).
ALL_NAMES = CORE_NAMES + VARIANT_NAMES
