"""`gateway price list|set|delete` against real ledger files."""

from __future__ import annotations

import json
import pathlib

import pytest

from proxy.accounts.bundled_prices import BUNDLED_PRICES, BUNDLED_PRICES_DATE
from proxy.accounts.store import AccountStore
from proxy.cli import gateway_main


@pytest.fixture
def db(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("TOKENWAY_CONFIG", raising=False)
    monkeypatch.delenv("TOKENWAY_DB", raising=False)
    return str(tmp_path / "ledger.db")


def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert gateway_main(["price", "list", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_set_list_delete(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["price", "set", "house-*", "--input", "0.2", "--output", "0.6",
                         "--cache-read", "0.02", "--db", db]) == 0
    assert "house-*: input 0.2, output 0.6, cache_read 0.02, cache_write 0.2" in \
        capsys.readouterr().out
    with AccountStore(db) as store:
        assert store.prices()[0]["cache_write"] is None  # stored as given: input's price
    out = listed(capsys, "--db", db)
    assert out["bundled_date"] == BUNDLED_PRICES_DATE
    first = out["prices"][0]
    assert first == {"pattern": "house-*", "input": 0.2, "output": 0.6, "cache_read": 0.02,
                     "cache_write": 0.2, "source": "database", "shadowed": False}
    assert len(out["prices"]) == 1 + len(BUNDLED_PRICES)
    assert gateway_main(["price", "delete", "house-*", "--db", db]) == 0
    capsys.readouterr()
    assert listed(capsys, "--db", db)["prices"][0]["source"] == "bundled"
    assert gateway_main(["price", "delete", "house-*", "--db", db]) == 1
    assert "no price for 'house-*'" in capsys.readouterr().err


def test_config_prices_come_first_and_shadow(db: str, tmp_path: pathlib.Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tokenway.toml"
    cfg.write_text('[prices."gpt-4o"]\ninput = 1\noutput = 2\n')
    prices = listed(capsys, "--db", db, "--config", str(cfg))["prices"]
    assert prices[0]["source"] == "config" and prices[0]["pattern"] == "gpt-4o"
    bundled = [p for p in prices if p["pattern"] == "gpt-4o" and p["source"] == "bundled"]
    assert bundled[0]["shadowed"] is True
    assert not (tmp_path / "ledger.db").exists()  # listing never creates the database


def test_table_shows_the_date(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["price", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["PATTERN", "INPUT", "OUTPUT", "CACHE_READ",
                                           "CACHE_WRITE", "SOURCE"]
    assert "claude-sonnet-4-5*" in out and BUNDLED_PRICES_DATE in out


def test_tokenway_db_is_honoured(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TOKENWAY_CONFIG", raising=False)
    monkeypatch.setenv("TOKENWAY_DB", str(tmp_path / "env.db"))
    assert gateway_main(["price", "set", "m", "--input", "1", "--output", "1"]) == 0
    with AccountStore(str(tmp_path / "env.db")) as store:
        assert [p["pattern"] for p in store.prices()] == ["m"]


@pytest.mark.parametrize("argv", [
    ["set", "m", "--input", "-1", "--output", "1"],
    ["set", "m", "--input", "nan", "--output", "1"],
    ["set", "m", "--input", "1"],
    ["set", "", "--input", "1", "--output", "1"],
    ["frobnicate"],
])
def test_bad_arguments(db: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["price", *argv, "--db", db]) == 2
    assert capsys.readouterr().err


def test_gateway_help_lists_price(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["--help"]) == 0
    assert "price" in capsys.readouterr().out
