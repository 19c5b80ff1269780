"""``gateway usage --by ...``: totals per key, user, model, provider or day.

The grouping is done by the database (``proxy.ledger.query_groups``); this module
only prints its rows: an aligned table with a totals line, a JSON array, or CSV.
A cost that is unknown (no price for the model) is counted in its own column and
never added as zero. ``parse_since`` reads the SINCE of ``gateway usage`` and of
the admin API's ``/admin/v1/usage``. No I/O here, so the endpoints may use it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from proxy.cli_args import aligned

NONE_LABEL = "(none)"

_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
# ASCII digits only (``\d`` would take any script's digits, which float() reads).
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.ASCII)
_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def parse_since(text: str, now: float) -> float:
    """SINCE as unix seconds.

    Accepts a relative duration back from ``now`` (``90s``, ``15m``, ``2h``,
    ``7d``, ``1w``), a unix timestamp (``1717000000``), or an ISO 8601 date or
    date-time (``2024-06-01``, ``2024-06-01T12:30``, ``2024-06-01 12:30:00Z``).
    An ISO value without a UTC offset is local time, as ``date`` prints it.
    """
    value = text.strip().lower()
    if m := _RELATIVE.fullmatch(value):
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    if _NUMBER.fullmatch(value):
        return float(value)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use 15m, 2h, 7d, a unix timestamp "
            "or an ISO date such as 2024-06-01T12:00"
        ) from None


# (field, header, right-aligned)
_COLUMNS = (
    ("requests", "REQUESTS", True),
    ("errors", "ERRORS", True),
    ("input_tokens", "IN", True),
    ("output_tokens", "OUT", True),
    ("cost_usd", "COST_USD", True),
    ("unknown_cost", "UNKNOWN_COST", True),
)


def fmt_usd(value: float | None) -> str:
    """Six decimals (a millionth of a dollar is a few tokens); "-" when unknown."""
    return "-" if value is None else f"{value:.6f}"


def _label(group: dict[str, Any]) -> str:
    return NONE_LABEL if group["group"] is None else str(group["group"])


def write_groups_table(groups: Sequence[dict[str, Any]], by: str, out: TextIO) -> None:
    if not groups:
        out.write("no requests recorded for this selection\n")
        return
    headers = [by.upper()] + (["NAME"] if by == "key" else []) + [h for _, h, _ in _COLUMNS]
    right = [False] + ([False] if by == "key" else []) + [r for _, _, r in _COLUMNS]

    def cells(g: dict[str, Any], first: str) -> list[str]:
        row = [first] + ([g.get("name") or "-"] if by == "key" else [])
        return row + [fmt_usd(g[f]) if f == "cost_usd" else str(g[f]) for f, _, _ in _COLUMNS]

    body = [cells(g, _label(g)) for g in groups]
    costs = [g["cost_usd"] for g in groups if g["cost_usd"] is not None]
    total = {f: sum(g[f] for g in groups) for f, _, _ in _COLUMNS if f != "cost_usd"}
    total["cost_usd"] = sum(costs) if costs else None
    totals = cells(total, "total")
    if by == "key":
        totals[1] = ""
    out.write(aligned([headers, *body, totals], right, rule_before_last=True))


def group_objects(groups: Sequence[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """The groups as plain objects: ``group`` (null: no key/user/model), ``name`` for
    keys, and the totals (the ``--json`` shape, and the admin API's)."""
    keys = ["group"] + (["name"] if by == "key" else []) + [f for f, _, _ in _COLUMNS]
    return [{k: g[k] for k in keys} for g in groups]


def write_groups_json(groups: Sequence[dict[str, Any]], by: str, out: TextIO) -> None:
    """A JSON array, one object per line; ``group`` null means no key/user/model."""
    objs = group_objects(groups, by)
    out.write("[\n" + ",\n".join(json.dumps(o, ensure_ascii=False) for o in objs)
              + ("\n]\n" if objs else "]\n"))


def write_groups_csv(groups: Sequence[dict[str, Any]], by: str, out: TextIO) -> None:
    """RFC 4180 CSV with a header; an unknown cost or group is an empty field."""
    objs = group_objects(groups, by)
    fields = ["group"] + (["name"] if by == "key" else []) + [f for f, _, _ in _COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by if f == "group" else f for f in fields])
    for o in objs:
        writer.writerow(["" if o[f] is None else o[f] for f in fields])
