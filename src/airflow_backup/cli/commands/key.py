"""``key``: list, add, remove keys, or change the current password."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import GlobalOptions, new_password, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.repository import keys as keyfiles
from airflow_backup.repository.timefmt import parse_time
from airflow_backup.storage.base import FileType, Handle


def register(sub: Any) -> None:
    """Add the ``key`` parser and its actions."""
    p = sub.add_parser("key", help="manage keys (passwords)")
    p.add_argument("action", choices=["list", "add", "remove", "passwd"])
    p.add_argument("id", nargs="?", default="", help="key id for 'remove'")
    p.add_argument("--new-password-file", default="",
                   help="read the new password from a file (add, passwd)")
    p.add_argument("--user", default=None, help="user name to record in a new key")
    p.add_argument("--host", default=None, help="host name to record in a new key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Carry out the key action."""
    repo = open_repository(gopts)
    if args.action == "list":
        rows = []
        items = []
        for info in repo.storage.list(FileType.KEY):
            kf = keyfiles.load_key_file(repo.storage, info.name)
            current = kf.id == repo.key_id
            items.append({"current": current, "id": kf.id, "userName": kf.username,
                          "hostName": kf.hostname, "created": kf.created})
            created = parse_time(kf.created).strftime("%Y-%m-%d %H:%M:%S") if kf.created else ""
            rows.append([("*" if current else " ") + kf.id[:8], kf.username, kf.hostname,
                         created])
        if out.json_mode:
            out.json(items)
        else:
            out.table([" ID", "User", "Host", "Created"], rows)
        return 0
    if args.action in ("add", "passwd"):
        password = new_password(args.new_password_file, gopts)
        with repo.lock(exclusive=args.action == "passwd", retry_seconds=gopts.retry_lock):
            key_id = keyfiles.add_key(repo.storage, repo.key, password, username=args.user,
                                      hostname=args.host)
            if args.action == "passwd":
                repo.storage.remove(Handle(FileType.KEY, repo.key_id))
        if out.json_mode:
            out.json({"message_type": f"key_{args.action}", "id": key_id})
        else:
            out.result("saved new key as " + key_id[:8] if args.action == "add"
                       else "saved new password")
        return 0
    if not args.id:
        raise ConfigError("key remove needs a key id")
    with repo.lock(exclusive=True, retry_seconds=gopts.retry_lock):
        key_id = repo.resolve_id(FileType.KEY, args.id)
        if key_id == repo.key_id:
            raise ConfigError("refusing to remove the key currently used to access the "
                              "repository")
        repo.storage.remove(Handle(FileType.KEY, key_id))
    if out.json_mode:
        out.json({"message_type": "key_removed", "id": key_id})
    else:
        out.result(f"removed key {key_id[:8]}")
    return 0
