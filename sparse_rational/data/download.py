"""Fetching the benchmark data into the cache.

The Blitzer et al. (2007) Multi-Domain Sentiment Dataset: only the eight labelled files the
library uses are kept (``sorted_data_acl/<domain>/{positive,negative}.review``); each is
checked against the md5 of the official release, and they appear in the cache all at once
(extracted into a temporary directory, then renamed into place) or not at all.

The HATN sample (Li et al. 2018): the two files of one domain
(``raw_data/<domain>/review_{positive,negative}`` of the upstream repository, at a fixed
commit), each checked against its sha256, installed as ``amazon-hatn/<domain>/`` the same
way (all or nothing).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from sparse_rational.errors import UserError

from ..log import progress_disable

__all__ = ["BLITZER_MD5", "BLITZER_URL", "HATN_SHA256", "HATN_URL", "fetch_blitzer", "fetch_hatn"]

BLITZER_URL = "https://www.cs.jhu.edu/~mdredze/datasets/sentiment/domain_sentiment_data.tar.gz"

#: md5 of the files of the official release, relative to ``sorted_data_acl/``.
BLITZER_MD5 = {
    "books/negative.review": "42ab2c5cabaf26cb4e1bf124e03a02c2",
    "books/positive.review": "e127ca9b025c8a42c11ea60851865486",
    "dvd/negative.review": "a94ff8de6516131e58caff42f5a6a005",
    "dvd/positive.review": "6b4f7317a3e2794f7609ad1f0aa5e565",
    "electronics/negative.review": "6444714e3bc5312b7cf1542b1a7b375d",
    "electronics/positive.review": "767345922df4429e0544e101cfcc1d80",
    "kitchen_&_housewares/negative.review": "5b012084c8dfaa7d8e7ccf6e2fb4672d",
    "kitchen_&_housewares/positive.review": "a96791c52b3e6de047a315a687f33e62",
}

#: the upstream repository of HATN (MIT licence) at the commit whose ``raw_data/`` is used;
#: ``{domain}`` and ``{name}`` are filled in
HATN_COMMIT = "23facdb09a5ec0f29e9f69c5733e7ac7977b2211"
HATN_URL = f"https://raw.githubusercontent.com/hsqmlzno1/HATN/{HATN_COMMIT}/raw_data/{{domain}}/{{name}}"

#: sha256 of the files, relative to ``raw_data/`` (md5 in the shared data's README)
HATN_SHA256 = {
    "books/review_negative": "d573ed56a91d0f736b52e1ff4bf16c60abcf071652a956359a783ff53cd0d2fc",
    "books/review_positive": "8ebf0d1cf6c863cb82948ff9f57fab73d416f009a480094cd3279f21580cff66",
    "dvd/review_negative": "971f0d33e1dbe19f4fadf02aac3af03b553714cffd9608652dc03a53b8d60215",
    "dvd/review_positive": "1b29d9c42ef636f504733c8bac50ff93ecfcd9997da63b3f82b155bc57406ed3",
    "electronics/review_negative": "983322988bcf4e1e45d1f8be8e9b68c1522e0d22a034a1b9e2fb51ee9b9bb15e",
    "electronics/review_positive": "a2383072785c8349483af682d3798f1919809382cc76438d59ff44a42e6acd79",
    "kitchen/review_negative": "51c2b6a4781b952b7917f92b5934e7eda64e5d28bea9601888effa9428fa898a",
    "kitchen/review_positive": "a3d57ede0e73cde23ba7d8a0234fc277f17b1bb9ccfb1094532ff4c70a915561",
}

TIMEOUT_S = 60
_CHUNK = 1 << 20
_ADVICE = (
    "download and untar it yourself, then pass --data-dir DIR or set "
    "SPARSE_RATIONAL_DATA=DIR (DIR holding sorted_data_acl/)"
)


class _Failed(Exception):
    """A step of the download that failed, with a one-line reason."""


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
    return " ".join(text.split())


def fetch_blitzer(cache_root: str | os.PathLike, *, searched: Sequence[os.PathLike] = ()) -> Path:
    """Download the official release into ``cache_root/amazon-multi-domain/sorted_data_acl``
    and return that directory. ``searched`` (the data roots already searched) only
    goes into the error message. Any failure raises a one-line UserError."""
    dest_parent = Path(cache_root) / "amazon-multi-domain"
    dest = dest_parent / "sorted_data_acl"
    where = ", ".join(os.fspath(p) for p in searched)
    what = (
        "the Blitzer et al. Amazon reviews (sorted_data_acl/<domain>/*.review) were not "
        "found" + (f" under {where}" if where else "") + f" and downloading them from {BLITZER_URL} failed"
    )
    try:
        dest_parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_parent))
    except OSError as exc:
        raise UserError(f"{what}: cannot write to {dest_parent} ({_reason(exc)}); {_ADVICE}") from None
    try:
        archive = tmp / "domain_sentiment_data.tar.gz"
        _download(BLITZER_URL, archive)
        staged = _extract(archive, tmp / "sorted_data_acl")
        archive.unlink()
        return _into_place(staged, dest, tmp, _complete(dest))
    except _Failed as exc:
        raise UserError(f"{what}: {exc}; {_ADVICE}") from None
    except (OSError, http.client.HTTPException, tarfile.TarError, EOFError, zlib.error) as exc:
        raise UserError(f"{what}: {_reason(exc)}; {_ADVICE}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _into_place(staged: Path, dest: Path, tmp: Path, done: bool) -> Path:
    """Move a complete download ``staged`` to ``dest`` (``done``: another process finished
    first, keep its copy); an incomplete leftover at ``dest`` is moved into ``tmp`` first."""
    if not done:
        if dest.exists():
            os.replace(dest, tmp / "stale")
        os.replace(staged, dest)
    return dest


def fetch_hatn(cache_root: str | os.PathLike, domain: str, *, searched: Sequence[os.PathLike] = ()) -> Path:
    """Download the two files of ``domain`` into ``cache_root/amazon-hatn/<domain>/`` and
    return that directory. Any failure (network, checksum) raises a one-line UserError and
    leaves nothing in the cache."""
    names = sorted(name for name in HATN_SHA256 if name.startswith(f"{domain}/"))
    if not names:
        raise ValueError(f"unknown HATN domain {domain!r}")
    dest_parent = Path(cache_root) / "amazon-hatn"
    dest = dest_parent / domain
    where = ", ".join(os.fspath(p) for p in searched)
    first_url = HATN_URL.format(domain=domain, name=names[0].split("/")[1])
    advice = (
        f"download raw_data/{domain}/ of github.com/hsqmlzno1/HATN yourself, then pass --data-dir DIR or set "
        f"SPARSE_RATIONAL_DATA=DIR (DIR holding amazon-hatn/{domain}/review_positive and review_negative)"
    )
    what = (
        f"the HATN Amazon reviews (amazon-hatn/{domain}/review_*) were not found"
        + (f" under {where}" if where else "")
        + f" and downloading them from {first_url} failed"
    )
    try:
        dest_parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_parent))
    except OSError as exc:
        raise UserError(f"{what}: cannot write to {dest_parent} ({_reason(exc)}); {advice}") from None
    try:
        staged = tmp / domain
        staged.mkdir()
        for name in names:
            file_name = name.split("/")[1]
            target = staged / file_name
            _download(HATN_URL.format(domain=domain, name=file_name), target)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            if digest != HATN_SHA256[name]:
                raise _Failed(f"checksum mismatch for raw_data/{name} (sha256 {digest}, expected {HATN_SHA256[name]})")
        return _into_place(staged, dest, tmp, all((dest / n.split("/")[1]).is_file() for n in names))
    except _Failed as exc:
        raise UserError(f"{what}: {exc}; {advice}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise UserError(f"{what}: {_reason(exc)}; {advice}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _complete(root: Path) -> bool:
    return all((root / name).is_file() for name in BLITZER_MD5)


def _download(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length") if response.headers else None
        total = int(length) if length and length.isdigit() else None
        with (
            open(target, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=progress_disable()) as bar,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _extract(archive: Path, staged: Path) -> Path:
    """Copy the eight wanted members out of ``archive`` into ``staged`` (never trusting
    member paths), verifying each md5. Everything else in the archive is ignored."""
    found: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) < 3 or parts[-3] != "sorted_data_acl" or not member.isfile():
                continue
            name = f"{parts[-2]}/{parts[-1]}"
            if name not in BLITZER_MD5 or name in found:
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            (staged / parts[-2]).mkdir(parents=True, exist_ok=True)
            digest = hashlib.md5(usedforsecurity=False)
            with source, open(staged / name, "wb") as out:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            found[name] = digest.hexdigest()
    missing = [name for name in BLITZER_MD5 if name not in found]
    if missing:
        raise _Failed(
            f"the archive lacks sorted_data_acl/{missing[0]}"
            + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
        )
    for name, expected in BLITZER_MD5.items():
        if found[name] != expected:
            raise _Failed(f"checksum mismatch for sorted_data_acl/{name} (md5 {found[name]}, expected {expected})")
    return staged
