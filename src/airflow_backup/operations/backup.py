"""The backup operation: paths, a stream and data-source URLs into snapshots of one
repository, or of its first healthy fallback.

Used by ``airflow-backup backup``, the job runner's store step, the generated DAGs' store task
and BackupOperator alike. Paths go into one snapshot (the Archiver, with the parent snapshot's
unchanged files not re-read); each source URL into its own snapshot (exported, read back and
validated by the source, then committed; a ``postgresql+pitr://`` URL is a base backup
instead, exactly as ``pg basebackup`` takes it); a stream into one snapshot. Returns a
:class:`BackupOutcome`: ``success``; ``partial`` when some files could not be read (the
snapshot is saved and lists what it has); ``degraded`` when a fallback took it. Raises from
the error tree when nothing could be stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO, ClassVar

from airflow_backup.archiver.archive import Archiver, BackupOptions, BackupResult
from airflow_backup.archiver.events import ArchiveEvents
from airflow_backup.archiver.exclude import Exclusions, parse_size, parse_tag_spec
from airflow_backup.archiver.warm import MetadataWarmer
from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.fallback import Attempt, run_with_fallback
from airflow_backup.operations.outcome import Outcome, Status
from airflow_backup.operations.spec import CacheSpec, RepositorySpec, open_repository
from airflow_backup.operations.tags import source_tag
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import COUNTER_FIELDS, BackupCounters

__all__ = [
    "DEGRADED_TAG",
    "BackupOutcome",
    "BackupRequest",
    "StoredSnapshot",
    "StreamInput",
    "backup",
    "outcome_from_json",
]

#: Extra tag of snapshots stored in a fallback repository.
DEGRADED_TAG = "degraded"


@dataclass(frozen=True, slots=True)
class StreamInput:
    """A byte stream to store as one file: ``open`` returns it, ``close(ok)`` is called after
    (ok: whether the data was stored), and ``before_snapshot`` may veto the snapshot (e.g. a
    producer that exited non-zero)."""

    filename: str
    open: Callable[[], BinaryIO]
    close: Callable[[], None] = lambda: None
    before_snapshot: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class BackupRequest:
    """What to back up and how to label it. Exactly one of ``paths``, ``sources`` (data-source
    URLs) or ``stream`` may be combined as the front end allows; paths and sources together
    give one snapshot for the paths and one per source.

    The exclusion settings apply to ``paths`` as restic's backup flags of the same names
    (:mod:`airflow_backup.archiver.exclude`): ``excludes`` and ``iexcludes`` (patterns,
    the second case-insensitive), ``exclude_caches``, ``exclude_if_present``
    (``NAME[:HEADER]``), ``exclude_larger_than`` (a size such as ``512``, ``100K``,
    ``2M``, ``1G``, ``4T``; empty or None: no limit) and ``one_file_system``."""

    paths: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    stream: StreamInput | None = None
    excludes: tuple[str, ...] = ()
    iexcludes: tuple[str, ...] = ()
    exclude_caches: bool = False
    exclude_if_present: tuple[str, ...] = ()
    exclude_larger_than: str | None = None
    one_file_system: bool = False
    dry_run: bool = False
    skip_if_unchanged: bool = False
    tags: tuple[str, ...] = ()
    hostname: str | None = None
    time: datetime | None = None
    parent: str | None = None
    force: bool = False
    with_atime: bool = False
    job: str = ""

    def __post_init__(self) -> None:
        if not (self.paths or self.sources or self.stream):
            raise ConfigError("nothing to back up: give at least one path, source URL or "
                              "stream")
        if self.stream is not None and (self.paths or self.sources):
            raise ConfigError("a stream is backed up on its own, without paths or sources")
        for spec in self.exclude_if_present:
            parse_tag_spec(spec)
        self.size_limit()

    def options(self) -> BackupOptions:
        """Return the archiver options of the paths' backup (without tags, metadata,
        parent or directory cache, which the operation adds)."""
        return BackupOptions(
            paths=list(self.paths), excludes=list(self.excludes),
            iexcludes=list(self.iexcludes), exclude_if_present=list(self.exclude_if_present),
            exclude_caches=self.exclude_caches, exclude_larger_than=self.size_limit(),
            one_file_system=self.one_file_system, hostname=self.hostname,
            time=self.time, force=self.force, with_atime=self.with_atime,
            skip_if_unchanged=self.skip_if_unchanged)

    def size_limit(self) -> int | None:
        """Return ``exclude_larger_than`` in bytes (None: no limit). Raise ConfigError if
        it is not a size."""
        return parse_size(self.exclude_larger_than) if self.exclude_larger_than else None


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One snapshot a backup saved (``id`` empty if ``skip_if_unchanged`` found nothing
    changed and saved none). ``source`` is ``files``, ``stream`` or the redacted
    source URL; ``kind`` the source kind; ``counters`` restic's summary counters; ``errors``
    how many items could not be read; ``export`` the source's recorded export facts."""

    #: Properties that :meth:`Outcome.to_json` adds to the fields (the short names every
    #: front end shows).
    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("files", "bytes", "added", "stored")

    id: str
    source: str
    kind: str
    paths: tuple[str, ...] = ()
    counters: BackupCounters = field(default_factory=BackupCounters)
    errors: int = 0
    tables: int = 0
    export: JSONObject = field(default_factory=dict)
    time: str = ""

    @property
    def short_id(self) -> str:
        """Return the first 8 hex digits of the id."""
        return self.id[:8]

    @property
    def files(self) -> int:
        """Return how many files were read."""
        return self.counters.total_files_processed

    @property
    def bytes(self) -> int:
        """Return how many bytes were read."""
        return self.counters.total_bytes_processed

    @property
    def added(self) -> int:
        """Return the bytes of new data, before compression."""
        return self.counters.data_added

    @property
    def stored(self) -> int:
        """Return the bytes of new data stored, after compression."""
        return self.counters.data_added_packed


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupOutcome(Outcome):
    """Where the snapshots went (``repository``: the spec's name or location) and what they
    hold; ``unreadable`` lists (path, reason) of items left out of a partial backup;
    ``degraded_reasons`` why the primary was skipped."""

    repository: str = ""
    location: str = ""
    snapshots: tuple[StoredSnapshot, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()
    degraded_reasons: tuple[str, ...] = ()
    #: A dry run: nothing was written; ``snapshots`` say what would have been.
    dry_run: bool = False

    @property
    def bytes_added(self) -> int:
        """Return the bytes of new data stored (after compression)."""
        return sum(s.stored for s in self.snapshots)

    @property
    def bytes_processed(self) -> int:
        """Return the bytes read from the sources."""
        return sum(s.bytes for s in self.snapshots)

    @property
    def snapshot_ids(self) -> tuple[str, ...]:
        """Return the ids of the saved snapshots."""
        return tuple(s.id for s in self.snapshots)


def _counters(stats: BackupCounters) -> BackupCounters:
    return BackupCounters(**stats.counters())


def _stored(result: BackupResult, source: str, paths: Sequence[str]) -> StoredSnapshot:
    # Not saved (skip_if_unchanged): no id, as restic reports no snapshot.
    return StoredSnapshot(result.snapshot.id if result.saved else "", source, source,
                          tuple(paths),
                          _counters(result.stats), len(result.stats.errors),
                          time=result.snapshot.time)


def _store_source(repo: Repository, url: str, request: BackupRequest,
                  tags: list[str], events: ArchiveEvents | None) -> StoredSnapshot:
    from airflow_backup.sources.pg_pitr import is_pitr_url

    if is_pitr_url(url):
        return _store_base_backup(repo, url, request, tags)
    from airflow_backup.sources.actions import backup_source  # loads the source machinery

    if request.job:
        # A job's source snapshots name their source, for runbooks (one per source).
        from airflow_backup.sources.base import SourceURL

        tags = [*tags, source_tag(SourceURL.parse(url, allow_password=True).redacted())]
    result = backup_source(repo, url, tags=tags, hostname=request.hostname, time=request.time,
                           on_read=events.stream_read if events is not None else None)
    source = result.metadata.get("source") or {}
    export = result.metadata.get("export") or {}
    return StoredSnapshot(
        result.snapshot.id, str(source.get("url", "")), str(source.get("kind", "")), (),
        _counters(result.stats), 0, len(source.get("tables") or {}),
        dict(export) if isinstance(export, dict) else {}, result.snapshot.time)


def _store_base_backup(repo: Repository, url: str, request: BackupRequest,
                       tags: list[str]) -> StoredSnapshot:
    """Store a ``postgresql+pitr://`` source: a base backup exactly as ``pg basebackup``
    takes it (tagged ``pg-basebackup`` with its PITR metadata), plus the request's tags and
    the source's ``source=`` tag, so that the job's status, retention and drill see it."""
    from airflow_backup.pitr.basebackup import take_base_backup
    from airflow_backup.sources.base import SourceURL
    from airflow_backup.sources.pg_pitr import KIND, server_text

    parsed = SourceURL.parse(url, allow_password=True)
    shown = parsed.redacted()
    done = take_base_backup(repo, server_text(parsed),
                            label=f"airflow-backup {request.job}".strip(),
                            tags=[*tags, source_tag(shown)], hostname=request.hostname)
    summary = done.snapshot.summary
    counters = _counters(summary) if summary is not None else BackupCounters()
    return StoredSnapshot(done.snapshot.id, shown, KIND, (), counters, 0, 0, dict(done.meta),
                          done.snapshot.time)


def _dry_run_spec(spec: RepositorySpec) -> RepositorySpec:
    """``spec`` for a dry run: its storage reads but never writes
    (:class:`~airflow_backup.storage.dryrun.DryRunStorage`); no lock is written, no cache
    (metadata or directories) is used or updated, no fallback is tried."""
    from airflow_backup.storage.dryrun import DryRunStorage

    return replace(spec, storage=lambda: DryRunStorage(spec.open_storage()),
                   cache=CacheSpec(enabled=False), no_lock=True, fallbacks=())


def backup(spec: RepositorySpec, request: BackupRequest, *,
           events: ArchiveEvents | None = None,
           on_open: Callable[[RepositorySpec, Repository], None] | None = None
           ) -> BackupOutcome:
    """Back up ``request`` into ``spec``'s repository or a fallback (module doc).
    ``on_open`` is told of each repository opened (the CLI remembers its key)."""
    if request.stream is not None and spec.fallbacks:
        raise ConfigError("a fallback repository needs paths or sources: a stream cannot be "
                          "read twice")
    if request.dry_run:
        spec = _dry_run_spec(spec)
    started = time.monotonic()
    unreadable: list[tuple[str, str]] = []
    base = request.options()
    warmer = MetadataWarmer(base.paths, exclusions=Exclusions.of(base))

    def opener(target: RepositorySpec) -> Repository:
        if target is spec:
            # The paths' metadata is read into the kernel's cache while the key is derived.
            with warmer:
                repo = open_repository(target)
        else:
            repo = open_repository(target)
        if on_open is not None:
            on_open(target, repo)
        return repo

    def work(repo: Repository, attempt: Attempt) -> list[StoredSnapshot]:
        tags = list(request.tags) + ([DEGRADED_TAG] if attempt.degraded else [])
        meta: JSONObject = {"job": request.job} if request.job else {}
        if attempt.degraded:
            meta["degraded"] = {"primary": attempt.primary.location,
                                "reasons": list(attempt.failures)}
        options = replace(
            base, tags=tags, metadata=meta,
            # A parent names a snapshot of the primary; a fallback picks its own.
            parent=None if attempt.degraded else request.parent,
            dir_cache=attempt.spec.cache.directory_cache())
        archiver = Archiver(repo, events, warmed=None if attempt.degraded else warmer)
        out: list[StoredSnapshot] = []
        unreadable.clear()
        if request.stream is not None:
            stream = request.stream
            try:
                result = archiver.backup_stream(
                    stream.open(), stream.filename, replace(options, paths=[]),
                    before_snapshot=stream.before_snapshot)
            finally:
                stream.close()
            out.append(_stored(result, "stream", [stream.filename]))
        if request.paths:
            result = archiver.backup(options)
            unreadable.extend(result.stats.errors)
            out.append(_stored(result, "files", request.paths))
        for url in request.sources:
            out.append(_store_source(repo, url, request, tags, events))
        return out

    landed = run_with_fallback(spec, work, opener=opener)
    attempt = landed.attempt
    status = Status.SUCCESS
    warnings: list[str] = []
    if attempt.degraded:
        status = Status.DEGRADED
        warnings.append(f"DEGRADED: stored in fallback repository {attempt.spec.location} "
                        f"because: {'; '.join(attempt.failures)}")
    if unreadable:
        status = status.worst(Status.PARTIAL)
        warnings.append(f"{len(unreadable)} item(s) could not be read; the snapshot is "
                        f"partial (first: {unreadable[0][0]}: {unreadable[0][1]})")
    return BackupOutcome(status=status, duration=time.monotonic() - started,
                         warnings=tuple(warnings), repository=attempt.spec.label,
                         location=attempt.spec.location, snapshots=tuple(landed.value),
                         unreadable=tuple(unreadable), degraded_reasons=attempt.failures,
                         dry_run=request.dry_run)


def outcome_from_json(doc: JSONObject) -> BackupOutcome:
    """Return a BackupOutcome from its :meth:`~Outcome.to_json` document (as passed between
    Airflow tasks through XCom)."""
    snaps: list[StoredSnapshot] = []
    docs = doc.get("snapshots")
    for s in docs if isinstance(docs, list) else []:
        if not isinstance(s, dict):
            continue
        paths = s.get("paths")
        export = s.get("export")
        counted = s.get("counters")
        counters = BackupCounters(**{name: int(str(counted.get(name) or 0))
                                     for name in COUNTER_FIELDS}) \
            if isinstance(counted, dict) else BackupCounters()
        snaps.append(StoredSnapshot(
            str(s["id"]), str(s["source"]), str(s["kind"]),
            tuple(str(p) for p in paths) if isinstance(paths, list) else (), counters,
            int(str(s.get("errors") or 0)), int(str(s.get("tables") or 0)),
            export if isinstance(export, dict) else {}, str(s.get("time", ""))))

    def strings(key: str) -> tuple[str, ...]:
        value = doc.get(key) or []
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    pairs = doc.get("unreadable") or []
    unreadable = tuple((str(p[0]), str(p[1])) for p in pairs
                       if isinstance(p, list) and len(p) == 2) if isinstance(pairs, list) else ()
    return BackupOutcome(status=Status(str(doc.get("status", "success"))),
                         duration=float(str(doc.get("duration", 0.0))),
                         warnings=strings("warnings"), repository=str(doc.get("repository", "")),
                         location=str(doc.get("location", "")), snapshots=tuple(snaps),
                         unreadable=unreadable, degraded_reasons=strings("degraded_reasons"))
