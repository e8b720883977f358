#!/usr/bin/env python3
"""Scale figures: airflow-backup and restic side by side, same machine, same run
(``make bench-scale``, issue 26).

Four cases, each run for both tools, each command a child process measured by
:func:`measure.run_timed` (wall time, CPU time, peak RSS from ``/usr/bin/time -v``, peak PSS of
the process tree):

``files``
    ``--files`` small files (0-4 KiB of random bytes) in about ``--dirs`` directories (two
    levels). Per tool, a fresh repository and cache of its own: init, first backup, then an
    unchanged re-backup with the same cache (the parent snapshot is found as day to day).
``bigfile``
    One ``--big-gib`` GiB sparse file: holes, with 1 MiB of random bytes every 64 MiB (made
    with truncate + pwrite, so it takes little disk). Per tool: init, backup.
``index``
    A repository made by our ``init`` whose index files (restic's format, written with
    :func:`airflow_backup.repository.unpacked.encode_unpacked`, 50,000 blobs a file as
    restic writes them) list ``--blobs`` blobs in fake packs of 100 blobs (no pack exists).
    Ours: a tiny script that opens the repository and calls ``Repository.load_index()``,
    reporting the load time and its RSS growth per blob. restic: ``restic stats --mode
    raw-data --no-cache --no-lock`` on it: ``stats`` loads the whole master index
    (``repo.LoadIndex``) before it walks snapshots, and there are none, so no pack is read
    (``restic list blobs`` would read index files one at a time, never holding them all).
    restic's bytes per blob are its peak RSS minus that of the same command on an empty
    repository, per blob.
``snapshots``
    One real backup of a small tree by our CLI, then ``--snapshots`` - 1 copies of its
    snapshot with earlier times, saved with ``Repository.save_snapshot``. Per tool:
    ``snapshots --json``, ``forget --keep-last 100 --dry-run`` on that repository, and a
    real ``forget --keep-last 100`` on a copy of it of its own.

The page cache is left warm (a re-backup on a machine that just made the first backup).
Everything lives under a temporary directory (``--work-dir``, default below /tmp), deleted at
the end unless ``--keep``. Results are written to ``--output`` after every case, so a long run
that is interrupted keeps what it measured; ``--json`` prints the document at the end instead
of the table.

    .venv/bin/python bench/scale_bench.py [--files 1000000] [--big-gib 20] [--blobs 10000000]
        [--snapshots 10000] [--cases files,bigfile,index,snapshots] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import machine  # noqa: E402
import measure  # noqa: E402
import tools  # noqa: E402

CASES = ("files", "bigfile", "index", "snapshots")
TOOLS = ("ours", "restic")
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
SMALL_MAX = 4 * KiB
BIG_STRIDE = 64 * MiB
BIG_RANDOM = 1 * MiB
INDEX_FILE_BLOBS = 50_000  # restic's (and our) index file size
PACK_BLOBS = 100
TREE_EVERY = 20  # one blob in 20 is a tree blob
KEEP_LAST = 100

# Run by ours in the index case: open, load the index, report time and memory as JSON.
_LOAD_INDEX = r"""
import json, sys, time
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.local import LocalStorage

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

repo = Repository.open(LocalStorage(sys.argv[1]), sys.argv[2])
import numpy  # the index's merge imports it: not part of the index's own memory
before = rss_kib()
started = time.perf_counter()
repo.load_index()
seconds = time.perf_counter() - started
after = rss_kib()
print(json.dumps({"load_seconds": seconds, "rss_before_kib": before, "rss_after_kib": after,
                  "blobs": len(repo.index), "index_nbytes": repo.index.nbytes}))
"""


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] scale: {msg}", file=sys.stderr, flush=True)


# ---- running and measuring ---------------------------------------------------------------

class Bench:
    """The tools, their environments, and the measured steps of one run."""

    def __init__(self, work: Path, ours_bin: str | None) -> None:
        self.work = work
        known = tools.all_tools()
        if ours_bin:
            known["ours"] = tools.Ours("ours", str(Path(ours_bin).resolve()))
        self.tools = {name: known[name] for name in TOOLS}
        self.logs = work / "logs"

    def env(self, tool: str, home: Path) -> dict[str, str]:
        env = self.tools[tool].env(home)
        if tool == "ours" and "AIRFLOW_BACKUP_KDF_PARAMS" in os.environ:
            # Tests set a cheap KDF; the bench itself uses the calibrated default.
            env["AIRFLOW_BACKUP_KDF_PARAMS"] = os.environ["AIRFLOW_BACKUP_KDF_PARAMS"]
        return env

    def argv(self, tool: str, repo: Path, *args: str) -> list[str]:
        return [self.tools[tool].binary, "-r", str(repo), *args]

    def run(self, label: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Run one measured command; a failure is recorded (with the log's tail), not
        raised."""
        log = self.logs / f"{label}.log"
        timing = measure.run_timed(argv, env, log)
        step: dict[str, Any] = {
            "seconds": round(timing.seconds, 3), "user_seconds": round(timing.user_seconds, 2),
            "sys_seconds": round(timing.sys_seconds, 2), "max_rss_mib": _mib(timing.max_rss_kib),
            "tree_pss_mib": _mib(timing.tree_pss_kib), "ok": timing.returncode == 0,
            "background_cpus": timing.background_cpus,
        }
        if timing.returncode != 0:
            step["error"] = f"exit {timing.returncode}: " + _tail(log)
        progress(f"{label}: {step['seconds']:.1f} s, {step['max_rss_mib']:.0f} MiB"
                 + ("" if step["ok"] else f"  FAILED {step['error']}"))
        return step

    def init(self, tool: str, repo: Path, env: dict[str, str]) -> None:
        done = subprocess.run(self.tools[tool].init(repo), env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} init {repo} failed: {done.stderr.strip()[-500:]}")


def remove_tree(path: Path) -> None:
    """Delete a directory tree; ``rm -rf`` is several times faster than shutil.rmtree on a
    million files."""
    if shutil.which("rm"):
        subprocess.run(["rm", "-rf", "--", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _tail(log: Path, n: int = 400) -> str:
    try:
        return log.read_text(errors="replace").strip()[-n:]
    except OSError:
        return ""


# ---- data --------------------------------------------------------------------------------

def make_small_files(root: Path, count: int, dirs: int, seed: int = 26) -> dict[str, int]:
    """``count`` files of 0-4 KiB of random bytes in about ``dirs`` leaf directories
    (two levels). Contents are slices of a random pool at random offsets (distinct, so
    there is next to no deduplication)."""
    rnd = random.Random(seed)
    pool = rnd.randbytes(8 * MiB)
    top = max(1, round(dirs ** 0.5))
    per_top = max(1, -(-dirs // top))
    leaves = [root / f"d{i:03d}" / f"e{j:03d}" for i in range(top) for j in range(per_top)]
    for leaf in leaves:
        leaf.mkdir(parents=True)
    total = 0
    for n in range(count):
        size = rnd.randint(0, SMALL_MAX)
        at = rnd.randrange(len(pool) - SMALL_MAX)
        with open(leaves[n % len(leaves)] / f"f{n:07d}", "wb") as f:
            f.write(pool[at : at + size])
        total += size
    return {"files": count, "directories": len(leaves) + top, "bytes": total}


def make_sparse_file(path: Path, size: int, seed: int = 26) -> dict[str, int]:
    """A ``size``-byte file of holes with 1 MiB of random bytes at every 64 MiB."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        written = 0
        for offset in range(0, size, BIG_STRIDE):
            n = min(BIG_RANDOM, size - offset)
            os.pwrite(f.fileno(), rnd.randbytes(n), offset)
            written += n
    disk, _apparent = measure.dir_size(path.parent)
    return {"bytes": size, "random_bytes": written, "disk_bytes": disk}


def write_fake_index(repo_path: Path, password: str, blobs: int, seed: int = 26
                     ) -> dict[str, Any]:
    """Write index files listing ``blobs`` blobs in fake packs, in the repository's format
    (JSON, zstd, sealed; the file's id is the SHA-256 of its sealed bytes)."""
    import hashlib

    from airflow_backup.repository.repo import Repository
    from airflow_backup.repository.unpacked import encode_unpacked
    from airflow_backup.storage.base import FileType, Handle
    from airflow_backup.storage.local import LocalStorage

    repo = Repository.open(LocalStorage(repo_path), password)
    rnd = random.Random(seed)
    files = 0
    sealed_total = 0
    done = 0
    while done < blobs:
        in_file = min(INDEX_FILE_BLOBS, blobs - done)
        ids = rnd.randbytes(32 * in_file).hex()
        packs: list[str] = []
        for first in range(0, in_file, PACK_BLOBS):
            entries = []
            offset = 0
            for k in range(first, min(first + PACK_BLOBS, in_file)):
                n = done + k
                kind = "tree" if n % TREE_EVERY == 0 else "data"
                length = 600 + (n * 7919) % 60_000
                entries.append(f'{{"id":"{ids[64 * k : 64 * k + 64]}","type":"{kind}",'
                               f'"offset":{offset},"length":{length},'
                               f'"uncompressed_length":{length + length // 3}}}')
                offset += length
            pack_id = rnd.randbytes(32).hex()
            packs.append(f'{{"id":"{pack_id}","blobs":[{",".join(entries)}]}}')
        text = f'{{"packs":[{",".join(packs)}]}}'.encode()
        sealed = encode_unpacked(repo.key, text, repo.version)
        repo.storage.save(Handle(FileType.INDEX, hashlib.sha256(sealed).hexdigest()), sealed)
        files += 1
        sealed_total += len(sealed)
        done += in_file
    return {"blobs": blobs, "index_files": files, "packs": -(-blobs // PACK_BLOBS),
            "index_bytes": sealed_total}


def write_snapshot_copies(repo_path: Path, password: str, count: int) -> dict[str, Any]:
    """Save ``count`` - 1 copies of the repository's one snapshot, one minute apart before
    it, through ``Repository.save_snapshot`` (our format code, as a backup writes it)."""
    import dataclasses

    from airflow_backup.repository.repo import Repository
    from airflow_backup.repository.timefmt import format_ns
    from airflow_backup.storage.local import LocalStorage

    repo = Repository.open(LocalStorage(repo_path), password)
    (first,) = repo.list_snapshots()
    base = first.time_ns
    for i in range(1, count):
        copy = dataclasses.replace(first, time=format_ns(base - i * 60_000_000_000, 0), id="")
        repo.save_snapshot(copy)
    return {"snapshots": count}


# ---- the cases ---------------------------------------------------------------------------

def case_files(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    source = bench.work / "files-src"
    started = time.monotonic()
    data: dict[str, Any] = dict(make_small_files(source, args.files, args.dirs))
    data["generate_seconds"] = round(time.monotonic() - started, 1)
    progress(f"files: {data['files']} files in {data['directories']} directories made in "
             f"{data['generate_seconds']} s")
    out: dict[str, Any] = {"data": data}
    for tool in TOOLS:
        home = bench.work / f"files-{tool}"
        repo = home / "repo"
        env = bench.env(tool, home)
        bench.init(tool, repo, env)
        argv = bench.tools[tool].backup(repo, source, "b")
        first = bench.run(f"files-{tool}-backup", argv, env)
        again = bench.run(f"files-{tool}-rebackup", argv, env)
        out[tool] = {"backup": first, "rebackup": again}
        remove_tree(home)
    remove_tree(source)
    return out


def case_bigfile(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    source = bench.work / "big-src"
    source.mkdir()
    data = make_sparse_file(source / "sparse.img", int(args.big_gib * GiB))
    progress(f"bigfile: {data['bytes'] / GiB:g} GiB, {data['random_bytes'] / MiB:g} MiB random")
    out: dict[str, Any] = {"data": data}
    for tool in TOOLS:
        home = bench.work / f"big-{tool}"
        repo = home / "repo"
        env = bench.env(tool, home)
        bench.init(tool, repo, env)
        step = bench.run(f"bigfile-{tool}-backup", bench.tools[tool].backup(repo, source, "b"),
                         env)
        step["repo_mib"] = round(measure.dir_size(repo)[0] / MiB, 1)
        out[tool] = {"backup": step}
        remove_tree(home)
    remove_tree(source)
    return out


def case_index(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    home = bench.work / "index"
    repo = home / "repo"
    empty = home / "empty"
    env_ours = bench.env("ours", home)
    env_restic = bench.env("restic", home)
    bench.init("ours", repo, env_ours)
    bench.init("ours", empty, env_ours)
    started = time.monotonic()
    data = write_fake_index(repo, tools.PASSWORD, args.blobs)
    data["generate_seconds"] = round(time.monotonic() - started, 1)
    progress(f"index: {data['blobs']} blobs in {data['index_files']} index files "
             f"({data['index_bytes'] / MiB:.0f} MiB) written in {data['generate_seconds']} s")
    out: dict[str, Any] = {"data": data}

    python = str(Path(bench.tools["ours"].binary).parent / "python")
    script = home / "load_index.py"
    script.write_text(_LOAD_INDEX)
    ours = bench.run("index-ours-load", [python, str(script), str(repo), tools.PASSWORD],
                     env_ours)
    log = bench.logs / "index-ours-load.log"
    if ours["ok"]:
        got = json.loads(log.read_text().strip().splitlines()[-1])
        growth = got["rss_after_kib"] - got["rss_before_kib"]
        ours["load_seconds"] = round(got["load_seconds"], 2)
        ours["blobs_loaded"] = got["blobs"]
        ours["bytes_per_blob"] = round(growth * KiB / args.blobs, 1)
        ours["peak_bytes_per_blob"] = round(
            (ours["max_rss_mib"] * KiB - got["rss_before_kib"]) * KiB / args.blobs, 1)
        ours["array_bytes_per_blob"] = round(got["index_nbytes"] / args.blobs, 1)
    out["ours"] = {"load": ours}

    stats = ["stats", "--mode", "raw-data", "--no-cache", "--no-lock"]
    base = bench.run("index-restic-empty", bench.argv("restic", empty, *stats), env_restic)
    restic = bench.run("index-restic-load", bench.argv("restic", repo, *stats), env_restic)
    restic["baseline_rss_mib"] = base["max_rss_mib"]
    restic["baseline_seconds"] = base["seconds"]
    restic["bytes_per_blob"] = round(
        (restic["max_rss_mib"] - base["max_rss_mib"]) * MiB / args.blobs, 1)
    out["restic"] = {"load": restic}
    remove_tree(home)
    return out


def case_snapshots(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    home = bench.work / "snaps"
    repo = home / "repo"
    source = home / "src"
    make_small_files(source, 20, 2)
    env_ours = bench.env("ours", home / "ours-setup")
    bench.init("ours", repo, env_ours)
    done = subprocess.run(bench.tools["ours"].backup(repo, source, "b"), env=env_ours,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"snapshots: first backup failed: {done.stderr.strip()[-500:]}")
    started = time.monotonic()
    data = write_snapshot_copies(repo, tools.PASSWORD, args.snapshots)
    data["generate_seconds"] = round(time.monotonic() - started, 1)
    progress(f"snapshots: {data['snapshots']} snapshots written in {data['generate_seconds']} s")
    out: dict[str, Any] = {"data": data}
    for tool in TOOLS:
        env = bench.env(tool, home / tool)
        steps: dict[str, Any] = {}
        steps["snapshots_json"] = bench.run(f"snapshots-{tool}-list",
                                            bench.argv(tool, repo, "snapshots", "--json"), env)
        steps["forget_dry_run"] = bench.run(
            f"snapshots-{tool}-forget-dry-run",
            bench.argv(tool, repo, "forget", "--keep-last", str(KEEP_LAST), "--dry-run"), env)
        copy = home / f"repo-{tool}"
        shutil.copytree(repo, copy, symlinks=True)
        forget = bench.run(f"snapshots-{tool}-forget",
                           bench.argv(tool, copy, "forget", "--keep-last", str(KEEP_LAST)), env)
        forget["snapshots_left"] = len(os.listdir(copy / "snapshots"))
        if forget["ok"] and forget["snapshots_left"] != min(KEEP_LAST, args.snapshots):
            forget["ok"] = False
            forget["error"] = f"{forget['snapshots_left']} snapshots left, not {KEEP_LAST}"
        steps["forget"] = forget
        remove_tree(copy)
        out[tool] = steps
    remove_tree(home)
    return out


RUNNERS: dict[str, Callable[[Bench, argparse.Namespace], dict[str, Any]]] = {
    "files": case_files, "bigfile": case_bigfile, "index": case_index,
    "snapshots": case_snapshots,
}


# ---- report ------------------------------------------------------------------------------

def ratios(cases: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets: re-backup at least 2x restic's speed with no more peak RSS;
    an index of at most 64 bytes per blob."""
    out: dict[str, Any] = {}
    files = cases.get("files", {})
    if "ours" in files and "restic" in files:
        ours, restic = files["ours"]["rebackup"], files["restic"]["rebackup"]
        speedup = restic["seconds"] / ours["seconds"] if ours["seconds"] else 0.0
        out["rebackup_speedup_vs_restic"] = round(speedup, 2)
        out["rebackup_rss_vs_restic"] = round(ours["max_rss_mib"] / max(restic["max_rss_mib"],
                                                                        0.1), 2)
        out["rebackup_target_met"] = speedup >= 2.0 and ours["max_rss_mib"] <= restic[
            "max_rss_mib"]
    index = cases.get("index", {})
    if "bytes_per_blob" in index.get("ours", {}).get("load", {}):
        out["index_bytes_per_blob"] = index["ours"]["load"]["bytes_per_blob"]
        out["index_target_met"] = index["ours"]["load"]["bytes_per_blob"] <= 64
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| case | step | tool | wall s | user+sys s | peak RSS MiB | tree PSS MiB | notes |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for case, body in results["cases"].items():
        for tool in TOOLS:
            for step, m in body.get(tool, {}).items():
                notes = [f"{k}={m[k]}" for k in ("background_cpus", "bytes_per_blob",
                                                 "load_seconds",
                                                 "baseline_rss_mib", "snapshots_left",
                                                 "repo_mib") if k in m]
                if not m.get("ok", True):
                    notes.append("FAILED: " + str(m.get("error", ""))[:80])
                cpu = m["user_seconds"] + m["sys_seconds"]
                lines.append(f"| {case} | {step} | {tool} | {m['seconds']:.2f} | {cpu:.1f} | "
                             f"{m['max_rss_mib']:.0f} | {m['tree_pss_mib']:.0f} | "
                             f"{', '.join(notes)} |")
    lines.append("")
    lines.append("targets: " + json.dumps(results.get("ratios", {})))
    return "\n".join(lines) + "\n"


def all_ok(results: dict[str, Any]) -> bool:
    return all(m.get("ok", False) for body in results["cases"].values() for tool in TOOLS
               for m in body.get(tool, {}).values()) and not results.get("errors")


# ---- main --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000, help="small files (1,000,000)")
    ap.add_argument("--dirs", type=int, default=1_000, help="directories for them (1,000)")
    ap.add_argument("--big-gib", type=float, default=20.0, help="sparse file size, GiB (20)")
    ap.add_argument("--blobs", type=int, default=10_000_000, help="index blobs (10,000,000)")
    ap.add_argument("--snapshots", type=int, default=10_000, help="snapshots (10,000)")
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--output", type=Path, default=None,
                    help="also write the results here (after every case)")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="parent of the temporary work directory (default: the system's, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--ours-bin", default=None,
                    help="airflow-backup executable (default .venv/bin/airflow-backup)")
    args = ap.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not args.case_list or any(c not in CASES for c in args.case_list):
        ap.error(f"--cases: choose from {','.join(CASES)}")
    if min(args.files, args.dirs, args.blobs, args.snapshots) < 1 or args.big_gib <= 0:
        ap.error("sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases; 0 when every command of both tools succeeded."""
    args = parse_args(argv)
    tools.compile_ours()  # as an installed copy has it
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="scale-bench-", dir=args.work_dir))
    bench = Bench(work, args.ours_bin)
    missing = [t for t in bench.tools.values() if not t.available()]
    if missing:
        print(f"scale: missing {', '.join(t.binary for t in missing)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine.machine_info(work),
        "ours_source": machine.source_info(bench.tools["ours"].binary),
        "tools": {name: t.version() for name, t in bench.tools.items()},
        "settings": {"files": args.files, "dirs": args.dirs, "big_gib": args.big_gib,
                     "blobs": args.blobs, "snapshots": args.snapshots,
                     "cases": args.case_list, "cache": "warm"},
        "cases": {}, "errors": {},
    }
    try:
        for case in args.case_list:
            progress(f"case {case}")
            case_started = time.monotonic()
            try:
                results["cases"][case] = RUNNERS[case](bench, args)
            except Exception as exc:  # recorded; the other cases still run
                results["errors"][case] = f"{type(exc).__name__}: {exc}"
                progress(f"case {case} FAILED: {exc}")
            if case in results["cases"]:
                results["cases"][case]["case_seconds"] = round(time.monotonic() - case_started)
            results["ratios"] = ratios(results["cases"])
            results["bench_seconds"] = round(time.monotonic() - started, 1)
            if args.output:
                args.output.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            remove_tree(work)
    results["ok"] = all_ok(results)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
        for case, error in results["errors"].items():
            print(f"case {case} FAILED: {error}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
