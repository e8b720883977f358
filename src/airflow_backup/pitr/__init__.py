"""PostgreSQL point-in-time recovery: WAL archive, base backups and recovery set-up.

Everything is stored as ordinary snapshots, encrypted and deduplicated like all data, so
``restic`` can list, check and restore them:

- **WAL files** (:mod:`.wal`): one snapshot per archived file (segment, ``.history``,
  ``.partial``, ``.backup``) holding that one file, tagged ``wal``, ``timeline=TTTTTTTT`` and
  ``segment=NAME``; its metadata ``extra.airflow_backup.pitr`` records the name, timeline,
  size and SHA-256. One snapshot per file is what the ``archive_command`` contract needs: the
  command may exit 0 only when that file is durable, and restic's write order (pack, index,
  snapshot) makes the snapshot the commit record. A busy server makes thousands of them a
  day, so nobody lists them the slow way: :class:`.catalog.PitrCatalog` keeps a local cache
  of which snapshot holds which WAL file and decrypts only snapshot files it has not seen
  (listing file *names* stays cheap on every store). Compacting many WAL snapshots into one
  (and so fewer files) is left to a later ``pg compact-wal``.
- **Base backups** (:mod:`.basebackup`): ``pg_basebackup -D - -Ft -X none`` streamed into
  one snapshot (file ``base.tar``) tagged ``pg-basebackup``; ``extra.airflow_backup.pitr``
  records start/stop LSN, start/stop time, timeline and label, read from the ``backup_label``
  and ``backup_manifest`` inside the stream. WAL comes from the archive (``-X none`` makes
  the server wait until the last segment the backup needs is archived).
- **Recovery** (:mod:`.recovery`): pick the newest base backup that ended before the
  target and can reach the target timeline (per the archived ``.history`` files), extract
  it, write ``recovery.signal`` and the ``recovery_target_*`` settings with a
  ``restore_command`` that fetches WAL from the repository.
- **Archiving ahead** (:mod:`.spool`): one ``archive_command`` call also stores the files
  the server has marked ready and leaves receipts, so its next calls return at once.
- **Gap check** (:mod:`.gaps`): every base backup's WAL archived, the segments of each
  timeline contiguous (following ``.history`` switch points), the recoverable window.
- **Retention** (:mod:`.retention`): keep the newest base backups and the WAL from the
  oldest kept one's start segment on; forget the rest through the ordinary retention
  operation (never a ``.history`` file).

- **Drills** (:mod:`.drill_target`, :mod:`.scratch_server`): a random target time in the
  recoverable window, and a throw-away server that recovers to it for the checks
  (``postgresql+pitr://`` jobs; the drill operation drives them).

No Airflow imports and no printing here: the CLI (``airflow-backup pg ...``) renders.
"""

from __future__ import annotations

__all__: list[str] = []
