"""Deterministic mixed benchmark dataset, and the mutation pass applied to it.

The tree (``size`` bytes in total, all derived from ``seed``):

* 40 % incompressible binary, in files of 10 MiB (``binary/``);
* 40 % compressible text, in files of 2 MiB (``text/``): log lines, CSV rows and prose built
  from a seeded vocabulary; zstd level 3 shrinks it about 4x, roughly like real logs;
* 20 % small files of 1-15 KiB (about 26,000 for 1 GiB, scaled with ``size``), text and
  binary, about 50 to a directory in two levels of nested directories (``small/``).

The mutation pass inserts 1-4 KiB into the middle of 5 % of the files of each kind (so that
content-defined chunking matters).  It is done in place, and undone in place by cutting the
inserted bytes out again; a journal file makes an interrupted run recover on the next one.

Generated trees are cached under ``bench/data/`` keyed by size, seed and generator version.
Run ``python bench/dataset.py --size 64M`` to generate one on its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import operator
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GENERATOR_VERSION = 1
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BINARY_SHARE = 0.40
TEXT_SHARE = 0.40
BINARY_FILE_SIZE = 10 * MiB
TEXT_FILE_SIZE = 2 * MiB
SMALL_MIN, SMALL_MAX = 1 * KiB, 15 * KiB
SMALL_PER_DIR = 50
MUTATED_SHARE = 0.05
INSERT_MIN, INSERT_MAX = 1 * KiB, 4 * KiB

MANIFEST = "manifest.json"
JOURNAL = "mutation-journal.json"
POOL_LINES = 20_000

_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "ex", "qu", "dat", "flow",
    "sch", "ed", "task", "run", "job", "ing", "er", "ion", "st", "air", "pipe", "load", "sync",
    "dag", "s3", "pg", "etl", "tmp", "usr", "id", "key", "val", "max", "min", "cnt", "log",
)
_LEVELS = ("INFO",) * 8 + ("DEBUG",) * 4 + ("WARNING", "ERROR")
_TEXT_KINDS = ("log", "csv", "txt")


@dataclass(frozen=True)
class FileEntry:
    """One file of the dataset: path relative to the tree, size, kind (binary/text/small)."""

    path: str
    size: int
    kind: str


@dataclass(frozen=True)
class Mutation:
    """An insertion of ``length`` bytes at ``offset`` into the file at ``path``."""

    path: str
    offset: int
    length: int


@dataclass
class Dataset:
    """A generated tree and what it holds."""

    root: Path
    size: int
    seed: int
    files: list[FileEntry]
    stats: dict[str, Any]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def parse_size(text: str) -> int:
    """Parse ``1G``, ``256M``, ``512K``, ``1GiB`` or a plain byte count (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in "KMGT" else t
    try:
        value = int(float(number) * mult)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 1G, 256M)") from None
    if value < MiB:
        raise ValueError(f"size {text!r} is below the 1M minimum")
    return value


def format_size(n: int) -> str:
    """The shortest exact spelling of ``n`` bytes in binary units (``1G``, ``384M``)."""
    for unit, mult in (("G", GiB), ("M", MiB), ("K", KiB)):
        if n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


# --------------------------------------------------------------------------- text content


class _TextSource:
    """Pools of line fragments from a seeded vocabulary; files are random pairings of them.

    Joining a random prefix with a random suffix keeps every 2 MiB file distinct (no
    cross-file deduplication) while repeating fragments like real logs do.
    """

    def __init__(self, rng: random.Random) -> None:
        vocab: set[str] = set()
        while len(vocab) < 4000:
            vocab.add("".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))))
        words = sorted(vocab)
        cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words))))
        self.pools = {kind: self._pool(rng, kind, words, cum) for kind in _TEXT_KINDS}

    @staticmethod
    def _pool(
        rng: random.Random, kind: str, words: list[str], cum: list[float]
    ) -> tuple[list[str], list[str]]:
        w = rng.choices(words, cum_weights=cum, k=POOL_LINES * 12)
        heads: list[str] = []
        tails: list[str] = []
        t = 1_700_000_000.0
        for i in range(POOL_LINES):
            ws = w[i * 12 : i * 12 + 12]
            k = rng.randint(3, 9)
            if kind == "log":
                t += rng.random() * 3
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
                heads.append(f"{stamp}.{rng.randint(0, 999):03d}Z {rng.choice(_LEVELS)} "
                             f"[{ws[0]}.{ws[1]}] ")
                tails.append(f"{' '.join(ws[2:2 + k])} dag_id={ws[11]} "
                             f"try={rng.randint(1, 3)} duration={rng.random() * 100:.3f}s\n")
            elif kind == "csv":
                heads.append(f"{rng.randint(1, 10**7)},{ws[0]},{ws[1]} {ws[2]},")
                tails.append(f"{rng.randint(0, 99999)},{rng.random() * 1000:.2f},"
                             f"{rng.getrandbits(32):08x},{rng.choice(('true', 'false'))}\n")
            else:
                heads.append(" ".join(ws[:k]).capitalize() + " ")
                tails.append(" ".join(ws[k:]) + (".\n" if rng.random() < 0.3 else ". "))
        return heads, tails

    def text(self, rng: random.Random, kind: str, size: int) -> bytes:
        """``size`` bytes of ASCII text of the given kind."""
        heads, tails = self.pools[kind]
        n = size // 60 + 16
        out: list[str] = []
        length = 0
        while length < size:
            chunk = "".join(map(operator.add, rng.choices(heads, k=n), rng.choices(tails, k=n)))
            out.append(chunk)
            length += len(chunk)
        return "".join(out)[:size].encode("ascii")


# --------------------------------------------------------------------------- layout


def _split(total: int, piece: int) -> list[int]:
    """Split ``total`` bytes into about ``total / piece`` near-equal sizes (at least one)."""
    count = max(1, round(total / piece))
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def plan_files(size: int, seed: int) -> list[FileEntry]:
    """The deterministic list of files (paths and sizes) of a dataset."""
    binary = int(size * BINARY_SHARE)
    text = int(size * TEXT_SHARE)
    small = size - binary - text
    files = [FileEntry(f"binary/blob-{i:04d}.bin", n, "binary")
             for i, n in enumerate(_split(binary, BINARY_FILE_SIZE))]
    files += [FileEntry(f"text/{_TEXT_KINDS[i % 3]}-{i:04d}.{_TEXT_KINDS[i % 3]}", n, "text")
              for i, n in enumerate(_split(text, TEXT_FILE_SIZE))]
    rng = random.Random(f"{seed}:small-sizes")
    sizes: list[int] = []
    left = small
    while left > 0:
        n = min(left, rng.randint(SMALL_MIN, SMALL_MAX))
        sizes.append(n)
        left -= n
    dirs = max(1, -(-len(sizes) // SMALL_PER_DIR))
    fanout = max(1, round(dirs**0.5))
    exts = ("log", "csv", "txt", "bin", "py", "json")
    for i, n in enumerate(sizes):
        d = i % dirs
        name = f"small/d{d // fanout:03d}/e{d % fanout:03d}/f{i:06d}.{exts[i % len(exts)]}"
        files.append(FileEntry(name, n, "small"))
    return files


def _content(entry: FileEntry, seed: int, texts: _TextSource) -> bytes:
    rng = random.Random(f"{seed}:{entry.path}")
    ext = entry.path.rsplit(".", 1)[-1]
    if ext == "bin":
        return rng.randbytes(entry.size)
    kind = {"log": "log", "csv": "csv", "json": "csv"}.get(ext, "txt")
    return texts.text(rng, kind, entry.size)


# --------------------------------------------------------------------------- cache


def dataset_dir(data_dir: Path, size: int, seed: int) -> Path:
    """Where the dataset for ``size`` and ``seed`` is cached."""
    return data_dir / f"dataset-{format_size(size)}-seed{seed}-v{GENERATOR_VERSION}"


def _zstd_ratio(sample: bytes) -> float | None:
    try:
        import zstandard
    except ImportError:
        return None
    packed = zstandard.ZstdCompressor(level=3).compress(sample)
    return round(len(sample) / len(packed), 2)


def ensure_dataset(data_dir: Path, size: int, seed: int, log: bool = True) -> Dataset:
    """Return the cached dataset, generating it first if it is missing or incomplete."""
    home = dataset_dir(data_dir, size, seed)
    manifest = home / MANIFEST
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        ds = Dataset(home / "tree", size, seed,
                     [FileEntry(**f) for f in meta["files"]], meta["stats"])
        recover(ds)
        return ds
    if home.exists():
        shutil.rmtree(home)
    tree = home / "tree"
    tree.mkdir(parents=True)
    started = time.monotonic()
    files = plan_files(size, seed)
    texts = _TextSource(random.Random(f"{seed}:vocabulary"))
    made: set[Path] = set()
    sample = bytearray()
    for i, entry in enumerate(files):
        path = tree / entry.path
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        data = _content(entry, seed, texts)
        if entry.kind == "text" and len(sample) < 8 * MiB:
            sample += data
        path.write_bytes(data)
        if log and i % 2000 == 1999:
            print(f"dataset: {i + 1}/{len(files)} files", file=sys.stderr)
    by_kind = {k: [f for f in files if f.kind == k] for k in ("binary", "text", "small")}
    stats: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "directories": len({os.path.dirname(f.path) for f in files}),
        "kinds": {k: {"files": len(v), "bytes": sum(f.size for f in v)}
                  for k, v in by_kind.items()},
        "text_zstd3_ratio": _zstd_ratio(bytes(sample)),
        "generation_seconds": round(time.monotonic() - started, 1),
    }
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stats": stats, "files": [asdict(f) for f in files]}))
    tmp.replace(manifest)
    if log:
        print(f"dataset: generated {stats['files']} files, {stats['bytes'] / MiB:.0f} MiB "
              f"in {stats['generation_seconds']} s -> {tree}", file=sys.stderr)
    return Dataset(tree, size, seed, files, stats)


# --------------------------------------------------------------------------- mutation


def mutation_plan(ds: Dataset) -> list[Mutation]:
    """5 % of the files of each kind (at least one), each with a mid-file insertion."""
    rng = random.Random(f"{ds.seed}:mutations")
    plan: list[Mutation] = []
    for kind in ("binary", "text", "small"):
        group = sorted((f for f in ds.files if f.kind == kind), key=lambda f: f.path)
        if not group:
            continue
        for f in rng.sample(group, max(1, round(len(group) * MUTATED_SHARE))):
            jitter = f.size // 20
            offset = f.size // 2 + rng.randint(-jitter, jitter)
            plan.append(Mutation(f.path, offset, rng.randint(INSERT_MIN, INSERT_MAX)))
    return plan


def _insert_bytes(ds: Dataset, m: Mutation) -> bytes:
    rng = random.Random(f"{ds.seed}:insert:{m.path}")
    if m.path.endswith(".bin"):
        return rng.randbytes(m.length)
    words = ("inserted", "line", "retry", "scheduler", "heartbeat", "task", "ok", "failed")
    text = " ".join(rng.choices(words, k=m.length // 4)) + "\n"
    return (text * (m.length // len(text) + 1))[: m.length].encode("ascii")


def _rewrite(path: Path, data: bytes) -> None:
    """Replace ``path`` by a new file holding ``data`` (new inode, mtime and ctime)."""
    tmp = path.with_name(path.name + ".bench-tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def mutate(ds: Dataset, plan: list[Mutation]) -> int:
    """Apply ``plan`` in place; return the number of bytes inserted."""
    journal = ds.root.parent / JOURNAL
    journal.write_text(json.dumps([asdict(m) for m in plan]))
    for m in plan:
        path = ds.root / m.path
        data = path.read_bytes()
        _rewrite(path, data[: m.offset] + _insert_bytes(ds, m) + data[m.offset :])
    return sum(m.length for m in plan)


def unmutate(ds: Dataset, plan: list[Mutation]) -> None:
    """Undo ``plan``: cut the inserted bytes out again (the content is the original again)."""
    sizes = {f.path: f.size for f in ds.files}
    for m in plan:
        path = ds.root / m.path
        if path.stat().st_size == sizes[m.path]:
            continue  # never mutated (interrupted run)
        data = path.read_bytes()
        _rewrite(path, data[: m.offset] + data[m.offset + m.length :])
    (ds.root.parent / JOURNAL).unlink(missing_ok=True)


def recover(ds: Dataset) -> None:
    """Undo a mutation left behind by an interrupted run, and drop stray temporary files."""
    journal = ds.root.parent / JOURNAL
    if journal.exists():
        unmutate(ds, [Mutation(**m) for m in json.loads(journal.read_text())])
    for tmp in ds.root.rglob("*.bench-tmp"):
        tmp.unlink()


def check_sizes(ds: Dataset, plan: list[Mutation] | None = None) -> list[str]:
    """Paths whose size differs from the manifest (plus insertions, when ``plan`` is given)."""
    extra = {m.path: m.length for m in plan or []}
    return [f.path for f in ds.files
            if (ds.root / f.path).stat().st_size != f.size + extra.get(f.path, 0)]


def main(argv: list[str] | None = None) -> int:
    """Generate (or find) a dataset and print its statistics."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size", default="1G", help="total size, e.g. 1G, 256M (default 1G)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "data")
    args = ap.parse_args(argv)
    ds = ensure_dataset(args.data_dir, parse_size(args.size), args.seed)
    print(json.dumps({"root": str(ds.root), **ds.stats}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
