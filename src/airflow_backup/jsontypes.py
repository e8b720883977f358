"""JSON documents as types: what ``json.loads`` returns and ``json.dumps`` accepts.

Snapshot files, tree blobs, index files and source metadata are JSON documents whose shape is
fixed by restic's format or by our own metadata schema. They are typed as :data:`JSONObject`
rather than ``dict[str, Any]`` so that mypy makes every reader narrow a value before using it.
Results that cross layers are dataclasses, not JSON objects; these aliases are for documents.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["JSONObject", "JSONValue"]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = dict[str, "JSONValue"]
