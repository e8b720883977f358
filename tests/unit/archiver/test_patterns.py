"""Exclude/include patterns with restic's semantics (``internal/filter``).

restic splits pattern and path on ``/``, matches each part with Go's ``filepath.Match``,
lets ``**`` stand for any number of parts, lets a pattern without a leading ``/`` match
at any depth, and lets a pattern match a parent of the path (so excluding a directory
excludes its contents).
"""

from __future__ import annotations

import os

import pytest

from airflow_backup.archiver.patterns import PatternSet, go_lower


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    # unanchored: any depth
    ("*.log", "/a/b/x.log", True),
    ("*.log", "/x.log", True),
    ("*.log", "/a/x.log/inner/file", True),     # a directory named x.log, and its contents
    ("*.log", "/a/x.logs", False),
    ("*.log", "/a/log", False),
    ("*.log", b"/a/\xff.log", True),            # non-UTF-8 names
    ("foo/bar", "/x/foo/bar", True),
    ("foo/bar", "/foo/bar/baz", True),
    ("foo/bar", "/foo/x/bar", False),
    # anchored
    ("/tmp", "/tmp", True),
    ("/tmp", "/tmp/x/y", True),
    ("/tmp", "/var/tmp", False),
    ("/tmp", "/tmpfoo", False),
    ("/home/*/docs", "/home/alice/docs", True),
    ("/home/*/docs", "/home/alice/docs/a.txt", True),
    ("/home/*/docs", "/home/docs", False),
    ("/home/*/docs", "/home/a/b/docs", False),
    # **
    ("**/cache/*", "/home/u/cache/f", True),
    ("**/cache/*", "/cache/f", True),
    ("**/cache/*", "/home/u/cache/f/deeper", True),
    ("**/cache/*", "/home/u/cache", False),
    ("**/cache/*", "/home/u/cachex/f", False),
    ("/a/**/b", "/a/b", True),
    ("/a/**/b", "/a/x/y/b", True),
    ("/a/**/b", "/c/a/b", False),
    # glob details: * does not cross '/', ? is one character, classes, dotfiles
    ("/a*/c", "/ab/x/c", False),
    ("/a*/c", "/ab/c", True),
    ("?.txt", "/d/a.txt", True),
    ("?.txt", "/d/ab.txt", False),
    ("[ab].txt", "/b.txt", True),
    ("[ab].txt", "/c.txt", False),
    ("*", "/.hidden", True),
    ("*.LOG", "/x.log", False),                 # case-sensitive
])
def test_matches(pattern: str, path: str | bytes, expected: bool) -> None:
    assert PatternSet([pattern]).matches(path) is expected


def test_directory_exclude_covers_children() -> None:
    ps = PatternSet(["/data/cache"])
    assert ps.matches("/data/cache")
    assert ps.matches("/data/cache/a/b/c.bin")
    assert not ps.matches("/data/cachet")
    assert not ps.matches("/data")


def test_any_pattern_of_the_set_matches() -> None:
    ps = PatternSet(["*.tmp", "/var/log"])
    assert ps.matches("/x/y.tmp") and ps.matches("/var/log/syslog")
    assert not ps.matches("/var/lib")


def test_blank_patterns_are_ignored_and_whitespace_is_stripped() -> None:
    assert not PatternSet(["", "   "])
    assert not PatternSet([]).matches("/anything")
    assert PatternSet(["  /tmp  "]).matches("/tmp/x")
    assert PatternSet(["  /tmp  "]).patterns == ["  /tmp  "]


@pytest.mark.parametrize(("pattern", "directory", "expected"), [
    ("/home/*/docs", "/", True),
    ("/home/*/docs", "/home", True),
    ("/home/*/docs", "/home/alice", True),
    ("/home/*/docs", "/home/alice/docs", True),
    ("/home/*/docs", "/var", False),
    ("/home/*/docs", "/home/alice/other", False),
    ("/a/**/b", "/a/x/y", True),
    ("/a/**/b", "/c", False),
    ("*.txt", "/any/where", True),              # unanchored patterns can match at any depth
    ("docs/*.md", "/var", True),
])
def test_may_match_below(pattern: str, directory: str, expected: bool) -> None:
    assert PatternSet([pattern]).may_match_below(directory) is expected


def test_include_walk_finds_exactly_the_matching_files() -> None:
    """Walk a small tree the way restore does: descend only where an include may match."""
    tree = {
        "/home": ["alice", "bob"], "/home/alice": ["docs", "music"],
        "/home/alice/docs": ["a.md", "b.txt"], "/home/alice/music": ["x.mp3"],
        "/home/bob": ["docs"], "/home/bob/docs": ["c.md"], "/var": ["log"], "/var/log": ["s"],
    }
    includes = PatternSet(["/home/*/docs/*.md"])
    found: list[str] = []

    def walk(d: str) -> None:
        for name in tree.get(d, []):
            path = f"{d}/{name}" if d != "/" else f"/{name}"
            if includes.matches(path):
                found.append(path)
            elif path in tree and includes.may_match_below(path):
                walk(path)

    for top in ("/home", "/var"):
        if includes.may_match_below(top):
            walk(top)
    assert found == ["/home/alice/docs/a.md", "/home/bob/docs/c.md"]


def test_negated_character_class_like_go() -> None:
    ps = PatternSet(["[^a].txt"])
    assert ps.matches("/b.txt")
    assert not ps.matches("/a.txt")


def test_backslash_escape_like_go() -> None:
    ps = PatternSet(["foo\\*"])
    assert ps.matches("/foo*")
    assert not ps.matches("/foo\\bar")


def test_negated_patterns_unmatch_in_order_and_patterns_are_cleaned() -> None:
    """restic's order rule: a later ``!pattern`` un-matches, a later pattern matches again;
    ``..`` in a pattern is cleaned as restic cleans it."""
    ps = PatternSet(["/home/u/**/*", "!/home/u/Documents", "/home/u/Documents/*.tmp"])
    assert ps.matches("/home/u/Music/x.mp3")
    assert not ps.matches("/home/u/Documents") and not ps.matches("/home/u/Documents/a.txt")
    assert ps.matches("/home/u/Documents/a.tmp")
    assert not ps.matches("/home/u")
    assert PatternSet(["/tmp/../tmp/x"]).matches("/tmp/x")
    includes = PatternSet(["/data/**", "!/data/skip"])
    assert includes.may_match_below("/data") and not includes.may_match_below("/data/skip")
    assert not PatternSet(["!/data"]).matches("/data")  # a negation alone matches nothing


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    # Go's filepath.Match works on runes (restic 0.14 excludes café with 'caf?').
    ("*/caf?", "/t/café", True),
    ("*/caf?", "/t/caféé", False),
    ("*/caf[^e]", "/t/café", True),
    ("*/caf[à-ê]é", "/t/caféé", True),
    ("*/caf[é]", "/t/cafe", False),
    ("*/x?y", b"/t/x\xffy", True),                # an invalid byte is one rune
    ("*/x??y", b"/t/x\xff\xfey", True),
])
def test_classes_and_question_marks_match_characters_like_go(
        pattern: str, path: str | bytes, expected: bool) -> None:
    assert PatternSet([pattern]).matches(path) is expected


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("*.TXT", "/d/file.txt", True),
    ("*.txt", "/d/FILE.TXT", True),
    ("/HOME/*/Docs", "/home/u/docs/a", True),
    ("*/[A-Z]ile.txt", "/d/File.TXT", True),     # the class is lower-cased too, as by Go
    ("*/ix", "/d/İx", True),                     # Go: İ → i (Python's lower: i̇)
    ("*/ας", "/d/ΑΣ", False),                    # Go: Σ → σ, never the final ς
    ("*/ασ", "/d/ΑΣ", True),
    ("*/bad?name", b"/d/BAD\xffNAME", True),     # an invalid byte becomes U+FFFD
    ("*/bad\ufffdname", b"/d/bad\xffname", True),
])
def test_fold_case_lower_cases_like_go(pattern: str, path: str | bytes, expected: bool) -> None:
    assert PatternSet([pattern], fold_case=True).matches(path) is expected


def test_fold_case_keeps_negation_and_go_lower() -> None:
    ps = PatternSet(["/data/*", "!/DATA/Keep"], fold_case=True)
    assert ps.matches("/Data/x") and not ps.matches("/data/KEEP/y")
    assert go_lower("ÀB" + os.fsdecode(b"\xff")) == "àb\ufffd"
