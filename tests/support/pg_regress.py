"""PostgreSQL's own regression database, built as pg_upgrade's tests build it.

The SQL of the core regression suite comes from Debian's postgresql-15 source package
(``apt-get source``, through the deb-src entry that ``make tools`` adds), its C helpers
(regress.so, and refint.so/autoinc.so from contrib/spi) are compiled against
postgresql-server-dev-15's headers, and pgxs's ``pg_regress`` runs the parallel schedule
against a cluster of the test's own. Some tests of the suite fail for environment reasons
(paths, locale); what matters here is the database they leave behind: hundreds of tables
of every type and kind, inheritance, partitions, large objects, odd names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from support.pg_cluster import Cluster
from support.tools import in_ci

__all__ = ["build_regression_database", "regress_sources"]

PG_REGRESS = Path("/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "airflow-backup"


def _missing(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI=true: `make tools` should have installed it)",
                    pytrace=False)
    pytest.skip(message)


def regress_sources() -> Path:
    """Return the directory of the regression suite's sources (downloaded once, cached)."""
    for tool in ("apt-get", "apt-cache", "gcc", "pg_config"):
        if shutil.which(tool) is None:
            _missing(f"{tool} not found")
    if not PG_REGRESS.exists():
        _missing(f"{PG_REGRESS} not found (apt package postgresql-server-dev-15)")
    done = CACHE / "pg-regress" / "ready"
    root = CACHE / "pg-regress"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        shown = subprocess.run(["apt-cache", "showsrc", "postgresql-15"], capture_output=True,
                               text=True, check=False).stdout
        versions = re.findall(r"^Version: (\S+)$", shown, re.M)
        if not versions:
            _missing("no deb-src entry for postgresql-15 (`make tools` adds one)")
        for version in versions:  # the security archive may list one it does not serve
            got = subprocess.run(["apt-get", "source", "-qq", "--download-only",
                                  f"postgresql-15={version}"], cwd=root, capture_output=True,
                                 text=True, check=False, timeout=600)
            if got.returncode == 0:
                break
        else:
            raise RuntimeError(f"apt-get source postgresql-15 failed: {got.stderr[-500:]}")
        (orig,) = root.glob("postgresql-15_*.orig.tar.*")
        with tarfile.open(orig) as tar:
            wanted = [m for m in tar.getmembers()
                      if "/src/test/regress/" in m.name or "/contrib/spi/" in m.name]
            tar.extractall(root, members=wanted, filter="data")
        (src,) = root.glob("postgresql-15.*/")
        include = subprocess.run(["pg_config", "--includedir-server"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        for source, lib in (("src/test/regress/regress.c", "regress.so"),
                            ("contrib/spi/refint.c", "refint.so"),
                            ("contrib/spi/autoinc.c", "autoinc.so")):
            subprocess.run(["gcc", "-O1", "-fPIC", "-shared", f"-I{include}", str(src / source),
                            "-o", str(root / lib)], check=True, capture_output=True, timeout=300)
        done.touch()
    (src,) = root.glob("postgresql-15.*/")
    return src


def build_regression_database(cluster: Cluster) -> int:
    """Run the regression suite's parallel schedule on ``cluster``; it leaves the database
    ``regression``. Return how many tables (relkind r) it holds."""
    src = regress_sources()
    out = cluster.base / "regress-out"
    out.mkdir()
    if os.getuid() == 0:  # the server writes COPY ... TO files there
        shutil.chown(out, "postgres")
    subprocess.run([str(PG_REGRESS), f"--inputdir={src / 'src/test/regress'}",
                    f"--outputdir={out}", f"--dlpath={CACHE / 'pg-regress'}",
                    f"--schedule={src / 'src/test/regress/parallel_schedule'}",
                    "--host=127.0.0.1", f"--port={cluster.port}", "--user=postgres",
                    "--max-concurrent-tests=20"], cwd=src / "src/test/regress",
                   capture_output=True, check=False, timeout=900)
    import psycopg

    with psycopg.connect(cluster.conninfo("regression")) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND "
                           "relnamespace NOT IN ('pg_catalog'::regnamespace, "
                           "'information_schema'::regnamespace)").fetchone()
    return int(row[0]) if row else 0
