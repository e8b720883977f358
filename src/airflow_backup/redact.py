"""Secrets in URLs: which query options carry them, and URLs with them taken out.

Repository and source URLs end up in configs, logs, error lines, snapshots and runbooks;
what is shown or stored goes through :func:`safe_url` (or ``SourceURL.redacted``), and
options named by :func:`is_secret_option` are refused where a URL is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode

__all__ = ["is_secret_option", "safe_query", "safe_url", "split_userinfo",
           "strip_authority_userinfo"]

# Substrings, so that provider-specific names are caught too (aws_secret_access_key,
# sas_token, client_secret, sslkeypassword, account_key…).
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "credential",
                 "private_key", "account_key", "sas", "signature")


def is_secret_option(name: str) -> bool:
    """Return whether a URL query option called ``name`` may carry a credential."""
    lowered = name.lower()
    return lowered == "key" or any(word in lowered for word in _SECRET_WORDS)


def split_userinfo(base: str) -> tuple[str, str]:
    """Given a URL without its query string, return (its user information, the URL without
    it); the first is empty when there is none.

    Handles restic's ``s3:http://user:pass@host/…`` form (the inner URL's) and a password
    holding a raw ``/`` (``user:pa/ss@host``, which SQLAlchemy and humans write): when the
    part before the first ``@`` has a ``:`` not followed by a port number, all of it is taken
    as user information.
    """
    scheme, sep, rest = base.partition("://")
    if not sep:
        return "", base
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        return userinfo, f"{scheme}://{host}{slash}{path}"
    head, at, tail = rest.partition("@")
    if at and ":" in head and not head.split(":", 1)[1].split("/", 1)[0].isdigit():
        return head, f"{scheme}://{tail}"
    return "", base


def strip_authority_userinfo(base: str) -> str:
    """Given a URL without its query string, return it without user name and password
    (see :func:`split_userinfo`)."""
    return split_userinfo(base)[1]


def safe_query(options: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return query ``options`` without those that may carry a credential, URL-valued ones
    (``endpoint=http://user:pass@host``) passed through :func:`safe_url`."""
    return [(k, safe_url(v) if "://" in v else v) for k, v in options
            if not is_secret_option(k)]


def safe_url(url: str) -> str:
    """Return ``url`` without user information and without secret query options, with
    URL-valued options stripped the same way: safe to print, log or store. The other query
    options are kept."""
    base, sep, query = url.partition("?")
    base = strip_authority_userinfo(base)
    if not sep:
        return base
    kept = safe_query(parse_qsl(query, keep_blank_values=True))
    return base + ("?" + urlencode(kept, safe=":/") if kept else "")
