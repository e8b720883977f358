"""Airflow connections, read without importing Airflow.

A jobs config may name an Airflow connection where it needs a secret or a location: a
repository (``repositories.NAME.connection``), the metadata database of an ``airflow://``
source (``?conn_id=``). :func:`get_connection` returns its fields. Inside Airflow the provider
installs a lookup through Airflow itself (:func:`set_lookup`), so the connection may live in
the metadata database or any secrets backend; elsewhere (the CLI under cron) it is read from
the environment variable Airflow itself reads, ``AIRFLOW_CONN_<ID>``, in either of Airflow's
formats (JSON, or a URI). Fields are never logged: the password is a secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject

__all__ = ["ConnectionFields", "apprise_urls", "from_environment", "get_connection",
           "set_lookup"]


@dataclass(frozen=True, slots=True)
class ConnectionFields:
    """The fields of an Airflow connection (``extra`` parsed as JSON)."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    schema: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    port: int | None = None
    extra: JSONObject = field(default_factory=dict)

    def __repr__(self) -> str:  # never the password, nor extra (it may hold tokens)
        return f"ConnectionFields(conn_id={self.conn_id!r}, conn_type={self.conn_type!r})"

    def database_url(self) -> str:
        """Return the connection as a database URL (``postgresql://``, ``mysql://``,
        ``sqlite:///path``), password included: for a child's environment only."""
        from urllib.parse import quote

        kind = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql",
                "mariadb": "mysql", "sqlite": "sqlite"}.get(self.conn_type.replace("-", "_"))
        if kind is None:
            raise ConfigError(f"connection {self.conn_id!r} is of type {self.conn_type!r}, "
                              "not a postgres, mysql or sqlite database")
        if kind == "sqlite":  # sqlite:////abs/path, as SQLAlchemy spells an absolute path
            return f"sqlite:///{self.host}"
        auth = quote(self.login, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        where = self.host + (f":{self.port}" if self.port else "")
        return f"{kind}://{auth + '@' if auth else ''}{where}/{quote(self.schema, safe='')}"


def apprise_urls(conn: ConnectionFields) -> list[str]:
    """Return the Apprise URLs a connection holds: ``extra.urls`` (a list, or one URL), else
    its host (the convention of the provider's BackupNotifier ``apprise_conn_id``)."""
    urls = conn.extra.get("urls") or conn.host
    if isinstance(urls, str):
        return [urls] if urls else []
    if isinstance(urls, list):
        return [str(u) for u in urls if u]
    raise ConfigError(f"connection {conn.conn_id!r}: extra 'urls' must be a list of "
                      "Apprise URLs")


Lookup = Callable[[str], ConnectionFields]
_lookup: Lookup | None = None


def set_lookup(lookup: Lookup | None) -> None:
    """Make :func:`get_connection` ask ``lookup`` (the provider's, through Airflow); None
    restores the environment lookup."""
    global _lookup
    _lookup = lookup


def get_connection(conn_id: str) -> ConnectionFields:
    """Return connection ``conn_id``. Raise ConfigError if it is not defined."""
    if _lookup is not None:
        return _lookup(conn_id)
    return from_environment(conn_id)


def _extra(value: object, conn_id: str) -> JSONObject:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ConfigError(f"connection {conn_id!r}: its extra is not JSON") from None
    if not isinstance(value, dict):
        raise ConfigError(f"connection {conn_id!r}: its extra must be a JSON object")
    return value


def from_environment(conn_id: str) -> ConnectionFields:
    """Return connection ``conn_id`` from ``AIRFLOW_CONN_<ID>`` (JSON, or a URI such as
    ``backup-repository://:PASSWORD@/path?url=s3%3A%2F%2Fb``). Raise ConfigError if it is
    not set or cannot be read (the message never shows the value)."""
    var = "AIRFLOW_CONN_" + conn_id.upper()
    text = os.environ.get(var, "").strip()
    if not text:
        raise ConfigError(f"connection {conn_id!r} is not defined: outside Airflow, set "
                          f"{var} (JSON or URI, as Airflow reads it)")
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise ConnectionFormatError(var) from None
        if not isinstance(doc, dict):
            raise ConnectionFormatError(var)
        port = doc.get("port")
        return ConnectionFields(conn_id, str(doc.get("conn_type") or ""),
                                str(doc.get("host") or ""), str(doc.get("schema") or ""),
                                str(doc.get("login") or ""), str(doc.get("password") or ""),
                                int(port) if isinstance(port, int | str) and str(port) else None,
                                _extra(doc.get("extra") or {}, conn_id))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConnectionFormatError(var) from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: JSONObject = (_extra(query.pop("__extra__"), conn_id) if "__extra__" in query
                         else dict(query))
    host = parts.netloc.rpartition("@")[2]  # as written: hostname would lower-case it
    if port is not None:
        host = host.rsplit(":", 1)[0]
    return ConnectionFields(conn_id, parts.scheme.replace("-", "_"),
                            unquote(host), unquote(parts.path.lstrip("/")),
                            unquote(parts.username or ""), unquote(parts.password or ""),
                            port, extra)


class ConnectionFormatError(ConfigError):
    """An ``AIRFLOW_CONN_*`` variable is neither Airflow's JSON nor its URI format."""

    def __init__(self, var: str) -> None:
        super().__init__(f"{var} is neither a JSON object nor a connection URI")
