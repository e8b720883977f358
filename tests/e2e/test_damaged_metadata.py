"""One damaged or malformed snapshot file costs that snapshot only: ``snapshots`` lists the
others with a warning naming the file, they restore, ``forget ID`` and ``repair snapshots
--forget ID`` remove the bad file by its id, and ``prune`` refuses (naming the file and the
command that removes it) until it is removed, so that it never deletes data on its own."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.base import FileType, Handle, object_path
from airflow_backup.storage.local import LocalStorage
from support.cli import ok, ok_stdout, one_line_error, run_cli

PW = "secret-pw"


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode()


def _snapshot_ids(repo: Path) -> list[str]:
    return [s["id"] for s in json.loads(ok_stdout(run_cli(repo, "snapshots", "--json")))]


def _flip_a_byte(repo: Path, snap_id: str) -> None:
    path = repo / object_path(Handle(FileType.SNAPSHOT, snap_id))
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _save_with_bad_time(repo: Path, like: str) -> str:
    """Store, through the engine, a copy of snapshot ``like`` whose time is not RFC 3339."""
    r = Repository.open(LocalStorage(repo), PW)
    good = r.load_snapshot(like)
    return r.save_snapshot(Snapshot(time="yesterday at noon", tree=good.tree,
                                    paths=list(good.paths), hostname=good.hostname))


@pytest.fixture
def two_snapshots(tmp_path: Path) -> tuple[Path, dict[str, Path], list[str]]:
    """A repository with two snapshots, of src-a (older) and src-b."""
    repo = tmp_path / "repo"
    ok(run_cli(repo, "init"))
    sources = {}
    for name in ("a", "b"):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / f"{name}.txt").write_bytes(f"content of {name}\n".encode() * 300)
        (src / f"{name}.bin").write_bytes(os.urandom(150_000))
        ok(run_cli(repo, "backup", str(src)))
        sources[name] = src
    ids = _snapshot_ids(repo)
    assert len(ids) == 2
    return repo, sources, ids


def _assert_restores(repo: Path, snap: str, src: Path, target: Path) -> None:
    ok(run_cli(repo, "restore", snap[:8], "--target", str(target)))
    restored = target / src.relative_to("/")
    for f in src.iterdir():
        assert (restored / f.name).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("damage", ["flipped byte", "time not RFC 3339"])
def test_one_bad_snapshot_file_costs_only_itself(
        two_snapshots: tuple[Path, dict[str, Path], list[str]], tmp_path: Path,
        damage: str) -> None:
    repo, sources, (first, second) = two_snapshots
    if damage == "flipped byte":
        bad, good, good_src = first, second, sources["b"]
        _flip_a_byte(repo, bad)
        reason = "content does not match its id"
    else:
        bad = _save_with_bad_time(repo, first)
        good, good_src = second, sources["b"]
        ok(run_cli(repo, "forget", first[:8]))  # leave one good and one bad snapshot
        reason = "malformed snapshot: time: not an RFC 3339 time: a string 'yesterday at noon'"

    listed = ok(run_cli(repo, "snapshots"))
    assert good[:8] in listed.stdout.decode()
    assert bad[:8] not in listed.stdout.decode()
    assert "1 snapshots" in listed.stdout.decode()
    warning = _stderr(listed).strip()
    assert warning == f"skipping damaged snapshot file: snapshots/{bad}: {reason}", warning
    assert [s["id"] for s in json.loads(ok_stdout(run_cli(repo, "snapshots", "--json")))] == \
        [good]
    named = ok(run_cli(repo, "snapshots", bad[:8]))
    assert _stderr(named).strip() == warning
    assert "0 snapshots" in named.stdout.decode()

    assert f"/{good_src.name}/b.txt" in ok_stdout(run_cli(repo, "ls", good[:8]))
    _assert_restores(repo, good, good_src, tmp_path / "restore-good")
    _assert_restores(repo, "latest", good_src, tmp_path / "restore-latest")
    # The bad one, named, is one clear line naming its file.
    err = one_line_error(run_cli(repo, "restore", bad[:8], "--target", str(tmp_path / "x")),
                         exit_code=1)
    assert err == f"Fatal: snapshots/{bad}: {reason}"

    refused = run_cli(repo, "prune")
    assert refused.returncode == 1
    assert f"forget snapshots/{bad}" in refused.stderr.decode() or \
        f"forget {bad}" in refused.stderr.decode(), refused.stderr
    _assert_restores(repo, good, good_src, tmp_path / "restore-after-refused-prune")

    removed = ok(run_cli(repo, "forget", bad))
    assert "removed 1 snapshots" in removed.stdout.decode()
    assert not (repo / "snapshots" / bad).exists()
    assert _snapshot_ids(repo) == [good]
    assert _stderr(ok(run_cli(repo, "snapshots"))) == ""
    ok(run_cli(repo, "prune"))
    ok(run_cli(repo, "check", "--read-data"))
    _assert_restores(repo, good, good_src, tmp_path / "restore-at-the-end")


def test_repair_snapshots_forget_removes_a_damaged_file_by_its_id(
        two_snapshots: tuple[Path, dict[str, Path], list[str]], tmp_path: Path) -> None:
    repo, sources, (first, second) = two_snapshots
    _flip_a_byte(repo, first)
    bad_time = _save_with_bad_time(repo, second)

    dry = ok(run_cli(repo, "repair", "snapshots", "--dry-run", "--forget", first[:8]))
    assert f"snapshots/{first}: content does not match its id\n  would remove" in \
        dry.stdout.decode()
    assert _stderr(dry) == ""  # named by id: reported, not warned about
    assert "would remove" in dry.stdout.decode()
    assert (repo / "snapshots" / first).exists()
    kept = ok(run_cli(repo, "repair", "snapshots", first[:8]))
    assert "cannot be repaired; name it with --forget to remove it" in kept.stdout.decode()
    assert (repo / "snapshots" / first).exists()

    # The ids may follow --forget (argparse would otherwise refuse them there).
    ok(run_cli(repo, "repair", "snapshots", "--forget", first[:8], bad_time))
    assert not (repo / "snapshots" / first).exists()
    assert not (repo / "snapshots" / bad_time).exists()
    assert _snapshot_ids(repo) == [second]
    ok(run_cli(repo, "check"))
    _assert_restores(repo, second, sources["b"], tmp_path / "restore")
