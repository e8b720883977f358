"""One repetition of the comparison: every step, for every tool, step by step.

The tools take turns within each step (all first backups, then all unchanged re-backups, …),
and the order of turns rotates with each repetition, so that a change in the machine's load
during the run hits every tool alike.  Each tool has a fresh repository and cache directory.
The mutation is applied to the dataset once per repetition, between the unchanged and the
mutated backups, and undone at the end.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dataset
import measure
import report
import tools


@dataclass
class Attempt:
    """One tool's repetition: its directories, environment and record."""

    tool: tools.Tool
    rep: int
    home: Path
    env: dict[str, str]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.home / "repo"

    @property
    def target(self) -> Path:
        return self.home / "restore"

    @property
    def failed(self) -> bool:
        return "error" in self.record


def progress(message: str) -> None:
    """A progress line on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Runner:
    """Runs repetitions on one dataset and returns a record per tool and repetition."""

    def __init__(self, ds: dataset.Dataset, work: Path, cold: bool, keep: bool) -> None:
        self.ds, self.work, self.cold, self.keep = ds, work, cold, keep
        self.plan = dataset.mutation_plan(ds)
        self.inserted = sum(m.length for m in self.plan)
        self.expected: dict[str, tuple[int, str]] | None = None
        self.done: list[Attempt] = []

    def repetition(self, chosen: list[tools.Tool], rep: int) -> list[dict[str, Any]]:
        """All steps for all tools; the tools' order rotates by ``rep``."""
        turn = (rep - 1) % len(chosen)
        attempts = []
        for tool in chosen[turn:] + chosen[:turn]:
            home = self.work / f"{tool.name}-r{rep}"
            home.mkdir(parents=True)
            attempt = Attempt(tool, rep, home, tool.env(home))
            attempt.record = {"tool": tool.name, "rep": rep, "ok": False, "steps": {}}
            attempts.append(attempt)
        base, src = self.ds.total_bytes, self.ds.root
        try:
            for a in attempts:
                self._step(a, "init", a.tool.init(a.repo), 0)
            for a in attempts:
                self._step(a, "first", a.tool.backup(a.repo, src, "first"), base)
            for a in attempts:
                self._step(a, "unchanged", a.tool.backup(a.repo, src, "unchanged"), base)
            dataset.mutate(self.ds, self.plan)
            if self.expected is None:
                self.expected = measure.tree_digest(src)
            mutated = base + self.inserted
            for a in attempts:
                self._step(a, "mutated", a.tool.backup(a.repo, src, "mutated"), mutated)
            for a in attempts:
                a.target.mkdir()
                argv, cwd = a.tool.restore(a.repo, a.target, "mutated")
                self._step(a, "restore", argv, mutated, cwd)
                self._verify(a)
        finally:
            dataset.unmutate(self.ds, self.plan)
            self.done += attempts
        return [a.record for a in attempts]

    def clean_up(self) -> None:
        """Delete every repetition's repositories and restored trees (unless ``keep``).

        Only once all are timed: on ext4, creating thousands of files within a minute or
        so of deleting thousands makes ``ext4_create`` search for inodes that were not
        recently freed, which slowed whichever restore came next by 20–40 %.
        """
        if not self.keep:
            for a in self.done:
                shutil.rmtree(a.home, ignore_errors=True)

    def _step(self, a: Attempt, key: str, argv: list[str], nbytes: int,
              cwd: Path | None = None) -> None:
        if a.failed:
            return
        if self.cold:
            measure.drop_caches()
        log = self.work / "logs" / f"{a.tool.name}-r{a.rep}-{key}.log"
        timing = measure.run_timed(argv, a.env, log, cwd)
        rec: dict[str, Any] = {**asdict(timing), "bytes": nbytes}
        if key != "restore":
            rec["repo_disk_bytes"], rec["repo_apparent_bytes"] = measure.dir_size(a.repo)
        a.record["steps"][key] = rec
        busy = (f", other load {timing.background_cpus:.1f} CPUs"
                if timing.background_cpus >= 0.2 else "")
        progress(f"{a.tool.name} #{a.rep} {report.STEPS[key]}: {timing.seconds:.2f} s, "
                 f"CPU {timing.user_seconds + timing.sys_seconds:.1f} s, "
                 f"peak RSS {timing.max_rss_kib / 1024:.0f} MiB, "
                 f"PSS of all processes {timing.tree_pss_kib / 1024:.0f} MiB{busy}"
                 + (f", EXIT {timing.returncode}" if timing.returncode else ""))
        if timing.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            a.record["error"] = (f"{report.STEPS[key]} exited with {timing.returncode} "
                                 f"({log}): {' | '.join(tail)}")
            progress(f"{a.tool.name} #{a.rep}: FAILED: {a.record['error']}")

    def _verify(self, a: Attempt) -> None:
        if a.failed or self.expected is None:
            return
        problems = measure.compare_trees(self.expected,
                                         a.tool.restored_root(a.target, self.ds.root))
        a.record.update(verified=not problems, problem_count=len(problems),
                        problems=problems[:20], ok=not problems)
        if problems:
            a.record["error"] = f"RESTORE MISMATCH: {len(problems)} differences"
            progress(f"{a.tool.name} #{a.rep}: RESTORE MISMATCH, {len(problems)} differences, "
                     f"e.g. {problems[:3]}")
        # The restored tree stays until the run ends (see clean_up).
