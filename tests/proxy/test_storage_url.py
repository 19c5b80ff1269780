"""Where the ledger is: ``--database-url`` / ``TOKENWAY_DATABASE_URL`` / ``[storage] url``
(proxy/ledger/url.py and the config layers), and that no password ever shows."""

from __future__ import annotations

import pytest

from proxy.config import load_config
from proxy.ledger.url import POSTGRESQL, SQLITE, mask_url, parse_storage_url
from tests.proxy.config_files import error_of, write_fixture  # noqa: F401 (the write fixture)

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(("text", "path"), [
    ("sqlite:///var/lib/tokenway.db", "/var/lib/tokenway.db"),
    ("sqlite://localhost/tmp/x.db", "/tmp/x.db"),
    ("sqlite:relative/x.db", "relative/x.db"),
    ("tokenway.db", "tokenway.db"),
    ("/abs/ledger.db", "/abs/ledger.db"),
    ("C:ledger.db", "C:ledger.db"),  # one letter is a drive, not a scheme
])
def test_sqlite_forms(text: str, path: str) -> None:
    where = parse_storage_url(text)
    assert (where.kind, where.path, where.dsn) == (SQLITE, path, None)


@pytest.mark.parametrize("text", [
    "postgresql://tokenway@db.internal:5432/ledger",
    "postgres://db.internal/ledger?sslmode=require",
    "postgresql:///ledger?host=/var/run/postgresql",
    "postgresql://[::1]:5433/ledger",
])
def test_postgresql_forms(text: str) -> None:
    where = parse_storage_url(text)
    assert (where.kind, where.path, where.dsn, where.shown) == (POSTGRESQL, None, text, text)


def test_password_is_masked_in_what_is_shown() -> None:
    where = parse_storage_url(f"postgresql://tw:{SECRET}@db:5432/ledger")
    assert where.dsn is not None and SECRET in where.dsn  # libpq needs it
    assert where.shown == "postgresql://tw:***@db:5432/ledger"
    query = parse_storage_url(
        f"postgresql://db/ledger?user=tw&password={SECRET}&sslmode=verify-full")
    assert query.shown == "postgresql://db/ledger?user=tw&password=***&sslmode=verify-full"


@pytest.mark.parametrize(("text", "reason"), [
    (f"postgresql://tw:{SECRET}@db:99999/ledger", "bad port"),
    (f"postgresql://tw:{SECRET}@db:port/ledger", "bad port"),
    (f"postgresql://tw:{SECRET}@db/a/b", "one database name"),
    (f"postgresql://tw:{SECRET}@db/ledger#frag", "no #fragment"),
    (f"mysql://tw:{SECRET}@db/ledger", "unsupported database URL"),
    ("sqlite://otherhost/x.db", "local file"),
    ("sqlite:", "no file path"),
    ("  ", "empty"),
])
def test_bad_urls_are_refused_without_the_password(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_storage_url(text)
    assert reason in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("text", [
    f"postgresql://tw:{SECRET}@[::1/ledger",  # does not parse
    f"postgresql://tw:{SECRET}/x@db/ledger",  # an unescaped "/" in the password
    f"postgresql://tw:{SECRET}@x@db/ledger",  # an unescaped "@"
])
def test_mask_url_of_awkward_text(text: str) -> None:
    assert SECRET not in mask_url(text)
    try:
        parse_storage_url(text)
    except ValueError as exc:
        assert SECRET not in str(exc)


# -- config layers -------------------------------------------------------------


def test_storage_url_from_each_layer(write) -> None:
    url = f"postgresql://tw:{SECRET}@db/ledger"
    path = write(f'[storage]\nurl = "{url}"\n[ledger]\npath = "spool/tw"\n')
    config = load_config(path, env={})
    assert config.ledger.database_url == url
    assert config.ledger.where == "postgresql://tw:***@db/ledger"
    assert config.ledger.path.endswith("spool/tw")  # the local spill journal's base
    assert SECRET not in repr(config.ledger) and SECRET not in repr(config)

    env = load_config(env={"TOKENWAY_DATABASE_URL": "postgresql://envhost/l"})
    assert env.ledger.database_url == "postgresql://envhost/l"
    flag = load_config(env={"TOKENWAY_DATABASE_URL": "postgresql://envhost/l"},
                       overrides={"database_url": "postgresql://flaghost/l"})
    assert flag.ledger.database_url == "postgresql://flaghost/l"


def test_sqlite_url_or_path_sets_the_ledger_path(write, tmp_path) -> None:
    config = load_config(env={"TOKENWAY_DATABASE_URL": "sqlite:///srv/tw.db"})
    assert (config.ledger.path, config.ledger.database_url) == ("/srv/tw.db", None)
    assert config.ledger.where == "/srv/tw.db"
    # Written in the file, a relative SQLite path is relative to the file.
    in_file = load_config(write('[storage]\nurl = "sqlite:data/tw.db"\n'), env={})
    assert in_file.ledger.path == str(tmp_path / "data" / "tw.db")
    # Without [storage] url, [ledger] path and --db work as before.
    assert load_config(env={}, overrides={"db": "x.db"}).ledger.path == "x.db"


def test_bad_storage_url_is_a_config_error_naming_its_source(write) -> None:
    message = error_of(write, "[server]\n", env={
        "TOKENWAY_DATABASE_URL": f"postgresql://tw:{SECRET}@db:70000/ledger"})
    assert message.startswith("storage.url (from TOKENWAY_DATABASE_URL): ")
    assert "bad port" in message and SECRET not in message
    assert "unknown key" in error_of(write, '[storage]\npath = "x"\n')
    assert "must be a string" in error_of(write, "[storage]\nurl = 5\n")
