"""`python -m bench run [--quick] [--only direct,nginx,tokenway] [--peers litellm] ...`

Subcommands:
  run    start everything, measure, print the tables, save bench/results/<stamp>.json
  show   print the tables of a saved result file again
  micro    in-process micro benchmarks (bench/micro/translate.py): translated SSE
           events/s per core and the passthrough tap's GB/s
  profile  perf + py-spy on tokenway under load, per path (bench/profile.py)
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import orjson

from bench.scenarios import CONCURRENCY, DEFAULT_GROUPS, GROUPS, RATES, SSE_CONCURRENCY

# Other names accepted by --scenarios.
GROUP_ALIASES = {"chat_rate": "rate"}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    return [int(v) for v in _csv(value)]


def _kv(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    k, v = value.split("=", 1)
    return k, v


def build_parser() -> argparse.ArgumentParser:
    from bench.targets import ALL_NAMES, PEER_CLASSES

    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the benchmark")
    run.add_argument("--quick", action="store_true",
                     help="short cells (2 s load, 1 s stream check, 3 s paced, 10 s ledger, "
                          "60 s soak)")
    names = ", ".join(ALL_NAMES + tuple(PEER_CLASSES))
    run.add_argument("--only", type=_csv, default=None,
                     help=f"targets to run, comma-separated (default direct,nginx,tokenway; "
                          f"known: {names})")
    run.add_argument("--peers", type=_csv, default=[],
                     help=f"also run these peers ({', '.join(PEER_CLASSES)} or 'all'); "
                          "installed on first use into ~/.cache/tokenway-bench")
    run.add_argument("--workers", type=int, default=1,
                     help="worker processes for targets that have them (nginx "
                          "worker_processes, tokenway --workers, litellm --num_workers)")
    run.add_argument("--scenarios", type=_csv, default=None,
                     help=f"scenario groups (default {','.join(DEFAULT_GROUPS)}; "
                          f"known: {', '.join(GROUPS)})")
    run.add_argument("--conc", type=_ints, default=None,
                     help=f"concurrency levels for the chat and sse groups (default "
                          f"{','.join(map(str, CONCURRENCY))} for chat, "
                          f"{','.join(map(str, SSE_CONCURRENCY))} for sse)")
    run.add_argument("--rates", type=_ints, default=None,
                     help=f"arrival rates (req/s) for the fixed-rate group 'rate' (default "
                          f"{','.join(map(str, RATES))}); without --scenarios, runs only "
                          "that group")
    run.add_argument("--soak-seconds", type=float, default=None,
                     help="length of the memory soak (default 600 s, 60 s with --quick)")
    run.add_argument("--ledger-seconds", type=float, default=None,
                     help="length of each `ledger` cell (default 60 s, 10 s with --quick)")
    run.add_argument("--soak-targets", type=_csv, default=["tokenway"],
                     help="targets that run the soak (default tokenway)")
    run.add_argument("--duration", type=float, default=None,
                     help="seconds per load cell (overrides --quick's 2 s / the default 5 s)")
    run.add_argument("--repeat", type=int, default=1,
                     help="run the whole scenario list N times; report medians")
    run.add_argument("--load", choices=("auto", "wrk", "ours"), default="auto",
                     help="load generator: wrk (installed with apt if missing) or "
                          "bench.loadgen; auto prefers wrk")
    run.add_argument("--pin", default="auto",
                     help="CPU placement: auto (target on the first CPU, everything else "
                          "on the rest), none, or TARGET:LOAD such as 0:1 or 0:1-3")
    run.add_argument("--no-install", action="store_true",
                     help="never install anything (wrk, nginx, peers)")
    run.add_argument("--tokenway-arg", dest="tokenway_args", action="append", default=[],
                     help="extra argument for the tokenway command line (repeatable)")
    run.add_argument("--tokenway-env", dest="tokenway_env", action="append", type=_kv,
                     default=[], help="extra KEY=VALUE environment for tokenway (repeatable)")
    run.add_argument("--out", type=Path, default=None, help="result file (default "
                     "bench/results/<timestamp>-<mode>-<commit>.json)")
    run.add_argument("--no-save", action="store_true", help="do not write a result file")
    run.add_argument("--keep-tmp", action="store_true",
                     help="keep the temporary folder with configs and logs (always kept "
                          "when a target failed)")
    show = sub.add_parser("show", help="print the tables of a saved result")
    show.add_argument("file", type=Path)
    micro = sub.add_parser("micro", help="micro benchmarks of protocols/ (no sockets)",
                           add_help=False)
    micro.add_argument("rest", nargs=argparse.REMAINDER)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["micro"]:  # its own options: python -m bench micro --help
        from bench.micro import translate

        return translate.main(argv[1:])
    if argv[:1] == ["profile"]:
        from bench import profile

        return profile.main(argv[1:])
    ap = build_parser()
    args = ap.parse_args(argv)
    from bench import report

    if args.cmd == "show":
        print(report.render(orjson.loads(args.file.read_bytes())), end="")
        return 0

    from bench.runner import Runner
    from bench.summary import save
    from bench.targets import ALL_NAMES, PEER_CLASSES

    known = set(ALL_NAMES) | set(PEER_CLASSES)
    if args.peers == ["all"]:
        args.peers = list(PEER_CLASSES)
    for name in (args.only or []) + args.peers + args.soak_targets:
        if name not in known:
            ap.error(f"unknown target {name!r}; known: {', '.join(sorted(known))}")
    if args.scenarios:
        args.scenarios = [GROUP_ALIASES.get(g, g) for g in args.scenarios]
    elif args.rates:
        args.scenarios = ["rate"]
    if args.rates and any(r <= 0 for r in args.rates):
        ap.error("--rates must be positive")
    for g in args.scenarios or []:
        if g not in GROUPS:
            ap.error(f"unknown scenario group {g!r}; known: {', '.join(GROUPS)}")
    if args.ledger_seconds is not None and args.ledger_seconds < 1:
        ap.error("--ledger-seconds must be >= 1 (wrk runs whole seconds)")
    if args.repeat < 1 or args.workers < 1:
        ap.error("--repeat and --workers must be >= 1")
    args.tokenway_env = dict(args.tokenway_env)

    def on_term(signum, frame):  # SIGTERM stops the run like Ctrl-C: everything is cleaned up
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        result = Runner(args).run()
    except KeyboardInterrupt:
        print("interrupted; every process started by the run was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # the fake upstream or a tool failed: nothing to compare
        print(f"bench run failed: {exc}", file=sys.stderr)
        return 2
    print(report.render(result), end="")
    if not args.no_save:
        path = save(result, args.out)
        print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
