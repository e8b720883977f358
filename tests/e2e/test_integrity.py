"""Damaged packs are reported by name; damaged bytes are never restored silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.cli import run_cli

PW = "secret-pw"


def _data_packs(repo: Path) -> list[Path]:
    return [p for p in (repo / "data").rglob("*") if p.is_file()]


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3_000_000))
    repo = tmp_path / "repo"
    assert run_cli(repo, "init").returncode == 0
    assert run_cli(repo, "backup", str(src)).returncode == 0
    return repo, src


def _largest_pack(repo: Path) -> Path:
    return max(_data_packs(repo), key=lambda p: p.stat().st_size)


def _damage(pack: Path, how: str) -> None:
    pack.chmod(0o644)
    raw = bytearray(pack.read_bytes())
    if how == "flip":
        raw[len(raw) // 3] ^= 0x01
    else:
        raw = raw[: len(raw) - 1000]
    pack.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_pack_is_named_and_its_file_never_left_looking_complete(
    backed_up: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    repo, src = backed_up
    pack = _largest_pack(repo)
    _damage(pack, how)
    target = tmp_path / f"restore-{how}"
    proc = run_cli(repo, "restore", "latest", "--target", str(target))
    # A salvage restore: everything intact is restored, the damaged file is named (with the
    # pack), exit 3 (partial).
    assert proc.returncode == 3
    err = proc.stderr.decode()
    assert pack.name in err and "big.bin" in err, err
    restored = target / src.relative_to("/") / "big.bin"
    assert not restored.exists(), "a file with damaged content was left behind"

    dumped = run_cli(repo, "dump", "latest", str(src / "big.bin"))
    assert dumped.returncode == 1
    assert pack.name in dumped.stderr.decode()
    assert len(dumped.stdout) < 3_000_000
