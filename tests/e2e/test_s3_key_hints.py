"""The CLI remembers which key opened a remote repository (cli/keyhint.py), so that the next
command can start scrypt while s3fs loads; a changed key or password still works, a wrong
password is still refused, and --no-cache keeps nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.cli import FAST_KDF, run_cli
from support.cli import ok as _ok
from support.moto import MotoServer

PW = "secret-pw"


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, XDG_CACHE_HOME=str(cache), **extra)
    return env


def _hints(cache: Path) -> list[dict[str, object]]:
    folder = cache / "airflow-backup" / "key-hints"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] \
        if folder.is_dir() else []


def test_key_hint_follows_the_key_that_opens_the_repository(
        tmp_path: Path, moto_server: MotoServer, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/hinted"
    cache = tmp_path / "cache"
    _ok(run_cli(url, "init", env=_env(cache), password=PW))
    # init notes its new key, so that the first backup derives while it starts up.
    keys = moto_server.list_keys(s3_bucket, "hinted/keys/")
    assert [h["id"] for h in _hints(cache)] == [keys[0].rsplit("/", 1)[1]]

    _ok(run_cli(url, "snapshots", env=_env(cache), password=PW))
    keys = moto_server.list_keys(s3_bucket, "hinted/keys/")
    hints = _hints(cache)
    assert len(keys) == 1 and [h["id"] for h in hints] == [keys[0].rsplit("/", 1)[1]]
    assert PW not in json.dumps(hints)

    # A wrong password is refused as before (the hint only starts a derivation).
    wrong = run_cli(url, "snapshots", env=_env(cache), password="not-it")
    assert wrong.returncode == 12, wrong.stderr.decode()

    # A new password: the stale hint's early derivation is not used; the new key is noted.
    _ok(run_cli(url, "key", "passwd", env=_env(cache, AIRFLOW_BACKUP_NEW_PASSWORD="new-pw"),
                password=PW))
    _ok(run_cli(url, "snapshots", env=_env(cache), password="new-pw"))
    keys = moto_server.list_keys(s3_bucket, "hinted/keys/")
    assert [h["id"] for h in _hints(cache)] == [keys[0].rsplit("/", 1)[1]]

    # --no-cache writes no hint.
    other = tmp_path / "other-cache"
    _ok(run_cli(url, "--no-cache", "snapshots", env=_env(other), password="new-pw"))
    assert _hints(other) == []
