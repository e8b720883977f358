"""A restic user's environment and habits carry over: RESTIC_REPOSITORY_FILE,
RESTIC_PASSWORD_COMMAND, ``-q`` printing nothing for a backup that worked, ``version``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from support.cli import run_cli
from support.tools import require_tool

PW = "habit-pw"


def test_repository_file_password_command_and_a_quiet_backup(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\n")
    assert run_cli(repo, "init", password=PW).returncode == 0
    where = tmp_path / "repository.txt"
    where.write_text(f"{repo}\n")
    env = {"RESTIC_REPOSITORY_FILE": str(where), "RESTIC_PASSWORD_COMMAND": f"echo {PW}"}
    quiet = run_cli(None, "backup", "-q", str(data), password=None, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == b"" and quiet.stderr == b""  # as `restic backup -q`
    loud = run_cli(None, "backup", str(data), password=None, env=env)
    assert b"snapshot " in loud.stdout and b" saved" in loud.stdout
    listed = run_cli(None, "snapshots", "--json", password=None, env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2
    # The same variables drive restic itself on the same repository.
    restic = require_tool("restic")
    proc = subprocess.run([restic, "snapshots", "--json"], capture_output=True, timeout=120,
                          env={"PATH": str(Path(shutil.which("sh") or "/bin/sh").parent),
                               "HOME": str(tmp_path), **env}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2
    missing = run_cli(None, "snapshots", password=None,
                      env={"RESTIC_REPOSITORY_FILE": str(tmp_path / "nope")})
    assert missing.returncode == 1
    assert missing.stderr.decode() == (f"Fatal: cannot read repository file {tmp_path}/nope: "
                                       "No such file or directory\n")


def test_version_in_restics_words() -> None:
    out = run_cli(None, "version", password=None)
    assert out.returncode == 0
    assert out.stdout.decode().startswith("airflow-backup ") and b" compiled with Python " \
        in out.stdout
    doc = json.loads(run_cli(None, "version", "--json", password=None).stdout)
    assert doc["message_type"] == "version" and doc["version"] and doc["go_os"]


def test_files_from_lists_back_up_what_restic_backs_up(tmp_path: Path) -> None:
    """--files-from (comments, globs), --files-from-verbatim and --files-from-raw give the
    snapshot the same paths as restic's flags of the same names, from the same lists."""
    restic = require_tool("restic")
    data = tmp_path / "data"
    for name in ("a.log", "b.log", "keep.txt", "odd[1].txt", "sp ace.txt"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(name)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "patterns").write_text(f"# logs and one file\n\n{data}/*.log\n{data}/keep.txt\n")
    (lists / "verbatim").write_text(f"{data}/odd[1].txt\n")
    (lists / "raw").write_bytes(f"{data}/sp ace.txt\0".encode())
    flags = ["--files-from", str(lists / "patterns"), "--files-from-verbatim",
             str(lists / "verbatim"), "--files-from-raw", str(lists / "raw")]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert run_cli(ours, "init", password=PW).returncode == 0
    made = run_cli(ours, "backup", *flags, password=PW)
    assert made.returncode == 0, made.stderr
    env = {"RESTIC_PASSWORD": PW, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for argv in (["init"], ["backup", *flags]):
        proc = subprocess.run([restic, "-r", str(theirs), *argv], env=env,
                              capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    mine = json.loads(run_cli(ours, "snapshots", "--json", password=PW).stdout)[0]["paths"]
    restics = json.loads(subprocess.run([restic, "-r", str(theirs), "snapshots", "--json"],
                                        env=env, capture_output=True, timeout=120,
                                        check=True).stdout)[0]["paths"]
    assert sorted(mine) == sorted(restics) == sorted(
        str(data / n) for n in ("a.log", "b.log", "keep.txt", "odd[1].txt", "sp ace.txt"))
    bad = run_cli(ours, "backup", "--files-from", str(tmp_path / "missing"), password=PW)
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("Fatal: cannot read file list ")


def test_snapshots_compact_shows_what_restics_shows(tmp_path: Path) -> None:
    """``snapshots --compact``: no Paths column, a line per tag — the same rows as
    ``restic snapshots --compact`` on the same repository (ruler widths aside)."""
    restic = require_tool("restic")
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
    assert run_cli(repo, "init", password=PW).returncode == 0
    made = run_cli(repo, "backup", str(tmp_path / "a"), str(tmp_path / "b"), "--tag", "x,y",
                   password=PW)
    assert made.returncode == 0, made.stderr

    def rows(text: str) -> list[list[str]]:
        return [ln.split() for ln in text.splitlines() if ln and not ln.startswith("---")]

    ours = run_cli(repo, "snapshots", "--compact", password=PW).stdout.decode()
    theirs = subprocess.run([restic, "-r", str(repo), "snapshots", "--compact"],
                            env={"RESTIC_PASSWORD": PW, "HOME": str(tmp_path),
                                 "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert rows(ours) == rows(theirs)
    assert rows(ours)[0] == ["ID", "Time", "Host", "Tags"] and rows(ours)[2] == ["y"]


def test_tag_adds_removes_and_sets_tags_as_restic_does(tmp_path: Path) -> None:
    """``tag --add/--remove/--set``: changed snapshots are saved anew with ``original``
    naming the first id, restic reads the result (tags, original) and its check passes."""
    restic = require_tool("restic")
    repo = tmp_path / "repo"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    assert run_cli(repo, "init", password=PW).returncode == 0
    for tags in ("a", "a,b"):
        assert run_cli(repo, "backup", str(tmp_path / "d"), "--tag", tags,
                       password=PW).returncode == 0
    first = [s["id"] for s in json.loads(run_cli(repo, "snapshots", "--json",
                                                 password=PW).stdout)]
    out = run_cli(repo, "tag", "--add", "c", "--remove", "b", password=PW)
    assert out.returncode == 0 and out.stdout == b"modified tags on 2 snapshots\n", out
    again = run_cli(repo, "tag", "--add", "c", "--tag", "c", "--json", password=PW)
    assert [json.loads(ln) for ln in again.stdout.splitlines()] == [
        {"message_type": "summary", "changed_snapshots": 0}]  # nothing to change
    assert run_cli(repo, "tag", "--set", "final", "latest", password=PW).returncode == 0
    env = {"RESTIC_PASSWORD": PW, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    listed = json.loads(subprocess.run([restic, "-r", str(repo), "snapshots", "--json"],
                                       env=env, capture_output=True, timeout=120,
                                       check=True).stdout)
    assert sorted(tuple(s["tags"]) for s in listed) == [("a", "c"), ("final",)]
    assert sorted(s["original"] for s in listed) == sorted(first)
    check = subprocess.run([restic, "-r", str(repo), "check"], env=env,
                           capture_output=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    both = run_cli(repo, "tag", "--set", "x", "--add", "y", password=PW)
    assert both.returncode == 1
    assert both.stderr == b"Fatal: --set cannot be combined with --add or --remove\n"


def _tree_paths(snapshot_listing: str) -> set[str]:
    return {json.loads(ln)["path"] for ln in snapshot_listing.splitlines()
            if ln.startswith("{") and json.loads(ln).get("struct_type") == "node"}


def test_negated_excludes_and_exclude_file_variables_keep_what_restic_keeps(
        tmp_path: Path) -> None:
    """restic's documented example — ``$HOME/**/*`` then ``!$HOME/Documents`` — from an
    exclude file that uses ``$HOME`` and ``$$``, and a pattern with ``..``: the same files
    are kept as by restic 0.14 on the same tree."""
    restic = require_tool("restic")
    home = tmp_path / "home"
    for rel in ("Documents/a.txt", "Documents/sub/b.txt", "Music/song.mp3", "notes.txt",
                "Docs$1/c.txt", "tmp/scratch"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(rel)
    rules = tmp_path / "excludes"
    rules.write_text("# everything in the home, but the documents\n$HOME/**/*\n"
                     "!$HOME/Documents\n!${HOME}/Docs$$1\n$HOME/Documents/../tmp\n")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    env = {"HOME": str(home), "RESTIC_PASSWORD": PW, "PATH": "/usr/bin:/bin"}
    assert run_cli(ours, "init", password=PW).returncode == 0
    made = run_cli(ours, "backup", str(home), "--exclude-file", str(rules), password=PW,
                   env={"HOME": str(home)})
    assert made.returncode == 0, made.stderr
    for argv in (["init"], ["backup", str(home), "--exclude-file", str(rules)]):
        proc = subprocess.run([restic, "-r", str(theirs), *argv], env=env,
                              capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    mine = _tree_paths(run_cli(ours, "ls", "latest", "--json", password=PW).stdout.decode())
    restics = _tree_paths(subprocess.run([restic, "-r", str(theirs), "ls", "latest", "--json"],
                                         env=env, capture_output=True, text=True, timeout=120,
                                         check=True).stdout)
    assert mine == restics
    kept = {p.removeprefix(str(home)) for p in mine if p.startswith(str(home) + "/")}
    assert kept == {"/Documents", "/Documents/a.txt", "/Documents/sub", "/Documents/sub/b.txt",
                    "/Docs$1", "/Docs$1/c.txt"}


def test_usage_errors_under_json_are_json() -> None:
    """A script reading ``--json`` output gets restic's ``exit_error`` for a usage error
    too, with exit status 1; without --json it stays one plain line."""
    bad = run_cli(None, "--json", "snapshots", "--bogus", password=None)
    assert bad.returncode == 1 and bad.stdout == b""
    assert json.loads(bad.stderr) == {
        "message_type": "exit_error", "code": 1,
        "message": "unrecognized arguments: --bogus (see 'airflow-backup --help')"}
    plain = run_cli(None, "snapshots", "--bogus", password=None)
    assert plain.stderr == (b"Fatal: unrecognized arguments: --bogus "
                            b"(see 'airflow-backup --help')\n")


def test_ls_json_nodes_equal_restics(tmp_path: Path) -> None:
    """``ls --json``: every node object (``permissions`` as Go writes a FileMode:
    ``drwxr-xr-x``, ``Lrwxrwxrwx``, ``ugrwxrwxr-x``, ``prw-r--r--``) is what restic 0.14 prints
    for the same snapshot."""
    import os

    restic = require_tool("restic")
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_text("x")
    (data / "special").write_text("y")
    os.chmod(data / "special", 0o6775)
    (data / "sticky").mkdir()
    os.chmod(data / "sticky", 0o1777)
    os.symlink("file", data / "link")
    os.mkfifo(data / "fifo")
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    env = {"RESTIC_PASSWORD": PW, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    theirs = subprocess.run([restic, "-r", str(repo), "ls", "latest", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, check=True).stdout
    ours = run_cli(repo, "ls", "latest", "--json", password=PW).stdout.decode()

    def nodes(text: str) -> list[dict[str, object]]:
        # "inode" and "message_type" are restic >= 0.17's (documented), not 0.14's.
        return [{k: v for k, v in d.items() if k not in ("inode", "message_type")}
                for d in map(json.loads, text.splitlines()) if d["struct_type"] == "node"]

    assert nodes(ours) == nodes(theirs)
    perms = {d["name"]: d["permissions"] for d in nodes(ours)}
    assert perms["link"] == "Lrwxrwxrwx" and perms["fifo"].startswith("p")
    assert perms["special"] == "ugrwxrwxr-x" and perms["sticky"] == "dtrwxrwxrwx"


def test_list_prints_what_restic_list_prints(tmp_path: Path) -> None:
    """``list snapshots|index|packs|keys|locks|blobs``: the same lines as restic 0.14's, on
    a repository with two snapshots (restic lists in storage order: compared sorted)."""
    restic = require_tool("restic")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("a" * 5000)
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    for content in ("one", "two"):
        (data / "b").write_text(content)
        assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    env = {"RESTIC_PASSWORD": PW, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for kind in ("snapshots", "index", "packs", "keys", "locks", "blobs"):
        theirs = subprocess.run([restic, "-r", str(repo), "--no-lock", "list", kind], env=env,
                                capture_output=True, text=True, timeout=120, check=True).stdout
        ours = run_cli(repo, "list", kind, password=PW)
        assert ours.returncode == 0, ours.stderr
        assert sorted(ours.stdout.decode().splitlines()) == sorted(theirs.splitlines()), kind
        assert kind == "locks" or ours.stdout.strip()
    bad = run_cli(repo, "list", "blob", password=PW)
    assert bad.returncode == 1 and b"did you mean 'blobs'?" in bad.stderr


def test_find_finds_what_restic_find_finds(tmp_path: Path) -> None:
    """``find`` (-i, several patterns, a directory match covering its contents): the same
    text and the same JSON, match by match, as restic 0.14's on the same repository."""
    import os

    restic = require_tool("restic")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("hi")
    (data / "sub" / "b.TXT").write_text("x")
    (data / "c.log").write_text("log")
    os.symlink("a.txt", data / "link.txt")
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    (data / "d.txt").write_text("new")
    assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    env = {"RESTIC_PASSWORD": PW, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TZ": "UTC"}
    for args in (["*.txt"], ["-i", "*.txt"], ["sub", "*.log"], ["nothing-like-it"]):
        theirs = subprocess.run([restic, "-r", str(repo), "--no-lock", "--json", "find", *args],
                                env=env, capture_output=True, text=True, timeout=120,
                                check=True).stdout
        ours = run_cli(repo, "--json", "find", *args, password=PW, env={"TZ": "UTC"})
        assert ours.returncode == 0, ours.stderr

        def by_snapshot(text: str) -> dict[str, list[dict[str, object]]]:
            return {r["snapshot"]: r["matches"] for r in json.loads(text)}

        assert by_snapshot(ours.stdout.decode()) == by_snapshot(theirs), args
        text_theirs = subprocess.run([restic, "-r", str(repo), "--no-lock", "find", *args],
                                     env=env, capture_output=True, text=True, timeout=120,
                                     check=True).stdout
        text_ours = run_cli(repo, "find", *args, password=PW, env={"TZ": "UTC"})
        assert sorted(text_ours.stdout.decode().splitlines()) == \
            sorted(text_theirs.splitlines()), args
