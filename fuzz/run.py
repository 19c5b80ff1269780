"""Long fuzzing runs over the ``fuzz/<target>.py`` harnesses.

    python -m fuzz.run sse --seconds 60      # Hypothesis, always available
    python -m fuzz.run sse --atheris --seconds 600   # libFuzzer, needs atheris
    python -m fuzz.run --seconds 30          # every target in turn

The Hypothesis mode first replays ``fuzz/corpus/<target>/``, then draws inputs from
the target's ``strategy()`` (plain bytes if it has none) mixed with mutations and
splices of the seeds. A failing input is shrunk by Hypothesis and written to
``fuzz/corpus/<target>/crash-<sha1>``, so the normal test run replays it from then
on (tests/test_fuzz_corpus.py). Exit status: 0 clean, 1 crash found.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
# Examples per Hypothesis run; the loop starts new runs until time is up. Small
# enough that a run ends within a few seconds of the requested duration.
BATCH_EXAMPLES = 500
_NOT_TARGETS = {"__init__", "run"}


def discover_targets() -> list[str]:
    """Every ``fuzz/<name>.py`` except this runner and the package file."""
    return sorted(p.stem for p in FUZZ_DIR.glob("*.py") if p.stem not in _NOT_TARGETS)


def load_target(name: str) -> ModuleType:
    module = importlib.import_module(f"fuzz.{name}")
    if not callable(getattr(module, "check", None)):
        raise SystemExit(f"fuzz/{name}.py has no check(data) function")
    return module


def load_seeds(name: str) -> list[bytes]:
    folder = CORPUS_DIR / name
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def save_crasher(name: str, data: bytes) -> Path:
    folder = CORPUS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def _mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(seed)
    for pos, width, insert in edits:
        at = pos % (len(out) + 1)
        out[at : at + width] = insert
    return bytes(out)


def _strategy(module: ModuleType, seeds: list[bytes]) -> Any:
    from hypothesis import strategies as st

    if hasattr(module, "strategy"):
        base = module.strategy()
    else:
        base = st.binary(max_size=4096)
    if not seeds:
        return base
    seed = st.sampled_from(seeds)
    edits = st.lists(
        st.tuples(st.integers(0, 1 << 16), st.integers(0, 8), st.binary(max_size=8)),
        max_size=8,
    )
    mutated = st.builds(_mutate, seed, edits)
    spliced = st.builds(
        lambda a, b, cut: a[: cut % (len(a) + 1)] + b,
        seed,
        seed,
        st.integers(0, 1 << 16),
    )
    return st.one_of(base, mutated, spliced)


def run_hypothesis(name: str, seconds: float, save: bool) -> int:
    from hypothesis import HealthCheck, given, settings

    module = load_target(name)
    seeds = load_seeds(name)
    for data in seeds:
        module.check(data)
    print(f"{name}: replayed {len(seeds)} corpus files")

    last: list[bytes] = [b""]
    count = [0]

    @settings(
        max_examples=BATCH_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_strategy(module, seeds))
    def one(data: bytes) -> None:
        last[0] = data
        count[0] += 1
        module.check(data)

    stop = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < stop:
        runs += 1
        try:
            one()
        except KeyboardInterrupt:
            break
        except Exception as exc:
            # Hypothesis replays the shrunk example last, so `last` holds it.
            print(f"{name}: FAILED after {count[0]} inputs: {exc!r}", file=sys.stderr)
            print(f"{name}: input {last[0]!r}", file=sys.stderr)
            if save:
                print(f"{name}: saved {save_crasher(name, last[0])}", file=sys.stderr)
            return 1
    print(f"{name}: {count[0]} inputs in {runs} runs, no failures")
    return 0


def run_atheris(name: str, seconds: float, extra: list[str]) -> int:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        print("atheris is not installed; use the Hypothesis mode", file=sys.stderr)
        return 2
    with atheris.instrument_imports():
        module = load_target(name)
    corpus = CORPUS_DIR / name
    # libFuzzer adds new inputs to the first corpus folder: keep those out of the
    # tree and put only crashers (artifacts) in corpus/.
    scratch = tempfile.mkdtemp(prefix=f"fuzz-{name}-")
    argv = [
        sys.argv[0],
        scratch,
        str(corpus),
        f"-max_total_time={int(seconds)}",
        f"-artifact_prefix={corpus}/",
        *extra,
    ]
    atheris.Setup(argv, module.check)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("targets", nargs="*", help="fuzz targets (default: all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--atheris", action="store_true", help="use atheris/libFuzzer")
    parser.add_argument(
        "--no-save", action="store_true", help="do not write crashers to corpus/"
    )
    args, extra = parser.parse_known_args(argv)
    targets = args.targets or discover_targets()
    unknown = sorted(set(targets) - set(discover_targets()))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    status = 0
    for name in targets:
        if args.atheris:
            status |= run_atheris(name, args.seconds, extra)
        else:
            status |= run_hypothesis(name, args.seconds, save=not args.no_save)
    return status


if __name__ == "__main__":
    sys.exit(main())
