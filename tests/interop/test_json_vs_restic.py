"""The same commands, run by restic and by us on the same repositories, print the same JSON.

Three repositories hold the same two states of one edge-case tree (the ``small_tricky_tree``
shape: non-UTF-8 and unicode names, symlinks, hardlinks, a fifo, 30 nested levels, a 3 MB
file, 100 small files), backed up twice with a change in between:

- ``restic``: written by restic (0.14 on CI), both snapshots;
- ``ours``: written by us, both snapshots;
- ``mixed``: initialised by us, the first snapshot written by restic, the second by us.

Every verb runs with both tools on every repository, and the parsed JSON is compared field by
field: a key restic prints must be printed by us with the same value. Our output may only
*add* keys; each addition is listed below, and so is each key that the restic binary lacks
because it is older than the behaviour restic documents today (doc/075_scripting.rst, restic
>= 0.17). For those, and for verbs where restic 0.14 prints no JSON at all (``check``,
``prune``), the test says so and checks the documented message on our side instead. Restores
of the same snapshot by both tools are compared byte by byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.cli import ok, run_cli
from support.tools import require_tool, restic_version, run_restic
from support.trees import TreeSpec, compare_trees, make_tricky_tree, restored_path

pytestmark = [pytest.mark.restic, pytest.mark.slow]

PW = "secret-pw"

# --- normalisations: every key that may differ, and why --------------------------------------

#: Keys that restic documents today but restic 0.14 does not print (it drops fields of a
#: snapshot it does not know when it reads one, and its ls/stats messages predate them).
#: We print the documented ones; the test checks their values separately.
NEWER_THAN_0_14: dict[str, frozenset[str]] = {
    # restic >= 0.17 snapshots carry program_version and summary; 0.14 drops both on reading.
    "snapshot": frozenset({"program_version", "summary"}),
    # restic >= 0.17 ls: "message_type" (struct_type is deprecated) and the node's "inode".
    "ls_snapshot": frozenset({"message_type", "program_version", "summary"}),
    "ls_node": frozenset({"message_type", "inode"}),
    # restic >= 0.16 stats raw-data also reports compression figures.
    # restic >= 0.15 forget: a kept snapshot's id also in its "reasons" entry.
    "forget": frozenset({"program_version", "summary", "id", "short_id"}),
    "stats": frozenset({"total_uncompressed_size", "compression_ratio",
                        "compression_progress", "compression_space_saving"}),
}

#: Keys only we print (additions; never a renamed or redefined restic field).
OUR_ADDITIONS: dict[str, frozenset[str]] = {
    # Our snapshots record extra facts (e.g. unreadable files of a partial backup).
    "snapshot": frozenset({"airflow_backup"}),
    "ls_snapshot": frozenset({"airflow_backup"}),
    "ls_node": frozenset(),
    "forget": frozenset({"airflow_backup"}),
    # The default (restore-size) mode also reports our earlier figures.
    "stats": frozenset({"restore_size", "data_blob_count", "raw_data_size",
                        "raw_file_data_size", "stored_size", "dedup_ratio"}),
}


def assert_same(ours: Any, theirs: Any, kind: str = "") -> None:
    """Assert that our JSON equals restic's, except for the listed keys of ``kind``."""
    problems = diff_json(ours, theirs, _allowed(kind))
    assert not problems, "\n".join(problems[:40])


def _allowed(kind: str) -> frozenset[str]:
    return NEWER_THAN_0_14.get(kind, frozenset()) | OUR_ADDITIONS.get(kind, frozenset())


def diff_json(ours: Any, theirs: Any, extra_ok: frozenset[str] = frozenset(),
              where: str = "$") -> list[str]:
    """Return the differences between our and restic's parsed JSON: a key restic prints
    must be ours too with an equal value; a key only we print must be in ``extra_ok``."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        problems = []
        for key, value in theirs.items():
            if key not in ours:
                problems.append(f"{where}.{key}: missing (restic: {value!r})")
            else:
                problems += diff_json(ours[key], value, extra_ok, f"{where}.{key}")
        problems += [f"{where}.{key}: only ours ({ours[key]!r})"
                     for key in ours if key not in theirs and key not in extra_ok]
        return problems
    if isinstance(theirs, list) and isinstance(ours, list):
        if len(ours) != len(theirs):
            return [f"{where}: {len(ours)} items, restic {len(theirs)}"]
        return [p for i, (o, t) in enumerate(zip(ours, theirs, strict=True))
                for p in diff_json(o, t, extra_ok, f"{where}[{i}]")]
    if ours != theirs or type(ours) is not type(theirs):
        return [f"{where}: ours {ours!r}, restic {theirs!r}"]
    return []


# --- the repositories ---------------------------------------------------------------------------


@dataclass
class World:
    tree: TreeSpec
    repos: dict[str, Path]
    restic_bin: str
    tmp: Path
    lossy: bool

    def restic(self, repo: str | Path, *args: str, check: bool = True) -> Any:
        path = self.repos[repo] if isinstance(repo, str) else repo
        return run_restic(path, *args, password=PW, restic_bin=self.restic_bin, check=check)

    def ours(self, repo: str | Path, *args: str) -> Any:
        path = self.repos[repo] if isinstance(repo, str) else repo
        return run_cli(path, *args, password=PW)

    def both_json(self, repo: str | Path, *args: str) -> tuple[Any, Any]:
        """Run ``ARGS --json`` with both tools; return (ours, restic's) parsed."""
        mine = ok(self.ours(repo, "--json", *args)).stdout
        theirs = self.restic(repo, "--json", *args).stdout
        return json.loads(mine), json.loads(theirs)

    def both_lines(self, repo: str | Path, *args: str) -> tuple[list[Any], list[Any]]:
        """Run ``ARGS --json`` with both tools; return their JSON lines parsed."""
        mine = ok(self.ours(repo, "--json", *args)).stdout
        theirs = self.restic(repo, "--json", *args).stdout
        return ([json.loads(x) for x in mine.splitlines() if x.strip()],
                [json.loads(x) for x in theirs.splitlines() if x.strip()])

    def snapshot_ids(self, repo: str) -> list[str]:
        snaps = json.loads(self.restic(repo, "snapshots", "--json").stdout)
        return [s["id"] for s in sorted(snaps, key=lambda s: s["time"])]


def _change_tree(tree: TreeSpec) -> None:
    """The second state: files added, removed, rewritten; a directory added and one removed;
    a file turned into a directory; a symlink retargeted."""
    root = tree.root
    (root / "small" / "d00" / "added.txt").write_bytes(b"a new file\n")
    (root / "added-dir" / "sub").mkdir(parents=True)
    (root / "added-dir" / "one.txt").write_bytes(b"one\n" * 100)
    (root / "added-dir" / "sub" / "two.bin").write_bytes(os.urandom(70_000))
    shutil.rmtree(root / "small" / "d01")
    rewritten = sorted((root / "small" / "d02").iterdir())[0]
    rewritten.write_bytes(b"rewritten content\n" * 50)
    (root / "small" / "d03" / sorted(os.listdir(root / "small" / "d03"))[0]).unlink()
    victim = tree.moded_files[0o644]
    victim.unlink()
    victim.mkdir()
    (victim / "now-a-dir.txt").write_bytes(b"was a file\n")
    link = tree.symlinks["relative"]
    link.unlink()
    link.symlink_to("target-dir")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    restic_bin = require_tool("restic")
    tmp = tmp_path_factory.mktemp("json-vs-restic")
    # The small_tricky_tree shape (tests/conftest.py), built once for the whole module.
    tree = make_tricky_tree(tmp / "small-tricky", big_file_size=3 * 1024 * 1024,
                            small_files=100, depth=30)
    repos = {name: tmp / f"repo-{name}" for name in ("restic", "ours", "mixed")}
    w = World(tree, repos, restic_bin, tmp, restic_version(restic_bin) < (0, 16, 0))
    w.restic("restic", "init")
    ok(w.ours("ours", "init"))
    ok(w.ours("mixed", "init"))
    src = str(tree.root)
    w.restic("restic", "backup", src, "--tag", "one")
    ok(w.ours("ours", "backup", src, "--tag", "one"))
    w.restic("mixed", "backup", src, "--tag", "one")
    _change_tree(tree)
    w.restic("restic", "backup", src, "--tag", "two")
    ok(w.ours("ours", "backup", src, "--tag", "two"))
    ok(w.ours("mixed", "backup", src, "--tag", "two"))
    yield w


REPOS = ["restic", "ours", "mixed"]


# --- snapshots, cat -------------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
def test_snapshots_json(world: World, repo: str) -> None:
    ours, theirs = world.both_json(repo, "snapshots")
    assert_same(ours, theirs, "snapshot")
    assert len(ours) == 2
    for sn in ours:
        # restic >= 0.17 documents program_version and summary; 0.14 drops them on reading.
        # Snapshots written by restic 0.14 have neither; ours have both.
        if repo == "ours" or (repo == "mixed" and sn["tags"] == ["two"]):
            assert sn["program_version"].startswith("airflow-backup")
            s = sn["summary"]
            assert s["backup_start"] <= s["backup_end"]
            assert s["total_files_processed"] > 100 and s["total_bytes_processed"] > 3 << 20


@pytest.mark.parametrize("repo", REPOS)
def test_cat_config_and_snapshot_json(world: World, repo: str) -> None:
    ours, theirs = world.both_json(repo, "cat", "config")
    assert_same(ours, theirs)
    for sid in world.snapshot_ids(repo):
        ours, theirs = world.both_json(repo, "cat", "snapshot", sid)
        assert_same(ours, theirs, "snapshot")


# --- ls, find -------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
def test_ls_json(world: World, repo: str) -> None:
    for sid in world.snapshot_ids(repo):
        ours, theirs = world.both_lines(repo, "ls", sid)
        assert_same(ours[0], theirs[0], "ls_snapshot")
        assert ours[0]["struct_type"] == "snapshot"
        # restic >= 0.17 documents message_type "snapshot"/"node"; 0.14 has struct_type only.
        assert ours[0]["message_type"] == "snapshot"
        nodes_ours, nodes_theirs = ours[1:], theirs[1:]
        assert_same(nodes_ours, nodes_theirs, "ls_node")
        assert all(n["message_type"] == "node" for n in nodes_ours)
        # restic >= 0.17 prints the node's inode (omitted when 0): the stored one.
        assert all(isinstance(n.get("inode", 0), int) for n in nodes_ours)
        assert any(n.get("inode") for n in nodes_ours)


@pytest.mark.parametrize("repo", REPOS)
@pytest.mark.parametrize("args", [["small"], ["small/d00", "links"],
                                  ["--recursive", "small/d00", "deep/d00/d01"]])
def test_ls_json_below_directories(world: World, repo: str, args: list[str]) -> None:
    """With directories, restic lists each and its entries (``--recursive``: all below)."""
    argv = [a if a.startswith("-") else str(world.tree.root / a) for a in args]
    ours, theirs = world.both_lines(repo, "ls", *argv[:1 if args[0] == "--recursive" else 0],
                                    "latest", *argv[1 if args[0] == "--recursive" else 0:])
    assert_same(ours[1:], theirs[1:], "ls_node")


@pytest.mark.parametrize("repo", REPOS)
@pytest.mark.parametrize("patterns", [["*.dat"], ["f00*", "*.txt"], ["hardlinks"]])
def test_find_json(world: World, repo: str, patterns: list[str]) -> None:
    ours, theirs = world.both_json(repo, "find", *patterns)
    # Normalisation: restic 0.14 goes through the snapshots in the order the backend lists
    # their files; restic >= 0.17 documents youngest first (``--reverse``: oldest first).
    # Compared per snapshot; our order is checked against the documented one.
    assert_same({m["snapshot"]: m for m in ours}, {m["snapshot"]: m for m in theirs})
    youngest_first = world.snapshot_ids(repo)[::-1]
    assert [m["snapshot"] for m in ours] == [s for s in youngest_first
                                             if s in {m["snapshot"] for m in ours}]
    reverse = json.loads(ok(world.ours(repo, "--json", "find", "--reverse", *patterns)).stdout)
    assert reverse == ours[::-1]


# --- stats -----------------------------------------------------------------------------------

MODES = [[], ["--mode", "restore-size"], ["--mode", "files-by-contents"],
         ["--mode", "raw-data"], ["--mode", "blobs-per-file"]]


@pytest.mark.parametrize("repo", REPOS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[-1] if m else "default")
@pytest.mark.parametrize("which", [[], ["latest"]], ids=["all", "latest"])
def test_stats_json(world: World, repo: str, mode: list[str], which: list[str]) -> None:
    ours, theirs = world.both_json(repo, "stats", *mode, *which)
    if theirs.get("total_file_count", 1) == 0:
        # Normalisation: restic 0.14 prints "total_file_count": 0 in raw-data mode; restic
        # >= 0.16 leaves zero counters out (omitempty), as we do.
        del theirs["total_file_count"]
        assert "total_file_count" not in ours
    assert_same(ours, theirs, "stats")
    if mode and mode[-1] == "raw-data":
        # restic >= 0.16 documents the compression figures of raw-data mode; 0.14 lacks them.
        assert ours["total_uncompressed_size"] >= ours["total_size"]
        if "compression_progress" in ours:
            assert 0 < ours["compression_progress"] <= 100
            assert ours["compression_ratio"] >= 1
    else:
        for key in NEWER_THAN_0_14["stats"]:
            assert key not in ours


# --- diff ------------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
def test_diff_json(world: World, repo: str) -> None:
    a, b = world.snapshot_ids(repo)
    for first, second, *flags in ((a, b), (b, a), (a, b, "--metadata")):
        ours, theirs = world.both_lines(repo, "diff", *flags, first, second)
        assert_same(ours, theirs)
        stats = ours[-1]
        assert stats["message_type"] == "statistics"
        assert stats["added"]["data_blobs"] > 0 and stats["removed"]["tree_blobs"] > 0


# --- forget -----------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
@pytest.mark.parametrize("policy", [["--keep-last", "1"], ["--keep-tag", "two"],
                                    ["--group-by", "tags", "--keep-last", "1"]])
def test_forget_json_dry_run(world: World, repo: str, policy: list[str]) -> None:
    ours, theirs = world.both_json(repo, "forget", "--dry-run", *policy)
    # Normalisation: restic (0.14 and today) goes through the groups in Go's random map
    # order; compared per group key.
    def by_key(groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {json.dumps([g["host"], g["tags"], g["paths"]]): g for g in groups}

    assert_same(by_key(ours), by_key(theirs), "forget")
    for group in ours:
        # restic >= 0.15 prints a kept snapshot's id in its reasons too (KeepReason).
        assert [r["snapshot"]["id"] for r in group["reasons"]] == \
            [k["id"] for k in group["keep"]]


@pytest.mark.parametrize("repo", REPOS)
def test_forget_by_id_prints_no_json(world: World, repo: str, tmp_path: Path) -> None:
    """Documented: "If specific snapshot IDs are specified, then no output is generated."."""
    first = world.snapshot_ids(repo)[0]
    copies = {}
    for tool in ("ours", "restic"):
        copies[tool] = tmp_path / tool
        shutil.copytree(world.repos[repo], copies[tool])
    mine = ok(world.ours(copies["ours"], "--json", "forget", first))
    theirs = world.restic(copies["restic"], "--json", "forget", first)
    assert mine.stdout.strip() == theirs.stdout.strip() == b""


# --- prune (restic 0.14 prints text; current restic one documented JSON summary) -----------


def _restic_bytes(n: int) -> str:
    """restic's ui.FormatBytes."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n > 1 << shift:
            return f"{n / (1 << shift):.3f} {unit}"
    return f"{n} B"


def _parse_prune_text(text: str) -> dict[str, tuple[int | None, str]]:
    """Restic 0.14's ``prune -v`` lines: label -> (count or None, size text or '')."""
    out: dict[str, tuple[int | None, str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z ]+):\s+(\d+) (blobs|packs|unreferenced packs)(?: / (.+))?$", line)
        if m:
            label = m[1] if m[3] != "unreferenced packs" else "to delete unreferenced"
            if label in out:  # "to delete:" appears for blobs and for packs
                label += f" {m[3]}"
            out[label] = (int(m[2]), m[4] or "")
            continue
        m = re.match(r"^([a-z ]+ packs):\s+(\d+)$", line)
        if m:
            out[m[1]] = (int(m[2]), "")
            continue
        m = re.match(r"^(unreferenced|not yet compressed):\s+(.+)$", line)
        if m:
            out[m[1]] = (None, m[2])
        m = re.match(r"^unused size after prune: (.+) \(", line)
        if m:
            out["unused size after prune"] = (None, m[1])
    return out


@pytest.mark.parametrize("repo", REPOS)
def test_prune_dry_run_json(world: World, repo: str, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(world.repos[repo], copy)
    world.restic(copy, "forget", world.snapshot_ids(repo)[0])  # leave unused data behind
    text = world.restic(copy, "prune", "--dry-run", "-v").stdout.decode()
    # restic 0.14's --json prune prints this same text (no JSON); current restic prints one
    # documented "summary" message with nested blobs/bytes/packfiles. We print that one, and
    # its numbers must be the ones restic 0.14 prints as text.
    assert not world.restic(copy, "--json", "prune", "--dry-run").stdout.lstrip() \
        .startswith(b"{")
    lines = ok(world.ours(copy, "--json", "prune", "--dry-run")).stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["message_type"] == "summary"
    blobs, size, packs = summary["blobs"], summary["bytes"], summary["packfiles"]
    t = _parse_prune_text(text)
    expect: dict[str, tuple[int | None, str]] = {
        "used": (blobs["used"], _restic_bytes(size["used"])),
        "unused": (blobs["unused"], _restic_bytes(size["unused"])),
        "total": (blobs["total"], _restic_bytes(size["total"])),
        "to repack": (blobs["repack"], _restic_bytes(size["repack"])),
        "this removes": (blobs["repack_remove"], _restic_bytes(size["repack_remove"])),
        "to delete": (blobs["remove"], _restic_bytes(size["remove"] + size["unreferenced"])),
        "total prune": (blobs["remove_total"], _restic_bytes(size["remove_total"])),
        "remaining": (blobs["remaining"], _restic_bytes(size["remaining"])),
        "unused size after prune": (None, _restic_bytes(size["remaining_unused"])),
        "totally used packs": (packs["used"], ""),
        "partly used packs": (packs["partly_used"], ""),
        "unused packs": (packs["unused"], ""),
        "to keep": (packs["keep"], ""),
        "to repack packs": (packs["repack"], ""),
        "to delete packs": (packs["remove"], ""),
    }
    if blobs["duplicate"]:
        expect["duplicates"] = (blobs["duplicate"], _restic_bytes(size["duplicate"]))
    if size["unreferenced"]:
        expect["unreferenced"] = (None, _restic_bytes(size["unreferenced"]))
    # restic 0.14 does not print "not yet compressed" (restic >= 0.15 does): checked below.
    assert 0 <= size["uncompressed"] <= size["total"] + size["unreferenced"] + (64 << 20)
    mismatches = {k: {"restic": t.get(k), "ours": v} for k, v in expect.items() if t.get(k) != v}
    assert not mismatches, f"{mismatches}\n{text}"
    assert blobs["total"] == blobs["used"] + blobs["unused"] + blobs["duplicate"]
    assert blobs["remaining"] == blobs["total"] - blobs["remove_total"]
    assert packs["total"] == (packs["used"] + packs["partly_used"] + packs["unused"]
                              + packs["unreferenced"])


# --- check (restic 0.14 prints text; current restic a documented "summary") ----------------


@pytest.mark.parametrize("repo", REPOS)
def test_check_json_summary(world: World, repo: str) -> None:
    theirs = world.restic(repo, "--json", "check")
    # restic 0.14 prints text even with --json; restic >= 0.17 documents a summary message.
    assert b"no errors were found" in theirs.stdout
    lines = ok(world.ours(repo, "--json", "check")).stdout.splitlines()
    summary = json.loads(lines[-1])
    assert {k: summary[k] for k in ("message_type", "num_errors", "broken_packs",
                                    "suggest_repair_index", "suggest_prune")} == {
        "message_type": "summary", "num_errors": 0, "broken_packs": [],
        "suggest_repair_index": False, "suggest_prune": False}


def test_check_json_summary_names_a_broken_pack(world: World, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(world.repos["ours"], copy)
    packs = sorted((copy / "data").rglob("*"), key=lambda p: p.stat().st_size)
    pack = [p for p in packs if p.is_file()][-1]  # the biggest: a data pack
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    theirs = world.restic(copy, "--json", "check", "--read-data", check=False)
    assert theirs.returncode == 1
    mine = world.ours(copy, "--json", "check", "--read-data")
    assert mine.returncode == 1
    summary = json.loads(mine.stdout.splitlines()[-1])
    assert summary["message_type"] == "summary" and summary["num_errors"] >= 1
    assert summary["broken_packs"] == [pack.name]
    error = json.loads(mine.stderr.splitlines()[-1])
    assert error["message_type"] == "exit_error" and error["code"] == 1


# --- errors under --json ---------------------------------------------------------------------


def test_usage_error_under_json(world: World) -> None:
    theirs = world.restic("ours", "--json", "snapshots", "--no-such-flag", check=False)
    mine = world.ours("ours", "--json", "snapshots", "--no-such-flag")
    assert mine.returncode == theirs.returncode == 1
    # restic documents that command-line parsing errors are not JSON ("cannot be caught");
    # we print its exit_error message for them too (an addition), exit status 1 as restic.
    assert b"unknown flag: --no-such-flag" in theirs.stderr
    error = json.loads(mine.stderr)
    assert error["message_type"] == "exit_error" and error["code"] == 1
    assert "--no-such-flag" in error["message"]


@pytest.mark.parametrize(("case", "code"), [("no-repo", 10), ("wrong-password", 12)])
def test_fatal_error_under_json(world: World, tmp_path: Path, case: str, code: int) -> None:
    repo = tmp_path / "missing" if case == "no-repo" else world.repos["ours"]
    password = PW if case == "no-repo" else "wrong"
    theirs = run_restic(repo, "--json", "snapshots", password=password,
                        restic_bin=world.restic_bin, check=False)
    mine = run_cli(repo, "--json", "snapshots", password=password)
    # restic 0.14 exits 1 with plain text; restic >= 0.17 documents exit codes 10/12 and an
    # exit_error message on stderr: we follow the documented one.
    assert theirs.returncode != 0 and mine.returncode == code
    error = json.loads(mine.stderr.splitlines()[-1])
    assert error == {"message_type": "exit_error", "code": code, "message": error["message"]}
    assert mine.stdout == b""


# --- restores: byte by byte ------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
def test_restores_are_identical(world: World, repo: str, tmp_path: Path) -> None:
    for sid in world.snapshot_ids(repo):
        by_restic, by_us = tmp_path / f"restic-{sid[:8]}", tmp_path / f"ours-{sid[:8]}"
        world.restic(repo, "restore", sid, "--target", str(by_restic))
        ok(world.ours(repo, "restore", sid, "--target", str(by_us)))
        # Ours first: restic 0.14 mangles non-UTF-8 symlink targets, we restore them exactly.
        diffs = compare_trees(restored_path(by_us, world.tree.root),
                              restored_path(by_restic, world.tree.root),
                              lossy_symlink_targets=world.lossy)
        assert diffs == []
