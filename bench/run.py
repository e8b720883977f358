"""airflow-backup against restic and borg on the same data, in one run (``make bench``).

For each tool and repetition, on a fresh repository: init, first backup, unchanged re-backup,
backup after the mutation pass, full restore of the latest snapshot into an empty directory.
Each step's wall time, CPU time and peak RSS are measured, the repository's size after each
backup, and the restored tree is compared file by file with the source; a mismatch or a failed
command marks the tool FAILED and makes the run exit non-zero.  The page cache is dropped
before every step when that is permitted (root), else the results say "warm".

    python bench/run.py [--size 1G] [--repeat 1] [--tools ours,restic,borg] [--keep]

Writes bench/results.json, bench/results.md and bench/results.png (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import dataset
import machine
import measure
import report
import runner
import tools

BENCH = Path(__file__).resolve().parent


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="dataset size, e.g. 1G, 256M (default 1G)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions; each figure is the median (default 1)")
    ap.add_argument("--tools", default="ours,restic,borg",
                    help="comma-separated subset of ours,restic,borg")
    ap.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the repositories and restored trees under bench/data/work")
    ap.add_argument("--warm", action="store_true", help="never drop the page cache")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    ap.add_argument("--ours-bin", default=None,
                    help="airflow-backup executable (default .venv/bin/airflow-backup)")
    ap.add_argument("--data-dir", type=Path, default=BENCH / "data",
                    help="dataset cache and work area (default bench/data)")
    ap.add_argument("--output", type=Path, default=BENCH / "results.json",
                    help="results file; .md and .png are written beside it")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: rewrite the tables and chart of an existing --output")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    try:
        args.size_bytes = dataset.parse_size(args.size)
    except ValueError as exc:
        ap.error(str(exc))
    return args


def _select_tools(args: argparse.Namespace) -> tuple[list[tools.Tool], dict[str, Any]]:
    known = tools.all_tools()
    if args.ours_bin:
        known["ours"] = tools.Ours("ours", str(Path(args.ours_bin).resolve()))
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        sys.exit(f"bench: unknown tool(s) {unknown}; choose from {', '.join(known)}")
    wanted = [known[n] for n in names]
    if not args.no_install:
        tools.ensure_installed([t.binary for t in wanted if t.name != "ours"] + ["/usr/bin/time"])
    info: dict[str, Any] = {}
    chosen = []
    for tool in wanted:
        if tool.available():
            version = tool.version()
            label = "airflow-backup" if tool.name == "ours" else version.split(" compiled")[0]
            info[tool.name] = {"label": label, "version": version, "binary": tool.binary,
                               "status": "ok"}
            chosen.append(tool)
        else:
            hint = "run `make venv`" if tool.name == "ours" else "install it (apt-get)"
            info[tool.name] = {"label": tool.name, "version": None, "binary": tool.binary,
                               "status": f"SKIPPED: {tool.binary} not found ({hint})"}
            runner.progress(f"WARNING: {tool.name} skipped: {tool.binary} not found ({hint})")
    return chosen, info


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; 0 when every selected tool ran and restored exactly."""
    args = _parse_args(argv)
    if args.report_only:
        return rerender(args.output)
    started = time.monotonic()
    chosen, tool_info = _select_tools(args)
    if not chosen:
        runner.progress("no tool to run")
        return 1
    data_dir = args.data_dir.resolve()
    ds = dataset.ensure_dataset(data_dir, args.size_bytes, args.seed)
    cold = not args.warm and measure.drop_caches()
    if not args.warm and not cold:
        runner.progress("cannot drop the page cache (not root?): measuring with a warm cache")
    work = data_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    ours_source = (machine.source_info(tool_info["ours"]["binary"]) if "ours" in tool_info
                   else {"commit": "n/a", "dirty": None})
    load_before = os.getloadavg()
    bench = runner.Runner(ds, work, cold, args.keep)
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(1, args.repeat + 1):
            runs += bench.repetition(chosen, rep)
            if broken := dataset.check_sizes(ds):
                sys.exit(f"bench: dataset damaged after undoing the mutation ({broken[:3]}); "
                         f"delete {ds.root.parent} and rerun")
    finally:
        bench.clean_up()
    for tool in chosen:
        failed = [r for r in runs if r["tool"] == tool.name and not r["ok"]]
        if failed:
            tool_info[tool.name]["status"] = (f"FAILED in {len(failed)} of {args.repeat} "
                                              f"repetition(s): {failed[0]['error']}")
        elif tool.name == "ours" and ours_source.get("dirty"):
            tool_info[tool.name]["status"] = (f"ok, restore verified (commit "
                                              f"{ours_source['commit']} plus uncommitted "
                                              f"changes in src)")
        else:
            tool_info[tool.name]["status"] = "ok, restore verified"
    summary = report.summarise(runs)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "ours_source": ours_source,
        "machine": machine.machine_info(data_dir),
        "tools": tool_info,
        "settings": {"size": args.size, "seed": args.seed, "repeat": args.repeat,
                     "cache": "cold" if cold else "warm", "tools": [t.name for t in chosen]},
        "load": report.load_summary(runs, load_before, os.getloadavg()),
        "dataset": {"size": dataset.format_size(args.size_bytes), "root": str(ds.root),
                    **ds.stats,
                    "mutation": {"files": len(bench.plan), "bytes_inserted": bench.inserted}},
        "summary": summary,
        "ratios": report.ratios(summary),
        "runs": runs,
    }
    results["ok"] = all(r["ok"] for r in runs) and all(
        info["status"].startswith("ok") for info in tool_info.values())
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    return publish(results, args.output)


def publish(results: dict[str, Any], output: Path) -> int:
    """Write results.json/.md/.png, print the tables; 1 if any tool failed."""
    table = report.markdown(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(table)
    chart_error = report.chart(results, output.with_suffix(".png"))
    print("\n" + table)
    print(f"written: {output}, {output.with_suffix('.md')}"
          + (f" (no chart: {chart_error})" if chart_error else f", {output.with_suffix('.png')}"))
    print(f"bench took {results['bench_seconds']:.0f} s")
    if not results["ok"]:
        print("\n*** BENCH FAILED: a tool failed or restored a different tree; see above ***")
        return 1
    return 0


def rerender(output: Path) -> int:
    """Recompute medians and ratios of an existing results file and write its tables again."""
    results: dict[str, Any] = json.loads(output.read_text())
    results["summary"] = report.summarise(results["runs"])
    results["ratios"] = report.ratios(results["summary"])
    return publish(results, output)


if __name__ == "__main__":
    sys.exit(main())
