"""The operations layer: one function per operation, between the engine and its front ends.

The CLI, the job runner (``airflow-backup run``) and the Airflow provider translate their
inputs into a :class:`~airflow_backup.operations.spec.RepositorySpec` and options, call one of
these, and render the typed outcome it returns (:mod:`airflow_backup.operations.outcome`):

- :func:`~airflow_backup.operations.backup.backup` — paths, a stream or source URLs into
  snapshots, with fallback repositories (``BackupOutcome``)
- :func:`~airflow_backup.operations.retention.retention` and
  :func:`~airflow_backup.operations.retention.prune` (``RetentionOutcome``, ``PruneOutcome``)
- :func:`~airflow_backup.operations.verify.check` and
  :func:`~airflow_backup.operations.verify.verify_snapshots` (``CheckOutcome``,
  ``VerifyOutcome``)
- :func:`~airflow_backup.operations.restore.restore` (``RestoreOutcome``)
- :func:`~airflow_backup.operations.drill.drill` (``DrillOutcome``)
- :func:`~airflow_backup.operations.status.statuses` and
  :func:`~airflow_backup.operations.status.write_metrics` (``JobStatus``)

Retries of whole steps are decided by :mod:`airflow_backup.operations.retry` from the error
tree. docs/architecture.md lists who calls what. Nothing here imports Airflow or prints.
"""
