"""``copy`` between a local and an S3 (moto) repository with different passwords: the copies
restore the same trees, restic checks both repositories clean with --read-data, and a second
copy transfers only what is new (snapshots copied before are skipped)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.cli import ok_stdout, run_cli
from support.moto import MotoServer
from support.tools import restic_version, run_restic
from support.trees import TreeSpec, compare_trees, restored_path

pytestmark = [pytest.mark.restic, pytest.mark.slow]

LOCAL_PW, S3_PW = "local-password-1", "offsite-password-2"


def test_copy_local_to_s3_and_back_incrementally(
        tmp_path: Path, small_tricky_tree: TreeSpec, restic_bin: str,
        moto_server: MotoServer, s3_bucket: str) -> None:
    local = tmp_path / "local"
    s3 = f"s3://{s3_bucket}/offsite"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    pw_file = tmp_path / "local.pw"
    pw_file.write_text(LOCAL_PW + "\n")
    ok_stdout(run_cli(local, "init", password=LOCAL_PW))
    ok_stdout(run_cli(s3, "init", password=S3_PW, env=env))
    root = small_tricky_tree.root
    ok_stdout(run_cli(local, "backup", str(root), "--tag", "one", password=LOCAL_PW))
    big = root / "grown.bin"

    def copy(*extra: str) -> dict[str, object]:
        out = ok_stdout(run_cli(s3, "--json", "copy", "--from-repo", str(local),
                                "--from-password-file", str(pw_file), *extra,
                                password=S3_PW, env=env))
        return dict(json.loads(out.splitlines()[-1]))

    first = copy()
    assert first["copied_snapshots"] == 1 and first["skipped_snapshots"] == 0
    first_bytes = int(str(first["bytes_copied"]))
    big.write_bytes(os.urandom(300_000))
    ok_stdout(run_cli(local, "backup", str(root), "--tag", "two", password=LOCAL_PW))
    second = copy()
    assert second["copied_snapshots"] == 1 and second["skipped_snapshots"] == 1
    # only the new file's data and the trees on its path travel
    assert 300_000 <= int(str(second["bytes_copied"])) < 300_000 + first_bytes
    assert copy()["copied_snapshots"] == 0  # nothing new: nothing copied

    theirs = json.loads(ok_stdout(run_cli(s3, "--json", "snapshots", password=S3_PW,
                                          env=env)))
    ours = json.loads(ok_stdout(run_cli(local, "--json", "snapshots", password=LOCAL_PW)))
    assert [s["original"] for s in theirs] == [s["id"] for s in ours]
    assert [s["tree"] for s in theirs] == [s["tree"] for s in ours]
    assert all("parent" not in s for s in theirs)

    # restic opens both with their own passwords and finds no errors
    for repo, pw in ((str(local), LOCAL_PW), (moto_server.restic_url(s3_bucket, "offsite"),
                                              S3_PW)):
        check = run_restic(repo, "check", "--read-data", password=pw, restic_bin=restic_bin)
        assert b"no errors were found" in check.stdout
    target = tmp_path / "restic-restore"
    run_restic(moto_server.restic_url(s3_bucket, "offsite"), "restore", "latest", "--target",
               str(target), password=S3_PW, restic_bin=restic_bin)
    lossy = restic_version(restic_bin) < (0, 16, 0)
    assert compare_trees(root, restored_path(target, root), lossy_symlink_targets=lossy) == []

    # and back: the S3 copy copied into a new local repository restores the same tree
    back = tmp_path / "back"
    ok_stdout(run_cli(back, "init", password="third-pw"))
    s3_pw = tmp_path / "s3.pw"
    s3_pw.write_text(S3_PW)
    ok_stdout(run_cli(back, "copy", "--from-repo", s3, "--from-password-file", str(s3_pw),
                      "latest", password="third-pw", env=env))
    restored = tmp_path / "ours"
    ok_stdout(run_cli(back, "restore", "latest", "--target", str(restored),
                      password="third-pw"))
    assert compare_trees(root, restored_path(restored, root)) == []
