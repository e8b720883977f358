"""A PostgreSQL database's own properties, which ``pg_dump`` without ``--create`` leaves out.

Encoding and locale, owner, privileges (ACL), comment and ``ALTER DATABASE … SET`` settings
are read at backup time (:func:`read_properties`), given to a database the restore creates
(:func:`create_database`, :func:`apply_properties`) and compared afterwards
(:func:`compare_properties`). A property that cannot be given (a role or locale the target
server lacks) is reported, never fatal: the data is what must come back.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from airflow_backup.jsontypes import JSONObject

__all__ = ["apply_properties", "compare_properties", "create_database", "read_properties"]

_PRIVILEGES = {"C": "CREATE", "T": "TEMPORARY", "c": "CONNECT"}
_ACLITEM = re.compile(r'^(?P<grantee>"(?:[^"]|"")*"|[^=]*)=(?P<privs>[A-Za-z*]*)/')


def read_properties(conn: psycopg.Connection[Any], database: str) -> JSONObject:
    """Return the properties of ``database`` (as JSON, stored with the snapshot)."""
    row = conn.execute(
        "SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
        "pg_get_userbyid(d.datdba), d.datacl::text[], shobj_description(d.oid, 'pg_database'), "
        "(SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting s, unnest(s.setconfig) c "
        " WHERE s.setdatabase = d.oid AND s.setrole = 0) "
        "FROM pg_database d WHERE d.datname = %s", (database,)).fetchone()
    if row is None:
        return {}
    encoding, collate, ctype, owner, acl, comment, settings = row
    return {"encoding": encoding, "lc_collate": collate, "lc_ctype": ctype, "owner": owner,
            "acl": list(acl) if acl is not None else None, "comment": comment,
            "settings": list(settings or [])}


def create_database(admin: psycopg.Connection[Any], name: str, props: JSONObject) -> list[str]:
    """Create ``name`` with the recorded encoding and locale (from template0); return notes.
    If the server cannot (a locale it lacks), create it with its defaults and say so."""
    if props.get("encoding"):
        try:
            admin.execute(sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
            ).format(sql.Identifier(name), sql.Literal(str(props["encoding"])),
                     sql.Literal(str(props.get("lc_collate"))),
                     sql.Literal(str(props.get("lc_ctype")))))
            return []
        except psycopg.Error as exc:
            note = (f"encoding/locale {props['encoding']}/{props.get('lc_collate')} not "
                    f"available here ({str(exc).splitlines()[0]}): server defaults used")
    else:
        note = ""
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return [note] if note else []


def _roles(admin: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in admin.execute("SELECT rolname FROM pg_roles").fetchall()}


def apply_properties(admin: psycopg.Connection[Any], name: str, props: JSONObject,
                     owner: bool = True) -> list[str]:
    """Give the database ``name`` the recorded settings, comment, privileges and (if
    ``owner``) owner; return a note for each one that could not be given."""
    notes: list[str] = []
    ident = sql.Identifier(name)
    roles = _roles(admin)
    settings = props.get("settings")
    for setting in settings if isinstance(settings, list) else []:
        key, _, value = str(setting).partition("=")
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                ident, sql.Identifier(key), sql.Literal(value)))
        except psycopg.Error as exc:
            notes.append(f"setting {key}: {str(exc).splitlines()[0]}")
    if props.get("comment"):
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            ident, sql.Literal(str(props["comment"]))))
    acl = props.get("acl")
    if owner and isinstance(acl, list):
        admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
        for item in acl:
            match = _ACLITEM.match(str(item))
            if match is None:
                continue
            grantee = match["grantee"].strip('"').replace('""', '"')
            privs = [p for p in _PRIVILEGES if p in match["privs"]]
            if not privs or grantee == props.get("owner"):
                continue
            if grantee and grantee not in roles:
                notes.append(f"privileges of role {grantee}: no such role here")
                continue
            admin.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(_PRIVILEGES[p]) for p in privs), ident,
                sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")))
    recorded_owner = str(props.get("owner") or "")
    if owner and recorded_owner:
        if recorded_owner in roles:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                ident, sql.Identifier(recorded_owner)))
        else:
            notes.append(f"owner {recorded_owner}: no such role here")
    return notes


def compare_properties(admin: psycopg.Connection[Any], name: str, props: JSONObject,
                       owner: bool = True) -> list[str]:
    """Return how the properties of ``name`` differ from the recorded ones."""
    now = read_properties(admin, name)
    keys = ["encoding", "lc_collate", "lc_ctype", "comment", "settings"]
    if owner:
        keys += ["owner", "acl"]
    def same(key: str) -> bool:
        a, b = now.get(key), props.get(key)
        if key == "acl" and isinstance(a, list) and isinstance(b, list):
            return sorted(map(str, a)) == sorted(map(str, b))  # the order means nothing
        return a == b

    return [f"{k}: {now.get(k)!r} (backup: {props.get(k)!r})" for k in keys
            if k in props and not same(k)]
