"""The disk cache of contextual vectors: one memory-mappable shard per (encoder, options, texts).

Layout (``cache_root()``: ``$SPARSE_RATIONAL_CACHE`` or ``~/.cache/sparse-rational/vectors``)::

    <root>/<slug>-<key>/               key: hash of the encoder's location and the options
        <texts>/                       texts: hash of the sorted set of text hashes
            manifest.json              encoder identity, options, shapes, dtypes, sha256 of each file
            vectors.npy                [R, e] float32 or float16: one row per word piece
            offsets.npy                [R, 2] int32: (start, end) character offsets in the text
            docs.npy                   [D, 2] int64: (first row, number of rows) of each text
    <root>/fingerprints.json           sha256 of encoder files, memoised by (path, size, mtime)

Texts are stored in the order of their hashes (``text_key``), so any split or order of the
same documents finds the same shard, and a shard serves any subset of its texts. A shard
is written into a temporary folder and renamed into place, manifest last. Opening one
checks the manifest against the encoder (a different encoder in the folder is a
:class:`UserError`; changed encoder files make the shard stale) and every file's shape,
dtype and sha256 (a mismatch makes it corrupted): a stale or corrupted shard raises
:class:`CacheError`, and the caller encodes the texts again; it is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import UserError
from ..fileio import atomic_directory, atomic_write_json

FORMAT = "sparse-rational-vectors/1"
MANIFEST = "manifest.json"
FILES = ("vectors.npy", "offsets.npy", "docs.npy")
ENV = "SPARSE_RATIONAL_CACHE"


class CacheError(Exception):
    """A shard that must not be used (stale or corrupted); the message says why, in one line."""


def cache_root() -> Path:
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparse-rational" / "vectors"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """One sha256 over the names and contents of ``paths`` (file hashes memoised on disk
    by absolute path, size and mtime, so a 1.3 GB BERT-large is read once, not per run)."""
    memo_path = (root or cache_root()) / "fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    changed = False
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        real = p.resolve()
        st = real.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = memo.get(str(real))
        if not (isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str)):
            entry = {"stamp": stamp, "sha256": file_sha256(real)}
            memo[str(real)] = entry
            changed = True
        h.update(f"{p.name}\0{entry['sha256']}\n".encode())
    if changed:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(memo_path, memo, indent=None)
        except OSError:
            pass  # a read-only cache still works, it just hashes again next time
    return h.hexdigest()


def encoder_dir(slug: str, key: dict, root: Path | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in slug).strip("-.")[:40] or "encoder"
    return (root or cache_root()) / f"{safe}-{digest(key)[:16]}"


def texts_id(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]


@dataclass
class Shard:
    """An opened, verified shard. ``vectors`` and ``offsets`` are memory-mapped (copy on write)."""

    path: Path
    manifest: dict
    vectors: np.ndarray  # [R, e]
    offsets: np.ndarray  # [R, 2] int32
    docs: dict[str, tuple[int, int]]  # text key -> (first row, number of rows)

    @property
    def nbytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in (*FILES, MANIFEST))


_VERIFIED: dict[tuple, Shard] = {}  # (path, manifest mtime, file stamps) -> shard, per process


def _stamp(path: Path) -> tuple:
    return tuple((f, (path / f).stat().st_mtime_ns, (path / f).stat().st_size) for f in (*FILES, MANIFEST))


def open_shard(path: Path, expected: dict) -> Shard:
    """Open and verify the shard in ``path``.

    ``expected``: ``{"encoder": {...}, "options": {...}}`` of the encoder asking. Raises
    :class:`UserError` when the folder holds another encoder's vectors (another location
    or other options), :class:`CacheError` when it is stale (the encoder's files changed)
    or corrupted (a missing or truncated file, a wrong shape, dtype or checksum).
    """
    try:
        stamp = _stamp(path)
    except OSError as exc:
        raise CacheError(f"cache {path}: incomplete ({exc.strerror}: {Path(exc.filename or '').name})") from None
    if stamp in _VERIFIED:
        shard = _VERIFIED[stamp]
        _check_identity(path, shard.manifest, expected)
        return shard
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CacheError(f"cache {path}: not a {FORMAT} manifest")
    except (OSError, ValueError) as exc:
        raise CacheError(f"cache {path}: unreadable manifest ({exc})") from None
    _check_identity(path, manifest, expected)
    try:
        files = manifest["files"]
        arrays = {}
        for name in FILES:
            meta = files[name]
            if file_sha256(path / name) != meta["sha256"]:
                raise CacheError(f"cache {path}: {name} does not match its checksum (corrupted)")
            arr = np.load(path / name, mmap_mode="c", allow_pickle=False)
            if list(arr.shape) != list(meta["shape"]) or str(arr.dtype) != meta["dtype"]:
                raise CacheError(
                    f"cache {path}: {name} has shape {list(arr.shape)} {arr.dtype}, "
                    f"manifest says {meta['shape']} {meta['dtype']}"
                )
            arrays[name] = arr
        keys = manifest["texts"]["keys"]
        vectors, offsets, docs = arrays["vectors.npy"], arrays["offsets.npy"], arrays["docs.npy"]
        if len(keys) != len(docs) or len(offsets) != len(vectors) or texts_id(keys) != manifest["texts"]["id"]:
            raise CacheError(f"cache {path}: the manifest's texts do not match its arrays")
        if len(docs) and (docs[:, 0].min() < 0 or (docs[:, 0] + docs[:, 1]).max() > len(vectors)):
            raise CacheError(f"cache {path}: document rows out of range")
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise CacheError(f"cache {path}: unreadable ({type(exc).__name__}: {exc})") from None
    shard = Shard(path, manifest, vectors, offsets, {k: (int(a), int(n)) for k, (a, n) in zip(keys, docs.tolist())})
    _VERIFIED[stamp] = shard
    return shard


def _check_identity(path: Path, manifest: dict, expected: dict) -> None:
    enc, want = manifest.get("encoder") or {}, expected["encoder"]
    if enc.get("location") != want["location"] or manifest.get("options") != expected["options"]:
        raise UserError(
            f"cache {path} holds vectors of encoder {enc.get('location')!r} with options {manifest.get('options')}, "
            f"expected {want['location']!r} with {expected['options']}: remove that folder"
        )
    if enc.get("fingerprint") != want["fingerprint"]:
        raise CacheError(f"cache {path}: stale (the encoder's files changed since it was written)")


def find_shard(
    folder: Path, keys: Iterable[str], expected: dict, log: Callable[[str], None] | None = None
) -> Shard | None:
    """A verified shard of ``folder`` that holds all texts ``keys`` (the exact set first)."""
    keys = sorted(set(keys))
    if not folder.is_dir():
        return None
    exact = folder / texts_id(keys)
    candidates = [exact] if exact.is_dir() else []
    candidates += sorted(p for p in folder.iterdir() if p.is_dir() and p != exact and not p.name.startswith("."))
    wanted = set(keys)
    for cand in candidates:
        if cand != exact:  # a cheap look at the manifest before verifying a superset
            try:
                m = json.loads((cand / MANIFEST).read_text(encoding="utf-8"))
                if not wanted.issubset(m["texts"]["keys"]):
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                continue
        try:
            return open_shard(cand, expected)
        except CacheError as exc:  # stale or corrupted: never used
            if log:
                log(f"{exc}; {'encoding again' if cand == exact else 'skipped'}")
    return None


def write_shard(
    folder: Path,
    keys: list[str],
    lengths: list[int],
    dim: int,
    dtype: npt.DTypeLike,
    manifest: dict,
    fill: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
) -> Shard:
    """Write a shard for the texts ``keys`` (sorted) with ``lengths[i]`` rows each.

    ``fill(vectors [R, e], offsets [R, 2], starts [D])`` writes the rows in place (arrays
    memory-mapped in the temporary folder, so a large corpus never sits in memory whole).
    """
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    rows = int(starts[-1])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / texts_id(keys)
    t0 = time.perf_counter()
    with atomic_directory(path) as tmp:
        vec = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=dtype, shape=(rows, dim))
        off = np.lib.format.open_memmap(tmp / "offsets.npy", mode="w+", dtype=np.int32, shape=(rows, 2))
        fill(vec, off, starts[:-1])
        vec.flush()
        off.flush()
        del vec, off
        np.save(tmp / "docs.npy", np.stack([starts[:-1], np.asarray(lengths, dtype=np.int64)], 1))
        files = {}
        for name in FILES:
            arr = np.load(tmp / name, mmap_mode="r", allow_pickle=False)
            files[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": file_sha256(tmp / name)}
            del arr
        manifest = {
            "format": FORMAT,
            **manifest,
            "texts": {"count": len(keys), "id": texts_id(keys), "keys": keys},
            "files": files,
            "rows": rows,
            "encode_seconds": round(time.perf_counter() - t0, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(tmp / MANIFEST, manifest, indent=1)
    return open_shard(path, {"encoder": manifest["encoder"], "options": manifest["options"]})
