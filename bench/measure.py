"""Measuring one step: wall time, CPU time and peak memory of a child process; sizes; page cache.

Peak RSS comes from ``/usr/bin/time -v`` ("Maximum resident set size"), or, when GNU time is
missing, from the rusage that ``os.wait4`` returns for the child.  Both report the largest
resident set of the child and of any descendants it waited for, *not their sum*. A tool that
forks workers (airflow-backup does, for small files) could hide memory there, so the peak of
the whole process tree's proportional set size (PSS: shared pages split between the processes
sharing them) is also sampled from ``/proc``, where the kernel provides it: every 100 ms, often
enough for peaks that last seconds, and rarely enough to cost the command under test little
(every 20 ms took 15 % of a core, counted as other load).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"


@dataclass
class Timing:
    """What one command cost."""

    seconds: float
    user_seconds: float
    sys_seconds: float
    max_rss_kib: int
    returncode: int
    tree_pss_kib: int = 0  # peak summed PSS of the command and its children (0: unknown)
    background_cpus: float = 0.0  # other processes' CPU use meanwhile, in CPUs (0.0 to cores)
    steal_cpus: float = 0.0  # CPU time the hypervisor gave to other guests, in CPUs


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal


def _with_load(timing: Timing, before: tuple[int, int]) -> Timing:
    after = _cpu_jiffies()
    tick = os.sysconf("SC_CLK_TCK")
    busy = (after[0] - before[0]) / tick - timing.user_seconds - timing.sys_seconds
    timing.background_cpus = round(max(0.0, busy) / timing.seconds, 2) if timing.seconds else 0.0
    timing.steal_cpus = round((after[1] - before[1]) / tick / timing.seconds, 2)
    return timing


@functools.cache
def _gnu_time_works() -> bool:
    if not os.access(GNU_TIME, os.X_OK):
        return False
    probe = subprocess.run([GNU_TIME, "-v", "true"], capture_output=True, text=True)
    return "Maximum resident set size" in probe.stderr


def _parse_gnu_time(text: str) -> tuple[float, float, int]:
    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)\s*$", text, re.MULTILINE)
        if not match:
            raise ValueError(f"/usr/bin/time -v output lacks {name!r}")
        return match.group(1)

    return (float(field("User time (seconds)")), float(field("System time (seconds)")),
            int(field("Maximum resident set size (kbytes)")))


def run_timed(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Timing:
    """Run ``argv`` with stdin closed and stdout+stderr into ``log``; measure it, and how busy
    the rest of the machine was meanwhile."""
    log.parent.mkdir(parents=True, exist_ok=True)
    before = _cpu_jiffies()
    return _with_load(_run(argv, env, log, cwd), before)


def _run(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None) -> Timing:
    with log.open("wb") as out:
        if _gnu_time_works():
            stats = log.with_suffix(".time")
            started = time.monotonic()
            proc = subprocess.Popen([GNU_TIME, "-v", "-o", str(stats), *argv], env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
            with _TreeMemory(proc.pid, skip_root=True) as memory:
                proc.wait()
            seconds = time.monotonic() - started
            user, system, rss = _parse_gnu_time(stats.read_text())
            return Timing(seconds, user, system, rss, proc.returncode, memory.peak_kib)
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
        with _TreeMemory(child.pid, skip_root=False) as memory:
            _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        # Linux reports ru_maxrss in KiB.
        return Timing(seconds, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, child.returncode,
                      memory.peak_kib)


class _TreeMemory:
    """Samples the summed PSS of a process and its descendants until the block ends."""

    def __init__(self, root: int, skip_root: bool) -> None:
        self._root = root
        self._skip_root = skip_root  # the root is /usr/bin/time, not the tool
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_kib = 0

    def __enter__(self) -> _TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = _descendants(self._root)
            if not self._skip_root:
                pids.append(self._root)
            total = sum(_pss_kib(pid) for pid in pids)
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(0.1)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            found.append(child)
            found += _descendants(child)
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False when not permitted (then: warm)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def dir_size(path: Path) -> tuple[int, int]:
    """(disk usage, apparent size) of a directory tree in bytes, as ``du -s -B1`` / ``-b``."""
    if shutil.which("du"):
        def du(*flags: str) -> int:
            out = subprocess.run(["du", "-s", *flags, str(path)], check=True,
                                 capture_output=True, text=True).stdout
            return int(out.split()[0])

        return du("-B1"), du("-b")
    disk = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            disk += st.st_blocks * 512
            apparent += st.st_size
    return disk, apparent


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Map each regular file below ``root`` (relative path) to (size, BLAKE2b digest)."""
    result: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "blake2b").hexdigest()
            result[os.path.relpath(path, root)] = (os.path.getsize(path), digest)
    return result


def compare_trees(expected: dict[str, tuple[int, str]], restored: Path) -> list[str]:
    """Differences between the expected digests and the tree at ``restored`` (empty: equal)."""
    if not restored.is_dir():
        return [f"restored tree missing: {restored}"]
    actual = tree_digest(restored)
    problems = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected: {p}" for p in sorted(actual.keys() - expected.keys())]
    problems += [f"content differs: {p}" for p in sorted(expected.keys() & actual.keys())
                 if expected[p] != actual[p]]
    return problems
