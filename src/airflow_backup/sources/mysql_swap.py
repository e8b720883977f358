"""Moving every object of one MariaDB/MySQL database into another, for staged restores.

MariaDB has no ``RENAME DATABASE``. A restore is replayed into a staging database and checked
there; only then is it swapped into the target by :func:`swap_in` (``--clean``: the target's
old objects are moved aside first and dropped only after the new ones are in place) or merged
by :func:`merge_in` (``--force``: refused before anything moves if a name is taken).

Tables (base, system-versioned and sequences) move with one ``RENAME TABLE`` statement, which
the server applies atomically. Triggers cannot follow a table into another database, and
views, routines and events belong to their database, so they are recreated from their
``SHOW CREATE`` text (with the sql_mode they were created under) and dropped at the source.
The target database itself is never dropped: its character set, collation and grants stay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql

from airflow_backup.errors import RestoreError

__all__ = ["Objects", "list_objects", "merge_in", "swap_in"]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(slots=True)
class Objects:
    """The named objects of one database, by kind."""

    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def names(self) -> Iterator[tuple[str, str]]:
        """Yield ``(kind, name)`` for every object."""
        for kind in ("tables", "views", "triggers", "procedures", "functions", "events"):
            for name in getattr(self, kind):
                yield kind, name


def _column(cur: Any, query: str, params: tuple[Any, ...]) -> list[str]:
    cur.execute(query, params)
    return [str(r[0]) for r in cur.fetchall()]


def list_objects(conn: Any, db: str) -> Objects:
    """Return the objects of database ``db``."""
    with conn.cursor() as cur:
        return Objects(
            tables=_column(cur, "SELECT table_name FROM information_schema.tables WHERE "
                           "table_schema = %s AND table_type <> 'VIEW' ORDER BY 1", (db,)),
            views=_column(cur, "SELECT table_name FROM information_schema.views WHERE "
                          "table_schema = %s ORDER BY 1", (db,)),
            triggers=_column(cur, "SELECT trigger_name FROM information_schema.triggers "
                             "WHERE trigger_schema = %s ORDER BY action_order, 1", (db,)),
            procedures=_column(cur, "SELECT routine_name FROM information_schema.routines "
                               "WHERE routine_schema = %s AND routine_type = 'PROCEDURE' "
                               "ORDER BY 1", (db,)),
            functions=_column(cur, "SELECT routine_name FROM information_schema.routines "
                              "WHERE routine_schema = %s AND routine_type = 'FUNCTION' "
                              "ORDER BY 1", (db,)),
            events=_column(cur, "SELECT event_name FROM information_schema.events WHERE "
                           "event_schema = %s ORDER BY 1", (db,)))


@dataclass(frozen=True, slots=True)
class _Definition:
    kind: str  # TRIGGER, VIEW, PROCEDURE, FUNCTION, EVENT
    name: str
    sql_mode: str
    statement: str


def _definitions(cur: Any, db: str, objects: Objects) -> list[_Definition]:
    """Return the CREATE statements of everything but tables, in the order to recreate:
    routines first (views and triggers may call them), then views, triggers, events."""
    out: list[_Definition] = []
    for kind, names in (("PROCEDURE", objects.procedures), ("FUNCTION", objects.functions),
                        ("VIEW", objects.views), ("TRIGGER", objects.triggers),
                        ("EVENT", objects.events)):
        for name in names:
            cur.execute(f"SHOW CREATE {kind} {_q(db)}.{_q(name)}")
            row = cur.fetchone()
            cols = [str(d[0]).lower() for d in cur.description]
            values = dict(zip(cols, row, strict=True))
            if kind == "VIEW":
                # The server writes a view's body with every table qualified by its database.
                statement = str(values["create view"]).replace(f"{_q(db)}.", "")
                sql_mode = ""
            else:
                statement = str(values.get(f"create {kind.lower()}")
                                or values.get("sql original statement") or "")
                sql_mode = str(values.get("sql_mode") or "")
            out.append(_Definition(kind, name, sql_mode, statement))
    return out


def _move(conn: Any, src: str, dst: str, objects: Objects) -> None:
    """Move ``objects`` from ``src`` to ``dst`` (which holds none of their names)."""
    with conn.cursor() as cur:
        definitions = _definitions(cur, src, objects)
        cur.execute("SELECT @@SESSION.sql_mode")
        (mode,) = cur.fetchone()
        for d in definitions:  # triggers first of all: they pin their table to its database
            if d.kind == "TRIGGER":
                cur.execute(f"DROP TRIGGER {_q(src)}.{_q(d.name)}")
        if objects.tables:
            try:
                cur.execute("RENAME TABLE " + ", ".join(
                    f"{_q(src)}.{_q(t)} TO {_q(dst)}.{_q(t)}" for t in objects.tables))
            except pymysql.MySQLError:
                # Nothing moved (the rename is atomic): put the triggers back.
                cur.execute(f"USE {_q(src)}")
                _create(cur, [d for d in definitions if d.kind == "TRIGGER"], mode)
                raise
        for d in definitions:
            if d.kind != "TRIGGER":
                cur.execute(f"DROP {d.kind} {_q(src)}.{_q(d.name)}")
        cur.execute(f"USE {_q(dst)}")
        _create(cur, definitions, mode)


def _create(cur: Any, definitions: list[_Definition], mode: str) -> None:
    """Run the CREATE statements in the current database, each under its own sql_mode."""
    try:
        pending = definitions
        while pending:
            # A view may select from a view later in the list: retry until none is left.
            failed: list[_Definition] = []
            error: pymysql.MySQLError | None = None
            for d in pending:
                cur.execute("SET SESSION sql_mode = %s", (d.sql_mode or mode,))
                try:
                    cur.execute(d.statement)
                except pymysql.MySQLError as exc:
                    if d.kind != "VIEW":
                        raise
                    failed.append(d)
                    error = exc
            if error is not None and len(failed) == len(pending):
                raise error
            pending = failed
    finally:
        cur.execute("SET SESSION sql_mode = %s", (mode,))


def merge_in(conn: Any, staging: str, target: str) -> None:
    """Move everything from ``staging`` into the existing ``target``. Raise RestoreError,
    before anything moves, if ``target`` already has an object of the same name."""
    new, old = list_objects(conn, staging), list_objects(conn, target)
    existing = {n for _, n in old.names()}
    taken = [n for _, n in new.names() if n in existing]  # tables first
    if taken:
        raise RestoreError(
            f"database {target!r} already has {', '.join(taken[:5])}"
            + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
            + ": --force only adds objects; pass --clean to replace the database's contents "
            "(target left as it was)")
    try:
        _move(conn, staging, target, new)
    except pymysql.MySQLError as exc:
        raise RestoreError(f"moving the restored objects into {target!r} failed: "
                           f"{exc.args[-1]}") from None


def swap_in(conn: Any, staging: str, target: str, aside: str) -> None:
    """Replace the contents of ``target`` with those of ``staging``: the old objects are moved
    into the new database ``aside`` and dropped with it once the new ones are in place. If
    the swap fails, the old objects are moved back; if even that fails, the error names
    ``aside``, which then still holds them."""
    old, new = list_objects(conn, target), list_objects(conn, staging)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {_q(aside)}")
    try:
        _move(conn, target, aside, old)
        _move(conn, staging, target, new)
    except pymysql.MySQLError as exc:
        problem = str(exc.args[-1])
        try:
            # Whatever of the new contents reached the target goes back to staging first.
            _move(conn, target, staging, list_objects(conn, target))
            _move(conn, aside, target, list_objects(conn, aside))
        except pymysql.MySQLError:
            raise RestoreError(f"swapping the restored database into {target!r} failed "
                               f"({problem}); its previous contents are in database "
                               f"{aside!r}") from None
        _drop(conn, aside)
        raise RestoreError(f"swapping the restored database into {target!r} failed "
                           f"({problem}); target left as it was") from None
    _drop(conn, aside)


def _drop(conn: Any, db: str) -> None:
    with contextlib.suppress(pymysql.MySQLError), conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {_q(db)}")
