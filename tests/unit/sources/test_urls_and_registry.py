"""Source URLs (parsing, redaction, password refusal), scheme dispatch and error mapping."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import unquote

import pytest

from airflow_backup.errors import (
    ConfigError,
    DumpFailed,
    SourceAuthFailed,
    SourceUnavailable,
    ToolMissing,
)
from airflow_backup.sources.airflow_metadata import sqlalchemy_to_source_url
from airflow_backup.sources.base import SourceURL, source_password
from airflow_backup.sources.process import classify_failure, find_tool
from airflow_backup.sources.registry import is_source_url, open_source, source_for_kind


def test_password_in_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        SourceURL.parse("postgresql://u:topsecret@h:5432/db")
    assert "topsecret" not in str(info.value)
    assert "AIRFLOW_BACKUP_SOURCE_PASSWORD" in str(info.value)


def test_redacted_url_drops_password_and_secret_parameters() -> None:
    url = SourceURL.parse("mysql://app:pw%40x@db.example:3306/shop?token=abc&table=t",
                          allow_password=True)
    assert url.password == "pw@x"
    assert url.redacted() == "mysql://app@db.example:3306/shop?table=t"
    assert "pw@x" not in repr(url)


def test_database_and_params() -> None:
    url = SourceURL.parse("postgresql://u@h/db?format=directory&jobs=4&globals=yes")
    assert (url.database, url.param("jobs"), url.flag("globals"), url.flag("nope")) == (
        "db", "4", True, False)
    assert url.with_database("other").redacted() == \
        "postgresql://u@h/other?format=directory&jobs=4&globals=yes"


def test_source_password_order(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    url = SourceURL.parse("postgresql://u@h/db")
    for var in ("AIRFLOW_BACKUP_SOURCE_PASSWORD", "AIRFLOW_BACKUP_SOURCE_PASSWORD_FILE",
                "PGPASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert source_password(url, "PGPASSWORD") is None
    monkeypatch.setenv("PGPASSWORD", "native")
    assert source_password(url, "PGPASSWORD") == "native"
    path = f"{tmp_path}/pw"
    with open(path, "w") as f:
        f.write("from-file\n")
    monkeypatch.setenv("AIRFLOW_BACKUP_SOURCE_PASSWORD_FILE", path)
    assert source_password(url, "PGPASSWORD") == "from-file"
    monkeypatch.setenv("AIRFLOW_BACKUP_SOURCE_PASSWORD", "explicit")
    assert source_password(url, "PGPASSWORD") == "explicit"


@pytest.mark.parametrize("text,expected", [
    ("postgresql://u@h/db", True), ("table+sqlite:///x.db?table=t", True),
    ("s3://bucket/prefix", True), ("airflow:///opt/airflow", True),
    ("/srv/data", False), ("relative/dir", False), ("ftp://host/x", False),
    ("local:/srv/repo", False),
])
def test_is_source_url(text: str, expected: bool) -> None:
    assert is_source_url(text) is expected


def test_unknown_scheme_and_kind_mismatch() -> None:
    with pytest.raises(ConfigError):
        open_source("nosuch://x")
    with pytest.raises(ConfigError, match="cannot restore a postgresql backup"):
        source_for_kind("postgresql", "mysql://root@h/db")


@pytest.mark.parametrize("text,scheme,path", [
    ("sqlite:////opt/airflow/airflow.db", "sqlite", "/opt/airflow/airflow.db"),
    ("postgresql+psycopg2://a:b@db:5432/airflow", "postgresql", "/airflow"),
    ("mysql+mysqldb://a:b@db/airflow", "mysql", "/airflow"),
])
def test_sqlalchemy_urls(text: str, scheme: str, path: str) -> None:
    url = sqlalchemy_to_source_url(text)
    assert (url.scheme, url.path) == (scheme, path)
    assert "b@" not in url.redacted()


def test_classify_failure() -> None:
    assert isinstance(classify_failure("pg", 'FATAL:  role "x" does not exist'),
                      SourceAuthFailed)
    assert isinstance(classify_failure("pg", "password authentication failed for user"),
                      SourceAuthFailed)
    assert isinstance(classify_failure("my", "Access denied for user 'a'@'b'"), SourceAuthFailed)
    assert isinstance(classify_failure("pg", "connection refused\nIs the server running"),
                      SourceUnavailable)
    err = classify_failure("pg_dump", "pg_dump: error: Dumping the contents of table failed")
    assert isinstance(err, DumpFailed) and "\n" not in str(err)


def test_find_tool_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match="postgresql-client"):
        find_tool("pg_dump")


def test_package_exports_load_lazily_from_their_modules() -> None:
    import airflow_backup.sources as pkg

    assert sorted(pkg.__all__) == sorted(pkg._HOMES)
    for name, home in pkg._HOMES.items():
        module = importlib.import_module(f"airflow_backup.sources.{home}")
        assert getattr(pkg, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pkg.no_such_name


@pytest.mark.parametrize("url", [
    "postgresql://postgres:S3cr3t/XYZZY@127.0.0.1:5432/appdb",
    "mysql://root:S3cr3t#XYZZY@127.0.0.1/mysql",
    "mysql://root:S3cr3t?XYZZY@127.0.0.1/mysql",
    "postgresql://postgres:S3cr3t\uff0fXYZZY@127.0.0.1:5432/appdb",
    "postgresql://postgres:1234/XYZZY@127.0.0.1:5432/appdb",
])
def test_a_password_the_parser_trips_on_is_never_echoed(url: str) -> None:
    """Python's URL parser quotes the part it cannot read; with a raw '/', '#' or '?' in a
    password that part is the password."""
    for allow in (False, True):
        with pytest.raises(ConfigError) as info:
            SourceURL.parse(url, allow_password=allow)
        assert "S3cr3t" not in str(info.value) and "XYZZY" not in str(info.value)
        assert "%-encode" in str(info.value)


def test_redaction_drops_every_credential_option_and_nested_user_information() -> None:
    url = SourceURL.parse("postgresql://u@h/db?sslpassword=a-XYZZY&sslkeypassword=b-XYZZY"
                          "&sslmode=require")
    assert url.redacted() == "postgresql://u@h/db?sslmode=require"
    store = SourceURL.parse("s3://bucket/prefix?aws_secret_access_key=c-XYZZY"
                            "&endpoint_url=http://key:d-XYZZY@127.0.0.1:9000&sas_token=e")
    assert "XYZZY" not in store.redacted()
    assert "endpoint_url=http://127.0.0.1:9000" in unquote(store.redacted())


def test_sqlalchemy_url_password_follows_sqlalchemy_rules() -> None:
    """Airflow (SQLAlchemy) accepts a raw '/', '#' or '?' in a password: the password runs
    to the first '@'. It must be read, not echoed in an error."""
    url = sqlalchemy_to_source_url(
        "postgresql+psycopg2://afrs:S3cr3t/X#Y?Z@127.0.0.1:5433/afdb?sslmode=disable")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "afrs", "S3cr3t/X#Y?Z", "127.0.0.1", 5433, "afdb")
    assert "S3cr3t" not in url.redacted()
    assert sqlalchemy_to_source_url("mysql+pymysql://root:p%40ss@db/airflow").password == "p@ss"
    plain = sqlalchemy_to_source_url("postgresql://airflow@db:5432/airflow")
    assert (plain.username, plain.password, plain.host) == ("airflow", "", "db")


@pytest.mark.parametrize("url, unknown", [
    ("postgresql://u@db/app?fromat=custom", "fromat"),
    ("s3://bucket/prefix?endpoint=http://127.0.0.1:9000", "endpoint"),
    ("table+postgresql://u@db/app?table=t&watermak=id", "watermak"),
    ("sqlite:///srv/app.db?mode=ro", "mode"),
    ("mysql://root@db/app?format=custom", "format"),
    ("airflow:///opt/airflow?conn=meta", "conn"),
])
def test_a_misspelt_option_is_an_error_naming_the_known_ones(url: str, unknown: str) -> None:
    """A typo must not silently make a plain dump, or send an s3:// backup to real AWS."""
    from airflow_backup.sources.registry import open_source

    with pytest.raises(ConfigError) as info:
        open_source(url)
    message = str(info.value)
    assert message.startswith(f"unknown option(s) {unknown} for ")
    assert "(known: " in message


def test_the_jobs_config_refuses_a_misspelt_option_when_it_is_read(tmp_path: Path) -> None:
    from airflow_backup.errors import InvalidConfigFile
    from airflow_backup.jobs.load import parse_config

    data = {"repositories": {"r": {"url": str(tmp_path), "password_env": "P"}},
            "jobs": {"j": {"repository": "r",
                           "sources": ["postgresql://u@db/app?fromat=custom"]}}}
    with pytest.raises(InvalidConfigFile) as info:
        parse_config(data)
    assert info.value.problems == [
        "jobs.j.sources: unknown option(s) fromat for postgresql:// sources (known: "
        "checksum_max_mb, format, globals, jobs, owner, passfile)"]
