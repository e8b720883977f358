"""restic's backup exclusion flags, side by side with restic 0.14: ``--exclude-caches``,
``--exclude-if-present``, ``--exclude-larger-than``, ``--iexclude``, ``--iexclude-file`` and
``-x`` on the same tree (cache directories with good and bad tags, marker files, files around
the size limits, mixed-case and non-UTF-8 names, a tmpfs mount when one can be mounted) store
exactly the same entries in both tools' snapshots, and give the same warnings and exit codes.

Both repositories are listed by restic (``ls --json``), so the comparison does not depend on
how our ``ls`` prints names. Both are initialised by us, with cheap key derivation parameters
(restic's own would cost most of the test's time; what a backup stores does not depend on
it). Our backups keep the client's remembered directories (``archiver.known``) between the
runs: a run with other flags must never take the trees of an earlier run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cli import ok, run_cli
from support.tools import run_restic

pytestmark = [pytest.mark.restic]

PW = "secret-pw"  # run_cli's default password
SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
ENV = {"IEXCLUDE_DIR": "MIXED"}  # for the $VAR in the --iexclude-file


def _build(root: Path) -> None:
    """The tree every comparison backs up."""
    def put(rel: str, data: bytes = b"x\n") -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    put("cache/CACHEDIR.TAG", SIGNATURE + b"\n# a cache directory tag\n")
    put("cache/blob")
    put("cache/sub/deeper")
    put("cache/.nobackup", b"")                         # a second marker: each leaves out
    put("badcache/CACHEDIR.TAG", b"Signature: " + b"0" * 32)   # full length, wrong value
    put("badcache/kept")
    put("shortcache/CACHEDIR.TAG", b"Signature: 8a47")  # too short: unexpected EOF
    put("shortcache/kept")
    put("emptycache/CACHEDIR.TAG", b"")                  # empty: too short
    put("emptycache/kept")
    put("linkcache/real.tag", SIGNATURE)
    (root / "linkcache" / "CACHEDIR.TAG").symlink_to("real.tag")  # read through the link
    put("linkcache/gone")
    put("mark/.nobackup", b"")
    put("mark/a")
    put("mark/d/e")
    put("hdr/.hdr", b"HEADER and more")
    put("hdr/a")
    put("hdrwrong/.hdr", b"HEADLESS file")
    put("hdrwrong/a")
    put("slash/sub/.nb", b"")
    put("slash/a")
    for name, size in (("empty", 0), ("k1023", 1023), ("k1024", 1024), ("k1025", 1025),
                       ("k2000", 2000), ("m1", 1 << 20)):
        put(f"sizes/{name}", os.urandom(size))
    (root / "sizes" / "short-link").symlink_to("ab")
    (root / "sizes" / "long-link").symlink_to("t" * 1500)
    put("Mixed/FILE.TXT")
    put("Mixed/file.txt")
    put("Mixed/Notes.Md")
    put("Mixed/Sub/Other.LOG")
    put("Mixed/ÉTÉ.txt")
    put("Mixed/İx")
    put("Mixed/ΑΣ")
    put(os.fsdecode(b"Mixed/bad\xffNAME"))
    put("plain/x.log")
    put("plain/y.txt")


@dataclass(frozen=True)
class _Side:
    root: Path
    ours: Path
    theirs: Path
    cache: Path
    iexclude_file: Path


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory, restic_bin: str) -> _Side:
    base = tmp_path_factory.mktemp("exclude-interop")
    root = base / "tree"
    _build(root)
    ifile = base / "iexcludes.txt"
    ifile.write_text("# case-insensitive patterns\n*/$IEXCLUDE_DIR/*.TXT\n\n"
                     "!*/Mixed/file.txt\n*.LOG\n")
    return _init(_Side(root, base / "ours", base / "theirs", base / "cache", ifile))


def _init(s: _Side) -> _Side:
    ok(run_cli(s.ours, "init"))
    ok(run_cli(s.theirs, "init"))
    return s


@dataclass(frozen=True)
class _Run:
    code: int
    entries: list[tuple[object, ...]]
    warnings: list[str]


def _entries(repo: Path, snapshot: str, root: Path, restic_bin: str
             ) -> list[tuple[object, ...]]:
    """The snapshot's nodes as restic lists them: (path, type) for the directories above
    ``root``, with mode, size and mtime below it."""
    out = run_restic(repo, "ls", "--json", snapshot, password=PW, restic_bin=restic_bin)
    nodes = [json.loads(line) for line in out.stdout.splitlines()]
    entries: list[tuple[object, ...]] = []
    for n in nodes:
        if n.get("struct_type") != "node":
            continue
        inside = n["path"] == str(root) or n["path"].startswith(f"{root}/")
        entries.append((n["path"], n["type"], n.get("mode"), n.get("size"), n.get("mtime"))
                       if inside else (n["path"], n["type"]))
    return entries


def _warnings(stderr: bytes) -> list[str]:
    # restic prints some warnings without a newline: split on the message starts.
    text = stderr.decode("utf-8", "replace")
    for start in ("invalid ", "could not "):
        text = text.replace(start, "\n" + start)
    return sorted(line.strip() for line in text.splitlines() if "exclusion tagfile" in line)


def _snapshot_id(stdout: bytes) -> str | None:
    """The id in a ``backup --json`` summary (restic's or ours), None without one."""
    for line in stdout.decode().splitlines():
        doc = json.loads(line) if line.startswith("{") else {}
        if doc.get("message_type") == "summary":
            return str(doc["snapshot_id"])
    return None


def _both(s: _Side, restic_bin: str, args: list[str], paths: list[Path] | None = None,
          ) -> tuple[_Run, _Run]:
    """Back up ``paths`` (default: the tree) with ``args`` with restic and with us; return
    (restic's run, ours)."""
    targets = [str(p) for p in (paths or [s.root])]
    runs = []
    for repo, backup in (
        (s.theirs, lambda: run_restic(s.theirs, "backup", "--json", *args, *targets,
                                      password=PW, restic_bin=restic_bin, env=ENV,
                                      check=False)),
        (s.ours, lambda: run_cli(s.ours, "--cache-dir", str(s.cache), "--json", "backup",
                                 *args, *targets, env=ENV)),
    ):
        proc = backup()
        snapshot = _snapshot_id(proc.stdout)
        assert (snapshot is not None) == (proc.returncode == 0), proc.stderr
        entries = _entries(repo, snapshot, s.root, restic_bin) if snapshot else []
        runs.append(_Run(proc.returncode, entries, _warnings(proc.stderr)))
    return runs[0], runs[1]


def _count(repo: Path, restic_bin: str) -> int:
    out = run_restic(repo, "snapshots", "--json", password=PW, restic_bin=restic_bin)
    return len(json.loads(out.stdout))


FLAG_SETS: dict[str, list[str]] = {
    "none": [],
    "caches": ["--exclude-caches"],
    "if-present": ["--exclude-if-present", ".nobackup"],
    "caches and if-present": ["--exclude-caches", "--exclude-if-present", ".nobackup"],
    "if-present with header": ["--exclude-if-present", ".hdr:HEADER",
                               "--exclude-if-present", "CACHEDIR.TAG:Signature: 8a47"],
    "if-present with a path": ["--exclude-if-present", "sub/.nb"],
    "larger than 1K": ["--exclude-larger-than", "1K"],
    "larger than 1025": ["--exclude-larger-than", "1025"],
    "larger than 0": ["--exclude-larger-than", "0"],
    "larger than 1b": ["--exclude-larger-than", "1b"],
    "larger than 1m": ["--exclude-larger-than", "1m"],
    "iexclude": ["--iexclude", "*.txt"],
    "iexclude negated": ["--iexclude", "*/mixed/*", "--iexclude", "!*/FILE.txt"],
    "iexclude like go": ["--iexclude", "*/İX", "--iexclude", "*/ας", "--iexclude", "*/ασ",
                         "--iexclude", "*/BAD?name", "--iexclude", "*/été.TXT"],
    "iexclude-file": ["--iexclude-file", "IEXCLUDE_FILE"],
    "everything": ["--exclude", "*.log", "--iexclude", "*/PLAIN/Y.*", "--exclude-caches",
                   "--exclude-if-present", ".nobackup", "--exclude-larger-than", "1k",
                   "--one-file-system"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLAG_SETS))
def test_the_same_flags_store_the_same_entries_as_restic(side: _Side, restic_bin: str,
                                                         name: str) -> None:
    """One repository per tool for every flag set, in this order: each of our backups has
    the previous one as parent and the remembered directories of the earlier runs."""
    args = [str(side.iexclude_file) if a == "IEXCLUDE_FILE" else a for a in FLAG_SETS[name]]
    theirs, ours = _both(side, restic_bin, args)
    assert ours.code == theirs.code == 0
    assert ours.entries == theirs.entries
    assert ours.warnings == theirs.warnings


def test_the_flag_sets_leave_out_what_they_should(side: _Side, restic_bin: str) -> None:
    """Spot checks of what restic keeps (the comparison above would pass if both tools
    ignored a flag): the tagged directory and its tag stay, its contents go."""
    theirs, ours = _both(side, restic_bin, ["--exclude-caches"])
    paths = {e[0] for e in ours.entries}
    r = side.root
    assert {f"{r}/cache", f"{r}/cache/CACHEDIR.TAG", f"{r}/linkcache/CACHEDIR.TAG",
            f"{r}/badcache/kept", f"{r}/shortcache/kept"} <= paths
    assert not {f"{r}/cache/blob", f"{r}/cache/sub", f"{r}/linkcache/gone"} & paths
    assert any("invalid signature" in w for w in ours.warnings)
    assert ours.entries == theirs.entries


@pytest.mark.slow
@pytest.mark.parametrize(("args", "targets"), [
    # A target whose parent holds a marker is left out; a marker as target is kept.
    (["--exclude-caches", "--exclude-if-present", ".nobackup"], ["cache/sub", "mark/d"]),
    (["--exclude-caches"], ["cache/CACHEDIR.TAG", "cache/blob"]),
    # A target inside another: restic passes through the directories down to it.
    (["--exclude-if-present", ".nobackup"], [".", "mark/d"]),
    (["--iexclude", "*/SUB"], [".", "cache/sub/deeper"]),
    (["--exclude-larger-than", "1000"], ["sizes/k1023", "sizes/k1024", "sizes"]),
])
def test_targets_are_selected_as_restic_selects_them(side: _Side, restic_bin: str,
                                                     args: list[str],
                                                     targets: list[str]) -> None:
    theirs, ours = _both(side, restic_bin, args, [side.root / t for t in targets])
    assert ours.code == theirs.code == 0
    assert ours.entries == theirs.entries


@pytest.mark.parametrize("args", [
    ["--exclude-larger-than", "1.5K"],
    ["--exclude-larger-than", "1KB"],
    ["--exclude-larger-than", "99999999999999999999"],
    ["--exclude-if-present", ":HEADER"],
    ["--exclude-if-present", ""],
])
def test_bad_values_fail_before_anything_is_stored(side: _Side, restic_bin: str,
                                                   args: list[str]) -> None:
    before = (_count(side.theirs, restic_bin), _count(side.ours, restic_bin))
    theirs, ours = _both(side, restic_bin, args)
    assert theirs.code == ours.code == 1
    assert (_count(side.theirs, restic_bin), _count(side.ours, restic_bin)) == before


@pytest.mark.slow
def test_other_flags_never_reuse_the_trees_remembered_by_an_earlier_backup(
        tmp_path: Path, restic_bin: str) -> None:
    """Back and forth between flag sets on one repository with remembered directories: each
    backup stores what restic stores with the same flags, and each flag set keeps its
    remembered directories in a file of its own."""
    root = tmp_path / "tree"
    _build(root)
    s = _init(_Side(root, tmp_path / "ours", tmp_path / "theirs", tmp_path / "cache",
                    tmp_path))
    sequence = [[], [], ["--exclude-caches"], [], ["--exclude-larger-than", "1K"],
                ["--exclude-caches"], ["--iexclude", "*.TXT"], ["--exclude-caches"], []]
    for args in sequence:
        theirs, ours = _both(s, restic_bin, args)
        assert ours.entries == theirs.entries, args
    (repo_id,) = [p.name for p in s.cache.iterdir() if p.is_dir()]
    remembered = list((s.cache / repo_id / "dirs").iterdir())
    assert len(remembered) == len({tuple(a) for a in sequence})


# ---- -x / --one-file-system ----------------------------------------------------------------


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A tree with a tmpfs mounted at tree/mnt (skips where mounting is not allowed)."""
    root = tmp_path / "xtree"
    (root / "mnt").mkdir(parents=True)
    (root / "d").mkdir()
    (root / "d" / "f").write_text("f")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root / "mnt")],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {exc}")
    try:
        mnt = root / "mnt"
        (mnt / "inner" / "deep").mkdir(parents=True)
        (mnt / "inner" / "other").mkdir()
        (mnt / "file").write_text("on the tmpfs")
        (mnt / "inner" / "deep" / "g").write_text("g")
        (mnt / "inner" / "other" / "o").write_text("o")
        (mnt / "link").symlink_to("file")
        assert os.lstat(mnt).st_dev != os.lstat(root).st_dev
        yield root
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=False, capture_output=True,
                       timeout=60)


@pytest.mark.parametrize(("args", "targets"), [
    (["-x"], ["."]),
    (["--one-file-system"], ["."]),
    ([], ["."]),
    (["-x"], ["mnt"]),
    (["-x"], [".", "mnt/inner"]),            # restic passes through mnt down to inner
    (["-x"], [".", "mnt/inner/deep"]),
    (["-x"], ["d", "mnt"]),
    (["-x", "--exclude-larger-than", "1"], ["."]),
])
def test_one_file_system_matches_restic_on_a_tmpfs(mounted: Path, tmp_path: Path,
                                                   restic_bin: str, args: list[str],
                                                   targets: list[str]) -> None:
    s = _init(_Side(mounted, tmp_path / "ours", tmp_path / "theirs", tmp_path / "cache",
                    tmp_path))
    theirs, ours = _both(s, restic_bin, args, [mounted / t for t in targets])
    assert ours.code == theirs.code == 0
    assert ours.entries == theirs.entries
    paths = {e[0] for e in ours.entries}
    if "-x" in args and targets == ["."]:
        # The mount point stays, empty: only its own node, nothing of the tmpfs.
        assert f"{mounted}/mnt" in paths
        assert not any(p.startswith(f"{mounted}/mnt/") for p in paths)
