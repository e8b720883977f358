"""Turning bench results into medians, ratios, Markdown tables and a PNG chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
STEPS = {
    "init": "init",
    "first": "first backup",
    "unchanged": "unchanged re-backup",
    "mutated": "backup after mutation",
    "restore": "full restore",
}
COMPARED_STEPS = ("first", "unchanged", "mutated", "restore")
OTHERS = ("restic", "borg")
BUSY_CPUS = 0.25  # other processes' mean CPU use above which the results carry a warning


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per tool and step, the median over successful repetitions of each measurement."""
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for tool in dict.fromkeys(r["tool"] for r in runs):
        ok = [r for r in runs if r["tool"] == tool and r["ok"]]
        per_step: dict[str, dict[str, float | None]] = {}
        for step in STEPS:
            recs = [r["steps"][step] for r in ok if step in r["steps"]]
            if not recs:
                continue
            seconds = _median([s["seconds"] for s in recs])
            nbytes = _median([s["bytes"] for s in recs])
            repo = _median([s["repo_disk_bytes"] for s in recs if "repo_disk_bytes" in s])
            per_step[step] = {
                "seconds": seconds,
                "mib_per_s": nbytes / MiB / seconds if nbytes and seconds else None,
                "cpu_seconds": _median([s["user_seconds"] + s["sys_seconds"] for s in recs]),
                "max_rss_mib": _median([s["max_rss_kib"] / 1024 for s in recs]),
                "tree_pss_mib": _median([s["tree_pss_kib"] / 1024 for s in recs
                                         if s.get("tree_pss_kib")]),
                "repo_mib": repo / MiB if repo is not None else None,
                "background_cpus": _median([s.get("background_cpus", 0.0) for s in recs]),
                "runs": len(recs),
            }
        summary[tool] = per_step
    return summary


def load_summary(runs: list[dict[str, Any]], before: tuple[float, float, float],
                 after: tuple[float, float, float]) -> dict[str, Any]:
    """How busy the machine was with other work during the timed steps (time-weighted)."""
    steps = [s for r in runs for s in r["steps"].values()]
    total = sum(s["seconds"] for s in steps) or 1.0
    background = sum(s.get("background_cpus", 0.0) * s["seconds"] for s in steps) / total
    steal = sum(s.get("steal_cpus", 0.0) * s["seconds"] for s in steps) / total
    return {
        "loadavg_start": [round(x, 2) for x in before],
        "loadavg_end": [round(x, 2) for x in after],
        "background_cpus_mean": round(background, 2),
        "background_cpus_max": max((s.get("background_cpus", 0.0) for s in steps), default=0.0),
        "steal_cpus_mean": round(steal, 2),
        "busy": background >= BUSY_CPUS,
    }


def ratios(summary: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, Any]:
    """Ours against each other tool: speedup = their time / ours; RSS and size = ours / theirs."""
    ours = summary.get("ours", {})
    out: dict[str, Any] = {}
    for other in OTHERS:
        theirs = summary.get(other, {})
        per_step: dict[str, dict[str, float | None]] = {}
        for step in COMPARED_STEPS:
            a, b = ours.get(step), theirs.get(step)
            if not a or not b:
                continue
            per_step[step] = {
                "speedup": _div(b["seconds"], a["seconds"]),
                "cpu_ratio": _div(a["cpu_seconds"], b["cpu_seconds"]),
                "rss_ratio": _div(a["max_rss_mib"], b["max_rss_mib"]),
                "pss_ratio": _div(a.get("tree_pss_mib"), b.get("tree_pss_mib")),
                "repo_size_ratio": _div(a["repo_mib"], b["repo_mib"]),
            }
        if per_step:
            out[other] = per_step
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def markdown(results: dict[str, Any]) -> str:
    """The absolute-figures table, the ratios table, and a status line per tool."""
    summary = results["summary"]
    src, m, ds = results["ours_source"], results["machine"], results["dataset"]
    others = [info["label"] for name, info in results["tools"].items() if name != "ours"]
    lines = [
        (f"airflow-backup {src['commit']}{' + uncommitted changes' if src.get('dirty') else ''}"
         f" vs {', '.join(others) or '—'}" if "ours" in results["tools"]
         else ", ".join(others))
        + f", {results['date']}: {ds['size']} dataset "
        f"({ds['files']} files), median of {results['settings']['repeat']}, "
        f"{results['settings']['cache']} page cache.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, "
        f"kernel {m['kernel']}, {m['filesystem']}.",
        "",
        "| step | tool | time (s) | throughput (MiB/s) | peak RSS (MiB) "
        "| peak PSS, all processes (MiB) | repo size (MiB) | CPU user+sys (s) "
        "| other load (CPUs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step, label in STEPS.items():
        for tool, per_step in summary.items():
            s = per_step.get(step)
            if s is None:
                continue
            lines.append(
                f"| {label} | {results['tools'][tool]['label']} | {_fmt(s['seconds'], '.2f')} "
                f"| {_fmt(s['mib_per_s'])} | {_fmt(s['max_rss_mib'])} "
                f"| {_fmt(s.get('tree_pss_mib'))} | {_fmt(s['repo_mib'])} "
                f"| {_fmt(s['cpu_seconds'])} | {_fmt(s['background_cpus'], '.2f')} |")
    lines.append("")
    rat = results["ratios"]
    if rat:
        lines += [
            "| step | ours vs | speedup (their time / ours) | CPU time ours/theirs "
            "| peak RSS ours/theirs | peak PSS ours/theirs | repo size ours/theirs |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for step in COMPARED_STEPS:
            for other in (o for o in OTHERS if step in rat.get(o, {})):
                r = rat[other][step]
                lines.append(
                    f"| {STEPS[step]} | {results['tools'][other]['label']} "
                    f"| {_fmt(r['speedup'], '.2f', '×')} | {_fmt(r['cpu_ratio'], '.2f')} "
                    f"| {_fmt(r['rss_ratio'], '.2f')} | {_fmt(r.get('pss_ratio'), '.2f')} "
                    f"| {_fmt(r['repo_size_ratio'], '.3f') if step != 'restore' else '—'} |")
        lines.append("")
    for info in results["tools"].values():
        lines.append(f"- {info['label']}: {info['status']}")
    load = results["load"]
    lines.append(
        f"- other processes used {load['background_cpus_mean']:.2f} CPUs on average "
        f"(at most {load['background_cpus_max']:.2f}) during the timed steps; "
        f"hypervisor steal {load['steal_cpus_mean']:.2f} CPUs; load average "
        f"{load['loadavg_start'][0]:.2f} at the start, {load['loadavg_end'][0]:.2f} at the end")
    if load["busy"]:
        lines.append("- WARNING: the machine was busy with other work; times are inflated "
                     "and ratios noisy (compare CPU seconds, or rerun on an idle machine)")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> str | None:
    """Write a PNG with time, peak RSS and repository size per step; return an error or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (make bench installs it into .venv)"
    summary = results["summary"]
    tools = [t for t in summary if summary[t]]
    if not tools:
        return "no successful runs to chart"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = (
        ("seconds", "time (s, lower is better)", COMPARED_STEPS),
        ("max_rss_mib", "peak RSS (MiB)", COMPARED_STEPS),
        ("repo_mib", "repository size (MiB)", ("first", "mutated")),
    )
    width = 0.8 / len(tools)
    for ax, (key, title, steps) in zip(axes, panels, strict=True):
        for i, tool in enumerate(tools):
            values = [(summary[tool].get(s) or {}).get(key) or 0.0 for s in steps]
            xs = [j + (i - (len(tools) - 1) / 2) * width for j in range(len(steps))]
            bars = ax.bar(xs, values, width, label=results["tools"][tool]["label"])
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(range(len(steps)), [STEPS[s].replace(" ", "\n", 1) for s in steps],
                      fontsize=8)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    ds = results["dataset"]
    fig.suptitle(
        f"airflow-backup {results['ours_source']['commit']} vs restic and borg — "
        f"{ds['size']} mixed dataset, median of {results['settings']['repeat']}, "
        f"{results['settings']['cache']} cache — {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores"
        + (f" (busy: other work used {results['load']['background_cpus_mean']:.1f} CPUs)"
           if results["load"]["busy"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
