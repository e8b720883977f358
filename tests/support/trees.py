"""Build file trees full of edge cases, and compare two trees attribute by attribute.

``make_tricky_tree`` builds a deterministic tree: two builds with the same parameters
under two different roots compare equal with ``compare_trees`` (content, names, modes,
owners, nanosecond mtimes, symlink targets, hardlink structure), so a test can build a
"reference" and a "copy" without any copying tool.

``compare_trees`` works on bytes paths (``os.fsencode``) and ``os.lstat`` throughout, so
names that are not valid UTF-8 are compared exactly, symlinks are never followed and
fifos are never opened.

What restic 0.14 reproduces of this tree (as root; checked by
``tests/interop/test_tree_support_with_restic.py``): names (non-UTF-8 included), types
(fifo included), modes, owners, nanosecond mtimes of files, directories, symlinks and
the root, contents, symlink targets that are valid UTF-8, and hardlinks.  It does not
reproduce:

* symlink targets that are not valid UTF-8: restic < 0.16 stores them with U+FFFD in
  place of the invalid bytes (restic issue #3311); ``lossy_symlink_targets=True``
  accepts exactly that mangling;
* atimes: restic stores atime = mtime unless ``backup --with-atime``, and reading a
  tree (backup, this comparator's ``readlink``) changes atimes on a relatime mount;
  hence ``check_atime=False`` by default.

The other switches exist for engines or environments that cannot do the same
(a non-root restore cannot chown).
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "OTHER_GID",
    "OTHER_UID",
    "TreeSpec",
    "compare_trees",
    "format_ns",
    "iter_tree",
    "make_tricky_tree",
    "restored_path",
    "set_mtime_ns",
]

#: uid/gid given to a few entries when the tree is built as root.
OTHER_UID = 12345
OTHER_GID = 12345

#: Mtimes in the tree lie between these (2017-07-14 .. 2020-09-13), nanoseconds non-zero.
_MTIME_BASE_S = 1_500_000_000
_MTIME_SPAN_S = 100_000_000

#: Targets of the absolute symlinks.  They are fixed (not inside the root) so that two
#: builds under different roots are identical.
ABSOLUTE_LINK_TARGET = b"/dev/null"
ABSOLUTE_DANGLING_TARGET = b"/nonexistent/airflow-backup-\xff/dangling"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class TreeSpec:
    """What ``make_tricky_tree`` built.  Paths are absolute and under ``root``.

    Paths that hold non-UTF-8 names are ``Path`` objects carrying surrogate escapes;
    ``os.fsencode(path)`` gives the exact bytes back.
    """

    root: Path
    seed: int
    big_file_size: int
    small_files: int
    depth: int
    #: True when some entries were chowned to OTHER_UID:OTHER_GID (only done as root).
    chowned: bool
    big_file: Path
    #: One inode, three names (two in one directory, one in a subdirectory).
    hardlinks: tuple[Path, ...]
    fifo: Path | None
    #: Keys: "relative", "relative_dir", "absolute", "dangling", "absolute_dangling",
    #: "non_utf8_target".
    symlinks: dict[str, Path]
    deep_file: Path
    deep_dir: Path
    empty_file: Path
    empty_dir: Path
    private_dir: Path
    #: Files whose mode was set explicitly, keyed by that mode.
    moded_files: dict[int, Path]
    non_utf8_file: Path
    unicode_file: Path
    #: Entries chowned to OTHER_UID:OTHER_GID (empty unless ``chowned``).
    chowned_paths: tuple[Path, ...] = ()
    #: Regular files that are not hardlinked and can be modified freely by a test.
    plain_files: tuple[Path, ...] = field(default=())

    def rel(self, path: Path) -> Path:
        """``path`` relative to ``root``."""
        return path.relative_to(self.root)


def restored_path(target: Path, source: Path) -> Path:
    """Where restic (and a restic-compatible restore) puts ``source`` under ``target``.

    ``restic backup /a/b`` followed by ``restic restore latest --target T`` recreates
    the absolute path below T: ``T/a/b``.
    """
    source = source.absolute()
    return target / source.relative_to(source.anchor)


# --------------------------------------------------------------------------- building


def _mtime_ns_for(rel: bytes, salt: str = "m") -> int:
    digest = hashlib.sha256(salt.encode() + b"\0" + rel).digest()
    seconds = _MTIME_BASE_S + int.from_bytes(digest[:8], "big") % _MTIME_SPAN_S
    nanos = 1 + int.from_bytes(digest[8:16], "big") % 999_999_999
    return seconds * 1_000_000_000 + nanos


def _write(path: bytes, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view[:_CHUNK])
            view = view[written:]
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _mkdir(path: bytes, mode: int = 0o755) -> None:
    os.mkdir(path)
    os.chmod(path, mode)


def _j(*parts: bytes) -> bytes:
    return os.path.join(*parts)


def make_tricky_tree(
    root: Path,
    *,
    big_file_size: int = 30 * 1024 * 1024,
    small_files: int = 1000,
    depth: int = 30,
    seed: int = 20240601,
    with_fifo: bool = True,
    chown: bool | None = None,
) -> TreeSpec:
    """Build the edge-case tree under ``root`` (created; must not exist or be empty).

    Contents (all deterministic for a given ``seed`` and parameters):

    * ``names/``: non-UTF-8 names (``latin1-\\xe9.txt``, a directory ``dir-\\xff\\xfe``),
      unicode and emoji names, names with a newline, a double quote, a backslash,
      leading/trailing/inner spaces, a 255-byte name;
    * ``empty/``: an empty file and an empty directory;
    * ``links/``: relative (to a file and to a dir), absolute, dangling, absolute
      dangling symlinks and one with a non-UTF-8 target;
    * ``hardlinks/``: one inode with three names (``a``, ``b``, ``sub/c``);
    * ``special/fifo``: a named pipe (``with_fifo``);
    * ``big/random.bin``: ``big_file_size`` seeded random bytes;
    * ``small/dNN/fNNNN.dat``: ``small_files`` files of 0..15 KiB over 10 directories;
    * ``deep/d00/.../d{depth-1}/bottom.txt``: ``depth`` nested directories;
    * ``modes/``: files with 0600, 0755, 0644 and a 0700 directory;
    * ``owned/``: a file, a directory and a symlink owned by 12345:12345 when ``chown``
      (default: when running as root);
    * every entry (files, dirs, symlinks, the fifo, the root) gets an mtime with a
      non-zero nanosecond part, and an atime that differs from it; directory times are
      set last, deepest first.
    """
    if chown is None:
        chown = os.geteuid() == 0
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    os.chmod(root, 0o755)
    r = os.fsencode(root)

    def p(rel: bytes) -> Path:
        return Path(os.fsdecode(_j(r, rel)))

    plain: list[Path] = []

    # names/
    names = _j(r, b"names")
    _mkdir(names)
    name_list = [
        b"latin1-\xe9.txt",
        "日本語-ünïcödé.txt".encode(),
        "emoji-🦀🐍✨.txt".encode(),
        b"new\nline.txt",
        b'double"quote.txt',
        b"back\\slash.txt",
        b"  spaces  inside and around  ",
        b"-leading-dash",
        b"." + b"x" * 254,  # 255 bytes, a hidden file at that
        b"\x01control\x7f.txt",
    ]
    for i, name in enumerate(name_list):
        _write(_j(names, name), b"file %d: " % i + name + b"\n")
        plain.append(p(_j(b"names", name)))
    _mkdir(_j(names, b"dir-\xff\xfe"))
    _write(_j(names, b"dir-\xff\xfe", "inside-ü.txt".encode()), b"inside a non-UTF-8 dir\n")
    _mkdir(_j(names, "résumé dir 📁".encode()))
    _write(_j(names, "résumé dir 📁".encode(), b"x"), b"x")

    # empty/
    _mkdir(_j(r, b"empty"))
    _write(_j(r, b"empty", b"empty-file"), b"")
    _mkdir(_j(r, b"empty", b"empty-dir"))

    # links/
    links = _j(r, b"links")
    _mkdir(links)
    _write(_j(links, b"target.txt"), b"symlink target\n")
    plain.append(p(b"links/target.txt"))
    _mkdir(_j(links, b"target-dir"))
    _write(_j(links, b"target-dir", b"in-dir.txt"), b"in target dir\n")
    symlinks = {
        "relative": (b"rel-link", b"target.txt"),
        "relative_dir": (b"rel-dir-link", b"target-dir"),
        "absolute": (b"abs-link", ABSOLUTE_LINK_TARGET),
        "dangling": (b"dangling-link", b"does-not-exist.txt"),
        "absolute_dangling": (b"abs-dangling-link", ABSOLUTE_DANGLING_TARGET),
        "non_utf8_target": (b"non-utf8-target-link", b"../names/latin1-\xe9.txt"),
    }
    for name, target in symlinks.values():
        os.symlink(target, _j(links, name))

    # hardlinks/
    hl = _j(r, b"hardlinks")
    _mkdir(hl)
    _mkdir(_j(hl, b"sub"))
    _write(_j(hl, b"a"), b"one inode, three names\n" * 100)
    os.link(_j(hl, b"a"), _j(hl, b"b"))
    os.link(_j(hl, b"a"), _j(hl, b"sub", b"c"))

    # special/
    _mkdir(_j(r, b"special"))
    fifo: Path | None = None
    if with_fifo:
        os.mkfifo(_j(r, b"special", b"fifo"), 0o640)
        os.chmod(_j(r, b"special", b"fifo"), 0o640)
        fifo = p(b"special/fifo")

    # big/
    _mkdir(_j(r, b"big"))
    _write(_j(r, b"big", b"random.bin"), rng.randbytes(big_file_size))
    plain.append(p(b"big/random.bin"))

    # small/
    _mkdir(_j(r, b"small"))
    ndirs = 10
    for d in range(ndirs):
        _mkdir(_j(r, b"small", b"d%02d" % d))
    for i in range(small_files):
        size = rng.randint(0, 15 * 1024)
        if i % 3 == 0:  # compressible text
            line = b"small file %05d, line of text\n" % i
            data = (line * (size // len(line) + 1))[:size]
        else:
            data = rng.randbytes(size)
        _write(_j(r, b"small", b"d%02d" % (i % ndirs), b"f%04d.dat" % i), data)

    # deep/
    deep = _j(r, b"deep")
    _mkdir(deep)
    for level in range(depth):
        deep = _j(deep, b"d%02d" % level)
        _mkdir(deep)
    _write(_j(deep, b"bottom.txt"), b"at the bottom, %d levels down\n" % depth)
    deep_dir = Path(os.fsdecode(deep))

    # modes/
    modes = _j(r, b"modes")
    _mkdir(modes)
    moded: dict[int, Path] = {}
    for mode in (0o600, 0o755, 0o644, 0o640, 0o400):
        name = b"mode-%o" % mode
        _write(_j(modes, name), b"mode %o\n" % mode, mode)
        moded[mode] = p(_j(b"modes", name))
    _mkdir(_j(modes, b"private-0700"), 0o700)
    _write(_j(modes, b"private-0700", b"secret.txt"), b"secret\n", 0o600)

    # owned/
    owned = _j(r, b"owned")
    _mkdir(owned)
    _write(_j(owned, b"file"), b"owned by someone else\n")
    _mkdir(_j(owned, b"dir"))
    _write(_j(owned, b"dir", b"inner"), b"inner\n")
    os.symlink(b"file", _j(owned, b"link"))
    chowned_paths: list[Path] = []
    if chown:
        for rel in (b"file", b"dir", b"link"):
            os.lchown(_j(owned, rel), OTHER_UID, OTHER_GID)
            chowned_paths.append(p(_j(b"owned", rel)))

    _set_all_times(r)

    return TreeSpec(
        root=root,
        seed=seed,
        big_file_size=big_file_size,
        small_files=small_files,
        depth=depth,
        chowned=bool(chown),
        big_file=p(b"big/random.bin"),
        hardlinks=(p(b"hardlinks/a"), p(b"hardlinks/b"), p(b"hardlinks/sub/c")),
        fifo=fifo,
        symlinks={key: p(_j(b"links", name)) for key, (name, _t) in symlinks.items()},
        deep_file=Path(os.fsdecode(deep)) / "bottom.txt",
        deep_dir=deep_dir,
        empty_file=p(b"empty/empty-file"),
        empty_dir=p(b"empty/empty-dir"),
        private_dir=p(b"modes/private-0700"),
        moded_files=moded,
        non_utf8_file=p(_j(b"names", b"latin1-\xe9.txt")),
        unicode_file=p(_j(b"names", "日本語-ünïcödé.txt".encode())),
        chowned_paths=tuple(chowned_paths),
        plain_files=tuple(plain),
    )


def set_mtime_ns(path: Path | bytes, mtime_ns: int, atime_ns: int | None = None) -> None:
    """Set the times of ``path`` itself (never following a symlink)."""
    if atime_ns is None:
        atime_ns = os.lstat(path).st_atime_ns
    os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)


def _set_all_times(root: bytes) -> None:
    """Give every entry a deterministic mtime/atime: deepest first, the root last.

    Creating entries changes the mtime of their directory, so this runs after the
    whole tree exists.  Of the names of one hardlinked inode, the last one set wins
    (deterministically: the order only depends on the names).
    """

    def depth(rel: bytes) -> int:
        return rel.count(b"/") + 1 if rel else 0

    for rel, _st in sorted(iter_tree(root), key=lambda item: (-depth(item[0]), item[0])):
        set_mtime_ns(_j(root, rel) if rel else root, _mtime_ns_for(rel), _mtime_ns_for(rel, "a"))


def iter_tree(root: Path | str | bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield ``(relative bytes path, lstat)`` for ``root`` (as ``b""``) and everything in
    it, depth first, parents before children, names sorted bytewise.  Symlinks to
    directories are not entered.
    """
    broot = os.fsencode(root)

    def walk(rel_dir: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
        for name in sorted(os.listdir(_j(broot, rel_dir) if rel_dir else broot)):
            rel = _j(rel_dir, name) if rel_dir else name
            st = os.lstat(_j(broot, rel))
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                yield from walk(rel)

    yield b"", os.lstat(broot)
    yield from walk(b"")


# --------------------------------------------------------------------------- comparing


def _show(rel: bytes) -> str:
    """A one-line, unambiguous-enough rendering of a relative bytes path."""
    if not rel:
        return "'.'"
    text = rel.decode("utf-8", "backslashreplace")
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
    ):
        if test(mode):
            return name
    return f"unknown({stat.S_IFMT(mode):o})"


def _digest(path: bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _utf8_lossy(raw: bytes) -> bytes:
    """``raw`` with invalid UTF-8 replaced by U+FFFD, as Go's encoding/json does."""
    return raw.decode("utf-8", "replace").encode("utf-8")


def format_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ``seconds.nnnnnnnnn`` (as the differences show)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def compare_trees(
    expected: Path | str | bytes,
    actual: Path | str | bytes,
    *,
    check_atime: bool = False,
    check_owner: bool = True,
    check_symlink_mtime: bool = True,
    check_dir_mtime: bool = True,
    check_root: bool = True,
    check_hardlinks: bool = True,
    lossy_symlink_targets: bool = False,
) -> list[str]:
    """Return human-readable differences between two trees; ``[]`` means identical.

    Compared, using ``os.lstat`` on bytes paths (never following symlinks):

    * the set of names in every directory (names only on one side are reported once,
      without descending into them);
    * entry type (file, dir, symlink, fifo, socket, devices); on a type mismatch nothing
      else is compared for that entry;
    * permission bits (``S_IMODE``, so setuid/setgid/sticky too);
    * mtime in nanoseconds for every type: files, fifos, directories
      (``check_dir_mtime``) and symlinks (``check_symlink_mtime``);
    * atime in nanoseconds when ``check_atime`` (off by default: reading changes it);
    * uid and gid when ``check_owner``;
    * file content (size, then a streamed SHA-256), symlink targets (raw bytes), device
      numbers;
    * hardlink structure (``check_hardlinks``): names that share an inode in one tree
      must share one in the other; each broken or extra group is reported once.

    The roots themselves are compared too (type, mode, owner, mtime) unless
    ``check_root`` is false; their names are not.

    ``lossy_symlink_targets`` accepts, for a symlink whose expected target is not valid
    UTF-8, an actual target equal to the expected one with every invalid sequence
    replaced by U+FFFD, and nothing else.  That is what restic before 0.16 restores: its
    tree JSON had no ``linktarget_raw`` field (restic issue #3311, fixed in 0.16.0 by
    pull request #3802).  File *names* are not affected (restic quotes them).
    """
    diffs: list[str] = []
    exp_root, act_root = os.fsencode(expected), os.fsencode(actual)
    # (dev, ino) -> relative paths, for non-directories present on both sides.
    exp_inodes: dict[tuple[int, int], list[bytes]] = {}
    act_inodes: dict[tuple[int, int], list[bytes]] = {}

    def compare_entry(rel: bytes, est: os.stat_result, ast: os.stat_result) -> bool:
        """Compare attributes; return True when both are directories to descend into."""
        where = _show(rel)
        ekind, akind = _kind(est.st_mode), _kind(ast.st_mode)
        if ekind != akind:
            diffs.append(f"{where}: type differs: expected {ekind}, actual {akind}")
            return False
        if rel or check_root:
            if stat.S_IMODE(est.st_mode) != stat.S_IMODE(ast.st_mode):
                diffs.append(
                    f"{where}: mode differs: expected {stat.S_IMODE(est.st_mode):04o}, "
                    f"actual {stat.S_IMODE(ast.st_mode):04o}"
                )
            if check_owner and (est.st_uid, est.st_gid) != (ast.st_uid, ast.st_gid):
                diffs.append(
                    f"{where}: owner differs: expected {est.st_uid}:{est.st_gid}, "
                    f"actual {ast.st_uid}:{ast.st_gid}"
                )
            check_time = (ekind != "dir" or check_dir_mtime) and (
                ekind != "symlink" or check_symlink_mtime
            )
            if check_time and est.st_mtime_ns != ast.st_mtime_ns:
                diffs.append(
                    f"{where}: {ekind} mtime differs: expected {format_ns(est.st_mtime_ns)}, "
                    f"actual {format_ns(ast.st_mtime_ns)}"
                )
            if check_time and check_atime and est.st_atime_ns != ast.st_atime_ns:
                diffs.append(
                    f"{where}: {ekind} atime differs: expected {format_ns(est.st_atime_ns)}, "
                    f"actual {format_ns(ast.st_atime_ns)}"
                )
        epath = _j(exp_root, rel) if rel else exp_root
        apath = _j(act_root, rel) if rel else act_root
        if ekind == "file":
            if est.st_size != ast.st_size:
                diffs.append(
                    f"{where}: content differs: size expected {est.st_size}, actual {ast.st_size}"
                )
            elif (est.st_dev, est.st_ino) != (ast.st_dev, ast.st_ino) and _digest(epath) != _digest(
                apath
            ):
                diffs.append(f"{where}: content differs: same size {est.st_size}, other bytes")
        elif ekind == "symlink":
            etarget, atarget = os.readlink(epath), os.readlink(apath)
            lossy_ok = lossy_symlink_targets and atarget == _utf8_lossy(etarget)
            if etarget != atarget and not lossy_ok:
                diffs.append(
                    f"{where}: symlink target differs: expected {etarget!r}, actual {atarget!r}"
                )
        elif ekind in ("chardev", "blockdev") and est.st_rdev != ast.st_rdev:
            diffs.append(
                f"{where}: device differs: expected {os.major(est.st_rdev)}:"
                f"{os.minor(est.st_rdev)}, actual {os.major(ast.st_rdev)}:"
                f"{os.minor(ast.st_rdev)}"
            )
        if ekind != "dir" and rel:
            exp_inodes.setdefault((est.st_dev, est.st_ino), []).append(rel)
            act_inodes.setdefault((ast.st_dev, ast.st_ino), []).append(rel)
        return ekind == "dir"

    stack: list[bytes] = []
    if compare_entry(b"", os.lstat(exp_root), os.lstat(act_root)):
        stack.append(b"")
    while stack:
        rel_dir = stack.pop()
        edir = _j(exp_root, rel_dir) if rel_dir else exp_root
        adir = _j(act_root, rel_dir) if rel_dir else act_root
        enames, anames = set(os.listdir(edir)), set(os.listdir(adir))
        for name in sorted(enames - anames):
            diffs.append(f"{_show(_j(rel_dir, name))}: only in expected")
        for name in sorted(anames - enames):
            diffs.append(f"{_show(_j(rel_dir, name))}: only in actual")
        for name in sorted(enames & anames, reverse=True):
            rel = _j(rel_dir, name) if rel_dir else name
            if compare_entry(rel, os.lstat(_j(exp_root, rel)), os.lstat(_j(act_root, rel))):
                stack.append(rel)

    if check_hardlinks:
        diffs.extend(_compare_hardlinks(exp_inodes, act_inodes))
    return diffs


def _compare_hardlinks(
    exp_inodes: dict[tuple[int, int], list[bytes]],
    act_inodes: dict[tuple[int, int], list[bytes]],
) -> list[str]:
    exp_group = {rel: frozenset(g) for g in exp_inodes.values() for rel in g}
    act_group = {rel: frozenset(g) for g in act_inodes.values() for rel in g}
    diffs: list[str] = []
    reported: set[bytes] = set()
    for rel in sorted(exp_group):
        if rel in reported or exp_group[rel] == act_group[rel]:
            continue
        # Everything connected to this path through either tree's links, reported once.
        component: set[bytes] = set()
        todo = [rel]
        while todo:
            cur = todo.pop()
            if cur in component:
                continue
            component.add(cur)
            todo.extend(exp_group[cur] | act_group[cur])
        reported |= component

        diffs.append(
            "hardlinks differ: expected "
            f"{_render_groups(exp_group, component)}, actual {_render_groups(act_group, component)}"
        )
    return diffs


def _render_groups(groups: dict[bytes, frozenset[bytes]], component: set[bytes]) -> str:
    parts = {tuple(sorted(groups[c])) for c in component}
    return " | ".join("[" + ", ".join(_show(x) for x in part) + "]" for part in sorted(parts))
