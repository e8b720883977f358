"""The CLI end to end: exit codes, one-line errors, stdin streams, excludes, keys, cat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import FAST_KDF, repo, run_cli
from support.cli import ok as _ok
from support.cli import one_line_error as _one_line_error
from support.tools import run_restic
from support.trees import restored_path

__all__ = ["repo"]  # fixtures

PW = "secret-pw"






@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "b.log").write_text("log line\n")
    (root / "sub" / "c.bin").write_bytes(os.urandom(300_000))
    return root


def test_wrong_password_exits_12_with_one_line(repo: Path, data: Path) -> None:
    proc = run_cli(repo, "snapshots", password="not-the-password")
    assert proc.returncode == 12
    line = _one_line_error(proc)
    assert "wrong password" in line
    assert "not-the-password" not in proc.stderr.decode() + proc.stdout.decode()


def test_no_repository_exits_10(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "nothing-here", "snapshots")
    assert proc.returncode == 10
    assert "no repository" in _one_line_error(proc)


def test_missing_password_is_a_clear_error(repo: Path) -> None:
    proc = run_cli(repo, "snapshots", password=None)
    assert proc.returncode == 1
    assert "no password given" in _one_line_error(proc)


def test_password_file_and_command(repo: Path, tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW + "\n")
    _ok(run_cli(repo, "--password-file", str(pwfile), "snapshots", password=None))
    _ok(run_cli(repo, "snapshots", password=None,
                env={"AIRFLOW_BACKUP_PASSWORD_COMMAND": f"cat {pwfile}"}))


def test_locked_repository_exits_11(repo: Path, data: Path) -> None:
    os.environ.setdefault("AIRFLOW_BACKUP_KDF_PARAMS", FAST_KDF)
    from airflow_backup.repository.repo import Repository
    from airflow_backup.storage.local import LocalStorage

    r = Repository.open(LocalStorage(repo), PW)
    with r.lock(exclusive=True):
        proc = run_cli(repo, "backup", str(data))
    assert proc.returncode == 11
    assert "locked" in _one_line_error(proc)
    assert json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout) == []


def test_backup_restore_roundtrip_with_exclude_tags_host_time(
    repo: Path, data: Path, tmp_path: Path
) -> None:
    out = _ok(run_cli(repo, "--json", "backup", str(data), "--exclude", "*.log",
                      "--tag", "x,y", "--host", "h1", "--time", "2021-03-04 05:06:07"))
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["message_type"] == "summary"
    assert summary["files_new"] == 2
    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots", "--host", "h1")).stdout)
    assert len(snaps) == 1
    assert snaps[0]["tags"] == ["x", "y"]
    assert snaps[0]["hostname"] == "h1"
    assert snaps[0]["time"].startswith("2021-03-04T05:06:07")
    assert snaps[0]["id"] == summary["snapshot_id"]
    listing = _ok(run_cli(repo, "ls", "latest")).stdout.decode().splitlines()
    assert str(data / "a.txt") in listing
    assert not any(p.endswith("b.log") for p in listing)

    target = tmp_path / "restore"
    _ok(run_cli(repo, "restore", snaps[0]["short_id"], "--target", str(target)))
    restored = restored_path(target, data)
    assert (restored / "sub" / "c.bin").read_bytes() == (data / "sub" / "c.bin").read_bytes()
    assert not (restored / "sub" / "b.log").exists()

    only = tmp_path / "only"
    _ok(run_cli(repo, "restore", "latest", "--target", str(only), "--include", "a.txt"))
    assert (restored_path(only, data) / "a.txt").read_text() == "hello\n"
    assert not (restored_path(only, data) / "sub" / "c.bin").exists()

    empty = run_cli(repo, "snapshots", "--host", "other", "--json")
    assert json.loads(_ok(empty).stdout) == []
    missing = run_cli(repo, "restore", "latest", "--host", "other", "--target", str(tmp_path))
    assert missing.returncode == 1
    assert "no snapshot" in _one_line_error(missing)


def test_restore_subpath_and_dump(repo: Path, data: Path, tmp_path: Path) -> None:
    _ok(run_cli(repo, "backup", str(data)))
    target = tmp_path / "sub-restore"
    _ok(run_cli(repo, "restore", f"latest:{data}/sub", "--target", str(target)))
    # restic >= 0.16 (doc/050_restore.rst): the contents of SUBFOLDER, not SUBFOLDER itself
    assert sorted(os.listdir(target)) == ["b.log", "c.bin"]
    dumped = _ok(run_cli(repo, "dump", "latest", str(data / "a.txt")))
    assert dumped.stdout == b"hello\n"
    not_file = run_cli(repo, "dump", "latest", str(data / "sub"))
    assert not_file.returncode == 1
    assert "not a file" in _one_line_error(not_file)


def test_stdin_and_stdin_from_command(repo: Path, tmp_path: Path) -> None:
    payload = os.urandom(2_000_000)
    _ok(run_cli(repo, "backup", "--stdin", "--stdin-filename", "dump.sql", stdin=payload))
    assert _ok(run_cli(repo, "dump", "latest", "/dump.sql")).stdout == payload

    _ok(run_cli(repo, "backup", "--tag", "cmd", "--stdin-filename", "hello.txt",
                "--stdin-from-command", "--", "printf", "made by a command"))
    out = _ok(run_cli(repo, "dump", "latest", "/hello.txt", "--tag", "cmd")).stdout
    assert out == b"made by a command"

    before = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)
    failed = run_cli(repo, "backup", "--stdin-from-command", "--", "sh", "-c",
                     "echo partial output; exit 3")
    assert failed.returncode == 1
    assert "exited with status 3" in _one_line_error(failed)
    after = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)
    assert [s["id"] for s in after] == [s["id"] for s in before]


def _unprivileged(cmd: list[str]) -> list[str]:
    """Root reads any file; drop the capabilities that let it, so a 0000 file is unreadable."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]


def test_unreadable_file_gives_exit_3_and_a_partial_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("readable")
    secret = src / "secret.txt"
    secret.write_text("nope")
    secret.chmod(0)
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_BACKUP_")}
    env.update(AIRFLOW_BACKUP_PASSWORD=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF)
    cmd = _unprivileged([sys.executable, "-m", "airflow_backup.cli", "-r", str(repo),
                         "backup", str(src)])
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
    assert proc.returncode == 3, proc.stderr
    assert b"secret.txt" in proc.stderr
    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)
    assert len(snaps) == 1
    meta = snaps[0]["airflow_backup"]
    assert meta["partial"] is True
    assert meta["errors"][0]["path"] == str(secret)
    listing = _ok(run_cli(repo, "ls", "latest")).stdout.decode()
    assert str(src / "ok.txt") in listing
    assert str(secret) not in listing


def test_interrupted_backup_exits_130_without_snapshot(repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_BACKUP_")}
    env.update(AIRFLOW_BACKUP_PASSWORD=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF)
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_backup.cli", "-r", str(repo), "backup", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(1 << 20))
    proc.stdin.flush()
    # Interrupt only once the backup is under way (it holds its lock), not during start-up.
    deadline = time.monotonic() + 60
    while not list((repo / "locks").iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "backup never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout) == []
    assert list((repo / "locks").iterdir()) == []


def test_key_add_list_remove_passwd(repo: Path, tmp_path: Path) -> None:
    new_pw = tmp_path / "new"
    new_pw.write_text("second-password")
    _ok(run_cli(repo, "key", "add", "--new-password-file", str(new_pw)))
    keys = json.loads(_ok(run_cli(repo, "--json", "key", "list")).stdout)
    assert len(keys) == 2
    assert sum(k["current"] for k in keys) == 1
    _ok(run_cli(repo, "snapshots", password="second-password"))
    other = next(k for k in keys if not k["current"])
    current = next(k for k in keys if k["current"])
    refused = run_cli(repo, "key", "remove", current["id"][:8])
    assert refused.returncode == 1
    _ok(run_cli(repo, "key", "remove", other["id"][:8]))
    assert run_cli(repo, "snapshots", password="second-password").returncode == 12

    third = tmp_path / "third"
    third.write_text("third-password")
    _ok(run_cli(repo, "key", "passwd", "--new-password-file", str(third)))
    assert run_cli(repo, "snapshots").returncode == 12
    _ok(run_cli(repo, "snapshots", password="third-password"))


def test_cat_objects(repo: Path, data: Path) -> None:
    _ok(run_cli(repo, "backup", str(data)))
    config = json.loads(_ok(run_cli(repo, "cat", "config")).stdout)
    assert config["version"] == 2
    sn = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)[0]
    cat_sn = json.loads(_ok(run_cli(repo, "cat", "snapshot", sn["id"][:10])).stdout)
    assert cat_sn["tree"] == sn["tree"]
    tree = json.loads(_ok(run_cli(repo, "cat", "blob", sn["tree"])).stdout)
    assert [n["name"] for n in tree["nodes"]] == [data.parts[1]]
    index_id = next((repo / "index").iterdir()).name
    index = json.loads(_ok(run_cli(repo, "cat", "index", index_id)).stdout)
    assert index["packs"]
    key_id = next((repo / "keys").iterdir()).name
    key = json.loads(_ok(run_cli(repo, "cat", "key", key_id)).stdout)
    assert key["kdf"] == "scrypt" and "data" not in key


@pytest.mark.restic
def test_init_repository_restic_can_open(tmp_path: Path, restic_bin: str) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    keys = run_restic(repo, "key", "list", "--json", password=PW, restic_bin=restic_bin)
    assert len(json.loads(keys.stdout)) == 1
    cfg = json.loads(run_restic(repo, "cat", "config", password=PW, restic_bin=restic_bin).stdout)
    assert cfg["version"] == 2


def test_bad_input_is_one_line(tmp_path: Path, repo: Path) -> None:
    bad_time = run_cli(repo, "backup", str(tmp_path), "--time", "yesterday")
    assert bad_time.returncode == 1
    assert "invalid --time" in _one_line_error(bad_time)
    missing = run_cli(repo, "backup", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "no such file" in _one_line_error(missing)
    bad_id = run_cli(repo, "restore", "zz-not-hex", "--target", str(tmp_path / "t"))
    assert bad_id.returncode == 1
    assert "invalid snapshot id" in _one_line_error(bad_id)
    again = run_cli(repo, "init")
    assert again.returncode == 1
    assert "already exists" in _one_line_error(again)


def test_second_backup_is_incremental(repo: Path, data: Path) -> None:
    first = json.loads(_ok(run_cli(repo, "--json", "backup", str(data))).stdout.splitlines()[-1])
    second = json.loads(_ok(run_cli(repo, "--json", "backup", str(data))).stdout.splitlines()[-1])
    assert first["files_new"] == 3
    assert (second["files_new"], second["files_unmodified"], second["data_added"]) == (0, 3, 0)
    forced = json.loads(_ok(run_cli(repo, "--json", "backup", "--force", str(data)))
                        .stdout.splitlines()[-1])
    assert (forced["files_new"], forced["files_unmodified"]) == (3, 0)
    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)
    assert snaps[1]["parent"] == snaps[0]["id"]
    assert "parent" not in snaps[2]


def test_backup_remembers_known_directories_in_the_cache_unless_no_cache(
        repo: Path, data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(cache)}
    _ok(run_cli(repo, "backup", data, "--no-cache", env=env))
    assert not cache.exists()
    _ok(run_cli(repo, "backup", data, env=env))
    (known,) = cache.glob("airflow-backup/*/dirs/*")
    assert known.stat().st_mode & 0o777 == 0o600
    assert PW.encode() not in known.read_bytes() and b"sub" not in known.read_bytes()
    before = known.read_bytes()
    summary = json.loads(_ok(run_cli(repo, "--json", "backup", data, env=env))
                         .stdout.splitlines()[-1])
    assert summary["files_unmodified"] == 3 and summary["files_new"] == 0
    assert known.read_bytes() != before  # sealed afresh (new nonce), same directories
    (data / "sub" / "b.log").write_text("another line\n")
    summary = json.loads(_ok(run_cli(repo, "--json", "backup", data, env=env))
                         .stdout.splitlines()[-1])
    assert summary["files_changed"] == 1 and summary["files_unmodified"] == 2
    restored = tmp_path / "restored"
    _ok(run_cli(repo, "restore", "latest", "--target", restored))
    assert restored_path(restored, data / "sub" / "b.log").read_text() == "another line\n"
