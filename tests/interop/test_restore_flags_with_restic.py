"""Relative backup paths, ``restore SNAPSHOT:SUBFOLDER`` and restic's restore flags
(``--dry-run``, ``--overwrite``, ``--delete``, ``--sparse``, ``--json``), checked against
restic 0.14 where it has the feature (same data, same repository, trees compared byte by
byte), and against restic's current documentation (doc/040_backup.rst, doc/050_restore.rst,
doc/075_scripting.rst) where restic 0.14 is older than it: those tests say so."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from support.cli import ok, run_cli
from support.tools import run_restic
from support.trees import compare_trees, iter_tree

pytestmark = [pytest.mark.restic]

PW = "secret-pw"
ZEROS = (8 << 20) + 100


def _tree(base: Path) -> None:
    """home/user/{data/{a,sub/b,zeros},other/y}, home/other/x."""
    files = {"home/user/data/a": b"alpha\n", "home/user/data/sub/b": b"beta\n",
             "home/user/other/y": b"why\n", "home/other/x": b"ex\n"}
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    with open(base / "home/user/data/zeros", "wb") as f:
        f.seek(ZEROS - 100)
        f.write(b"z" * 100)  # 8 MiB of zeros, then 100 bytes
    os.symlink("a", base / "home/user/data/link")


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    _tree(tmp_path)
    run_restic(tmp_path / "repo", "init", password=PW)
    return tmp_path


def _latest(repo: Path) -> tuple[list[str], list[str]]:
    """The latest snapshot's ``paths`` and ``restic ls`` lines."""
    sns = json.loads(run_restic(repo, "snapshots", "--json", password=PW).stdout)
    latest = sns[-1]
    ls = run_restic(repo, "ls", latest["id"], password=PW).stdout.decode().splitlines()[1:]
    return latest["paths"], ls


@pytest.mark.parametrize("args", [
    ["data"], ["."], ["../other"], [".."], ["data/sub", "data"], ["data/../data/sub"],
    ["./data/./sub/"], ["other", "../other"], ["data/sub", "/HOME/other"],
])
def test_relative_backup_paths_are_stored_as_restic_0_14_stores_them(
        world: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``cd home/user && backup ARGS``: the snapshot's paths (absolute) and its tree
    (``restic ls``: relative paths below the root, ``..`` dropped, ``.`` expanded, name
    clashes as ``other-1``) are restic 0.14's; restic restores both trees identically."""
    args = [a.replace("/HOME", str(world / "home")) for a in args]
    repo = world / "repo"
    monkeypatch.chdir(world / "home" / "user")
    run_restic(repo, "backup", *args, password=PW)
    theirs = _latest(repo)
    ok(run_cli(repo, "backup", *args, password=PW))
    ours = _latest(repo)
    assert ours == theirs
    sns = json.loads(run_restic(repo, "snapshots", "--json", password=PW).stdout)
    for sn, out in zip(sns[-2:], ("t_restic", "t_ours"), strict=True):
        run_restic(repo, "restore", sn["id"], "--target", world / out, password=PW)
    # With an absolute path the trees hold its ancestors (/tmp, …), whose mtimes other tests
    # running at the same time change between the two backups: those are not compared.
    outside = any(os.path.isabs(a) for a in args)
    assert compare_trees(world / "t_restic", world / "t_ours", check_root=False,
                         check_dir_mtime=not outside) == []


def test_sub_folder_restores_the_folder_contents(world: Path) -> None:
    """restic 0.14 rejects ``SNAPSHOT:SUBFOLDER`` ('invalid id'); restic >= 0.16 restores the
    contents of SUBFOLDER into the target, patterns relative to it (doc/050_restore.rst). The
    result must equal, byte by byte, what restic 0.14 restores below SUBFOLDER with
    ``--include SUBFOLDER``."""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    ok(run_cli(repo, "backup", data, password=PW))
    assert run_restic(repo, "restore", f"latest:{data}", "--target", world / "x", password=PW,
                      check=False).returncode != 0  # 0.14: no such syntax
    run_restic(repo, "restore", "latest", "--include", str(data), "--target", world / "r",
               password=PW)
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", world / "o", password=PW))
    expected = world / "r" / data.relative_to("/")
    assert compare_trees(expected, world / "o", check_root=False) == []
    # Patterns are relative to SUBFOLDER: /sub, not DATA/sub.
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", world / "i", "--include", "/sub",
               password=PW))
    assert sorted(os.listdir(world / "i")) == ["sub"]
    proc = run_cli(repo, "restore", f"latest:{data}/a", "--target", world / "f", password=PW)
    assert proc.returncode == 1 and b"not a directory" in proc.stderr
    assert not (world / "f").exists()


def test_restore_over_changed_files_equals_restic_0_14(world: Path) -> None:
    """``--overwrite always`` (restic's default) into a target holding changed, extra and
    shorter files: the same tree as restic 0.14's restore into a copy of that target. (No
    symlink is in the way: restic 0.14 fails on any, file or symlink, with 'file exists';
    current restic, like us, replaces it.)"""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    run_restic(repo, "backup", data, password=PW)
    base = world / "base"
    run_restic(repo, "restore", "latest", "--target", base, password=PW)
    inner = base / data.relative_to("/")
    (inner / "link").unlink()  # restic 0.14 fails on any symlink already there
    (inner / "a").write_bytes(b"changed, longer than before\n")
    (inner / "sub" / "b").write_bytes(b"b")
    (inner / "extra").write_bytes(b"not in the snapshot\n")
    shutil.copytree(base, world / "t_restic", symlinks=True)
    shutil.copytree(base, world / "t_ours", symlinks=True)
    run_restic(repo, "restore", "latest", "--target", world / "t_restic", password=PW)
    ok(run_cli(repo, "restore", "latest", "--target", world / "t_ours", password=PW))
    assert compare_trees(world / "t_restic", world / "t_ours", check_root=False) == []


def _state(root: Path) -> list[tuple[bytes, int, int, int]]:
    return [(rel, s.st_mode, s.st_size, s.st_mtime_ns) for rel, s in iter_tree(root)]


def test_dry_run_changes_nothing_and_lists_items_as_restic_documents(world: Path) -> None:
    """restic 0.14 has no ``--dry-run`` for restore; doc/050_restore.rst: nothing is
    written, ``-vv`` lists 'restored'/'updated'/'unchanged' items with sizes and the
    ``Summary:`` line, and the JSON summary has doc/075_scripting.rst's fields."""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    ok(run_cli(repo, "backup", data, password=PW))
    target = world / "t"
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", target, password=PW))
    (target / "a").write_bytes(b"changed\n")
    (target / "gone").write_bytes(b"x")
    before = _state(target)
    out = ok(run_cli(repo, "-vv", "restore", f"latest:{data}", "--target", target,
                     "--dry-run", "--delete", password=PW)).stdout.decode()
    assert _state(target) == before
    lines = out.splitlines()
    assert "updated   /a with size 6 B" in lines
    assert "unchanged /sub/b with size 5 B" in lines
    assert "restored  /link" in lines and "restored  /sub" in lines
    assert f"deleted   {target}/gone" in lines
    assert any(ln.startswith("Summary: Restored ") and "skipped" in ln and "deleted 1" in ln
               for ln in lines)
    proc = ok(run_cli(repo, "--json", "-vv", "restore", f"latest:{data}", "--target",
                      world / "new", "--dry-run", password=PW))
    assert not (world / "new").exists()
    msgs = [json.loads(ln) for ln in proc.stdout.decode().splitlines()]
    summary = msgs[-1]
    assert summary["message_type"] == "summary"
    # a, zeros, link, sub, sub/b: 5 items, 6 + ZEROS + 5 bytes of file content
    assert {k: summary[k] for k in ("total_files", "files_restored", "files_skipped",
                                    "files_deleted", "total_bytes", "bytes_restored",
                                    "bytes_skipped")} == {
        "total_files": 5, "files_restored": 5, "files_skipped": 0, "files_deleted": 0,
        "total_bytes": 6 + ZEROS + 5, "bytes_restored": 6 + ZEROS + 5,
        "bytes_skipped": 0}
    verbose = {m["item"]: m for m in msgs if m["message_type"] == "verbose_status"}
    assert verbose["/zeros"] == {"message_type": "verbose_status", "action": "restored",
                                 "item": "/zeros", "size": ZEROS}


def test_overwrite_modes_as_restic_documents(world: Path) -> None:
    """restic 0.14 has no ``--overwrite`` (it always overwrites); restic 0.17's modes:
    never keeps existing files, if-newer replaces only files older than the snapshot's,
    if-changed trusts size and mtime, always compares the content."""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    ok(run_cli(repo, "backup", data, password=PW))
    t = world / "t"
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", t, password=PW))
    snap_mtime = (t / "a").stat().st_mtime_ns

    def restore(mode: str) -> dict[str, int]:
        proc = ok(run_cli(repo, "--json", "restore", f"latest:{data}", "--target", t,
                          "--overwrite", mode, password=PW))
        summary: dict[str, int] = json.loads(proc.stdout.decode().splitlines()[-1])
        return summary

    (t / "a").write_bytes(b"ALPHA\n")  # same size, newer mtime
    assert restore("never")["files_skipped"] == 4
    assert (t / "a").read_bytes() == b"ALPHA\n"
    assert restore("if-newer")["files_skipped"] == 4  # the target's files are newer
    assert (t / "a").read_bytes() == b"ALPHA\n"
    os.utime(t / "a", ns=(snap_mtime, snap_mtime))
    assert restore("if-changed")["files_skipped"] == 3  # same size and mtime: trusted
    assert (t / "a").read_bytes() == b"ALPHA\n"
    summary = restore("always")
    assert (t / "a").read_bytes() == b"alpha\n"
    assert summary["files_skipped"] == 2 and summary["bytes_restored"] == 6  # zeros, sub/b
    os.utime(t / "a", ns=(snap_mtime - 10**9, snap_mtime - 10**9))
    (t / "a").write_bytes(b"old\n")
    os.utime(t / "a", ns=(snap_mtime - 10**9, snap_mtime - 10**9))
    restore("if-newer")
    assert (t / "a").read_bytes() == b"alpha\n"


def test_delete_only_within_the_restored_selection(world: Path) -> None:
    """restic 0.14 has no ``--delete``; doc/050_restore.rst: files not in the snapshot are
    deleted, and with ``--include``/``--exclude`` only those the patterns select; a
    non-empty directory where the snapshot has a file is replaced."""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    ok(run_cli(repo, "backup", data, password=PW))
    t = world / "t"
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", t, password=PW))
    (t / "top-extra").write_bytes(b"x")
    (t / "sub" / "extra").write_bytes(b"x")
    (t / "a").unlink()
    (t / "a").mkdir()
    (t / "a" / "inner").write_bytes(b"x")
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", t, "--include", "/sub",
               "--delete", password=PW))
    assert (t / "top-extra").exists() and not (t / "sub" / "extra").exists()
    assert (t / "a").is_dir()  # not selected by --include /sub
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", t, "--delete", password=PW))
    assert sorted(os.listdir(t)) == ["a", "link", "sub", "zeros"]
    assert (t / "a").read_bytes() == b"alpha\n"
    proc = run_cli(repo, "restore", "latest", "--target", "/", "--delete", password=PW)
    assert proc.returncode == 1 and b"include or exclude" in proc.stderr


def test_sparse_leaves_holes_and_default_writes_every_byte(world: Path) -> None:
    """restic 0.14 has no ``--sparse``; doc/050_restore.rst: by default files are not
    sparse, ``--sparse`` restores runs of zeros as holes. The content is the same."""
    repo = world / "repo"
    data = world / "home" / "user" / "data"
    ok(run_cli(repo, "backup", data, password=PW))
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", world / "d", password=PW))
    ok(run_cli(repo, "restore", f"latest:{data}", "--target", world / "s", "--sparse",
               password=PW))
    original = (data / "zeros").read_bytes()
    assert (world / "d" / "zeros").read_bytes() == original
    assert (world / "s" / "zeros").read_bytes() == original
    assert (world / "d" / "zeros").stat().st_blocks * 512 >= 8 << 20
    assert (world / "s" / "zeros").stat().st_blocks * 512 < 1 << 20
