"""Facts recorded with every result: the machine, and which source our binary runs."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str, sep: str = ":") -> str | None:
    for line in text.splitlines():
        name, found, value = line.partition(sep)
        if found and name.strip() == key:
            return value.strip().strip('"')
    return None


def machine_info(data_dir: Path) -> dict[str, Any]:
    """CPU model, cores, RAM, kernel, OS, Python, and the filesystem holding the bench data."""
    mem_kib = (_field(_read("/proc/meminfo"), "MemTotal") or "0 kB").split()[0]
    fs = subprocess.run(["df", "--output=fstype", str(data_dir)],
                        capture_output=True, text=True).stdout.split()
    return {
        "cpu": _field(_read("/proc/cpuinfo"), "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kib) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _field(_read("/etc/os-release"), "PRETTY_NAME", "=") or platform.system(),
        "python": platform.python_version(),
        "filesystem": fs[-1] if fs else "unknown",
    }


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def source_info(binary: str) -> dict[str, Any]:
    """Where the airflow_backup package behind ``binary`` lives, its commit, and whether its
    sources differ from that commit (the bench then measures uncommitted code)."""
    try:
        shebang = Path(binary).read_text().splitlines()[0]
    except (OSError, IndexError):
        return {"commit": "unknown", "dirty": None, "package": None}
    python = shebang.removeprefix("#!").strip()
    probe = "import airflow_backup, os; print(os.path.dirname(airflow_backup.__file__))"
    located = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    package = Path(located.stdout.strip()) if located.returncode == 0 else None
    if package is None:
        return {"commit": "unknown", "dirty": None, "package": None}
    commit = _git(package, "rev-parse", "--short", "HEAD") or "unknown"
    status = _git(package, "status", "--porcelain", "--", ".")
    return {"commit": commit, "dirty": bool(status), "package": str(package),
            "uncommitted": status.splitlines()[:20]}
