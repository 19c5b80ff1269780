"""What ``Ledger.record()`` takes: any object with ``as_row()``.

The gateway builds one record per request on the event loop and hands it to
``Ledger.record()``; the writer thread calls ``as_row()`` later, off the loop, so
building the tuple costs the loop nothing. ``as_row()`` must return the values
in ``LEDGER_COLUMNS`` order (None for unknown) and must not depend on state the
loop changes after ``record()``: the record is read from another thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from proxy.ledger.schema import LEDGER_COLUMNS


class LedgerRecord(Protocol):
    def as_row(self) -> tuple[Any, ...]:
        """The row's values in ``LEDGER_COLUMNS`` order."""
        ...


class DictRecord:
    """A record from a dict keyed by ``LEDGER_COLUMNS`` names.

    Missing keys are None (stored as NULL or the column default); other keys
    are ignored. Do not change the dict after ``record()``.
    """

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def as_row(self) -> tuple[Any, ...]:
        return tuple(map(self.values.get, LEDGER_COLUMNS))

    def __repr__(self) -> str:
        return f"DictRecord({self.values!r})"
