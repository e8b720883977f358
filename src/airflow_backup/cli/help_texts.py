"""What ``airflow-backup VERB --help`` says about each verb: a description and examples.

Kept apart from the parsers so that every verb has both (a test parses every example with
the real parser, so an example that no longer works fails the suite).
"""

from __future__ import annotations

__all__ = ["VERB_HELP"]

#: verb -> (description, examples). Examples are command lines as a user types them.
VERB_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "init": ("Create a new repository (restic's format, version 2 by default) at -r, or every "
             "repository a jobs config names with --config (those that exist are left as "
             "they are). The password comes from --password-file, AIRFLOW_BACKUP_PASSWORD "
             "or RESTIC_PASSWORD(_FILE/_COMMAND), or a prompt.",
             ("airflow-backup -r /srv/backup init",
              "airflow-backup -r s3:s3.amazonaws.com/bucket/backups init",
              "airflow-backup init --config jobs.yaml")),
    "backup": ("Back up files and directories, a stream from stdin, or a data source URL "
               "(postgresql://, mysql://, sqlite:///, table+…://, s3://…, airflow:///…) into "
               "a new snapshot. Unchanged files are not read again; data is deduplicated "
               "against everything in the repository.",
               ("airflow-backup -r /srv/backup backup /etc /home --exclude '*.tmp'",
                "airflow-backup -r /srv/backup backup /home --iexclude '*.iso' "
                "--iexclude-file iexcludes.txt",
                "airflow-backup -r /srv/backup backup /home --exclude-caches "
                "--exclude-if-present .nobackup --exclude-if-present 'BACKUP.SKIP:skip me'",
                "airflow-backup -r /srv/backup backup /srv/data --exclude-larger-than 100M",
                "airflow-backup -r /srv/backup backup -x / /home",
                "airflow-backup -r /srv/backup backup --files-from list.txt --tag nightly",
                "airflow-backup -r /srv/backup backup postgresql://backup@db:5432/sales",
                "airflow-backup -r /srv/backup backup --stdin --stdin-filename dump.sql")),
    "snapshots": ("List the snapshots in the repository, oldest first, optionally filtered by "
                  "host, tag and path and grouped.",
                  ("airflow-backup -r /srv/backup snapshots",
                   "airflow-backup -r /srv/backup snapshots --tag nightly --latest 3 --json")),
    "ls": ("List the files of a snapshot (below the given paths), with --long their modes, "
           "owners, sizes and times.",
           ("airflow-backup -r /srv/backup ls latest",
            "airflow-backup -r /srv/backup ls --long latest /etc")),
    "restore": ("Restore a snapshot (or SNAPSHOT:SUBFOLDER) into a directory, or a data-source "
                "snapshot into a database, table or bucket given as a URL; --include/--exclude "
                "select files, --as-of picks the newest snapshot at or before a time.",
                ("airflow-backup -r /srv/backup restore latest --target /tmp/restore",
                 "airflow-backup -r /srv/backup restore latest --target /tmp/r --include /etc",
                 "airflow-backup -r /srv/backup restore latest:/srv/data --target /srv/data "
                 "--overwrite if-changed --delete --dry-run -vv",
                 "airflow-backup -r /srv/backup restore latest --target /tmp/r --sparse --json",
                 "airflow-backup -r /srv/backup restore latest --tag sales "
                 "--target postgresql://backup@db:5432/sales_copy")),
    "dump": ("Print one file of a snapshot to standard output (a directory as a tar stream).",
             ("airflow-backup -r /srv/backup dump latest /etc/hosts",)),
    "diff": ("Show what changed between two snapshots: added, removed and modified files and "
             "the bytes involved.",
             ("airflow-backup -r /srv/backup diff 1a2b3c4d 5e6f7a8b",
              "airflow-backup -r /srv/backup diff --as-of 2024-03-01 latest")),
    "forget": ("Remove snapshots by id, or apply a retention policy (--keep-*) per group of "
               "snapshots; with --prune also delete the data nothing references any more.",
               ("airflow-backup -r /srv/backup forget --keep-daily 7 --keep-weekly 4 --prune",
                "airflow-backup -r /srv/backup forget 1a2b3c4d")),
    "prune": ("Delete data that no snapshot references, repacking packs that are partly "
              "used; every step leaves a repository restic accepts.",
              ("airflow-backup -r /srv/backup prune",
               "airflow-backup -r /srv/backup prune --max-unused 10% --dry-run")),
    "check": ("Check the repository's structure and, with --read-data(-subset), that every "
              "pack's contents match their ids.",
              ("airflow-backup -r /srv/backup check",
               "airflow-backup -r /srv/backup check --read-data-subset 10%")),
    "repair": ("Rebuild the index from the packs, or rewrite snapshots whose data is "
               "missing so that what is intact can still be restored.",
               ("airflow-backup -r /srv/backup repair index",
                "airflow-backup -r /srv/backup repair snapshots --forget")),
    "stats": ("Show how much the snapshots hold and how much the repository stores, after "
              "deduplication and compression.",
              ("airflow-backup -r /srv/backup stats",
               "airflow-backup -r /srv/backup stats --tag nightly --json")),
    "tag": ("Add, remove or set tags on snapshots (a snapshot gets a new id, as in restic).",
            ("airflow-backup -r /srv/backup tag --add keep latest",
             "airflow-backup -r /srv/backup tag --tag nightly --set monthly")),
    "copy": ("Copy snapshots from another repository (--from-repo, with its own password) "
             "into this one, re-encrypting with this repository's key and transferring only "
             "the data it lacks; snapshots copied before are skipped, so a scheduled copy is "
             "incremental (the offsite copy of the 3-2-1 rule).",
             ("airflow-backup -r s3:s3.amazonaws.com/offsite/backups copy "
              "--from-repo /srv/backup --from-password-file /etc/ab/local.pw",
              "airflow-backup -r /mnt/usb/backup copy --from-repo /srv/backup --tag nightly")),
    "unlock": ("Remove stale locks: those of processes that are gone or older than 30 "
               "minutes (--remove-all: every lock).",
               ("airflow-backup -r /srv/backup unlock",)),
    "cat": ("Print an internal object of the repository as JSON: the config, a snapshot, an "
            "index, a key, a lock, a tree, or a blob's bytes.",
            ("airflow-backup -r /srv/backup cat config",
             "airflow-backup -r /srv/backup cat snapshot 1a2b3c4d")),
    "list": ("Print the ids of the repository's snapshots, index files, packs, keys or "
             "locks, one per line, or its indexed blobs as TYPE ID, as restic list does.",
             ("airflow-backup -r /srv/backup list snapshots",
              "airflow-backup -r /srv/backup list blobs")),
    "find": ("Search the snapshots for files and directories whose path matches a pattern "
             "(as for --exclude: '*.log' at any depth; -i ignores case), as restic find "
             "does; --json prints restic's array of matches per snapshot.",
             ("airflow-backup -r /srv/backup find '*.sqlite'",
              "airflow-backup -r /srv/backup find -i --tag nightly 'airflow.cfg'")),
    "key": ("List, add, remove or change the keys (passwords) that open the repository.",
            ("airflow-backup -r /srv/backup key list",
             "airflow-backup -r /srv/backup key add --new-password-file new.txt")),
    "config": ("Validate a jobs config file (every problem named with its field), print its "
               "JSON schema, or print a sample to start from.",
               ("airflow-backup config sample",
                "airflow-backup config validate jobs.yaml")),
    "run": ("Run the jobs of a config file: export, validate, store, verify, retention and "
            "notify, each step retried as the error allows; a broken job does not stop the "
            "others.",
            ("airflow-backup run jobs.yaml",
             "airflow-backup run jobs.yaml nightly --metrics-file /var/lib/node/ab.prom")),
    "status": ("Report each job's freshness against its RPO, its last drill and RTO, and "
               "its repository's health; exit 1 on a breach (a monitoring probe), and with "
               "--alert notify once per breach.",
               ("airflow-backup status jobs.yaml",
                "airflow-backup status jobs.yaml --alert --state-file /var/lib/ab/state.json")),
    "drill": ("Restore each job's latest (or --as-of) backup into a sandbox, validate it and "
              "measure the RTO against max_rto.",
              ("airflow-backup drill jobs.yaml",
               "airflow-backup drill jobs.yaml nightly --as-of 2024-03-01")),
    "runbook": ("Write a Markdown recovery runbook per job: the exact commands, with "
                "airflow-backup and with plain restic, to bring each source back.",
                ("airflow-backup runbook jobs.yaml --output RUNBOOK.md",)),
    "pg": ("PostgreSQL point-in-time recovery: archive WAL from archive_command "
           "(archive-wal %p), fetch it from restore_command (restore-wal %f %p), take base "
           "backups with pg_basebackup (basebackup), restore one and configure recovery to a "
           "time, LSN, xid or restore point (restore), list what is there (list), find WAL "
           "gaps and the recoverable window (check), forget old base backups and only the "
           "WAL no kept one needs (forget). See docs/pitr.md.",
           ("airflow-backup -r /srv/backup pg archive-wal pg_wal/000000010000000000000001",
            "airflow-backup -r /srv/backup pg restore-wal 000000010000000000000001 "
            "pg_wal/RECOVERYXLOG",
            "airflow-backup -r /srv/backup pg basebackup --dbname postgresql://postgres@db:5432",
            "airflow-backup -r /srv/backup pg restore --target-dir /srv/pg-restored "
            "--target-time '2025-01-31 12:00:00+00' --target-action promote",
            "airflow-backup -r /srv/backup pg list",
            "airflow-backup -r /srv/backup pg check",
            "airflow-backup -r /srv/backup pg forget --keep-base 7 --prune")),
    "version": ("Print the version of airflow-backup and of the repository format it writes.",
                ("airflow-backup version",)),
    "generate": ("Write shell completion for bash, zsh or fish ('-' for stdout) and man pages "
                 "(airflow-backup.1 and one airflow-backup-VERB.1 per verb), all written from "
                 "the command-line parser itself, as restic's generate does.",
                 ("airflow-backup generate --bash-completion /etc/bash_completion.d/airflow-backup",
                  "airflow-backup generate --zsh-completion "
                  "/usr/local/share/zsh/site-functions/_airflow-backup",
                  "airflow-backup generate --fish-completion "
                  "~/.config/fish/completions/airflow-backup.fish",
                  "airflow-backup generate --man /usr/local/share/man/man1",
                  "airflow-backup generate --bash-completion -")),
}
