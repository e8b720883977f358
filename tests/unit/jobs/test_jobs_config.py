"""Config models: ten malformed configs each give one clear line naming the field; good ones
load; interpolation; the packaged sample equals examples/quickstart.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airflow_backup.errors import EXIT_CONFIG, InvalidConfigFile
from airflow_backup.jobs.load import load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]

GOOD = {
    "repositories": {"main": {"url": "/tmp/r", "password_env": "PW", "fallbacks": ["spare"]},
                     "spare": {"url": "/tmp/s", "password_file": "/etc/pw"}},
    "jobs": {"nightly": {"sources": ["/srv/data"], "repository": "main",
                         "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris"},
                         "retention": {"keep_daily": 7, "keep_within": "30d"},
                         "rpo": "26h", "drill": {"max_rto": "15m"}}},
}


def _with(path: str, value: object) -> dict[str, object]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data  # type: ignore[no-any-return]


_DELETE = object()

# (mutation path, value, expected problem line prefix and a word of its message)
MALFORMED = [
    ("jobs.nightly.retention.keep_daily", -1, "jobs.nightly.retention.keep_daily: must be ≥ 0"),
    ("jobs.nightly.schedule.cron", "61 * * * *", "jobs.nightly.schedule.cron: invalid cron"),
    ("jobs.nightly.schedule.timezone", "Mars/Olympus",
     "jobs.nightly.schedule.timezone: unknown time zone"),
    ("jobs.nightly.repository", "mian", "jobs.nightly.repository: unknown repository 'mian'"),
    ("repositories.main.password", "hunter2",
     "repositories.main.password: secrets are not allowed inline"),
    ("jobs.nightly.sources", [], "jobs.nightly.sources: must not be empty"),
    ("jobs.nightly.rpo", "36x", "jobs.nightly.rpo: invalid duration"),
    ("jobs.nightly.retry", {"attempts": 0}, "jobs.nightly.retry.attempts: must be ≥ 1"),
    ("jobs.nightly.colour", "blue", "jobs.nightly.colour: unknown key"),
    ("repositories.main.fallbacks", ["nowhere"],
     "repositories.main.fallbacks.0: unknown repository 'nowhere'"),
    ("jobs.nightly.notifications", {"on": ["sometimes"]},
     "jobs.nightly.notifications.on.0: must be one of"),
    ("repositories.spare.password_file", _DELETE,
     "repositories.spare: give exactly one of password_file"),
    ("jobs.nightly.exclude_larger_than", "1.5K",
     "jobs.nightly.exclude_larger_than: invalid size '1.5K'"),
    ("jobs.nightly.exclude_if_present", [":HEADER"],
     "jobs.nightly.exclude_if_present: no name for exclusion tagfile"),
]


@pytest.mark.parametrize(("path", "value", "expected"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_field(path: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidConfigFile) as info:
        parse_config(_with(path, value), "c.yaml", env={})
    assert info.value.exit_code == EXIT_CONFIG == 2
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith(expected), info.value.problems


def test_exclusion_settings_load_as_given() -> None:
    data = _with("jobs.nightly.exclude_larger_than", 1024)  # YAML reads a bare number
    data["jobs"]["nightly"].update(  # type: ignore[index]
        exclude_caches=True, exclude_if_present=[".nobackup", "TAG:Header: x"],
        iexcludes=["*.TMP"], one_file_system=True)
    job = parse_config(data, env={}).jobs["nightly"]
    assert (job.exclude_larger_than, job.exclude_caches, job.exclude_if_present,
            job.iexcludes, job.one_file_system) == (
        "1024", True, [".nobackup", "TAG:Header: x"], ["*.TMP"], True)
    assert parse_config(GOOD, env={}).jobs["nightly"].exclude_larger_than is None


def test_good_config_loads_with_parsed_durations() -> None:
    cfg = parse_config(GOOD, env={})
    job = cfg.jobs["nightly"]
    assert job.rpo == 26 * 3600
    assert job.drill is not None and job.drill.max_rto == 900
    assert cfg.repositories["main"].fallbacks == ["spare"]


def test_interpolation_defaults_and_missing_variables() -> None:
    data = _with("repositories.main.url", "${BASE:-/var/backups}/repo")
    assert parse_config(data, env={}).repositories["main"].url == "/var/backups/repo"
    assert parse_config(data, env={"BASE": "/x"}).repositories["main"].url == "/x/repo"
    data = _with("jobs.nightly.sources", ["${DATA_DIR}", "$${literal}"])
    with pytest.raises(InvalidConfigFile) as info:
        parse_config(data, env={})
    assert info.value.problems == [
        "jobs.nightly.sources.0: environment variable DATA_DIR is not set "
        "(use ${DATA_DIR:-default} for a default)"]
    cfg = parse_config(data, env={"DATA_DIR": "/d"})
    assert cfg.jobs["nightly"].sources == ["/d", "${literal}"]


def test_yaml_errors_and_yaml_1_1_booleans(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs: [\n")
    with pytest.raises(InvalidConfigFile) as info:
        load_config(bad)
    assert info.value.problems[0].startswith("line ")
    ok = tmp_path / "ok.yaml"
    data = yaml.safe_dump(GOOD).replace("rpo: 26h", "rpo: 26h\n    notifications: {on: [failure]}")
    ok.write_text(data)
    assert load_config(ok, env={}).jobs["nightly"].notifications.on == ["failure"]


def test_sample_is_the_quickstart_example() -> None:
    sample = (ROOT / "src/airflow_backup/jobs/sample.yaml").read_text()
    assert sample == (ROOT / "examples/quickstart.yaml").read_text()
    cfg = load_config(ROOT / "examples/quickstart.yaml", env={"DEMO_REPO_PASSWORD": "x"})
    assert cfg.jobs["quickstart"].drill is not None


def test_the_example_in_docs_jobs_md_validates(tmp_path: Path) -> None:
    text = (ROOT / "docs/jobs.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "jobs.yaml").write_text(block)
    cfg = load_config(tmp_path / "jobs.yaml",
                      env={"SLACK_TOKEN_A": "a", "SLACK_TOKEN_B": "b", "SLACK_TOKEN_C": "c"})
    assert set(cfg.jobs) == {"metadata-db", "dags"}
    assert cfg.jobs["dags"].sources[1] == "/opt/airflow/plugins"
    assert cfg.repositories["primary"].fallbacks == ["nfs"]


def test_the_exclusion_example_in_docs_jobs_md_validates(tmp_path: Path) -> None:
    section = (ROOT / "docs/jobs.md").read_text().split("## Excluding files", 1)[1]
    (tmp_path / "jobs.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    job = load_config(tmp_path / "jobs.yaml", env={}).jobs["airflow-home"]
    assert job.exclude_caches and job.one_file_system and job.exclude_larger_than == "500M"
    assert job.exclude_if_present == [".nobackup", "BACKUP.SKIP:skip this directory"]


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("jobs.nightly.sources", ["postgresql://app:S3cr3t-XYZZY@db/app"], "must not contain a "
                                                                       "password"),
    ("jobs.nightly.sources", ["postgresql://app:S3cr3t/XYZZY@db/app"], "%-encode"),
    ("jobs.nightly.sources", ["mysql://root:S3cr3t#XYZZY@db/shop"], "%-encode"),
    ("jobs.nightly.sources", ["postgresql://app@db/app?sslpassword=S3cr3t-XYZZY"],
     "query option(s) sslpassword"),
    ("jobs.nightly.drill", {"target": "postgresql://postgres:S3cr3t/XYZZY@db/"}, "%-encode"),
])
def test_source_urls_with_credentials_are_refused_without_echoing_them(
        path: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidConfigFile) as info:
        parse_config(_with(path, value), "c.yaml", env={})
    text = "\n".join(info.value.problems) + str(info.value)
    assert expected in text and "XYZZY" not in text and "S3cr3t" not in text


def test_the_runbook_shows_sources_without_credentials() -> None:
    """The config refuses such URLs, but the runbook must not depend on that."""
    from airflow_backup.jobs.export import shown_source as _shown

    assert _shown("postgresql://app:S3cr3t%2FXYZZY@db:5432/app?token=XYZZY&sslmode=require") \
        == "postgresql://app@db:5432/app?sslmode=require"
    assert "XYZZY" not in _shown("postgresql://app:S3cr3t/XYZZY@db/app")
    assert _shown("/srv/data") == "/srv/data"


@pytest.mark.parametrize("url", [
    "s3:http://AKIAXYZ:S3cr3t-XYZZY@127.0.0.1:9/bucket/prefix",
    "s3://bucket/prefix?endpoint=http://AKIAXYZ:S3cr3t-XYZZY@127.0.0.1:9",
    "sftp://backup:S3cr3t/XYZZY@host/srv/repo",
    "gs://bucket/prefix?token=S3cr3t-XYZZY",
])
def test_repository_urls_with_credentials_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(InvalidConfigFile) as info:
        parse_config(_with("repositories.main.url", url), "c.yaml", env={})
    text = "\n".join(info.value.problems)
    assert text.startswith("repositories.main.url: ") and "XYZZY" not in text


@pytest.mark.parametrize("url", ["sftp://backup@host/srv/repo", "s3:http://minio:9000/b/v@1",
                                 "s3://bucket/prefix?endpoint=http://127.0.0.1:9&region=eu"])
def test_repository_urls_without_credentials_load(url: str) -> None:
    config = parse_config(_with("repositories.main.url", url), "c.yaml", env={})
    assert config.repositories["main"].url == url


def _isolated(tmp_path: Path, data: dict[str, object]) -> object:
    from airflow_backup.jobs.load import load_config_isolated

    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config_isolated(path, env={})


def test_one_broken_job_or_repository_leaves_out_only_what_depends_on_it(
        tmp_path: Path) -> None:
    from airflow_backup.jobs.load import LoadedConfig

    data = {
        "repositories": {"a": {"url": "/r/a", "password_env": "P"},
                         "b": {"url": "/r/b", "password_env": "P", "fallbacks": ["c"]},
                         "c": {"url": "/r/c", "password_env": "P", "lock_wait": "x"},
                         "unused": {"url": "/r/u", "password_env": "P", "nope": 1}},
        "jobs": {"good": {"sources": ["/d"], "repository": "a"},
                 "negative": {"sources": ["/d"], "repository": "a",
                              "retention": {"keep_daily": -1}},
                 "via_broken_fallback": {"sources": ["/d"], "repository": "b"},
                 "unset_var": {"sources": ["${NOT_SET}"], "repository": "a"}}}
    loaded = _isolated(tmp_path, data)
    assert isinstance(loaded, LoadedConfig)
    assert list(loaded.config.jobs) == ["good"]
    assert list(loaded.config.repositories) == ["a"]
    assert sorted(loaded.broken) == ["jobs.negative", "jobs.unset_var",
                                     "jobs.via_broken_fallback", "repositories.unused"]
    assert loaded.broken["jobs.negative"] == ("jobs.negative.retention.keep_daily: must be ≥ 0",)
    assert loaded.broken["jobs.via_broken_fallback"][0].startswith("repositories.c.lock_wait")
    assert "NOT_SET is not set" in loaded.broken["jobs.unset_var"][0]
    assert loaded.require("good") is loaded.config
    with pytest.raises(InvalidConfigFile, match="keep_daily"):
        loaded.require("negative")


@pytest.mark.parametrize("data", [
    {"repositories": {"a": {"url": "/r", "password_env": "P"}},
     "jobs": {"x": {"sources": ["/d"], "repository": "a", "rpo": "soon"}}},
    {"repositories": {"a": {"url": "/r", "password_env": "P"}}, "metrics_file": 3,
     "jobs": {"x": {"sources": ["/d"], "repository": "a"}}},
    {"repositories": "no", "jobs": {"x": {"sources": ["/d"], "repository": "a"}}},
], ids=["every job broken", "top level broken", "repositories not a mapping"])
def test_nothing_to_salvage_refuses_the_whole_file(tmp_path: Path,
                                                   data: dict[str, object]) -> None:
    with pytest.raises(InvalidConfigFile):
        _isolated(tmp_path, data)


def test_a_repository_can_limit_its_bandwidth_as_restic(tmp_path: Path) -> None:
    from airflow_backup.jobs.repos import repository_spec
    from airflow_backup.storage.limiter import RateLimitedStorage, RateLimits

    data = {"repositories": {
        "slow": {"url": str(tmp_path / "r"), "password_env": "X", "limit_upload": 512,
                 "fallbacks": ["free"]},
        "free": {"url": str(tmp_path / "f"), "password_env": "X"}},
        "jobs": {"j": {"sources": [str(tmp_path)], "repository": "slow"}}}
    spec = repository_spec(parse_config(data), "slow")
    assert spec.limits == RateLimits(512, 0)
    assert spec.fallbacks[0].limits == RateLimits(0, 0)  # each repository its own
    store = spec.open_storage()
    assert isinstance(getattr(store, "inner", None), RateLimitedStorage)
    bad = {**data, "repositories": {"slow": {"url": "/r", "password_env": "X",
                                             "limit_download": -1}}}
    with pytest.raises(InvalidConfigFile, match="limit_download"):
        parse_config(bad)
