"""Resources.feed: a stored file streamed into a real child process's standard input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from airflow_backup.errors import ConfigError, RestoreError, ValidationFailed
from airflow_backup.sources.base import SourceRestoreOptions, StoredExport
from airflow_backup.sources.process import Resources


class _Reader:
    """A SnapshotReader with one file; fails after ``fail_after`` bytes if set."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data = data
        self.fail_after = fail_after

    def copy_to(self, path: str, out: BinaryIO) -> int:
        if self.fail_after is not None:
            out.write(self.data[: self.fail_after])
            out.flush()
            raise OSError("repository read failed")
        for i in range(0, len(self.data), 65536):
            out.write(self.data[i:i + 65536])
        return len(self.data)


@pytest.fixture
def res() -> Any:
    r = Resources()
    yield r
    r.close()


def test_feed_streams_the_whole_file(res: Resources, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    out = tmp_path / "out"
    res.feed(["sh", "-c", f"cat > '{out}'"], "cat", _Reader(data), "f")  # type: ignore[arg-type]
    assert out.read_bytes() == data


def test_child_that_stops_reading_early_is_judged_by_its_status(res: Resources) -> None:
    big = b"x" * (4 << 20)  # far more than a pipe holds
    res.feed(["head", "-c", "10"], "head", _Reader(big), "f")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="exit status 3"):
        res.feed(["sh", "-c", "head -c 10 >/dev/null; exit 3"], "early", _Reader(big), "f",  # type: ignore[arg-type]
                 error=ValidationFailed)


def test_failing_child_raises_the_given_error(res: Resources) -> None:
    with pytest.raises(RestoreError, match="bad client"):
        res.feed(["sh", "-c", "cat >/dev/null; echo 'ERROR: syntax' >&2; exit 1"],
                 "bad client", _Reader(b"data"), "f")  # type: ignore[arg-type]


def test_read_failure_kills_the_child_before_it_sees_end_of_input(
        res: Resources, tmp_path: Path) -> None:
    # A client that commits at end of input (psql --single-transaction) must never get a
    # clean EOF after a cut-off dump: the marker is written only if cat ends normally.
    marker = tmp_path / "committed"
    with pytest.raises(OSError, match="repository read failed"):
        res.feed(["sh", "-c", f"cat >/dev/null && touch '{marker}'"], "client",
                 _Reader(b"x" * 1000, fail_after=500), "f")  # type: ignore[arg-type]
    # Let the client finish on its own if it still can (a closed stdin would let it).
    for child in res._children:
        child.proc.wait(timeout=30)
    assert not marker.exists()


def _stored(databases: list[str]) -> StoredExport:
    return StoredExport("id", "t", {"source": {"databases": databases}}, _Reader(b""))  # type: ignore[arg-type]


def test_source_database_is_the_named_or_the_only_one() -> None:
    assert SourceRestoreOptions().source_database(_stored(["app"])) == "app"
    assert SourceRestoreOptions(database="b").source_database(_stored(["a", "b"])) == "b"
    with pytest.raises(ConfigError, match="a, b: choose one with --database"):
        SourceRestoreOptions().source_database(_stored(["a", "b"]))
    with pytest.raises(ConfigError, match="choose one"):
        SourceRestoreOptions(database="c").source_database(_stored(["a", "b"]))
