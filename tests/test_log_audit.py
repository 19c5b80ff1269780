"""The log audit (tests/log_audit.py) finds what it must: a fresh audit, fed
planted secrets, reports each; clean lines pass.  The suite's own audit is
checked by tests/conftest.py at the end of the session."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.accounts.keys import new_key
from tests.log_audit import CaptureHandler, LogAudit

REPO = Path(__file__).resolve().parents[1]


def test_planted_secrets_are_found_wherever_they_were_logged(tmp_path: Path) -> None:
    audit = LogAudit()
    audit.secret("static-gateway-key-1")
    audit.secrets_of_env({"TOKENWAY_API_KEYS": "gw-secret-a, gw-secret-b",
                          "TOKENWAY_LISTEN": "127.0.0.1:9999"})
    audit.text("stderr", "2026-01-01T00:00:00.000Z INFO tokenway: listening on http://x\n")
    audit.text("stderr", "WARNING tokenway.call: POST /v1/x -> 401 bad key static-gateway-key-1\n")
    audit.text("stderr", f"created {new_key()}\n")
    audit.text("stderr", "upstream said: invalid key sk-proj-abc123\n")
    audit.text("stderr", "headers: authorization: Bearer abcdefgh12345678\n")
    audit.text("stderr", "x gw-secret-b y\n")
    log = tmp_path / "access.log"
    log.write_text('{"status":200}\n')
    (tmp_path / "access.log.2").write_text('{"key":"gw-secret-a"}\n')
    audit.file(log)
    leaks = audit.leaks()
    assert len(leaks) == 6, leaks
    assert all("static-gateway-key-1" not in leak and "gw-secret" not in leak
               for leak in leaks)  # the report masks what it found
    assert any(leak.startswith(str(tmp_path / "access.log.2")) for leak in leaks)


def test_clean_lines_and_the_startup_example_pass(tmp_path: Path) -> None:
    audit = LogAudit()
    audit.secret("k1")  # too short to search for: it would match ordinary words
    audit.text("stderr", "INFO tokenway:   try: curl ... -H \"authorization: Bearer "
                         "$TOKENWAY_KEY\"\n")
    audit.text("stderr", "WARNING tokenway.call: POST /v1/chat/completions -> 401 missing "
                         "gateway API key request_id=req_1 key_0123 disk-full risk-k1\n")
    assert audit.leaks() == []


def test_the_capture_handler_feeds_log_records() -> None:
    audit = LogAudit()
    logger = logging.getLogger("tests.log_audit_selftest")  # not the suite's audited logger
    handler = CaptureHandler(audit)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("provider key %s in a message", "sk-planted-for-the-test")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    [leak] = audit.leaks()
    assert leak.startswith("in-process log: ") and "sk-planted" not in leak


def test_a_session_that_logged_a_secret_fails(tmp_path: Path) -> None:
    """The whole path: a pytest session with this suite's conftest, one passing test
    whose gateway logger writes a provider key, ends failed with the report."""
    planted = tmp_path / "test_planted.py"
    planted.write_text(
        "import logging\n\n\n"
        "def test_logs_a_key():\n"
        "    logging.getLogger('tokenway.call').warning('upstream: sk-planted-key-123')\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(planted)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "secrets in gateway logs" in run.stdout
    assert "in-process log: tokenway.call WARNING upstream: sk-p..." in run.stdout
    assert "sk-planted-key-123" not in run.stdout
