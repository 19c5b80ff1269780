"""Real agent CLIs (Claude Code, Codex CLI) driven through one tool loop.

The CLIs are installed by ``tools/install_agents.sh`` into a cache folder outside the
repository (``$TOKENWAY_AGENTS_DIR``, default ``~/.cache/tokenway-agents``). The
``agent_bins`` fixture runs it once per module: the module is skipped when ``npm`` is
not installed at all, and fails when npm is there but the install does not work.

``run_claude_code`` / ``run_codex`` run a CLI headless against a base URL, each in
its own HOME / CODEX_HOME and work dir, stdin from /dev/null, bounded by a timeout.
``check_direct(client, root)`` points a CLI straight at a scripted fake of its own
protocol (no gateway), which validates the harness itself::

    /work/venv/bin/python -c "from pathlib import Path; import tempfile; \
from tests.agents.conftest import check_direct; \
print(check_direct('claude', Path(tempfile.mkdtemp())))"
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents.scripted import (
    FINAL,
    SIDE,
    TOOL_CALL,
    ScriptedProvider,
    start_scripted,
    tool_calls,
    tool_results,
)
from tests.integration.upstreams import FakeUpstream

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "tools" / "install_agents.sh"

CLAUDE_CODE_VERSION = "2.1.332"
CODEX_VERSION = "0.171.0"

RUN_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0

CREATED_FILE = "created_by_tool.txt"
PROMPT = f"Create the file {CREATED_FILE} in the current directory, then reply DONE."
CLIENT_API_KEY = "client-key-not-for-upstream"
CODEX_MODEL = "gateway-test-model"

# Variables of the calling environment that would change what the CLIs do or where
# they send requests; the runs start from the environment without them.
_DROPPED_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "CLAUDECODE", "OPENAI_", "CODEX_",
                         "AZURE_OPENAI", "AWS_", "GOOGLE_", "VERTEX", "TOKENWAY_",
                         "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NODE_OPTIONS")


# --- installing -------------------------------------------------------------------


@dataclass(frozen=True)
class AgentBins:
    claude: Path
    codex: Path


def install_agents() -> AgentBins:
    """Run tools/install_agents.sh (idempotent) and return the two binary paths.

    Raises RuntimeError with the script's output when it fails."""
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT} failed with exit code {proc.returncode}:\n"
                           f"{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
    paths = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        bins = AgentBins(Path(paths["CLAUDE_BIN"]), Path(paths["CODEX_BIN"]))
    except KeyError:
        raise RuntimeError(f"{INSTALL_SCRIPT} printed no binary paths:\n{proc.stdout}"
                           ) from None
    for b in (bins.claude, bins.codex):
        if not os.access(b, os.X_OK):
            raise RuntimeError(f"{INSTALL_SCRIPT} reported {b}, which is not executable")
    return bins


@pytest.fixture(scope="module")
def agent_bins() -> AgentBins:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the agent CLIs (Claude Code, Codex CLI) come "
                    "from npm; install Node.js 20+ with npm to run tests/agents")
    try:
        return install_agents()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"installing the agent CLIs failed (npm is present, so this is an "
                    f"error, not a skip):\n{exc}", pytrace=False)


# --- running the clients ----------------------------------------------------------


@dataclass
class ClientRun:
    client: str
    argv: list[str]
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float
    workdir: Path
    final_text: str | None  # the answer the client reports as final
    result: dict | None = None  # Claude Code: the --output-format json object

    def describe(self) -> str:
        status = ""
        if self.result and self.result.get("api_error_status"):
            # Claude Code words some statuses as something else (a 404 becomes
            # "There's an issue with the selected model"): show the status itself
            status = f" api_error_status={self.result['api_error_status']}"
        return (f"{self.client} exit={self.returncode} after {self.seconds:.1f}s{status}\n"
                f"final={self.final_text!r}\n--- stdout ---\n{self.stdout[-3000:]}\n"
                f"--- stderr ---\n{self.stderr[-3000:]}")


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    # scratch files the CLIs write besides HOME (Claude Code: $TMPDIR/claude-<uid>/,
    # Codex: $TMPDIR/codex-*) stay inside the test's folder
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "TMPDIR": str(tmp), "NO_COLOR": "1", "TERM": "dumb",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


def _run(client: str, argv: list[str], env: dict[str, str], cwd: Path,
         timeout_s: float) -> tuple[int | None, str, str, float]:
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        # the CLI and everything it started (tool shells) share its process group
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
        err += f"\n[{client} killed after {timeout_s:.0f} s]"
    return rc, out, err, time.monotonic() - start


def run_claude_code(claude: Path, base_url: str, root: Path, *, prompt: str = PROMPT,
                    extra_args: tuple[str, ...] = (), timeout_s: float = RUN_TIMEOUT_S
                    ) -> ClientRun:
    """``claude -p`` in default mode against ``ANTHROPIC_BASE_URL=base_url``.

    HOME is ``root/home-cc``, the work dir ``root/work-cc``."""
    home, work = root / "home-cc", root / "work-cc"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = _base_env(home)
    env.update({
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": CLIENT_API_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # a broken stream must fail, not be papered over by a non-streaming retry
        "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
    })
    argv = [str(claude), "-p", prompt, "--output-format", "json", "--max-turns", "4",
            "--allowedTools", "Bash(touch:*)", *extra_args]
    rc, out, err, secs = _run("claude", argv, env, work, timeout_s)
    result = None
    for line in reversed(out.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "result":
            result = obj
            break
    final = result.get("result") if result else None
    return ClientRun("claude", argv, rc, out, err, secs, work, final, result)


def codex_config(base_url: str, model: str = CODEX_MODEL, *, default_tools: bool = False) -> str:
    """A lean Codex config: one Responses provider at ``base_url``, nothing else; with
    ``default_tools`` Codex keeps its default tool set (web search and tool search
    included), as a user's Codex does."""
    web_search = "" if default_tools else 'web_search = "disabled"\n'
    features = "" if default_tools else """
[features]
goals = false
plugins = false
apps = false
remote_plugin = false
image_generation = false
"""
    return f"""\
model = "{model}"
model_provider = "gateway"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false
{web_search}
[model_providers.gateway]
name = "Local LLM gateway"
base_url = "{base_url}"
env_key = "GATEWAY_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 30000

[agents]
enabled = false

[analytics]
enabled = false

[feedback]
enabled = false
""" + features


def run_codex(codex: Path, base_url: str, root: Path, *, prompt: str = PROMPT,
              model: str = CODEX_MODEL, extra_args: tuple[str, ...] = (),
              timeout_s: float = RUN_TIMEOUT_S, default_tools: bool = False) -> ClientRun:
    """``codex exec`` with a private CODEX_HOME whose provider's base_url is
    ``base_url`` (ending in ``/v1``); the final message is read from ``-o FILE``."""
    home, codex_home, work = root / "home-cx", root / "codex-home", root / "work-cx"
    for d in (home, codex_home, work):
        d.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url, model,
                                                         default_tools=default_tools))
    last = root / "codex-last-message.txt"
    env = _base_env(home)
    env.update({"CODEX_HOME": str(codex_home), "GATEWAY_API_KEY": CLIENT_API_KEY})
    argv = [str(codex), "exec", "--skip-git-repo-check", "--strict-config",
            "-o", str(last), *extra_args, prompt]
    rc, out, err, secs = _run("codex", argv, env, work, timeout_s)
    final = last.read_text().strip() if last.exists() else None
    return ClientRun("codex", argv, rc, out, err, secs, work, final)


# --- checks -----------------------------------------------------------------------


def assert_client_succeeded(run: ClientRun) -> None:
    assert run.returncode == 0, run.describe()
    assert (run.workdir / CREATED_FILE).is_file(), (
        f"the tool call did not create {CREATED_FILE}\n{run.describe()}")
    assert run.final_text == "DONE", run.describe()
    if run.result is not None:  # Claude Code's JSON result
        assert run.result.get("is_error") is False, run.describe()
        assert run.result.get("subtype") == "success", run.describe()
        assert run.result.get("num_turns") == 2, run.describe()
        assert run.result.get("permission_denials") == [], run.describe()


def assert_tool_loop(scripted: ScriptedProvider, tool: str, run: ClientRun) -> None:
    """The fake saw exactly the two model turns of one tool loop, both streamed; the
    second carried the tool's result for the call the first one issued."""
    kinds = scripted.kinds()
    turns = [e for e in scripted.model_turns() if e.kind != SIDE]
    assert [e.kind for e in turns] == [TOOL_CALL, FINAL], (
        f"{scripted.wire} fake answered {kinds}\n{run.describe()}")
    first, second = turns
    assert first.tool == tool, kinds
    for e in turns:
        assert e.stream is True, f"non-streaming model request reached the fake: {e.path}"
        assert e.body().get("tools"), "a model turn arrived without the client's tools"
    body = second.body()
    calls = tool_calls(scripted.wire, body)
    results = tool_results(scripted.wire, body)
    assert len(results) == 1, results
    [(result_id, output)] = results
    if tool == "exec_command":  # Codex reports the command's exit status in the output
        assert "exited with code 0" in output, output
    matching = [c for c in calls if c[0] == result_id]
    assert matching, f"tool result {result_id!r} answers no tool call in {calls}"
    [(_, name, args)] = matching
    assert name == tool, calls
    assert args == first.arguments, (args, first.arguments)
    if scripted.wire == "anthropic":
        for msg in body["messages"]:
            for block in msg.get("content") if isinstance(msg.get("content"), list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    assert not block.get("is_error"), block


def assert_upstream_auth(upstream: FakeUpstream, header: str, value: str) -> None:
    """Every request reaching the fake carried the provider key, never the client's."""
    for req in upstream.requests:
        assert req.headers.get(header) == value, (req.path, req.headers)
        assert CLIENT_API_KEY not in " ".join(req.headers.values()), req.headers


def assert_ledger(gw: Any, endpoint: str, provider: str, n: int = 2) -> list[dict]:
    """``n`` ledger rows for ``endpoint``: status 200, streamed, with token counts."""
    rows = [r for r in gw.wait_rows(n) if (r["endpoint"] or "").startswith(endpoint)]
    assert len(rows) == n, rows
    for row in rows:
        assert row["status"] == 200 and row["error_kind"] is None, row
        assert row["provider"] == provider, row
        assert row["stream"] is True, row
        assert row["input_tokens"] and row["input_tokens"] > 0, row
        assert row["output_tokens"] and row["output_tokens"] > 0, row
    return rows


# --- direct runs (no gateway): validates the harness --------------------------------


def check_direct(client: str, root: Path, bins: AgentBins | None = None) -> dict:
    """Point ``client`` ("claude" or "codex") straight at a scripted fake of its own
    protocol and run the same client and fake checks as the gateway tests."""
    bins = bins or install_agents()
    wire = "anthropic" if client == "claude" else "responses"
    up = start_scripted(wire)
    try:
        if client == "claude":
            run = run_claude_code(bins.claude, f"http://127.0.0.1:{up.port}", root)
            tool = "Bash"
        else:
            run = run_codex(bins.codex, up.base_url, root)
            tool = "exec_command"
        assert_client_succeeded(run)
        assert_tool_loop(up.scripted, tool, run)  # type: ignore[attr-defined]
        return {"client": client, "seconds": round(run.seconds, 2),
                "exchanges": up.scripted.kinds(),  # type: ignore[attr-defined]
                "paths": [r.path for r in up.requests]}
    finally:
        up.stop()


@pytest.fixture
def scripted_upstream() -> Iterator[Any]:
    """``scripted_upstream(wire)`` starts a scripted fake; all are stopped at the end."""
    started: list[FakeUpstream] = []

    def start(wire: str, **kw: Any) -> FakeUpstream:
        up = start_scripted(wire, **kw)
        started.append(up)
        return up

    yield start
    for up in started:
        up.stop()
