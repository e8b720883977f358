"""The stored ``airflow_backup`` object of source snapshots: reading it back, and the values a
later backup or a restore reads from an earlier export."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_backup.sources.base import restored_stats
from airflow_backup.sources.checksum import row_checksum
from airflow_backup.sources.metadata import TableStats, json_int, json_object, read_metadata
from airflow_backup.sources.sql import SqlTable


def test_only_an_object_with_a_source_object_is_a_source_backup() -> None:
    meta = {"format": 1, "source": {"kind": "sqlite"}, "export": {}, "validation": {}}
    assert read_metadata(meta) is meta
    others: list[object] = [None, "x", [], {}, {"source": "sqlite"}, {"drill": {"source": {}}}]
    for other in others:
        assert read_metadata(other) is None


def test_stored_numbers_are_read_as_ints() -> None:
    assert [json_int(v) for v in (7, 7.0, "7", "", None, True)] == [7, 7, 7, 0, 0, 1]
    assert json_int([1]) == 0
    assert json_object({"a": 1}) == {"a": 1}
    assert json_object([1]) == {}


@pytest.mark.parametrize("value", [
    None, 5, 1.5, "b", Decimal("1.20"), date(2024, 2, 29),
    datetime(2024, 2, 29, 12, 30, 1, 5), datetime(2024, 2, 29, 12, 30, tzinfo=UTC)])
def test_a_watermark_survives_its_stored_form(value: object) -> None:
    stored = SqlTable.encode_watermark(value)
    if value is None:
        assert stored is None
        return
    assert stored is not None
    back = SqlTable.decode_watermark(stored)
    assert back == value
    assert type(back) is type(value)


def test_the_row_checksum_ignores_order_and_normalises_values() -> None:
    rows = [(1, "a", Decimal("1.50")), (2, None, b"\x00")]
    assert row_checksum(rows) == row_checksum(list(reversed(rows)))
    assert row_checksum([(1, Decimal("1.5"))]) == row_checksum([[1.0, Decimal("1.50")]])
    assert row_checksum(rows[1:], row_checksum(rows[:1])) == row_checksum(rows)
    assert row_checksum([(1,)]) != row_checksum([("1",)])


def test_a_missing_restored_table_has_no_row_count() -> None:
    actual: dict[str, TableStats] = {"t": {"rows": 3, "checksum": "sum:1"}, "u": {"rows": 0}}
    assert restored_stats(actual, "t") == (3, "sum:1")
    assert restored_stats(actual, "u") == (0, "")
    assert restored_stats(actual, "v") == (None, "")
