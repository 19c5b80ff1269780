"""THREAT_MODEL.md names the test that covers each threat: every name must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def test_every_test_named_in_the_threat_model_exists() -> None:
    text = (ROOT / "THREAT_MODEL.md").read_text()
    missing = []
    checked = 0
    current = None  # a bare ``::name`` refers to the file named last
    for line in text.splitlines():
        for path, name in REF.findall(line):
            if path:
                current = path
                if not (ROOT / path).exists():
                    missing.append(path)
                    continue
            if name:
                if current is None or not re.search(
                        rf"^(async )?def {name}\(", (ROOT / current).read_text(), re.M):
                    missing.append(f"{current}::{name}")
                checked += 1
    assert checked > 20 and not missing, missing
