"""Secrets in URLs: option names that carry them, and URLs safe to show."""

from __future__ import annotations

import pytest

from airflow_backup.redact import is_secret_option, safe_url
from airflow_backup.storage.compose import display_location


@pytest.mark.parametrize("name", ["password", "PASSWORD", "sslpassword", "sslkeypassword",
                                  "aws_secret_access_key", "client_secret", "sas_token",
                                  "account_key", "token", "key", "private_key_file",
                                  "credentials_file", "X-Amz-Signature"])
def test_credential_options_are_secret(name: str) -> None:
    assert is_secret_option(name)


@pytest.mark.parametrize("name", ["region", "endpoint", "table", "format", "jobs",
                                  "sslmode", "profile", "connect_timeout"])
def test_ordinary_options_are_not(name: str) -> None:
    assert not is_secret_option(name)


@pytest.mark.parametrize(("url", "shown"), [
    ("s3:http://AKIAXYZ:S3cr3t-XYZZY@127.0.0.1:9/bucket/prefix",
     "s3:http://127.0.0.1:9/bucket/prefix"),
    ("s3://bucket/prefix?endpoint=http://AKIAXYZ:S3cr3t-XYZZY@127.0.0.1:9&region=eu",
     "s3://bucket/prefix?endpoint=http://127.0.0.1:9&region=eu"),
    ("gs://bucket/p?token=S3cr3t-XYZZY&project=x", "gs://bucket/p?project=x"),
    ("sftp://user:S3cr3t/XYZZY@host/srv/repo", "sftp://host/srv/repo"),
    ("postgresql://postgres:S3cr3t#XYZZY@127.0.0.1/db", "postgresql://127.0.0.1/db"),
    # A port and an '@' further on (an object key) are not user information.
    ("s3:http://minio:9000/bucket/v@1", "s3:http://minio:9000/bucket/v@1"),
    ("/srv/repo", "/srv/repo"),
])
def test_safe_url_keeps_no_credential(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert "XYZZY" not in display_location(url)
