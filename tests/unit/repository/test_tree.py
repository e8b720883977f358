"""Tree JSON: Go-quoted names, Go ``encoding/json`` escaping, Go file modes, node order.

Expected strings of ``strconv.Quote`` and ``encoding/json`` are Go's documented behaviour,
written out by hand here.
"""

from __future__ import annotations

import base64
import json
import stat

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.repository import gojson
from airflow_backup.repository.timefmt import format_ns
from airflow_backup.repository.tree import Node, decode_tree, encode_tree, go_mode, posix_mode

FAST = settings(max_examples=150, deadline=None)

# ---- strategies -----------------------------------------------------------------------

tricky_chars = st.sampled_from(list('"\\\n\t\r\x00\x07\x7f<>&/ .é日本\u00a0\u200b\u2028\U0001f600'))
names = st.one_of(
    st.binary(min_size=1, max_size=24),
    st.text(min_size=1, max_size=24).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(tricky_chars, min_size=1, max_size=10).map(lambda cs: "".join(cs).encode()),
    st.lists(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"a", b'"', b"\\"]),
             min_size=1, max_size=8).map(b"".join),
)
ids = st.binary(min_size=32, max_size=32)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
times = st.builds(lambda ns, off: format_ns(ns, off * 60),
                  st.integers(-62_000_000_000 * 10**9, 250_000_000_000 * 10**9),
                  st.integers(-14 * 60, 14 * 60))
texts = st.text(max_size=12)


@st.composite
def nodes_with_name(draw: st.DrawFn, name: bytes) -> Node:
    ntype = draw(st.sampled_from(
        ["file", "dir", "symlink", "dev", "chardev", "fifo", "socket", "irregular"]))
    node = Node(
        name=name, type=ntype, mode=draw(u32), mtime=draw(times), atime=draw(times),
        ctime=draw(times), uid=draw(u32), gid=draw(u32), user=draw(texts), group=draw(texts),
        inode=draw(u64), links=draw(u64), error=draw(texts),
    )
    if ntype == "file":
        node.content = draw(st.lists(ids, max_size=4))
        node.size = draw(u64)
        node.device_id = draw(u64)
    elif ntype == "dir":
        node.subtree = draw(ids)
    elif ntype == "symlink":
        node.linktarget = draw(names)
    elif ntype in ("dev", "chardev"):
        node.device = draw(u64)
    if draw(st.booleans()):
        node.extended_attributes = [
            {"name": draw(st.text(min_size=1, max_size=8)),
             "value": base64.b64encode(draw(st.binary(max_size=8))).decode()}]
    if draw(st.booleans()):
        node.generic_attributes = {"windows.file_attributes": "IAAAAA=="}
    return node


@st.composite
def node_lists(draw: st.DrawFn) -> list[Node]:
    sorted_names = sorted(draw(st.lists(names, unique=True, max_size=8)))
    return [draw(nodes_with_name(n)) for n in sorted_names]




# ---- tree round trip ------------------------------------------------------------------


@FAST
@given(nodes=node_lists())
def test_tree_round_trip(nodes: list[Node]) -> None:
    blob = encode_tree(nodes)
    assert blob.startswith(b'{"nodes":[') and blob.endswith(b"]}\n")
    decoded = decode_tree(blob, "tree")
    assert decoded == nodes
    assert encode_tree(decoded) == blob
    # Every field name is one of restic's, "content" is always present.
    for obj in json.loads(blob)["nodes"]:
        assert "content" in obj and "name" in obj and "type" in obj


@FAST
@given(nodes=node_lists())
def test_kept_json_nodes_encode_exactly_as_their_nodes(nodes: list[Node]) -> None:
    """A parent's unchanged file nodes are written back from their JSON: same bytes as the
    nodes would give, alone or mixed with Node objects. (Only file nodes are kept; a symlink
    target that is not UTF-8 would come back with U+FFFD written plainly, not escaped.)"""
    nodes = [n for n in nodes if not n.linktarget]
    blob = encode_tree(nodes)
    raw = gojson.loads(blob)["nodes"]
    assert encode_tree(raw) == blob
    mixed = [n if i % 2 else raw[i] for i, n in enumerate(nodes)]
    assert encode_tree(mixed) == blob
    if len(raw) > 1:
        with pytest.raises(ValueError):
            encode_tree(list(reversed(raw)))


@pytest.mark.parametrize("name", [b"x\\b", b"C:\\foo", b"\\f"])
def test_tree_round_trip_names_with_backslash_b_or_f(name: bytes) -> None:
    nodes = [Node(name=name, type="file", content=[])]
    assert decode_tree(encode_tree(nodes), "tree") == nodes


def test_name_with_backspace_json_matches_go() -> None:
    # strconv.Quote(b"a\x08b") == `a\bb`; encoding/json then escapes the backslash.
    blob = encode_tree([Node(name=b"a\x08b", type="fifo")])
    assert b'"name":"a\\\\bb"' in blob
    assert decode_tree(blob, "t")[0].name == b"a\x08b"


@pytest.mark.parametrize("name", [b"a\x08b", b"\x0c", b"\\", b"\\\\u0008"])
def test_names_with_control_bytes_and_backslashes_round_trip(name: bytes) -> None:
    nodes = [Node(name=name, type="file", content=[])]
    assert decode_tree(encode_tree(nodes), "tree") == nodes


@FAST
@given(s=st.text(max_size=20))
@example(s="C:\\backup")
@example(s="\\f")
def test_gojson_dumps_round_trips_any_string(s: str) -> None:
    assert json.loads(gojson.dumps(s)) == s


@pytest.mark.parametrize("raw", [
    b'{"name":"\\ud800x"}',          # a lone surrogate escape: orjson refuses it
    b'{"inode":18446744073709551615,"uid":-9223372036854775808}',  # Go's extremes
    b'{"x":NaN,"y":-Infinity}',
    b'{"a":1,"a":2}',
    '{"name":"caf\u00e9"}',
    b'[{"id":"ab","blobs":null}]',
])
def test_gojson_loads_accepts_what_the_standard_parser_does(raw: bytes | str) -> None:
    got, want = gojson.loads(raw), json.loads(raw)
    assert json.dumps(got) == json.dumps(want)  # NaN != NaN, so compare the text


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":1}x', b"\xff", b'{"a":\x01}'])
def test_gojson_loads_rejects_what_the_standard_parser_does(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        gojson.loads(raw)


def test_empty_tree() -> None:
    assert encode_tree([]) == b'{"nodes":[]}\n'
    assert decode_tree(b'{"nodes":null}\n', "t") == []
    assert decode_tree(b'{"nodes":[],"future_key":1}', "t") == []


def test_exact_bytes_of_a_file_node_in_go_field_order() -> None:
    blob_id = bytes(range(32))
    node = Node(name=b"a<b>.txt", type="file", mode=0o644, mtime="2024-01-02T03:04:05.1Z",
                atime="2024-01-02T03:04:05.1Z", ctime="2024-01-02T03:04:05.123456789+02:00",
                uid=1000, gid=100, user="alice", group="users", inode=42, size=5, links=1,
                content=[blob_id])
    expected = (
        '{"nodes":[{"name":"a\\u003cb\\u003e.txt","type":"file","mode":420,'
        '"mtime":"2024-01-02T03:04:05.1Z","atime":"2024-01-02T03:04:05.1Z",'
        '"ctime":"2024-01-02T03:04:05.123456789+02:00","uid":1000,"gid":100,'
        '"user":"alice","group":"users","inode":42,"size":5,"links":1,'
        f'"content":["{blob_id.hex()}"]}}]}}\n'
    ).encode()
    assert encode_tree([node]) == expected


def test_dir_and_symlink_nodes() -> None:
    sub = b"\x01" * 32
    nodes = [
        Node(name=b"d", type="dir", mode=go_mode(stat.S_IFDIR | 0o755), subtree=sub),
        Node(name=b"l", type="symlink", mode=go_mode(stat.S_IFLNK | 0o777), linktarget=b"d"),
    ]
    objs = json.loads(encode_tree(nodes))["nodes"]
    assert objs[0]["content"] is None and objs[0]["subtree"] == sub.hex()
    assert objs[0]["mode"] == 2147484141
    assert objs[1]["mode"] == 134218239 and objs[1]["linktarget"] == "d"
    assert "linktarget_raw" not in objs[1] and "subtree" not in objs[1]
    assert "uid" in objs[1] and "size" not in objs[1]  # uid is not omitempty, size is


def test_non_utf8_symlink_target_is_kept_raw() -> None:
    node = Node(name=b"l", type="symlink", linktarget=b"to\xff\xfe")
    obj = node.to_json()
    assert base64.b64decode(obj["linktarget_raw"]) == b"to\xff\xfe"
    assert decode_tree(encode_tree([node]), "t")[0].linktarget == b"to\xff\xfe"


def test_non_utf8_symlink_target_json_matches_go() -> None:
    node = Node(name=b"l", type="symlink", linktarget=b"a\xe6\x97")
    assert b'"linktarget":"a\\ufffd\\ufffd"' in encode_tree([node])


def test_unknown_node_keys_are_preserved() -> None:
    raw = (b'{"nodes":[{"name":"f","type":"file","mtime":"2024-01-02T03:04:05Z",'
           b'"atime":"2024-01-02T03:04:05Z","ctime":"2024-01-02T03:04:05Z","uid":0,"gid":0,'
           b'"content":[],"from_the_future":{"x":1}}]}\n')
    [node] = decode_tree(raw, "t")
    assert node.extra == {"from_the_future": {"x": 1}}
    assert encode_tree([node]) == raw


@pytest.mark.parametrize("order", [
    [b"b", b"a"], [b"a", b"a"], [b"a", b"B"], [b"\xff", b"z"], [b"a", b"c", b"b"]])
def test_encode_tree_rejects_unsorted_or_duplicate_names(order: list[bytes]) -> None:
    with pytest.raises(ValueError):
        encode_tree([Node(name=n, type="fifo") for n in order])


def test_encode_tree_orders_bytewise() -> None:
    names = [b"B", b"a", b"z", b"\xc3\xa9", b"\xff"]  # byte order, not Unicode or case order
    raw = encode_tree([Node(name=n, type="fifo") for n in names])
    assert [n.name for n in decode_tree(raw, "t")] == names


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"nodes":[{"type":"file"}]}',
                                 b'{"nodes":[{"name":"x","type":"file","content":["zz"]}]}',
                                 b'{"nodes":"x"}'])
def test_malformed_trees_are_rejected(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match="tree 1234"):
        decode_tree(raw, "tree 1234")


@pytest.mark.parametrize("node", [
    '{"name":5,"type":"file"}', '{"name":"x","type":1}', '{"name":"x","type":"file","size":"12"}',
    '{"name":"x","type":"file","mtime":5}', '{"name":"x","type":"file","user":["u"]}',
    '{"name":"x","type":"file","content":"aa"}', '{"name":"x","type":"file","content":[1]}',
    '{"name":"x","type":"dir","subtree":7}', '{"name":"x","type":"symlink","linktarget":{"a":1}}',
    '{"name":"x","type":"file","extended_attributes":[1]}',
    '{"name":"x","type":"file","extended_attributes":{"name":"a"}}',
    '{"name":"x","type":"file","generic_attributes":[]}',
])
def test_node_fields_of_the_wrong_json_type_are_rejected(node: str) -> None:
    """restic's decoder refuses a field of the wrong type; so do we, rather than carry it."""
    with pytest.raises(IntegrityError, match="tree 1234"):
        decode_tree(b'{"nodes":[' + node.encode() + b"]}", "tree 1234")


def test_null_node_fields_are_zero_values_as_in_go() -> None:
    raw = (b'{"nodes":[{"name":"x","type":"file","mode":null,"mtime":null,"uid":null,'
           b'"user":null,"size":null,"linktarget":null,"extended_attributes":null,'
           b'"generic_attributes":null,"content":null,"subtree":null,"error":null}]}')
    assert decode_tree(raw, "t") == [Node(name=b"x", type="file")]


# ---- strconv.Quote --------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=40) | names)
def test_go_quote_round_trip(raw: bytes) -> None:
    quoted = gojson.go_quote_name(raw)
    assert gojson.go_unquote_name(quoted) == raw
    assert "\n" not in quoted and '"' not in quoted.replace('\\"', "")


@pytest.mark.parametrize(("raw", "quoted"), [
    (b'a"b\\c\n', 'a\\"b\\\\c\\n'),
    (b"\xff", "\\xff"),
    (b"\x7f", "\\x7f"),
    ("日本".encode(), "日本"),
    ("\u00a0".encode(), "\\u00a0"),
    (b"\x07\x08\x0c\r\t\x0b", "\\a\\b\\f\\r\\t\\v"),
    (b"\x00\x1b", "\\x00\\x1b"),
    (b"'", "'"),
    ("\u200b".encode(), "\\u200b"),
    ("\ue000".encode(), "\\ue000"),
    ("\U000f0000".encode(), "\\U000f0000"),
    ("\U0001f600".encode(), "\U0001f600"),
    (b"\xc3", "\\xc3"),
    (b"\xc3(", "\\xc3("),
    (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
    (b"\xc0\xaf", "\\xc0\\xaf"),
    (b"\xf8\x88\x80\x80\x80", "\\xf8\\x88\\x80\\x80\\x80"),
    (b"plain name.txt", "plain name.txt"),
])
def test_go_quote_known_values(raw: bytes, quoted: str) -> None:
    assert gojson.go_quote_name(raw) == quoted
    assert gojson.go_unquote_name(quoted) == raw


def test_go_unquote_reads_octal_and_single_quote_escapes() -> None:
    assert gojson.go_unquote_name("\\101\\'") == b"A'"


# ---- Go encoding/json -----------------------------------------------------------------


@pytest.mark.parametrize(("obj", "expected"), [
    ("<a&b>", b'"\\u003ca\\u0026b\\u003e"'),
    ({"k<": ["x>"]}, b'{"k\\u003c":["x\\u003e"]}'),
    ("\u2028\u2029", b'"\\u2028\\u2029"'),
    ("é日本\U0001f600", '"é日本\U0001f600"'.encode()),
    ("\x00\x1f\n\t\r", b'"\\u0000\\u001f\\n\\t\\r"'),
    ('"\\/', b'"\\"\\\\/"'),
    ({"b": 1, "a": [True, None, 1.5]}, b'{"b":1,"a":[true,null,1.5]}'),
])
def test_gojson_dumps_like_go(obj: object, expected: bytes) -> None:
    assert gojson.dumps(obj) == expected


def test_gojson_control_bytes_b_and_f_survive() -> None:
    # Go < 1.22 writes \u0008/\u000c, Go >= 1.22 writes \b/\f; either must decode back.
    assert json.loads(gojson.dumps("\x08\x0c")) == "\x08\x0c"


@FAST
@given(s=st.text(max_size=30))
def test_gojson_dumps_is_valid_json_with_no_raw_html_chars(s: str) -> None:
    out = gojson.dumps({"s": s})
    assert json.loads(out) == {"s": s}
    assert not any(c in out for c in b"<>&")
    assert out.startswith(b'{"s":"') and out.endswith(b'"}')


# ---- Go file modes --------------------------------------------------------------------

DIR, SYMLINK, DEVICE, PIPE, SOCKET, SETUID, SETGID, CHARDEV, STICKY = (
    1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24, 1 << 23, 1 << 22, 1 << 21, 1 << 20)


@pytest.mark.parametrize(("st_mode", "expected"), [
    (stat.S_IFREG | 0o644, 0o644),
    (stat.S_IFDIR | 0o755, DIR | 0o755),
    (stat.S_IFLNK | 0o777, 134218239),
    (stat.S_IFREG | 0o4755, SETUID | 0o755),
    (stat.S_IFREG | 0o2755, SETGID | 0o755),
    (stat.S_IFDIR | 0o1777, DIR | STICKY | 0o777),
    (stat.S_IFREG | 0o7000, SETUID | SETGID | STICKY),
    (stat.S_IFIFO | 0o600, PIPE | 0o600),
    (stat.S_IFSOCK | 0o755, SOCKET | 0o755),
    (stat.S_IFCHR | 0o620, DEVICE | CHARDEV | 0o620),
    (stat.S_IFBLK | 0o660, DEVICE | 0o660),
])
def test_go_mode(st_mode: int, expected: int) -> None:
    assert go_mode(st_mode) == expected
    assert posix_mode(expected) == stat.S_IMODE(st_mode)


@given(perm=st.integers(0, 0o7777),
       fmt=st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO,
                            stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK]))
def test_posix_mode_inverts_go_mode(perm: int, fmt: int) -> None:
    mode = go_mode(fmt | perm)
    assert posix_mode(mode) == perm
    assert mode & 0o777 == perm & 0o777
    assert (mode & DIR != 0) == (fmt == stat.S_IFDIR)
