"""The steps of a backup job, each a function with a typed, JSON-able result:
export → validate → store → verify → retention (notify is :mod:`airflow_backup.jobs.notify`)."""

from airflow_backup.jobs.steps.common import DRILL_TAG, JobSession, job_tag
from airflow_backup.jobs.steps.export import (
    ExportResult,
    ValidateResult,
    export_step,
    validate_step,
)
from airflow_backup.jobs.steps.retention import RetentionResult, retention_step
from airflow_backup.jobs.steps.store import StoreResult, store_step
from airflow_backup.jobs.steps.verify import VerifyResult, verify_step

__all__ = [
    "DRILL_TAG",
    "ExportResult",
    "JobSession",
    "RetentionResult",
    "StoreResult",
    "ValidateResult",
    "VerifyResult",
    "export_step",
    "job_tag",
    "retention_step",
    "store_step",
    "validate_step",
    "verify_step",
]
