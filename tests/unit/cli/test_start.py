"""The entry point starts the key derivation early, and only where that is harmless."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import airflow_backup.repository.kdf as kdf_mod
from airflow_backup.cli.password import option_value as _option
from airflow_backup.cli.password import password_source
from airflow_backup.cli.start import unlock_ahead
from airflow_backup.repository.keys import KdfParams, add_key, derive, derive_ahead
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.local import LocalStorage


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AIRFLOW_BACKUP_PASSWORD", "AIRFLOW_BACKUP_REPOSITORY", "RESTIC_")):
            monkeypatch.delenv(name)
    kdf_mod._AHEAD.clear()


@pytest.mark.parametrize(("argv", "expected"), [
    (["-r", "/a", "backup"], "/a"),
    (["-r/a", "backup"], "/a"),
    (["--repo", "/a"], "/a"),
    (["--repo=/a"], "/a"),
    (["--repo=/a", "-r", "/b"], "/b"),  # the last one wins, as in argparse
    (["backup", "--", "-r", "/a"], ""),
    (["backup", "/data"], ""),
    (["-r"], ""),
])
def test_repository_option_is_found_like_argparse_would(argv: list[str], expected: str) -> None:
    assert _option(argv, ("-r", "--repo")) == expected


def test_password_sources_keep_read_passwords_order(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    assert password_source("") == ("prompt", "")
    monkeypatch.setenv("RESTIC_PASSWORD", "r")
    assert password_source("") == ("password", "r")
    monkeypatch.setenv("AIRFLOW_BACKUP_PASSWORD_COMMAND", "echo c")
    assert password_source("") == ("command", "echo c")  # before RESTIC_*
    monkeypatch.setenv("AIRFLOW_BACKUP_PASSWORD", "a")
    assert password_source("") == ("password", "a")
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert password_source(str(f)) == ("password", "from-file")


def test_derive_takes_a_matching_early_derivation_only(monkeypatch: pytest.MonkeyPatch) -> None:
    params = KdfParams(1024, 8, 1)
    salt = b"s" * 64
    expected = derive("pw", salt, params)
    calls = []
    real = kdf_mod.scrypt

    def counting(password: str, salt: bytes, params: KdfParams) -> bytes:
        calls.append(password)
        return real(password, salt, params)

    monkeypatch.setattr(kdf_mod, "scrypt", counting)
    derive_ahead("pw", salt, params)
    derive_ahead("pw", salt, params)  # already under way: not started twice
    assert derive("pw", salt, params) == expected
    assert calls == ["pw"]
    derive_ahead("other", salt, params)
    assert derive("pw", salt, params) == expected  # other inputs: derived anew
    assert sorted(calls) == ["other", "pw", "pw"]


def test_a_failed_early_derivation_is_redone_and_its_error_raised_by_derive() -> None:
    bad = KdfParams(3, 8, 1)  # N not a power of two: scrypt refuses
    derive_ahead("pw", b"s" * 64, bad)
    with pytest.raises(ValueError):
        derive("pw", b"s" * 64, bad)


def test_unlock_ahead_starts_only_for_a_local_repository_with_a_quiet_password(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    Repository.init(LocalStorage(repo_dir), "pw")
    argv = ["-r", str(repo_dir), "snapshots"]
    assert not unlock_ahead(argv)  # no password without asking
    monkeypatch.setenv("AIRFLOW_BACKUP_PASSWORD_COMMAND", "false")
    assert not unlock_ahead(argv)  # a command is never run early
    monkeypatch.delenv("AIRFLOW_BACKUP_PASSWORD_COMMAND")
    monkeypatch.setenv("AIRFLOW_BACKUP_PASSWORD", "pw")
    assert not unlock_ahead(["-r", "s3:bucket/x", "snapshots"])
    assert not unlock_ahead(["-r", str(tmp_path / "missing"), "snapshots"])
    assert unlock_ahead(argv)
    assert len(kdf_mod._AHEAD) == 1
    # the early result opens the repository, and is used up by it
    repo = Repository.open(LocalStorage(repo_dir), "pw")
    assert repo.config.id and not kdf_mod._AHEAD
    monkeypatch.setenv("AIRFLOW_BACKUP_REPOSITORY", str(repo_dir))
    assert unlock_ahead(["snapshots"])
    kdf_mod._AHEAD.clear()
    add_key(LocalStorage(repo_dir), repo.key, "second")
    assert not unlock_ahead(argv)  # two key files: which one is unknown


def test_remote_repository_starts_from_the_key_that_opened_it_last(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_backup.cli.keyhint import read_key_hint, remember_key
    from airflow_backup.storage.memory import MemoryStorage

    # "-" is in no base64 alphabet, so the password cannot turn up inside the key's salt.
    password = "pass-word"
    remote = MemoryStorage()  # stands in for the bucket: only its key file is read
    repo = Repository.init(remote, password, kdf=KdfParams(1024, 8, 1))
    url, cache = "s3://bucket/prefix?region=eu-west-1", str(tmp_path / "cache")
    argv = ["-r", url, "--cache-dir", cache, "backup", "/data"]
    monkeypatch.setenv("AIRFLOW_BACKUP_PASSWORD", password)
    assert not unlock_ahead(argv)  # never opened here: nothing known yet

    remember_key(url, remote, repo.key_id, cache)
    hint = read_key_hint("s3://bucket/prefix", cache)  # options do not change the repository
    assert hint is not None and hint[0] == repo.key_id
    hint_file = next((tmp_path / "cache" / "key-hints").iterdir())
    assert oct(hint_file.stat().st_mode & 0o777) == "0o600"
    assert password not in hint_file.read_text()
    assert not unlock_ahead([*argv, "--no-cache"])
    assert unlock_ahead(argv) and len(kdf_mod._AHEAD) == 1
    assert Repository.open(remote, password).config.id == repo.config.id
    assert not kdf_mod._AHEAD  # the early result was the one used

    # A new key replaces the old: the stale hint only cost an unused derivation.
    new_id = add_key(remote, repo.key, password, params=KdfParams(2048, 8, 1))
    remote.remove(Handle(FileType.KEY, repo.key_id))
    assert unlock_ahead(argv)
    reopened = Repository.open(remote, password)
    assert reopened.key_id == new_id
    remember_key(url, remote, new_id, cache)
    hint = read_key_hint(url, cache)
    assert hint is not None and hint[0] == new_id and hint[2] == KdfParams(2048, 8, 1)
    hint_file.write_text("{not json")
    assert read_key_hint(url, cache) is None and not unlock_ahead(argv)


def test_a_local_repository_starts_scrypt_before_cryptography_or_storage_load(
        tmp_path: Path) -> None:
    """The point of starting early: nothing heavy is loaded before scrypt runs."""
    import subprocess
    import sys

    repo_dir = tmp_path / "repo"
    Repository.init(LocalStorage(repo_dir), "pw", kdf=KdfParams(1024, 8, 1))
    probe = ("import sys\n"
             "from airflow_backup.cli.start import unlock_ahead\n"
             f"started = unlock_ahead(['-r', {str(repo_dir)!r}, 'snapshots'])\n"
             "heavy = sorted(m for m in sys.modules if m.startswith(('cryptography', "
             "'airflow_backup.storage', 'airflow_backup.repository.keys', 'zstandard')))\n"
             "print(started, heavy)\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env["AIRFLOW_BACKUP_PASSWORD"] = "pw"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "True []"


def test_the_cli_loads_only_what_every_command_needs() -> None:
    """What only some runs need loads on first use: the chunker (no unchanged re-backup or
    restore cuts anything), the retry library (only after a transient failure), the
    data-source machinery and the jobs' sample file reader (37 modules, 50 ms warm)."""
    import subprocess
    import sys

    probe = ("import sys, airflow_backup.cli.main\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyfastcdc', "
             "'tenacity', 'typing_extensions') or m in ('airflow_backup.sources.actions', "
             "'importlib.resources', 'airflow_backup.sources.base')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
