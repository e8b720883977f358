"""The source distribution carries what the README links to (docs, examples), the license
its metadata names, and the classifiers; ``python -m airflow_backup`` is covered by the CLI
help tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sdist_has_license_docs_examples_and_classifiers(tmp_path: Path) -> None:
    src = tmp_path / "src-tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile"):
        shutil.copy(ROOT / name, src / name)
    for name in ("src", "docs", "examples", "scripts"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta; "
                    "build_meta.build_sdist('dist')"], cwd=src, check=True, capture_output=True)
    (sdist,) = list((src / "dist").glob("*.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO")
                        and m.name.count("/") == 1)
        meta = tar.extractfile(pkg_info).read().decode()  # type: ignore[union-attr]
    assert "LICENSE" in names and "Apache License" in (ROOT / "LICENSE").read_text()
    assert "License: Apache-2.0" in meta or "License-Expression: Apache-2.0" in meta
    assert "Classifier: License :: OSI Approved :: Apache Software License" in meta
    assert "Classifier: Topic :: System :: Archiving :: Backup" in meta
    linked = set(re.findall(r"\]\(((?:docs|examples)/[^)#]+)", (ROOT / "README.md").read_text()))
    linked = {link.rstrip("/") for link in linked}  # a directory link: its entry
    assert linked and linked <= names, sorted(linked - names)
