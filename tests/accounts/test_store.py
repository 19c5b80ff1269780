"""The accounts store: users, keys and prices in the ledger's database, the SQLite
file or PostgreSQL (each test runs on both; tests/pgdb.py)."""

from __future__ import annotations

import pathlib
import re

import pytest

from proxy.accounts.keys import key_hash, parse_duration
from proxy.accounts.model import AccountError, Limits, model_allowed
from proxy.accounts.store import AccountStore
from proxy.ledger import parse_storage_url
from tests.pgdb import pg_url_fixture  # noqa: F401 (the pg_url fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AccountStore:
    if request.param == "sqlite":
        s = AccountStore(str(tmp_path / "ledger.db"))
    else:
        s = AccountStore(parse_storage_url(request.getfixturevalue("pg_url")))
    yield s
    s.close()


def test_a_key_is_shown_once_and_stored_as_a_hash(tmp_path) -> None:
    store = AccountStore(str(tmp_path / "ledger.db"))
    key, secret = store.create_key(name="ci")
    assert re.fullmatch(r"tw-[A-Za-z0-9_-]{43}", secret)
    assert key.id.startswith("key_") and key.hint == f"{secret[:7]}...{secret[-4:]}"
    snap = store.snapshot()
    (row,) = snap.keys
    assert row.digest == key_hash(secret.encode()) and row.key.id == key.id
    raw = (tmp_path / "ledger.db").read_bytes() + _wal(tmp_path)
    assert secret.encode() not in raw and secret[3:].encode() not in raw
    store.close()


def _wal(tmp_path: pathlib.Path) -> bytes:
    wal = tmp_path / "ledger.db-wal"
    return wal.read_bytes() if wal.exists() else b""


def test_every_change_bumps_the_version(store: AccountStore) -> None:
    v0 = store.version()
    store.add_user("alice", role="admin", email="alice@example.com")
    key, _ = store.create_key(user="alice", limits=Limits(models=("gpt-*",), rpm=5))
    store.revoke_key(key.id)
    store.set_price("my-model", input=1.0, output=2.0)
    assert store.version() == v0 + 4


def test_refusals_name_what_is_wrong(store: AccountStore) -> None:
    store.add_user("bob")
    with pytest.raises(AccountError) as e:
        store.add_user("bob")
    assert e.value.kind == "conflict"
    with pytest.raises(AccountError) as e:
        store.create_key(user="nobody")
    assert e.value.kind == "not_found"
    for bad in (dict(rpm=0), dict(tpm=-1), dict(budget_usd=5.0),
                dict(budget_usd=float("nan"), budget_period="day"), dict(models=("",))):
        with pytest.raises(AccountError) as e:
            Limits(**bad)
        assert e.value.kind == "invalid"
    with pytest.raises(AccountError):
        store.add_user("has space")
    with pytest.raises(AccountError):
        store.set_price("x", input=1.0)
    # A refused change leaves nothing behind.
    assert [u.name for u in store.users()] == ["bob"]


def test_rotate_keeps_the_id_and_changes_the_secret(store: AccountStore) -> None:
    key, old = store.create_key(name="k", limits=Limits(tpm=100))
    rotated, new = store.rotate_key(key.id)
    assert rotated.id == key.id and rotated.limits.tpm == 100 and new != old
    digests = {r.digest for r in store.snapshot().keys}
    assert digests == {key_hash(new.encode())}
    store.revoke_key(key.id)
    with pytest.raises(AccountError):
        store.rotate_key(key.id)


def test_expiry_and_state(store: AccountStore) -> None:
    key, _ = store.create_key(expires_in_s=parse_duration("30d"))
    assert key.state(key.created) == "active"
    assert key.state(key.created + 31 * 86_400) == "expired"
    assert store.revoke_key(key.id).state(key.created) == "revoked"
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_model_globs() -> None:
    assert model_allowed(None, "anything")
    assert model_allowed(("gpt-4o*", "claude-*"), "claude-sonnet-4")
    assert not model_allowed(("gpt-4o*",), "gpt-5")
    assert not model_allowed((), "gpt-4o")
