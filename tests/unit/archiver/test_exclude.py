"""restic's backup exclusion rules (``archiver.exclude``): sizes as restic parses them,
marker files, case-insensitive patterns and the one-file-system device check.

The expected values were taken from restic 0.14 (``--exclude-larger-than`` with each size on
the same tree; tests/interop/test_exclude_with_restic.py compares whole backups).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_backup.archiver.exclude import (
    CACHEDIR_TAG,
    Exclusions,
    parse_size,
    parse_tag_spec,
)
from airflow_backup.archiver.warm import read_listing
from airflow_backup.errors import ConfigError

SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0),
    ("1024", 1024),
    ("1b", 1), ("1B", 1), ("1024b", 1024),
    ("1k", 1024), ("1K", 1024), ("2m", 2 << 20), ("2M", 2 << 20),
    ("3g", 3 << 30), ("3G", 3 << 30), ("4t", 4 << 40), ("4T", 4 << 40),
    ("+1K", 1024), ("-1", -1), ("007K", 7 << 10),
    ("9223372036854775807", (1 << 63) - 1),
    ("-9223372036854775808", -(1 << 63)),
    # The product wraps at 64 bits as Go's int64 does: 2^23 TiB is 2^63, i.e. negative.
    ("8388608T", -(1 << 63)),
    ("8388607T", (1 << 63) - (1 << 40)),
])
def test_sizes_parse_as_restic_parses_them(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("K", 'parsing "": invalid syntax'),
    ("1.5K", 'parsing "1.5": invalid syntax'),
    (" 1K", 'parsing " 1": invalid syntax'),
    ("1K ", 'parsing "1K ": invalid syntax'),
    ("1KB", 'parsing "1K": invalid syntax'),
    ("1P", 'parsing "1P": invalid syntax'),
    ("0x10", 'parsing "0x10": invalid syntax'),
    ("1_0", 'parsing "1_0": invalid syntax'),
    ("١٢", "invalid syntax"),  # Arabic-Indic digits: Go accepts only ASCII ones
    ("99999999999999999999", "value out of range"),
])
def test_bad_sizes_are_config_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        parse_size(text)


def test_tag_specs() -> None:
    assert parse_tag_spec(".nobackup") == (b".nobackup", b"")
    assert parse_tag_spec(".nobackup:") == (b".nobackup", b"")
    assert parse_tag_spec("T:a:b") == (b"T", b"a:b")
    assert parse_tag_spec(CACHEDIR_TAG) == (b"CACHEDIR.TAG", SIGNATURE)
    with pytest.raises(ConfigError, match="name for exclusion tagfile is empty"):
        parse_tag_spec("")
    with pytest.raises(ConfigError, match="no name for exclusion tagfile provided"):
        parse_tag_spec(":HEADER")


def _names(directory: Path, exclusions: Exclusions) -> list[str]:
    listing = read_listing(os.fsencode(directory), exclusions)
    assert listing is not None
    return [os.fsdecode(name) for name, _ in listing]


def test_a_marker_file_keeps_itself_and_leaves_out_its_directorys_other_entries(
        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_text("a")
    (tmp_path / ".nobackup").touch()
    assert _names(tmp_path, Exclusions(if_present=[".nobackup"])) == [".nobackup"]
    assert _names(tmp_path, Exclusions(if_present=[".other"])) == [".nobackup", "a", "sub"]
    # Two different markers leave each other out (restic: each rule exempts only its own).
    (tmp_path / "CACHEDIR.TAG").write_bytes(SIGNATURE + b"\n# a cache")
    assert _names(tmp_path, Exclusions(if_present=[".nobackup"], exclude_caches=True)) == []
    assert _names(tmp_path, Exclusions(exclude_caches=True)) == ["CACHEDIR.TAG"]


def test_a_marker_with_a_header_must_start_with_it_or_the_directory_stays(
        tmp_path: Path) -> None:
    warnings: list[str] = []

    def with_tag(content: bytes | None, kind: str = "file") -> list[str]:
        d = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        (d / "f").write_text("f")
        tag = d / "CACHEDIR.TAG"
        if kind == "dir":
            tag.mkdir()
        elif kind == "link":
            (tmp_path / f"{d.name}.target").write_bytes(content or b"")
            tag.symlink_to(tmp_path / f"{d.name}.target")
        elif kind == "dangling":
            tag.symlink_to(tmp_path / "nowhere")
        else:
            tag.write_bytes(content or b"")
        return _names(d, Exclusions(exclude_caches=True, warn=warnings.append))

    assert with_tag(SIGNATURE) == ["CACHEDIR.TAG"]
    assert with_tag(SIGNATURE, "link") == ["CACHEDIR.TAG"]  # the header is read through
    assert with_tag(b"Signature: 00000000000000000000000000000000") == ["CACHEDIR.TAG", "f"]
    assert warnings[-1].startswith("invalid signature in exclusion tagfile \"")
    assert with_tag(b"Signature: 8a47") == ["CACHEDIR.TAG", "f"]
    assert warnings[-1].endswith('/CACHEDIR.TAG": unexpected EOF')
    assert with_tag(b"") == ["CACHEDIR.TAG", "f"]
    assert warnings[-1].startswith("invalid (too short) signature in exclusion tagfile")
    assert with_tag(None, "dir") == ["CACHEDIR.TAG", "f"]
    assert warnings[-1].endswith(": is a directory")
    assert with_tag(None, "dangling") == ["CACHEDIR.TAG", "f"]
    assert "could not open exclusion tagfile: open " in warnings[-1]
    # Without a header a dangling symbolic link is enough, as for restic.
    d = tmp_path / "plain"
    d.mkdir()
    (d / "f").touch()
    (d / ".nobackup").symlink_to(tmp_path / "nowhere")
    assert _names(d, Exclusions(if_present=[".nobackup"])) == [".nobackup"]


def test_warnings_come_once_per_marker_file(tmp_path: Path) -> None:
    (tmp_path / "CACHEDIR.TAG").write_text("not a cache")
    (tmp_path / "f").touch()
    warnings: list[str] = []
    rules = Exclusions(exclude_caches=True, warn=warnings.append)
    for _ in range(3):
        assert _names(tmp_path, rules) == ["CACHEDIR.TAG", "f"]
    assert len(warnings) == 1


def test_a_target_whose_parent_holds_a_marker_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / ".nobackup").touch()
    rules = Exclusions(if_present=[".nobackup"], targets=[tmp_path / "in"])
    assert rules.rejects_target(os.fsencode(tmp_path / "in"))
    assert not rules.rejects_target(os.fsencode(tmp_path / ".nobackup"))
    assert not Exclusions(if_present=[".other"]).rejects_target(os.fsencode(tmp_path / "in"))


def test_a_marker_name_with_a_slash_is_looked_up_below_the_directory(tmp_path: Path) -> None:
    """restic joins the directory and the name: ``sub/.nb`` leaves out every entry of a
    directory that has ``sub/.nb``, ``sub`` included."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".nb").touch()
    (tmp_path / "a").touch()
    assert _names(tmp_path, Exclusions(if_present=["sub/.nb"])) == []
    assert _names(tmp_path / "sub", Exclusions(if_present=["sub/.nb"])) == [".nb"]


def test_larger_than_compares_the_lstat_size_of_anything_but_directories(
        tmp_path: Path) -> None:
    (tmp_path / "exact").write_bytes(b"x" * 1024)
    (tmp_path / "over").write_bytes(b"x" * 1025)
    (tmp_path / "dir").mkdir()
    (tmp_path / "short").symlink_to("ab")
    (tmp_path / "long").symlink_to("a" * 2000)  # a link's size is its target's length
    assert _names(tmp_path, Exclusions(larger_than=parse_size("1K"))) == [
        "dir", "exact", "short"]
    assert _names(tmp_path, Exclusions(larger_than=parse_size("0"))) == ["dir"]


def test_iexclude_folds_case_like_go(tmp_path: Path) -> None:
    for name in ("FILE.TXT", "file.txt", "keep.md", "İx", "ΑΣ"):
        (tmp_path / name).touch()
    (tmp_path.joinpath(os.fsdecode(b"bad\xffNAME"))).touch()

    bad = os.fsdecode(b"bad\xffNAME")

    def kept(*patterns: str) -> set[str]:
        return set(_names(tmp_path, Exclusions(iexcludes=list(patterns))))

    assert kept("*.Txt") == {"keep.md", bad, "ΑΣ", "İx"}
    assert kept("*.txt", "!*/FILE.txt") == {"FILE.TXT", "file.txt", "keep.md", bad, "ΑΣ",
                                            "İx"}
    # Go lower-cases İ to i and Σ to σ (never to ς); an invalid byte becomes U+FFFD.
    assert "İx" not in kept("*/ix")
    assert "ΑΣ" in kept("*/ας") and "ΑΣ" not in kept("*/ασ")
    assert bad not in kept("*/BAD?name")
    assert bad not in kept("*/bad\ufffdname")
    # Case-sensitive --exclude patterns apply alongside.
    both = Exclusions(excludes=["*/keep.md"], iexcludes=["*.TXT"])
    assert set(_names(tmp_path, both)) == {bad, "ΑΣ", "İx"}


def _stat(mode: int, dev: int, size: int = 0) -> SimpleNamespace:
    return SimpleNamespace(st_mode=mode, st_dev=dev, st_size=size)


def test_one_file_system_allows_the_device_of_the_nearest_target(tmp_path: Path) -> None:
    """Each entry must be on the device of the nearest target that holds it; a directory on
    another device is kept (empty) when its parent is allowed: a mount point."""
    proc = Path("/proc/self")
    if not proc.exists() or os.lstat(proc).st_dev == os.lstat(tmp_path).st_dev:
        pytest.skip("needs /proc on its own file system")
    here = os.lstat(tmp_path).st_dev
    there = os.lstat(proc).st_dev
    (tmp_path / "mnt").mkdir()
    rules = Exclusions(one_file_system=True, targets=[tmp_path, proc])
    t = os.fsencode(tmp_path)
    file, directory = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755
    assert not rules.rejects_stat(t + b"/f", _stat(file, here))
    assert rules.rejects_stat(t + b"/f", _stat(file, there))
    assert not rules.rejects_stat(t + b"/mnt", _stat(directory, there))  # a mount point
    assert rules.rejects_stat(t + b"/mnt/f", _stat(file, there))
    # The parent's device is its own: tmp_path/mnt is really on tmp_path's device, so a
    # directory in it looks like a mount point. (Below a real mount point, whose parent is
    # on another device, nothing is kept: tests/interop/test_exclude_with_restic.py.)
    assert not rules.rejects_stat(t + b"/mnt/d", _stat(directory, there))
    assert rules.rejects_stat(t + b"/nowhere/d", _stat(directory, there))  # parent unreadable
    assert not rules.rejects_stat(b"/proc/self/status", _stat(file, there))
    assert rules.rejects_stat(b"/proc/self/status", _stat(file, here))
    assert not Exclusions(targets=[tmp_path]).rejects_stat(t + b"/f", _stat(file, there))


def test_directories_between_nested_targets_are_never_left_out(tmp_path: Path) -> None:
    """restic passes through the directories from a target to another target inside it
    without selecting them (``-x / /home`` backs up both file systems)."""
    outer, inner = tmp_path / "a", tmp_path / "a" / "b" / "c"
    inner.mkdir(parents=True)
    rules = Exclusions(excludes=["b"], one_file_system=True, targets=[outer, inner])
    other_dev = os.lstat(tmp_path).st_dev + 1
    for way in (outer, outer / "b"):
        p = os.fsencode(way)
        assert not rules.rejects_name(p, p.rsplit(b"/", 1)[1], frozenset())
        assert not rules.rejects_stat(p, _stat(stat.S_IFDIR, other_dev))
    assert rules.rejects_target(os.fsencode(inner))  # the inner target is selected as usual
    assert rules.rejects_name(os.fsencode(outer / "b" / "x"), b"x", frozenset())
    root = Exclusions(one_file_system=True, targets=["/", tmp_path])
    assert not root.rejects_stat(b"/", _stat(stat.S_IFDIR, other_dev))
