"""Connections through Airflow: the lookup the provider installs for
:mod:`airflow_backup.connections`, so that a jobs config's ``connection:`` and ``conn_id``
references are read from Airflow's metadata database or any secrets backend (inside a task,
through the task SDK)."""

from __future__ import annotations

from airflow_backup.connections import ConnectionFields
from airflow_backup.errors import ConfigError

__all__ = ["airflow_connection"]


def airflow_connection(conn_id: str) -> ConnectionFields:
    """Return connection ``conn_id`` as Airflow resolves it. Raise ConfigError if Airflow
    does not know it."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(f"Airflow connection {conn_id!r} is not defined") from None
    extra = conn.extra_dejson
    return ConnectionFields(conn.conn_id, conn.conn_type or "", conn.host or "",
                            conn.schema or "", conn.login or "", conn.password or "",
                            conn.port, extra if isinstance(extra, dict) else {})
