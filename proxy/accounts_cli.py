"""``gateway user`` and ``gateway key``: the people and API keys of the gateway.

    gateway user add NAME [--email E] [--role admin|member] [LIMITS] [--json]
    gateway user list [--json]
    gateway user show NAME [--json]
    gateway user disable NAME | gateway user enable NAME
    gateway key create --name N [--user U] [LIMITS] [--expires DURATION] [--json]
    gateway key list [--user U] [--json]
    gateway key show ID [--json]
    gateway key revoke ID | gateway key rotate ID [--json]

LIMITS: ``--models GLOB,...``, ``--rpm N``, ``--tpm N``, ``--budget-usd X
--budget-period day|month|total``. A key's secret is printed once, at ``create``
and ``rotate``; the database keeps only its digest.

Every command works on the ledger file (``--db``, else ``TOKENWAY_DB``, else
./tokenway.db) and is safe while the daemon runs: a change bumps
``accounts_version`` and a running gateway picks it up within a second. Exit
status: 0 done, 1 refused (unknown user or key, conflict, database error), 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.accounts.keys import parse_duration
from proxy.accounts.model import BUDGET_PERIODS, ROLES, AccountError, Limits
from proxy.accounts.store import AccountStore
from proxy.accounts.views import key_view, user_view
from proxy.cli_args import aligned, finite, number_arg, whole_number
from proxy.ledger import LedgerError
from proxy.usage_cli import add_database_url, ledger_location

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

DB_HELP = "ledger database (default: $TOKENWAY_DB, else ./tokenway.db)"
SECRET_NOTE = "Store it now: it is not shown again (the database keeps only its digest)."


class Refused(Exception):
    """A command that cannot be carried out (exit 1)."""


# -- argument types ------------------------------------------------------------------


_whole = whole_number


_usd = number_arg(float, finite(lambda v: v > 0), "an amount in USD above 0")


def _globs(text: str) -> tuple[str, ...]:
    globs = tuple(g.strip() for g in text.split(","))
    if not all(globs):
        raise argparse.ArgumentTypeError(
            f"expected model names or globs separated by commas, got {text!r}")
    return globs


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_limits(p: argparse.ArgumentParser, whose: str) -> None:
    g = p.add_argument_group(f"limits of the {whose}")
    g.add_argument("--models", type=_globs, metavar="GLOB,...",
                   help="only these models (globs such as 'gpt-4o*', comma-separated)")
    g.add_argument("--rpm", type=_whole, metavar="N", help="requests per minute")
    g.add_argument("--tpm", type=_whole, metavar="N", help="tokens per minute")
    g.add_argument("--budget-usd", type=_usd, metavar="X",
                   help="spend allowed per --budget-period, in USD")
    g.add_argument("--budget-period", choices=BUDGET_PERIODS,
                   help="the budget's period (UTC day, UTC month, or all time)")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(models=args.models, rpm=args.rpm, tpm=args.tpm, budget_usd=args.budget_usd,
                  budget_period=args.budget_period)


def _common(p: argparse.ArgumentParser, *, json: bool = True) -> None:
    p.add_argument("--db", metavar="PATH", help=DB_HELP)
    add_database_url(p)
    if json:
        p.add_argument("--json", action="store_true", help="print JSON")


# -- parsers -------------------------------------------------------------------------


def build_user_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway user",
                                description="The gateway's users: each owns API keys, and "
                                            "an admin's keys may use the admin API.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a user")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--email", metavar="E")
    add.add_argument("--role", choices=ROLES, default="member",
                     help="admin keys may use /admin/v1 (default: member)")
    _add_limits(add, "user (over all of its keys)")
    _common(add)
    _common(sub.add_parser("list", help="every user"))
    show = sub.add_parser("show", help="a user, its keys and its spend")
    show.add_argument("name", metavar="NAME")
    _common(show)
    for action, text in (("disable", "refuse every key of a user"),
                         ("enable", "accept a disabled user's keys again")):
        sp = sub.add_parser(action, help=text)
        sp.add_argument("name", metavar="NAME")
        _common(sp)
    return p


def build_key_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway key",
                                description="API keys of the gateway. A key's secret is "
                                            "shown once, when it is created or rotated.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cr = sub.add_parser("create", help="create a key and print its secret once")
    cr.add_argument("--name", required=True, metavar="N", help="what the key is for")
    cr.add_argument("--user", metavar="U", help="the user who owns the key (name or id)")
    cr.add_argument("--expires", type=_duration, metavar="DURATION",
                    help="the key stops working after this long: 90m, 12h, 30d, 3600s, 2w")
    _add_limits(cr, "key")
    _common(cr)
    ls = sub.add_parser("list", help="every key (or a user's)")
    ls.add_argument("--user", metavar="U")
    _common(ls)
    show = sub.add_parser("show", help="a key's limits, state, expiry, spend and budget left")
    show.add_argument("id", metavar="ID")
    _common(show)
    rv = sub.add_parser("revoke", help="stop accepting a key (for good)")
    rv.add_argument("id", metavar="ID")
    _common(rv)
    rt = sub.add_parser("rotate", help="give a key a new secret; the old one stops at once")
    rt.add_argument("id", metavar="ID")
    _common(rt)
    return p


# -- entry points ----------------------------------------------------------------------


def user_main(argv: Sequence[str]) -> int:
    """Run ``gateway user`` with ``argv`` (the words after ``user``)."""
    p = build_user_parser()
    return _run("gateway user", p, argv, _user_action)


def key_main(argv: Sequence[str]) -> int:
    """Run ``gateway key`` with ``argv`` (the words after ``key``)."""
    p = build_key_parser()
    return _run("gateway key", p, argv, _key_action)


_READ_ONLY = ("list", "show")


def _run(prog: str, p: argparse.ArgumentParser, argv: Sequence[str],
         action: Callable[[argparse.Namespace, AccountStore], None]
         ) -> int:
    try:
        args = p.parse_args(list(argv))
    except SystemExit as exc:  # argparse exits on --help and on errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if (getattr(args, "budget_usd", None) is None) != (getattr(args, "budget_period", None)
                                                       is None):
        print(f"{prog}: --budget-usd and --budget-period go together", file=sys.stderr)
        return EXIT_USAGE
    try:
        db = ledger_location(args.db, args.database_url)
        if args.action in _READ_ONLY and db.path is not None and not os.path.exists(db.path):
            raise Refused(f"no ledger database at {db.path} (gatewayd creates it; "
                          "--db or TOKENWAY_DB name another)")
        with AccountStore(db) as store:
            action(args, store)
    except AccountError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.kind == "invalid" else EXIT_REFUSED
    except (LedgerError, Refused, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _user_action(args: argparse.Namespace, store: AccountStore) -> None:
    if args.action == "add":
        limits = _limits(args)
        user = store.add_user(args.name, email=args.email, role=args.role, limits=limits)
        if args.json:
            _print_json(user.as_json())
        else:
            print(f"added {user.role} {user.name} ({user.id})")
    elif args.action == "list":
        users = store.users()
        if args.json:
            _print_json([u.as_json() for u in users])
            return
        if not users:
            print("no users (add one with 'gateway user add NAME')")
            return
        _table(["ID", "NAME", "ROLE", "STATE", "EMAIL", "LIMITS"],
               [[u.id, u.name, u.role, "disabled" if u.disabled else "active", u.email or "-",
                 _limits_text(u.limits.as_json())] for u in users])
    elif args.action == "show":
        view = user_view(store, store.user(args.name), detail=True)
        if args.json:
            _print_json(view)
            return
        _show([("id", view["id"]), ("name", view["name"]), ("role", view["role"]),
               ("state", "disabled" if view["disabled"] else "active"),
               ("email", view["email"] or "-"), ("created", _when(view["created"])),
               ("limits", _limits_text(view)), ("keys", ", ".join(view["keys"]) or "-"),
               *_spend_lines(view)])
    else:
        user = store.update_user(args.name, disabled=args.action == "disable")
        if args.json:
            _print_json(user.as_json())
        else:
            print(f"{args.action}d {user.name} ({user.id})"
                  + ("; its keys are refused from now on" if user.disabled else ""))


def _key_action(args: argparse.Namespace, store: AccountStore) -> None:
    if args.action == "create":
        limits = _limits(args)
        key, secret = store.create_key(name=args.name, user=args.user, limits=limits,
                                       expires_in_s=args.expires)
        _print_secret(args, store, key.id, secret, "created")
    elif args.action == "list":
        keys = store.keys(user=args.user)
        if args.json:
            _print_json([key_view(store, k) for k in keys])
            return
        if not keys:
            print("no keys (create one with 'gateway key create --name NAME')")
            return
        names = {u.id: u.name for u in store.users()}
        now = time.time()
        _table(["ID", "NAME", "USER", "STATE", "HINT", "EXPIRES", "LIMITS"],
               [[k.id, k.name or "-", names.get(k.user_id or "", "-"), k.state(now), k.hint,
                 _when(k.expires), _limits_text(k.limits.as_json())] for k in keys])
    elif args.action == "show":
        view = key_view(store, store.key(args.id), detail=True)
        if args.json:
            _print_json(view)
            return
        _show([("id", view["id"]), ("name", view["name"] or "-"),
               ("user", view["user"] or "-"), ("state", view["state"]),
               ("hint", view["hint"]), ("created", _when(view["created"])),
               ("expires", _when(view["expires"])), ("revoked", _when(view["revoked"])),
               ("limits", _limits_text(view)), *_spend_lines(view)])
    elif args.action == "revoke":
        key = store.revoke_key(args.id)
        if args.json:
            _print_json(key_view(store, key))
        else:
            print(f"revoked {key.id}; a running gateway refuses it within a second")
    else:
        key, secret = store.rotate_key(args.id)
        _print_secret(args, store, key.id, secret, "rotated")


# -- output ----------------------------------------------------------------------------


def _print_secret(args: argparse.Namespace, store: AccountStore, key_id: str, secret: str,
                  done: str) -> None:
    view = key_view(store, store.key(key_id))
    if args.json:
        _print_json({**view, "key": secret})
        return
    owner = f" for {view['user']}" if view["user"] else ""
    expiry = f", expires {_when(view['expires'])}" if view["expires"] else ""
    print(f"{done} {view['id']} ({view['name'] or 'no name'}{owner}{expiry})")
    print(f"key: {secret}")
    print(SECRET_NOTE, file=sys.stderr)


def _print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _money(v: float) -> str:
    return f"{v:.6f}"


def _limits_text(obj: dict[str, Any]) -> str:
    parts = []
    if obj.get("models") is not None:
        parts.append("models " + ",".join(obj["models"]))
    for f in ("rpm", "tpm"):
        if obj.get(f) is not None:
            parts.append(f"{f} {obj[f]}")
    if obj.get("budget_usd") is not None:
        parts.append(f"budget {obj['budget_usd']:g} USD/{obj['budget_period']}")
    return "; ".join(parts) or "none"


def _spend_lines(view: dict[str, Any]) -> list[tuple[str, str]]:
    s = view["spend"]
    lines = [("spend today", f"{_money(s['today_usd'])} USD (UTC day)"),
             ("spend month", f"{_money(s['month_usd'])} USD (UTC month)"),
             ("spend total", f"{_money(s['total_usd'])} USD")]
    for label, b in (("budget left", view.get("budget")),
                     ("user budget left", view.get("user_budget"))):
        if b is not None:
            lines.append((label, f"{_money(b['remaining_usd'])} of {b['usd']:g} USD "
                                 f"this {b['period'] if b['period'] != 'total' else 'lifetime'}"))
    return lines


def _show(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        print(f"{k + ':':<{width + 1}} {v}")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    sys.stdout.write(aligned([headers, *([str(c) for c in r] for r in rows)]))
