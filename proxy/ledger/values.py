"""Per-row value checks: one bad value costs its own column, never its batch.

A batch travels from the writer thread to the database as one JSON text (a JSON
array of rows, each row an array in ``LEDGER_COLUMNS`` order), made by one
``orjson.dumps`` call. The checks are split so that a batch of good rows costs
no Python work per value:

1. ``encode_batch`` (here, on the writer thread) calls each record's
   ``as_row()``, serialises the batch in one C call, and looks at the bytes: a
   batch whose JSON holds exactly one ``[`` per row plus the outer one and no
   ``{`` has only scalar values. Only when that test fails (a list or dict in a
   row, a value orjson cannot serialise, an integer outside SQLite's 64-bit
   range, a row of the wrong length, or merely a ``[``/``{`` inside some
   string) are the rows walked one by one in Python (``flatten_row``).
2. The database stores the scalars with its column affinity and then checks the
   stored values' classes in C (``sqlite.py``: one scan of the rows just
   inserted, in the same transaction). Only the rows it flags come back to
   Python, where ``repair_stored`` says what to store instead. SQLite first
   tries the batch's rows as bound values (``Encoded.row_values``), testing each
   value in the INSERT; a batch whose values all pass needs no repair and no
   scan, and any other is stored the way just described.

The rules, per column kind (``schema.COLUMN_KINDS``):

- INTEGER: an integer in SQLite's signed 64-bit range (a bool is 0/1). Text that
  SQLite's INTEGER affinity turns into an integer ("12") is kept as that
  integer (https://www.sqlite.org/datatype3.html, section 3). Anything else (a
  fraction, other text, a list or an object) is stored as NULL, or as the
  column's default where it has one (``stream`` 0, ``attempts`` 1: NOT NULL).
- REAL: any finite number, stored as a float; anything else is NULL. ``ts`` may
  not be NULL: a missing or unusable ``ts`` becomes the time the writer took the
  row off the queue.
- TEXT: a string, cut to ``schema.TEXT_MAX_CHARS`` characters. A number is
  stored as its decimal text; a list or an object is NULL.

Every replaced or cut value counts once in ``coerced`` and is described in a
note (``last_error`` in ``stats()``). A NaN or an infinity is stored as NULL
without a note: JSON has no such numbers, orjson writes ``null``, and the fast
path cannot tell them from a ``None``.

Rows whose ``as_row()`` raises, or returns a sequence of the wrong length, cannot
be stored at all (their values cannot be placed in columns); they are counted as
dropped with a note, and the rest of the batch is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from proxy.ledger.schema import (
    COLUMN_DEFAULTS,
    COLUMN_KINDS,
    INTEGER,
    LEDGER_COLUMNS,
    REAL,
    TEXT,
    TEXT_MAX_CHARS,
)

ROW_WIDTH = len(LEDGER_COLUMNS)

# SQLite INTEGER is a signed 64-bit value (https://www.sqlite.org/datatype3.html).
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

# Characters of a bad value quoted in a note.
NOTE_VALUE_CHARS = 40

# What the database stores for a row whose ts is None; repair_stored replaces it.
MISSING_TS = "missing"

_SURROGATES = re.compile("[\ud800-\udfff]")

_KINDS: tuple[str, ...] = tuple(COLUMN_KINDS[c] for c in LEDGER_COLUMNS)


class Encoded(NamedTuple):
    """One batch ready for the database or the spill journal."""

    payload: bytes  # JSON array of rows; b"[]" when no row survived
    rows: int  # rows in payload
    dropped: int  # records that could not become a row at all
    coerced: int  # values replaced before serialising (flatten_row)
    notes: list[str]  # what was dropped or replaced, oldest first
    # The rows payload holds, as Python values (as_row()'s, or flatten_row's when
    # the batch went the slow way), for a backend that binds them rather than
    # parse the JSON (sqlite.py); None after a trip through the spill journal.
    row_values: Sequence[Sequence[Any]] | None = None


def encode_batch(records: Sequence[Any]) -> Encoded:
    """Call ``as_row()`` on each record and serialise the rows as one JSON text.

    Runs on the writer thread. For a batch of well-formed rows this is one list
    comprehension and one ``orjson.dumps``; anything unusual sends the batch
    through ``flatten_row``, row by row.
    """
    try:
        rows = [rec.as_row() for rec in records]
    except Exception:
        return _encode_slowly(records)
    try:
        same_width = set(map(len, rows)) == {ROW_WIDTH}
        payload = orjson.dumps(rows)
    except (TypeError, orjson.JSONEncodeError):
        return _encode_slowly(records)
    if same_width and payload.count(b"[") == len(rows) + 1 and b"{" not in payload:
        return Encoded(payload, len(rows), 0, 0, [], rows)
    return _encode_slowly(records)


def _encode_slowly(records: Sequence[Any]) -> Encoded:
    parts: list[bytes] = []
    clean_rows: list[tuple[Any, ...]] = []
    notes: list[str] = []
    dropped = coerced = 0
    for rec in records:
        try:
            row = rec.as_row()
            if not isinstance(row, tuple | list) or len(row) != ROW_WIDTH:
                raise TypeError(
                    f"as_row() returned {type(row).__name__} of "
                    f"{_len_of(row)} values, expected a tuple of {ROW_WIDTH}"
                )
        except Exception as exc:
            dropped += 1
            notes.append(f"record {_short(rec)} dropped: {type(exc).__name__}: {exc}")
            continue
        clean, row_notes = flatten_row(row)
        coerced += len(row_notes)
        notes.extend(row_notes)
        parts.append(orjson.dumps(clean))
        clean_rows.append(clean)
    return Encoded(b"[" + b",".join(parts) + b"]", len(parts), dropped, coerced, notes,
                   clean_rows)


def flatten_row(row: Sequence[Any]) -> tuple[tuple[Any, ...], list[str]]:
    """Keep the scalars orjson and SQLite can take; replace the rest with None.

    Lists, dicts and other objects become None, as do integers outside the
    signed 64-bit range and NaN/infinity; strings that are not valid Unicode
    (lone surrogates) have those characters replaced with U+FFFD. The database
    applies the per-column rules to what is left (``repair_stored``).
    """
    out: list[Any] = []
    notes: list[str] = []
    request_id = row[1] if type(row[1]) is str else None
    for column, value in zip(LEDGER_COLUMNS, row, strict=True):
        if value is None or type(value) is bool:
            pass
        elif isinstance(value, str):
            value = str(value)  # a str subclass (an enum member) as plain text
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = _SURROGATES.sub("\ufffd", value)
                notes.append(_note(request_id, column, "had unencodable characters"))
        elif isinstance(value, int):
            value = int(value)
            if not I64_MIN <= value <= I64_MAX:
                notes.append(_note(request_id, column, f"{value} is out of range"))
                value = None
        elif isinstance(value, float):
            value = float(value)
            if not math.isfinite(value):
                value = None  # as orjson writes it on the fast path: not noted
        else:
            notes.append(_note(request_id, column, f"{_describe(value)} is not a scalar"))
            value = None
        out.append(value)
    return tuple(out), notes


def repair_stored(stored: Sequence[Any], taken_at: float) -> tuple[dict[str, Any], list[str]]:
    """What to store instead of the values of one stored row that break the rules.

    ``stored`` holds the row's values as SQLite returned them, in
    ``LEDGER_COLUMNS`` order. Returns the columns to change (name -> new value)
    and one note per change. ``taken_at`` replaces an unusable ``ts``.
    """
    changes: dict[str, Any] = {}
    notes: list[str] = []
    request_id = stored[1] if type(stored[1]) is str else None
    for column, kind, value in zip(LEDGER_COLUMNS, _KINDS, stored, strict=True):
        if value is None:
            continue
        if kind == INTEGER:
            if type(value) is int:
                continue
            # stream and attempts are NOT NULL: their default, as for a None.
            changes[column] = COLUMN_DEFAULTS.get(column)
        elif kind == REAL:
            if type(value) is float:
                continue
            if column == "ts":
                changes[column] = taken_at
                if value == MISSING_TS:
                    notes.append(_note(request_id, column, "missing; stored the time "
                                       "it was taken off the queue"))
                    continue
            else:
                changes[column] = None
        elif kind == TEXT:
            limit = TEXT_MAX_CHARS[column]
            if type(value) is str:
                if len(value) <= limit:
                    continue
                changes[column] = value[:limit]
                notes.append(_note(request_id, column, f"longer than {limit} characters, cut"))
                continue
            changes[column] = None
        what = f"{_describe(value)} is not {'a' if kind == REAL else 'an'} {kind} value"
        if column == "ts":
            what += "; stored the time it was taken off the queue"
        notes.append(_note(request_id, column, what))
    if stored[0] is None:  # ts NOT NULL: the INSERT never leaves it NULL, but be total
        changes["ts"] = taken_at
        notes.append(_note(request_id, "ts", "missing"))
    return changes, notes


def _note(request_id: str | None, column: str, what: str) -> str:
    return f"row {request_id or '?'}: {column} {what}"


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > NOTE_VALUE_CHARS:
        text = text[:NOTE_VALUE_CHARS] + "..."
    return f"{type(value).__name__} {text}"


def _short(rec: Any) -> str:
    text = repr(rec)
    return text if len(text) <= 2 * NOTE_VALUE_CHARS else text[: 2 * NOTE_VALUE_CHARS] + "..."


def _len_of(value: Any) -> str:
    try:
        return str(len(value))
    except TypeError:
        return "no"


_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")
_REAL_TEXT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def as_sqlite_stores(row: Sequence[Any]) -> list[Any]:
    """The values SQLite would store for ``row`` (JSON values in ``LEDGER_COLUMNS``
    order) in the ledger's columns: the column's affinity applied
    (https://www.sqlite.org/datatype3.html, section 3.4), a missing ``ts`` as
    ``MISSING_TS`` and the column defaults, as ``sqlite.py``'s INSERT does.

    A backend with typed columns (PostgreSQL) runs the rows its SQL flags through
    this and then ``repair_stored``, so that both backends store the same values
    and count the same repairs."""
    out: list[Any] = []
    for column, kind, value in zip(LEDGER_COLUMNS, _KINDS, row, strict=True):
        if value is None:
            if column == "ts":
                value = MISSING_TS
            else:
                value = COLUMN_DEFAULTS.get(column)
        elif type(value) is bool:  # SQLite's JSON functions read true as 1
            value = {INTEGER: int, REAL: float, TEXT: str}[kind](int(value))
        elif kind == INTEGER:
            value = _integer_affinity(value)
        elif kind == REAL:
            if isinstance(value, int) or (isinstance(value, str) and _is_number(value)):
                value = float(value)
        elif kind == TEXT and isinstance(value, int | float):
            value = repr(value)
        out.append(value)
    return out


def _is_number(text: str) -> bool:
    return _REAL_TEXT.fullmatch(text) is not None


def _integer_affinity(value: Any) -> Any:
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value):
            number = int(value)
            return number if I64_MIN <= number <= I64_MAX else float(number)
        if not _is_number(value):
            return value
        value = float(value)
    if isinstance(value, int):
        return value if I64_MIN <= value <= I64_MAX else float(value)
    if isinstance(value, float) and value.is_integer() and I64_MIN <= value <= I64_MAX:
        return int(value)  # a real with no fraction converts without loss
    return value
