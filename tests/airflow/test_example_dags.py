"""Every example DAG imports in a DagBag: no import errors, no deprecation warnings."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dags"


def test_example_dags_import_cleanly() -> None:
    from airflow.dag_processing.dagbag import DagBag

    files = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert len(files) >= 5
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert sorted({Path(d.fileloc).name for d in bag.dags.values()}) == files
    # backups.py: the DAGs of examples/quickstart.yaml (one job, one repository).
    assert sorted(d.dag_id for d in bag.dags.values() if d.fileloc.endswith("backups.py")) == [
        "backup__quickstart", "drill__quickstart", "maintenance__local", "restore__quickstart",
        "status__quickstart"]
    # DagBag records the warnings each file raised while importing (deprecated imports, …).
    assert bag.captured_warnings == {}


def test_dagbag_would_report_a_deprecated_import(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    text = (EXAMPLES / "example_restore.py").read_text()
    (tmp_path / "old.py").write_text(
        text + "\nfrom airflow.exceptions import AirflowFailException  # noqa\n")
    bag = DagBag(dag_folder=str(tmp_path))
    assert "deprecated" in " ".join(bag.captured_warnings[str(tmp_path / "old.py")])
