"""Replay every fuzz corpus file through its harness (the envoy regression model).

Targets are found by folder name: ``fuzz/corpus/<target>/*`` goes through
``fuzz/<target>.py``'s ``check(data)``. A new harness with a corpus folder is picked
up without touching this file. See fuzz/README.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
CORPUS_DIR = FUZZ_DIR / "corpus"
NOT_HARNESSES = {"__init__", "run"}


def corpus_targets() -> list[str]:
    if not CORPUS_DIR.is_dir():
        return []
    return sorted(p.name for p in CORPUS_DIR.iterdir() if p.is_dir())


def harness_names() -> list[str]:
    return sorted(p.stem for p in FUZZ_DIR.glob("*.py") if p.stem not in NOT_HARNESSES)


def corpus_files() -> list[tuple[str, Path]]:
    return [
        (target, path)
        for target in corpus_targets()
        for path in sorted((CORPUS_DIR / target).iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]


def load_harness(target: str) -> ModuleType:
    module = importlib.import_module(f"fuzz.{target}")
    assert callable(getattr(module, "check", None)), f"fuzz/{target}.py lacks check()"
    return module


@pytest.mark.parametrize(
    "target, path",
    [pytest.param(t, p, id=f"{t}/{p.name}") for t, p in corpus_files()],
)
def test_corpus_file(target: str, path: Path) -> None:
    load_harness(target).check(path.read_bytes())


@pytest.mark.parametrize("target", corpus_targets())
def test_every_corpus_folder_has_a_harness(target: str) -> None:
    assert (FUZZ_DIR / f"{target}.py").is_file(), (
        f"corpus/{target}/ has no fuzz/{target}.py"
    )
    load_harness(target)


@pytest.mark.parametrize("target", harness_names())
def test_every_harness_has_seeds(target: str) -> None:
    folder = CORPUS_DIR / target
    assert folder.is_dir() and any(folder.iterdir()), (
        f"fuzz/{target}.py has no corpus/{target}/"
    )
