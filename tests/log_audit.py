"""Every gateway log line the test suite sees, searched for secrets at its end.

The gateway must never log an API key, an ``Authorization`` value or prompt
text (docs/logging.md).  Each place the suite starts a gateway feeds this
audit what that gateway wrote and the secrets it was given:

* in-process gateways (``tests/conftest.py`` RunningGateway): every record of
  the ``tokenway`` loggers, through ``CaptureHandler``, and their log files;
* ``gatewayd`` subprocesses: each stderr line their harness reads (``text``),
  and their log files (``file``, read at the end with the rotated ``FILE.N``);
* secrets: the gateway and provider keys of each configuration or
  environment (``secret``, ``secrets_of_env``), plus the shapes no test has to
  name: ``tw-`` keys (proxy/accounts/keys.py), ``sk-`` provider keys and
  ``Bearer`` tokens.

``tests/conftest.py`` fails the session when ``leaks()`` finds anything; the
test of the audit itself (tests/test_log_audit.py) uses a fresh ``LogAudit``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Shapes of secrets: a gateway key (tw- + 43 base64url characters), a provider
# key as OpenAI and Anthropic write them (sk-...), a bearer token (not a shell
# variable as in the startup summary's example command).
PATTERNS = (
    re.compile(r"\btw-[A-Za-z0-9_-]{43}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]+"),
    re.compile(r"(?i)\bbearer\s+(?!\$)[A-Za-z0-9._~+/-]{8,}"),
)
# Shorter explicit secrets ("k", "k1") would match ordinary words.
MIN_SECRET_CHARS = 8
# Variables whose values are secrets.
_SECRET_ENV = re.compile(r"API_KEYS?$|_KEYS$|_TOKEN$|SECRET")
# Most bytes of text kept: the suite logs a few MB; beyond this, scan and forget.
MAX_KEPT_CHARS = 64 << 20


class LogAudit:
    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []  # (where, text)
        self.files: set[str] = set()
        self.found: list[str] = []
        self._kept = 0

    def secret(self, value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
            self.secrets.add(value)

    def secrets_of_env(self, env: Mapping[str, str]) -> None:
        """The keys in an environment given to a gateway (TOKENWAY_API_KEYS, ..._API_KEY)."""
        for name, value in env.items():
            if _SECRET_ENV.search(name):
                for part in value.split(","):
                    self.secret(part.strip())

    def secrets_of_config(self, config: object) -> None:
        """The gateway keys and provider keys of a loaded ``Config``."""
        for key in getattr(getattr(config, "auth", None), "keys", ()):
            self.secret(key)
        for provider in getattr(config, "providers", {}).values():
            self.secret(provider.api_key)
            for _, value in provider.headers:
                self.secret(value)

    def text(self, where: str, text: str) -> None:
        if self._kept + len(text) > MAX_KEPT_CHARS:
            self.found += self._scan(where, text)
            return
        self._kept += len(text)
        self.texts.append((where, text))

    def file(self, path: str | os.PathLike[str]) -> None:
        """A log file to read at the end (with its rotated FILE.N siblings)."""
        self.files.add(str(path))

    def leaks(self) -> list[str]:
        """One line per secret found: where, and the line it is in (secret masked)."""
        found = list(self.found)
        for where, text in self.texts:
            found += self._scan(where, text)
        for path in sorted(self.files):
            base = Path(path)
            candidates = [base, *sorted(base.parent.glob(base.name + ".*"))] \
                if base.parent.is_dir() else []
            for p in candidates:
                if p.is_file():
                    found += self._scan(str(p), p.read_text("utf-8", "replace"))
        return found

    def _scan(self, where: str, text: str) -> list[str]:
        patterns = list(PATTERNS)
        if self.secrets:
            patterns.append(re.compile("|".join(
                re.escape(s) for s in sorted(self.secrets, key=len, reverse=True))))
        out = []
        for line in text.splitlines():
            for pattern in patterns:
                m = pattern.search(line)
                if m:
                    masked = line.replace(m.group(0), m.group(0)[:4] + "...")
                    out.append(f"{where}: {masked[:300]}")
                    break
        return out


class CaptureHandler(logging.Handler):
    """Feeds every record of the logger it is attached to into an audit."""

    def __init__(self, audit: LogAudit) -> None:
        super().__init__(logging.DEBUG)
        self.audit = audit
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.audit.text("in-process log", self.format(record))
        except Exception:
            self.handleError(record)



# The suite's audit: the harnesses feed it, tests/conftest.py checks it.
AUDIT = LogAudit()


class AuditedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A ``gatewayd`` process whose stderr, when read with ``communicate``, is audited
    (harnesses that read it line by line feed ``AUDIT.text`` themselves)."""

    def communicate(self, *args: Any, **kw: Any) -> Any:
        out, err = super().communicate(*args, **kw)
        if err:
            AUDIT.text(f"gatewayd {self.pid} stderr", err if isinstance(err, str)
                       else err.decode("utf-8", "replace"))
        return out, err
