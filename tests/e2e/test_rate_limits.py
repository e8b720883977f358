"""``--limit-upload`` and ``--limit-download`` (restic's global flags, KiB/s): accepted before
or after the verb, and a backup and restore under them are complete and correct. The pacing
itself is checked on a fake clock in tests/unit/storage/test_limiter.py: nothing here is
timed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.cli import run_cli
from support.tools import require_tool

PW = "limit-pw"


def test_backup_and_restore_under_rate_limits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (data / "small.txt").write_text("hello\n")
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    # Generous limits (a few MiB go through in well under a second) before and after the verb.
    made = run_cli(repo, "--limit-upload", "65536", "backup", str(data), "--limit-download",
                   "65536", password=PW)
    assert made.returncode == 0, made.stderr
    target = tmp_path / "restored"
    done = run_cli(repo, "restore", "latest", "--target", str(target), "--limit-download",
                   "65536", password=PW)
    assert done.returncode == 0, done.stderr
    for name in ("random.bin", "small.txt"):
        assert (target / data.relative_to("/") / name).read_bytes() == \
            (data / name).read_bytes()
    restic = require_tool("restic")
    checked = subprocess.run([restic, "-r", str(repo), "check", "--read-data"],
                             env={"RESTIC_PASSWORD": PW, "HOME": str(tmp_path),
                                  "PATH": "/usr/bin:/bin"},
                             capture_output=True, timeout=300, check=False)
    assert checked.returncode == 0, checked.stderr


def test_a_rate_must_be_a_whole_number_of_kib(tmp_path: Path) -> None:
    for bad in ("1.5", "-1", "fast"):
        out = run_cli(tmp_path / "repo", "--limit-upload", bad, "snapshots", password=PW)
        assert out.returncode == 1
        assert b"--limit-upload: invalid rate" in out.stderr, out.stderr
