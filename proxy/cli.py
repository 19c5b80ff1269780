"""Command lines: ``gatewayd`` (the daemon) and ``gateway`` (admin CLI)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, daemon_log
from .aio import new_event_loop

# The garbage collector's youngest generation is collected once this many more
# container objects were made than freed (CPython's default: 700). A busy gateway
# holds about a thousand young objects the collector can never free (the ledger's
# queued records, the requests in flight), so at 700 it ran a young collection every
# ~75 requests and, as those objects aged, a full one every ~0.7 s (10 ms each): 3.5 us
# of CPU a request at c=64, 8.9 at c=256 (bench/RESULTS.md, 2026-12-07). A request
# makes no reference cycle, so a larger young generation keeps no garbage longer;
# what does make cycles (an exception's traceback) is still collected, at most this
# many objects later. /metrics counts the collections (python_gc_collections_total).
GC_YOUNG_THRESHOLD = 10_000


class _DaemonHelp(argparse.HelpFormatter):
    """argparse's help layout, with the terminal width read as shutil reads it
    (COLUMNS, else the terminal, else 80) but without importing shutil: argparse
    does at every add_argument, and shutil brings bz2 and lzma (0.6 MiB of a running
    gatewayd)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        super().__init__(prog, width=(columns or 80) - 2)


def _daemon_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gatewayd",
        formatter_class=_DaemonHelp,
        description="tokenway LLM gateway: the OpenAI, Anthropic and Gemini APIs in front of "
                    "any of their providers, with a ledger of every request. With no "
                    "arguments it serves the built-in 'loopback' model on 127.0.0.1:8081.",
        epilog="Configuration: a TOML file (--config; README.md, section 'Configuration', "
               "lists every table and key) or TOKENWAY_* variables such as "
               "TOKENWAY_OPENAI_BASE_URL and TOKENWAY_OPENAI_API_KEY. Users, keys, prices, "
               "usage and the route table: the 'gateway' command (gateway --help).",
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8081, env TOKENWAY_LISTEN)",
    )
    p.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite ledger file (default ./tokenway.db, env TOKENWAY_DB)",
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="the database instead: sqlite:///PATH or postgresql://USER@HOST/DBNAME "
             "(env TOKENWAY_DATABASE_URL; with PostgreSQL, --db names where the local "
             "spill journal goes)",
    )
    p.add_argument(
        "--config", metavar="PATH", help="TOML configuration file (env TOKENWAY_CONFIG)"
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="log level (default info, env TOKENWAY_LOG_LEVEL)",
    )
    p.add_argument("--access-log", metavar="off|stderr|PATH",
                   help="one line per request: off (default), stderr or a file "
                        "(env TOKENWAY_ACCESS_LOG; docs/logging.md)")
    p.add_argument("--access-format", choices=("json", "logfmt"),
                   help="access log lines as JSON (default) or logfmt "
                        "(env TOKENWAY_ACCESS_FORMAT)")
    p.add_argument("--daemon-log", metavar="stderr|PATH",
                   help="the gateway's own messages: stderr (default) or a file "
                        "(env TOKENWAY_DAEMON_LOG)")
    p.add_argument(
        "--parser",
        choices=("httptools", "h11"),
        help="HTTP/1.1 parser backend (default httptools; h11 is the strict one)",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop implementation (default: uvloop when installed)",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve a non-loopback address without gateway keys (unsafe)",
    )
    p.add_argument("--pid-file", metavar="PATH",
                   help="where to write the process id for 'gateway reload' "
                        "(default: the ledger path + .pid)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve from N processes sharing the port with SO_REUSEPORT "
                        "(default 1; each worker has its own ledger writer on the same file)")
    p.add_argument("--version", action="version", version=f"tokenway {__version__}")
    return p


def gatewayd_main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError, check_listen_safety, load_config

    args = _daemon_parser().parse_args(argv)
    overrides = {
        k: v
        for k, v in (
            ("listen", args.listen),
            ("db", args.db),
            ("database_url", args.database_url),
            ("log_level", args.log_level),
            ("parser", args.parser),
            ("allow_unauthenticated", args.allow_unauthenticated),
            ("access_log", args.access_log),
            ("access_format", args.access_format),
            ("daemon_log", args.daemon_log),
        )
        if v is not None
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"gatewayd: configuration error: {exc}", file=sys.stderr)
        return 2
    problem = check_listen_safety(_with_stored_keys(config))
    if problem:
        print(f"gatewayd: {problem}", file=sys.stderr)
        return 2
    try:
        daemon_log.install(config.logging, config.server.log_level, rotates=args.workers == 1)
    except OSError as exc:
        print(f"gatewayd: cannot open logging.daemon_log {config.logging.daemon_log!r}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("tokenway")
    try:
        return _start(args, config, overrides, log)
    finally:
        daemon_log.close()


def _start(args: Any, config: Any, overrides: dict[str, Any], log: logging.Logger) -> int:
    from .config import listeners_of
    from .startup import port_problem

    if args.workers < 1:
        print("gatewayd: --workers must be >= 1", file=sys.stderr)
        return 2
    for lst in listeners_of(config):
        busy = port_problem(lst.host, lst.port)
        if busy:  # before the ledger file or the pid file exist
            print(f"gatewayd: {busy}", file=sys.stderr)
            return 1
    pid_file = args.pid_file or config.ledger.path + ".pid"
    if args.workers > 1:
        return _supervise(args, config, overrides, pid_file, log)
    return _serve_one(args, config, overrides, pid_file, log)


def _with_stored_keys(config: Any) -> Any:
    """``config`` knowing whether its database holds API keys (made with ``gateway
    key create``): those turn authentication on as configured keys do."""
    import os.path
    from dataclasses import replace

    from .accounts.store import AccountStore
    from .ledger import LedgerError
    from .ledger.url import POSTGRESQL, StorageURL

    ledger = config.ledger
    if ledger.database_url is None:
        if config.auth.keys or not os.path.exists(ledger.path):
            return config
        where: Any = ledger.path
    elif config.auth.keys:
        return config
    else:
        where = StorageURL(POSTGRESQL, None, ledger.database_url, ledger.where)
    try:
        with AccountStore(where) as store:
            stored = bool(store.snapshot().keys)
    except LedgerError:
        return config  # the ledger's own start reports an unusable file
    return replace(config, auth=replace(config.auth, stored_keys=stored)) if stored else config


def _new_ledger(config: Any) -> Any:
    """The ledger writer on the configured database: the SQLite file at
    ``ledger.path``, or PostgreSQL with its spill journal at ``ledger.path``.spill."""
    from .ledger import Ledger, open_backend
    from .ledger.url import POSTGRESQL, StorageURL

    cfg = config.ledger
    if cfg.database_url is None:
        return Ledger(cfg.path)
    where = StorageURL(POSTGRESQL, None, cfg.database_url, cfg.where)
    return Ledger(cfg.path, backend=open_backend(where))


def _write_pid(pid_file: str | None, log: logging.Logger) -> str | None:
    if not pid_file:
        return None
    try:
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
        return pid_file
    except OSError as exc:
        log.warning("cannot write pid file %s: %s (gateway reload needs --pid)", pid_file, exc)
        return None


def _supervise(args: Any, config: Any, overrides: dict[str, Any], pid_file: str,
               log: logging.Logger) -> int:
    """Fork ``--workers`` processes that share the port through SO_REUSEPORT (the
    kernel spreads connections over them), forward signals, wait for them."""
    import signal
    import socket
    from dataclasses import replace

    from .config import listeners_of

    if any(lst.port == 0 for lst in listeners_of(config)[1:]):
        print("gatewayd: with --workers, every listener but the first needs a fixed port "
              "(port 0 would give each worker a different one)", file=sys.stderr)
        return 2
    # Create and migrate the ledger file once, before the workers start: two
    # processes switching a new file to WAL at the same moment can get
    # "database is locked" without the busy handler being consulted.
    first = _new_ledger(config)
    try:
        first.start()
    except Exception as exc:
        print(f"gatewayd: cannot open ledger {config.ledger.where!r}: {exc}", file=sys.stderr)
        return 2
    first.close()

    host, port = config.server.host, config.server.port
    probe = None
    if port == 0:  # pick one free port for every worker to share
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, 0))
        port = probe.getsockname()[1]
        config = replace(config, server=replace(config.server, port=port))
        overrides = {**overrides, "listen": f"[{host}]:{port}" if ":" in host else f"{host}:{port}"}
    children: list[int] = []
    for worker in range(args.workers):
        pid = os.fork()
        if pid == 0:
            if probe is not None:
                probe.close()
            code = 1
            try:
                # The first worker rotates the log files; the others follow the
                # renames (proxy/log_files.py).
                daemon_log.after_fork(config.logging, config.server.log_level,
                                      rotates=worker == 0)
                code = _serve_one(args, config, overrides, None, log, reuse_port=True,
                                  rotates_logs=worker == 0)
            finally:
                daemon_log.close()  # os._exit skips atexit: write what is queued
                os._exit(code)
        children.append(pid)
    if probe is not None:
        probe.close()
    written = _write_pid(pid_file, log)

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR1:
            daemon_log.reopen()
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    worst = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        worst = max(worst, os.waitstatus_to_exitcode(status))
    if written:
        try:
            os.unlink(written)
        except OSError:
            pass
    return worst


def _serve_one(args: Any, config: Any, overrides: dict[str, Any], pid_file: str | None,
               log: logging.Logger, reuse_port: bool = False, rotates_logs: bool = True) -> int:
    from .access_log import open_access_log
    from .config import listeners_of, load_config
    from .server import serve

    try:
        access_log = open_access_log(config, rotates=rotates_logs,
                                     on_error=lambda m: log.warning("access log: %s", m))
    except OSError as exc:
        print(f"gatewayd: cannot open logging.access_log {config.logging.access_log!r}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2

    ledger = _new_ledger(config)
    try:
        ledger.start()
    except Exception as exc:
        print(
            f"gatewayd: cannot open ledger {config.ledger.where!r}: {exc}",
            file=sys.stderr,
        )
        if access_log is not None:
            access_log.close()
        return 2
    pid_file = _write_pid(pid_file, log)
    import gc

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    def reloader() -> Any:
        return load_config(args.config, overrides=overrides)

    loop = new_event_loop(args.loop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(config, ledger, reloader=reloader,
                                      reuse_port=reuse_port, access_log=access_log,
                                      rotates_logs=rotates_logs))
    except OSError as exc:
        print(
            f"gatewayd: cannot listen on "
            f"{', '.join(lst.listen for lst in listeners_of(config))}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        # Waits while rows still move (database, or spill journal if it fails).
        flushed = ledger.close()
        stats = ledger.stats()
        log.info(
            "ledger closed: %d rows written, %d spilled (%d waiting in the journal), "
            "%d dropped%s",
            stats["written"],
            stats["spilled"],
            stats["journal_rows"],
            stats["dropped"],
            "" if flushed else f" ({stats['queued']} rows not stored: writer stalled)",
        )
        loop.close()
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
    return 0


def _reload_main(argv: Sequence[str]) -> int:
    import signal

    p = argparse.ArgumentParser(
        prog="gateway reload",
        description="Ask a running gatewayd to reload its configuration (SIGHUP). In-flight "
                    "streams are not dropped; a bad configuration is refused and logged.")
    p.add_argument("--db", metavar="PATH", default=None,
                   help="the daemon's ledger path (its pid file is PATH.pid; default "
                        "./tokenway.db)")
    p.add_argument("--pid-file", metavar="PATH")
    p.add_argument("--pid", type=int)
    args = p.parse_args(argv)
    pid = args.pid
    if pid is None:
        path = args.pid_file or (args.db or os.environ.get("TOKENWAY_DB") or "tokenway.db") + ".pid"
        try:
            with open(path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as exc:
            print(f"gateway reload: cannot read pid file {path}: {exc}", file=sys.stderr)
            return 2
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"gateway reload: cannot signal process {pid}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print(f"reload requested (pid {pid}); see the daemon's log for the result")
    return 0


def _routes_main(argv: Sequence[str]) -> int:
    from .config import ConfigError, load_config
    from .routing import Router

    p = argparse.ArgumentParser(
        prog="gateway routes", description="Print the resolved route table."
    )
    p.add_argument("--config", metavar="PATH")
    p.add_argument(
        "--explain",
        metavar="MODEL",
        help="show which targets a request for MODEL would try, in order",
    )
    p.add_argument("--url", metavar="URL",
                   help="a running gateway (e.g. http://127.0.0.1:8081): show each target's "
                        "live health (circuit state, cooldown) from its /health")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    health: dict[str, Any] = {}
    if args.url:
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(args.url.rstrip("/") + "/health", timeout=5) as r:
                health = json.loads(r.read()).get("targets", {})
        except (OSError, ValueError) as exc:
            print(f"gateway: cannot read {args.url}/health: {exc}", file=sys.stderr)
            return 1

    def state(name: str) -> str:
        h = health.get(name)
        if not args.url:
            return ""
        if h is None:
            return " [no traffic yet]"
        extra = f", retry in {h['retry_in_s']:g}s" if h.get("retry_in_s") else ""
        return f" [{h['state']}, {h['consecutive_failures']} failures{extra}]"

    router = Router(config)
    if args.explain:
        for line in router.explain(args.explain):
            print(line)
        if args.url:
            resolved = router.resolve(args.explain)
            for provider, _ in (resolved.targets if resolved else ()):
                print(f"  health of '{provider.name}':{state(provider.name)}")
        return 0
    if not config.routes:
        print("no routes configured (only the built-in 'loopback' model is served)")
    for i, route in enumerate(config.routes):
        targets = ", ".join(
            f"{t}{state(t.provider)}" + (f" (weight {route.weights[j]:g})" if route.weights else "")
            for j, t in enumerate(route.targets))
        print(f"{i:>3}  {route.match:<24} => {targets}")
    return 0


def gateway_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "usage": "show ledger rows (gateway usage --help)",
        "tail": "requests as they finish, one line each (gateway tail --help)",
        "audit": "find providers that got slower or fail more (gateway audit --help)",
        "ledger": "daily totals and pruning of old rows (gateway ledger --help)",
        "routes": "print the route table (gateway routes --help)",
        "price": "list and set model prices (gateway price --help)",
        "user": "add, list, show, disable and enable users (gateway user --help)",
        "key": "create, list, show, revoke and rotate API keys (gateway key --help)",
        "reload": "tell a running gatewayd to reload its configuration (gateway reload --help)",
        "version": "print the version",
    }
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: gateway COMMAND [ARGS]\n\ncommands:")
        for name, text in commands.items():
            print(f"  {name:<10} {text}")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "usage":
        from .usage_cli import usage_main

        return usage_main(rest)
    if cmd == "tail":
        from .tail_cli import tail_main

        return tail_main(rest)
    if cmd == "audit":
        from .audit_cli import audit_main

        return audit_main(rest)
    if cmd == "ledger":
        from .ledger_cli import ledger_main

        return ledger_main(rest)
    if cmd == "routes":
        return _routes_main(rest)
    if cmd == "price":
        from .price_cli import price_main

        return price_main(rest)
    if cmd == "user":
        from .accounts_cli import user_main

        return user_main(rest)
    if cmd == "key":
        from .accounts_cli import key_main

        return key_main(rest)
    if cmd == "reload":
        return _reload_main(rest)
    if cmd in ("version", "--version"):
        print(f"tokenway {__version__}")
        return 0
    print(
        f"gateway: unknown command {cmd!r} (try: {', '.join(commands)})",
        file=sys.stderr,
    )
    return 2
