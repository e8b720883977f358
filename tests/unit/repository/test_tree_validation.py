"""Tree blobs from a hostile or damaged repository: whatever the node fields hold (wrong JSON
types, extremes, nesting), decoding gives nodes or a named IntegrityError — never another
exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.tree import Node, decode_tree

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", "file", "dir", "symlink", "a1" * 32, "not hex", "2024-01-01T00:00:00Z",
                     "Zm9v", "\ud800"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10)
FIELDS = ["name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group",
          "inode", "device_id", "size", "links", "linktarget", "linktarget_raw", "content",
          "subtree", "extended_attributes", "generic_attributes", "device", "error"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8), max_size=4),
       st.one_of(st.none(), JSON_VALUES))
def test_any_tree_document_decodes_or_is_a_named_integrity_error(
        nodes: list[dict[str, Any]], wrapper_extra: Any) -> None:
    doc: Any = {"nodes": nodes} if wrapper_extra is None else wrapper_extra
    data = json.dumps(doc).encode("utf-8", "surrogatepass")
    try:
        decoded = decode_tree(data, "tree abc")
    except IntegrityError as exc:
        assert "tree abc" in str(exc)
        return
    assert all(isinstance(n, Node) for n in decoded)
    for n in decoded:
        assert isinstance(n.name, bytes) and isinstance(n.type, str)
