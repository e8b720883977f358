"""Known directories: a backup reuses the trees of directories unchanged since the last one
without loading the parent's trees, and never where anything below them changed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_backup.archiver import known as known_mod
from airflow_backup.archiver.archive import Archiver, BackupOptions, BackupResult
from airflow_backup.archiver.known import DirCache, dir_cache_path
from airflow_backup.archiver.parent import ParentTree
from airflow_backup.archiver.warm import MetadataWarmer
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.walk import find_node
from airflow_backup.storage.memory import MemoryStorage


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for d in range(3):
        for e in range(2):
            sub = root / f"d{d}" / f"e{e}"
            sub.mkdir(parents=True)
            for f in range(4):
                (sub / f"f{f}.txt").write_bytes(os.urandom(100 + f))
    (root / "top.txt").write_text("top")
    (root / "link").symlink_to("top.txt")
    (root / "empty").mkdir()
    return root


@pytest.fixture
def repo() -> Repository:
    return Repository.init(MemoryStorage(), "pw")


def _backup(repo: Repository, root: Path, cache: Path | None,
            warmed: MetadataWarmer | None = None, **kw: object) -> BackupResult:
    opts = BackupOptions(paths=[str(root)], dir_cache=str(cache) if cache else None,
                         hostname="h", **kw)  # type: ignore[arg-type]
    return Archiver(repo, warmed=warmed).backup(opts)


def _subtree(repo: Repository, result: BackupResult, root: Path) -> bytes:
    node, _ = find_node(repo, result.snapshot.tree, str(root))
    assert node is not None and node.subtree is not None
    return node.subtree


def _count_tree_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    loads: list[bytes] = []
    real = ParentTree.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ParentTree], repo: Repository, tree_id: bytes | None) -> ParentTree:
        if tree_id is not None:
            loads.append(tree_id)
        return real(cls, repo, tree_id)  # type: ignore[no-any-return]

    monkeypatch.setattr(ParentTree, "load", classmethod(counting))
    return loads


def _counters(result: BackupResult) -> tuple[int, ...]:
    s = result.stats
    return (s.files_new, s.files_changed, s.files_unmodified, s.total_files_processed,
            s.total_bytes_processed, s.data_blobs)


def test_unchanged_tree_is_reused_without_loading_the_parents_trees(
        repo: Repository, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = _backup(repo, tree, cache)
    files = list((cache / repo.config.id / "dirs").iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    without = _backup(repo, tree, None)  # the usual comparison with the parent, for reference
    loads = _count_tree_loads(monkeypatch)
    second = _backup(repo, tree, cache)
    # Only the directories above the target (/tmp, …) were loaded from the parent, none of
    # the 11 directories of the backed-up tree.
    assert len(loads) <= len(tree.parts)
    assert _subtree(repo, second, tree) == _subtree(repo, first, tree)
    assert _counters(second) == _counters(without)
    assert second.stats.files_unmodified == 25 and second.stats.data_blobs == 0
    # The directories above the target may change meanwhile (the cache is written in
    # tmp_path): compare the totals.
    dirs = [(r.stats.dirs_new + r.stats.dirs_changed + r.stats.dirs_unmodified)
            for r in (second, without)]
    assert dirs[0] == dirs[1] and second.stats.dirs_unmodified >= 11


def _chmod(p: Path) -> None:
    p.chmod(0o600)


def _rewrite_same_size_and_mtime(p: Path) -> None:
    st = p.stat()
    p.write_bytes(os.urandom(st.st_size))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the ctime shows the change


def _xattr(p: Path) -> None:
    try:
        os.setxattr(p, "user.k", b"v")
    except OSError:
        pytest.skip("no user xattrs on this file system")


MUTATIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "content, same size and mtime": ("d1/e0/f2.txt", _rewrite_same_size_and_mtime),
    "mode": ("d2/e1/f0.txt", _chmod),
    "xattr": ("d0/e1/f3.txt", _xattr),
    "new file deep": ("d2/e0", lambda p: (p / "new.txt").write_text("new")),
    "removed file": ("d0/e0/f1.txt", lambda p: p.unlink()),
    "renamed file": ("d1/e1/f0.txt", lambda p: p.rename(p.with_name("g0.txt"))),
    "new empty dir": ("empty", lambda p: (p / "sub").mkdir()),
    "removed dir": ("d2/e1", shutil.rmtree),
    "symlink retargeted": ("link", lambda p: (p.unlink(), p.symlink_to("d0"))),
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_any_change_below_a_directory_makes_it_unknown(
        repo: Repository, tree: Path, tmp_path: Path, what: str) -> None:
    cache = tmp_path / "cache"
    first = _backup(repo, tree, cache)
    rel, mutate = MUTATIONS[what]
    mutate(tree / rel)
    with_cache = _backup(repo, tree, cache)
    without = _backup(repo, tree, None, force=True)  # every file read again, no cache
    assert _subtree(repo, with_cache, tree) != _subtree(repo, first, tree)
    assert _subtree(repo, with_cache, tree) == _subtree(repo, without, tree)
    # And the directories remembered from that backup hold on the next one.
    again = _backup(repo, tree, cache)
    assert _subtree(repo, again, tree) == _subtree(repo, without, tree)


def test_the_warm_ups_listings_serve_the_check(repo: Repository, tree: Path,
                                               tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _backup(repo, tree, cache)
    (tree / "d0" / "e0" / "f0.txt").write_text("changed")
    with MetadataWarmer([str(tree)]) as warmed:
        assert warmed.wait(10)
    second = _backup(repo, tree, cache, warmed=warmed)
    assert second.stats.files_changed == 1 and second.stats.files_unmodified == 24
    assert _subtree(repo, second, tree) != _subtree(repo, first, tree)
    assert _subtree(repo, second, tree) == _subtree(repo, _backup(repo, tree, None), tree)


def test_damaged_foreign_or_unindexed_memories_are_not_used(
        repo: Repository, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = _backup(repo, tree, cache)
    (path,) = (cache / repo.config.id / "dirs").iterdir()
    good = path.read_bytes()
    scope = DirCache.scope("h", [str(tree)], [])
    assert path == dir_cache_path(cache, repo, scope)
    def exists(sid: str) -> bool:
        return sid == first.snapshot.id

    assert len(DirCache.load(path, repo.key, scope, exists)) == 11

    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # MAC no longer matches
    assert len(DirCache.load(path, repo.key, scope, exists)) == 0
    assert len(DirCache.load(path, Key.random(), scope, exists)) == 0  # another repository's
    path.write_bytes(good)
    assert len(DirCache.load(path, repo.key, DirCache.scope("h", [str(tree)], ["*.txt"]),
                             exists)) == 0
    # The snapshot that holds the trees was forgotten: a prune may have taken their data.
    assert len(DirCache.load(path, repo.key, scope, lambda _sid: False)) == 0

    loads = _count_tree_loads(monkeypatch)
    path.write_bytes(b"not sealed")
    second = _backup(repo, tree, cache)  # compared with the parent as usual, and correct
    assert len(loads) > 11
    assert _subtree(repo, second, tree) == _subtree(repo, first, tree)
    assert len(DirCache.load(path, repo.key, scope, lambda _sid: True)) == 11  # rewritten

    # A tree the index no longer holds (pruned) is not taken.
    cached = DirCache.load(path, repo.key, scope, lambda _sid: True)
    fp = next(iter(cached._known))
    monkeypatch.setattr(repo.index, "has", lambda *_a: False)
    assert cached.lookup(fp, repo) is None


def test_memories_of_a_forgotten_snapshot_are_not_used(
        repo: Repository, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = _backup(repo, tree, cache)
    _backup(repo, tree, None)  # a parent that stays, while the remembered snapshot goes
    repo.remove_snapshot(first.snapshot.id)
    loads = _count_tree_loads(monkeypatch)
    again = _backup(repo, tree, cache)
    assert len(loads) > 11  # compared with the parent's trees, as without the cache
    assert _subtree(repo, again, tree) == _subtree(repo, first, tree)


def test_owner_names_and_options_are_part_of_the_fingerprint(
        repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = DirCache(repo.key, DirCache.scope("h", ["/a"], []))
    owners = {(0, 0)}
    fp = cache.fingerprint(b"d" * 32, owners, [b"t" * 32])
    assert fp == cache.fingerprint(b"d" * 32, owners, [b"t" * 32])
    assert fp != cache.fingerprint(b"e" * 32, owners, [b"t" * 32])
    assert fp != cache.fingerprint(b"d" * 32, owners, [b"u" * 32])
    assert fp != cache.fingerprint(b"d" * 32, {(1, 0)}, [b"t" * 32])
    other_scope = DirCache(repo.key, DirCache.scope("h", ["/a"], ["*.log"]))
    assert fp != other_scope.fingerprint(b"d" * 32, owners, [b"t" * 32])
    other_key = DirCache(Key.random(), DirCache.scope("h", ["/a"], []))
    assert fp != other_key.fingerprint(b"d" * 32, owners, [b"t" * 32])
    monkeypatch.setattr(known_mod, "user_name", lambda _uid: "renamed")
    assert fp != cache.fingerprint(b"d" * 32, owners, [b"t" * 32])


def test_no_cache_force_and_atime_leave_it_alone(repo: Repository, tree: Path,
                                                 tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _backup(repo, tree, None)
    assert not cache.exists()
    _backup(repo, tree, cache, with_atime=True)
    assert not cache.exists()
    _backup(repo, tree, cache, force=True)  # re-reads everything, and remembers the result
    assert len(list((cache / repo.config.id / "dirs").iterdir())) == 1


def test_several_targets_a_file_target_and_hard_links(repo: Repository, tree: Path,
                                                      tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "a.txt").write_text("a")
    os.link(other / "x" / "a.txt", other / "x" / "hard.txt")
    single = tmp_path / "single.txt"
    single.write_text("single")
    cache = tmp_path / "cache"

    def backup(cached: bool, **kw: object) -> BackupResult:
        opts = BackupOptions(paths=[str(tree), str(other), str(single)], hostname="h",
                             dir_cache=str(cache) if cached else None, **kw)  # type: ignore[arg-type]
        return Archiver(repo).backup(opts)

    def trees(result: BackupResult) -> list[bytes]:
        return [_subtree(repo, result, p) for p in (tree, other)]

    first = backup(True)
    assert trees(backup(True)) == trees(first)
    os.link(other / "x" / "a.txt", other / "x" / "third.txt")  # a.txt's link count changes
    single.write_text("changed")
    with_cache, without = backup(True), backup(False, force=True)
    assert trees(with_cache) == trees(without)
    assert trees(with_cache)[0] == trees(first)[0] and trees(with_cache)[1] != trees(first)[1]
    node, _ = find_node(repo, with_cache.snapshot.tree, str(single))
    assert node is not None and node.size == len("changed")


#: Each exclusion option with a value that leaves something out of the ``tree`` fixture
#: (once it has a cache directory tag in d0 and a .nobackup marker in d1/e0).
EXCLUSION_OPTIONS: dict[str, dict[str, object]] = {
    "exclude_caches": {"exclude_caches": True},
    "exclude_if_present": {"exclude_if_present": [".nobackup"]},
    "exclude_larger_than": {"exclude_larger_than": 101},
    "iexcludes": {"iexcludes": ["*/F1.TXT"]},
    "one_file_system": {"one_file_system": True},  # no mount below: the same files
}


@pytest.mark.parametrize("option", list(EXCLUSION_OPTIONS))
def test_other_exclusion_options_never_take_trees_remembered_under_others(
        repo: Repository, tree: Path, tmp_path: Path, option: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup with other exclusion options than the last one gives the tree of a fresh
    backup with those options; each option set remembers its directories in a file of its
    own (the cache's scope holds every exclusion rule), so neither spoils the other's."""
    (tree / "d0" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55")
    (tree / "d1" / "e0" / ".nobackup").touch()
    kw = EXCLUSION_OPTIONS[option]
    cache = tmp_path / "cache"
    dirs = cache / repo.config.id / "dirs"
    plain = _backup(repo, tree, cache)
    assert _subtree(repo, _backup(repo, tree, cache), tree) == _subtree(repo, plain, tree)

    flagged = _backup(repo, tree, cache, **kw)
    fresh = _backup(repo, tree, None, force=True, **kw)
    assert _subtree(repo, flagged, tree) == _subtree(repo, fresh, tree)
    assert flagged.stats.total_files_processed == fresh.stats.total_files_processed
    assert flagged.stats.total_bytes_processed == fresh.stats.total_bytes_processed
    if option != "one_file_system":
        assert _subtree(repo, flagged, tree) != _subtree(repo, plain, tree)
    assert len(list(dirs.iterdir())) == 2, "one remembered-directories file per option set"

    # Back and forth: each option set finds its own remembered trees again.
    again = _backup(repo, tree, cache)
    assert _subtree(repo, again, tree) == _subtree(repo, plain, tree)
    loads = _count_tree_loads(monkeypatch)
    flagged_again = _backup(repo, tree, cache, **kw)
    assert _subtree(repo, flagged_again, tree) == _subtree(repo, flagged, tree)
    assert len(loads) <= len(tree.parts), "the option set's own trees were reused"
