"""Long fuzzing runs over the ``fuzz/<target>.py`` harnesses.

    python -m fuzz.run sse --seconds 60              # Hypothesis, always available
    python -m fuzz.run sse --atheris --seconds 300   # atheris/libFuzzer (the fuzz extra)
    python -m fuzz.run --runs 20000                  # every target in turn, by count
    python -m fuzz.run http1 --atheris --save        # keep what the run found

Both modes take ``fuzz/corpus/<target>/`` as their seeds and write nothing there
unless ``--save`` is given. The Hypothesis mode replays the corpus, then draws inputs
from the target's ``strategy()`` (plain bytes if it has none) mixed with mutations
and splices of the seeds; a failing input is shrunk by Hypothesis and, with
``--save``, written to ``corpus/<target>/crash-<sha1>``. The atheris mode runs
libFuzzer in a child process with every loaded module instrumented for coverage;
its new inputs go to a scratch folder, and ``--save`` merges those that add
coverage into the corpus and stores each crasher there, minimised. Arguments it
does not know go to libFuzzer. Exit status: 0 clean, 1 failure found, 2 no atheris.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import re
import subprocess
import sys
import tempfile
import time
import traceback
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


def run_hypothesis(name: str, seconds: float, runs: int | None, save: bool) -> int:
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
    batches = 0
    while time.monotonic() < stop if runs is None else count[0] < runs:
        batches += 1
        try:
            one()
        except KeyboardInterrupt:
            break
        except Exception as exc:
            # Hypothesis replays the shrunk example last, so `last` holds it.
            traceback.print_exception(exc)
            print(f"{name}: FAILED after {count[0]} inputs: {exc!r}", file=sys.stderr)
            print(f"{name}: input {last[0]!r}", file=sys.stderr)
            if save:
                print(f"{name}: saved {save_crasher(name, last[0])}", file=sys.stderr)
            else:
                print(f"{name}: not saved (--save keeps it in corpus/{name}/)",
                      file=sys.stderr)
            return 1
    print(f"{name}: {count[0]} inputs in {batches} runs, no failures")
    return 0


#: libFuzzer's defaults for our harnesses: inputs of a few KiB at most (the corpus
#: keeps seeds that small), an input that runs 30 s is a hang, final statistics on.
ATHERIS_DEFAULTS = ("-max_len=4096", "-timeout=30", "-print_final_stats=1")
#: How long ``--save`` lets libFuzzer minimise a crashing input before storing it.
MINIMISE_SECONDS = 60


def _atheris_worker(name: str, libfuzzer_args: list[str]) -> int:
    """Run in a child process: libFuzzer ends the process when it is done."""
    import atheris  # type: ignore[import-not-found]

    module = load_target(name)
    # Everything the harness imported (protocols/, proxy/, h11...) is instrumented
    # for coverage: an import hook would miss modules the fuzz package loaded first.
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *libfuzzer_args], module.check)
    atheris.Fuzz()
    return 0


def _libfuzzer(name: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fuzz.run", "--atheris-worker", name, "--", *args]
    proc = subprocess.run(cmd, cwd=FUZZ_DIR.parent, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "")
    return proc


def _stat(output: str, key: str) -> str:
    m = re.search(rf"^stat::{key}:\s*(\d+)", output, re.M)
    return m.group(1) if m else "?"


def run_atheris(name: str, seconds: float, runs: int | None, save: bool,
                extra: list[str]) -> int:
    """Fuzz ``name`` under atheris/libFuzzer, its corpus as seeds. New inputs go to a
    scratch folder; ``save`` merges those that add coverage into ``corpus/<name>/``
    and stores each crasher there, minimised."""
    try:
        import atheris  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install -e '.[fuzz]'); "
              "use the Hypothesis mode", file=sys.stderr)
        return 2
    corpus = CORPUS_DIR / name
    scratch = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    found, artifacts = scratch / "new", scratch / "artifacts"
    found.mkdir()
    artifacts.mkdir()
    limit = f"-runs={runs}" if runs is not None else f"-max_total_time={int(seconds)}"
    args = [*ATHERIS_DEFAULTS, limit, f"-artifact_prefix={artifacts}/", *extra,
            str(found), str(corpus)]
    proc = _libfuzzer(name, args)
    out = proc.stderr
    print(f"{name}: {_stat(out, 'number_of_executed_units')} executions in "
          f"{_stat(out, 'average_exec_per_sec')}/s, peak RSS {_stat(out, 'peak_rss_mb')} MB, "
          f"{len(list(found.iterdir()))} new inputs in {found}")
    crashes = sorted(artifacts.iterdir())
    if save and any(found.iterdir()):
        _libfuzzer(name, ["-merge=1", str(corpus), str(found)])
    for crash in crashes:
        print(f"{name}: FAILED, input in {crash}", file=sys.stderr)
        if save:
            small = scratch / f"min-{crash.name}"
            _libfuzzer(name, ["-minimize_crash=1", f"-max_total_time={MINIMISE_SECONDS}",
                              f"-exact_artifact_path={small}", str(crash)])
            data = (small if small.exists() else crash).read_bytes()
            print(f"{name}: saved {save_crasher(name, data)}", file=sys.stderr)
    return 1 if crashes or proc.returncode else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-worker"]:
        return _atheris_worker(argv[1], argv[3:])
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("targets", nargs="*", help="fuzz targets (default: all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--runs", type=int, default=None,
                        help="inputs per target (instead of --seconds)")
    parser.add_argument("--atheris", action="store_true", help="use atheris/libFuzzer")
    parser.add_argument("--save", action="store_true",
                        help="write crashers (and, with --atheris, new inputs that add "
                             "coverage) to corpus/<target>/")
    args, extra = parser.parse_known_args(argv)
    targets = args.targets or discover_targets()
    unknown = sorted(set(targets) - set(discover_targets()))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    status = 0
    for name in targets:
        if args.atheris:
            status |= run_atheris(name, args.seconds, args.runs, args.save, extra)
        else:
            status |= run_hypothesis(name, args.seconds, args.runs, save=args.save)
    return status


if __name__ == "__main__":
    sys.exit(main())
