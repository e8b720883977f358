"""The shortcut that keeps a parent's file node (its JSON) whole must agree with building it
afresh."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from airflow_backup.archiver.nodes import node_from_stat, same_file_node
from airflow_backup.repository.tree import Node, encode_tree


def _fresh(path: Path, with_atime: bool = False) -> dict[str, Any]:
    node = node_from_stat(path.name.encode(), os.fsencode(path), os.lstat(path), with_atime)
    node.content = [b"\0" * 32]  # as a parent's saved file node has
    return json.loads(encode_tree([node]))["nodes"][0]  # type: ignore[no-any-return]


def test_kept_node_equals_a_fresh_one_until_anything_changes(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    old = _fresh(f)
    assert same_file_node(old, os.lstat(f))
    assert Node.from_json(_fresh(f)) == Node.from_json(old)  # what the shortcut claims

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
    assert not same_file_node(node.to_json(), os.lstat(d))
    no_content = _fresh(f)
    no_content["content"] = None
    assert not same_file_node(no_content, os.lstat(f))
