"""The shortcut that keeps a parent's file node whole must agree with building it afresh."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_backup.archiver.nodes import node_from_stat, same_file_node
from airflow_backup.repository.tree import Node


def _fresh(path: Path, with_atime: bool = False) -> Node:
    node = node_from_stat(path.name.encode(), os.fsencode(path), os.lstat(path), with_atime)
    node.content = [b"\0" * 32]  # as a parent's saved file node has
    return node


def test_kept_node_equals_a_fresh_one_until_anything_changes(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    old = _fresh(f)
    assert same_file_node(old, os.lstat(f))
    fresh = _fresh(f)
    assert fresh == old  # what the shortcut claims

    os.chmod(f, 0o600)  # mode (and ctime)
    assert not same_file_node(old, os.lstat(f))
    old = _fresh(f)
    os.link(f, tmp_path / "g")  # link count, device id
    assert not same_file_node(old, os.lstat(f))
    old = _fresh(f)
    os.utime(f, ns=(1, 2))  # mtime
    assert not same_file_node(old, os.lstat(f))
    old = _fresh(f)
    f.write_bytes(b"other")  # size
    assert not same_file_node(old, os.lstat(f))


def test_never_for_other_types_or_real_access_times(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    os.utime(f, ns=(10**18, 2 * 10**18))
    assert not same_file_node(_fresh(f, with_atime=True), os.lstat(f))
    assert not same_file_node(None, os.lstat(f))
    d = tmp_path / "d"
    d.mkdir()
    node = node_from_stat(b"d", os.fsencode(d), os.lstat(d))
    assert not same_file_node(node, os.lstat(d))
    no_content = _fresh(f)
    no_content.content = None
    assert not same_file_node(no_content, os.lstat(f))
