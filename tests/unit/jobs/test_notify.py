"""Notifications: delivered through Apprise without its debug log keeping webhook tokens."""

from __future__ import annotations

import logging

import pytest

from airflow_backup.jobs.notify import deliver
from support.receiver import receiver


def test_a_debug_log_does_not_keep_the_webhook_token(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("apprise", "urllib3.connectionpool"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)  # a worker running at DEBUG
    with receiver() as rx:
        url = rx.url.rstrip("/") + "/hooks/T0KEN-XYZZY"
        assert deliver([url], "backup failed", "details", "failure") == 1
        assert len(rx.messages) == 1
    assert "XYZZY" not in caplog.text
