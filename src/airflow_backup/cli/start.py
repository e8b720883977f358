"""The ``airflow-backup`` entry point: start the key derivation, then load the CLI.

Loading the CLI (its modules, cryptography, zstd, …) takes 0.2–0.3 s with a cold page cache,
and opening a repository then spends 0.3–0.5 s in scrypt, which runs without the GIL on one
core. When the repository is a local directory with one key file and the password is at
hand without side effects (a file or the environment), :func:`unlock_ahead` starts that
derivation before the rest loads, so the two overlap (cold unchanged 1 GiB re-backup:
see docs/performance.md). For a remote repository it uses the key file that opened it last
time (:mod:`airflow_backup.cli.keyhint`), and the derivation overlaps with loading the
storage library too (s3fs: 0.3–0.4 s). :func:`airflow_backup.repository.keys.derive` takes
the result only if password, salt and cost parameters are exactly those it needs; otherwise
it derives as usual, and the early one only cost a core for a moment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["entrypoint", "unlock_ahead"]


def unlock_ahead(argv: Sequence[str]) -> bool:
    """Given the command line, start deriving the repository's key in the background if
    the password comes from a file or the environment and the key file is known: a local
    repository's only key file, or for a remote one the key file that opened it last time
    (:mod:`airflow_backup.cli.keyhint`; not with ``--no-cache``). Return whether it started.
    Never raises, prints or asks: anything unexpected means "not started"."""
    try:
        from airflow_backup.cli.password import option_value, repository_location

        url = repository_location(option_value(argv, ("-r", "--repo")))
        if not url:
            return False
        remote = ":" in url  # s3:, sftp://, file:// …: anything but a plain local path
        if remote and "--no-cache" in argv:
            return False
        from airflow_backup.cli.password import password_source
        from airflow_backup.repository.kdf import derive_ahead, key_file_kdf

        kind, password = password_source(option_value(argv, ("--password-file",)))
        if kind != "password":
            return False
        if remote:
            from airflow_backup.cli.keyhint import read_key_hint

            hint = read_key_hint(url, option_value(argv, ("--cache-dir",)))
            if hint is None:
                return False
            _, salt, params = hint
        else:
            # Read the one key file with the standard library alone (as LocalStorage would:
            # names starting with "." are interrupted writes): loading the storage layer
            # and cryptography first would hold the derivation back (docs/performance.md).
            import json

            keys = os.path.join(url, "keys")
            with os.scandir(keys) as it:
                names = [e.name for e in it
                         if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]
            if len(names) != 1:
                return False
            with open(os.path.join(keys, names[0]), "rb") as f:
                salt, params = key_file_kdf(json.loads(f.read()), names[0][:8])
        derive_ahead(password, salt, params)
        return True
    except Exception:
        return False


def entrypoint() -> None:
    """Console-script entry point."""
    from airflow_backup.cli.wal_receipt import answer_from_receipt

    if answer_from_receipt(sys.argv[1:]):
        sys.exit(0)
    unlock_ahead(sys.argv[1:])
    from airflow_backup.cli.main import entrypoint as run_cli

    run_cli()
