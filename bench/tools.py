"""The backup tools under comparison, and how each is installed, configured and driven.

Every tool gets a clean environment: inherited ``AIRFLOW_BACKUP_*``, ``RESTIC_*`` and
``BORG_*`` variables are dropped, the password goes in through the environment (never argv),
and caches live in a per-run directory so each repetition starts from nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-secret"
_FOREIGN_ENV = ("AIRFLOW_BACKUP_", "RESTIC_", "BORG_")

# Debian package providing each external command the bench needs.
APT_PACKAGES = {"restic": "restic", "borg": "borgbackup", "/usr/bin/time": "time"}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV)}


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


@dataclass(frozen=True)
class Tool:
    """A backup program: the commands for init, backup, restore, and where a restore lands."""

    name: str
    binary: str

    def available(self) -> bool:
        return bool(shutil.which(self.binary))

    def version(self) -> str:
        return _first_line([self.binary, "--version"])

    def env(self, home: Path) -> dict[str, str]:
        """Environment for every command of one repetition (``home``: its cache directory)."""
        return _clean_env()

    def init(self, repo: Path) -> list[str]:
        raise NotImplementedError

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        raise NotImplementedError

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        """(argv, working directory) restoring snapshot ``name`` into ``target``."""
        raise NotImplementedError

    def restored_root(self, target: Path, source: Path) -> Path:
        """Where ``source`` appears after a full restore into ``target``: all three tools
        recreate its absolute path below the target."""
        return target / source.relative_to(source.anchor)


class Ours(Tool):
    """airflow-backup from this checkout's virtualenv, with its calibrated default KDF."""

    def version(self) -> str:
        return _first_line([self.binary, "--version"])

    def env(self, home: Path) -> dict[str, str]:
        # A cache of its own per attempt, as restic's: the known directories of the first
        # backup (archiver.known) serve the unchanged re-backup, as they would for a user.
        return {**_clean_env(), "AIRFLOW_BACKUP_PASSWORD": PASSWORD,
                "AIRFLOW_BACKUP_CACHE_DIR": str(home / "cache")}

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "-r", str(repo), "init"]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "-r", str(repo), "backup", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [self.binary, "-r", str(repo), "restore", "latest", "--target", str(target)], None


class Restic(Tool):
    """restic with default settings (repository v2, compression auto)."""

    def version(self) -> str:
        return _first_line([self.binary, "version"])

    def env(self, home: Path) -> dict[str, str]:
        return {**_clean_env(), "RESTIC_PASSWORD": PASSWORD,
                "RESTIC_CACHE_DIR": str(home / "restic-cache")}

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "-r", str(repo), "init"]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "-r", str(repo), "backup", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [self.binary, "-r", str(repo), "restore", "latest", "--target", str(target)], None


class Borg(Tool):
    """borg 1.x: repokey-blake2 encryption, zstd level 3 compression, default chunker."""

    def env(self, home: Path) -> dict[str, str]:
        return {**_clean_env(), "BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": str(home),
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "init", "--encryption", "repokey-blake2", str(repo)]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "create", "--compression", "zstd,3", f"{repo}::{name}", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [self.binary, "extract", f"{repo}::{name}"], target


def all_tools() -> dict[str, Tool]:
    """The tools by their short name, ours first."""
    ours = ROOT / ".venv" / "bin" / "airflow-backup"
    return {"ours": Ours("ours", str(ours)), "restic": Restic("restic", "restic"),
            "borg": Borg("borg", "borg")}


def ensure_installed(commands: list[str]) -> list[str]:
    """Install the Debian packages of missing ``commands`` when root with apt-get.

    Returns the commands still missing afterwards.
    """
    def missing() -> list[str]:
        return [c for c in commands if not shutil.which(c)]

    packages = sorted({APT_PACKAGES[c] for c in missing() if c in APT_PACKAGES})
    if packages and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"bench: installing {' '.join(packages)} (apt-get)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", *packages]
        if subprocess.run(install, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env)
            subprocess.run(install, env=env)
    return missing()


def compile_ours() -> None:
    """Byte-compile our package, as ``pip install`` of a wheel does. The bench runs the
    source tree, which has no ``.pyc`` where PYTHONDONTWRITEBYTECODE is set (as in CI): every
    command would then compile each module it imports, ~0.14 s of CPU that an installed copy
    never spends, and restic is a compiled binary (issue 26)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "airflow_backup")],
                   check=True, stdout=subprocess.DEVNULL)
