"""``hatn:<domain>``: the 3000 + 3000 labelled reviews per domain of Li et al. (2018):
reading, HTML entities, duplicates, the 80/10/10 split, and the checksum-verified download
(urlopen monkeypatched: nothing leaves the machine)."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sparse_rational.data import HATN_DOMAINS, default_cache_dir, download, load_dataset
from sparse_rational.errors import UserError

DATA = Path(os.environ.get("SPARSE_RATIONAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
HATN = DATA / "amazon-hatn"
needs_hatn = pytest.mark.skipif(
    not (HATN / "kitchen" / "review_positive").is_file(),
    reason=f"amazon-hatn not found under {DATA}; set SPARSE_RATIONAL_DATA",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reaches the network or the real cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("SPARSE_RATIONAL_DATA", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _one_line(exc: BaseException, *needles: str) -> None:
    message = str(exc)
    assert message.splitlines() == [message], message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def _write(root: Path, domain: str, positive: list[str], negative: list[str]) -> Path:
    folder = root / "amazon-hatn" / domain
    folder.mkdir(parents=True)
    (folder / "review_positive").write_text("".join(line + "\n" for line in positive), encoding="utf-8")
    (folder / "review_negative").write_text("".join(line + "\n" for line in negative), encoding="utf-8")
    return folder


def _texts(splits) -> list[str]:
    return [e.text for part in (splits.train, splits.dev, splits.test) for e in part]


def test_entities_decoded_duplicates_dropped_and_conflicting_texts_removed(tmp_path):
    positive = [f"Great pot {i}. Works &quot;fine&quot; &amp; cheap" for i in range(40)]
    positive += [positive[0], positive[1], "  ", "Same text", 'Great pot 3. Works "fine" & cheap']
    negative = [f"Broke {i}. Returned it" for i in range(40)] + ["Broke 0. Returned it", "Same text"]
    _write(tmp_path, "kitchen", positive, negative)
    splits = load_dataset("hatn:kitchen", data_dir=tmp_path, split_seed=0)
    texts = _texts(splits)
    assert len(texts) == len(set(texts)) == 80  # 40 + 40 distinct; "Same text" carries both labels
    assert "Same text" not in texts
    assert 'Great pot 7. Works "fine" & cheap' in texts
    assert not any("&quot;" in t or "&amp;" in t for t in texts)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (64, 8, 8)
    for part in (splits.dev, splits.test):
        assert collections.Counter(e.label for e in part) == {"positive": 4, "negative": 4}


def test_layouts_aliases_and_errors(tmp_path):
    folder = _write(tmp_path, "dvd", [f"good {i}" for i in range(10)], [f"bad {i}" for i in range(10)])
    a = load_dataset("hatn:dvd", data_dir=tmp_path)
    assert load_dataset("HATN:DVD", data_dir=tmp_path / "amazon-hatn") == a  # <domain>/ directly under the root
    assert load_dataset("hatn:dvd", data_dir=folder.parent) == a
    with pytest.raises(UserError) as info:
        load_dataset("hatn:toys", data_dir=tmp_path)
    _one_line(info.value, "toys", "hatn:books", "hatn:kitchen")
    (folder / "review_negative").write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_dataset("hatn:dvd", data_dir=tmp_path)
    _one_line(info.value, "review_negative", "no reviews")


@needs_hatn
@pytest.mark.parametrize("domain", HATN_DOMAINS)
def test_real_domains_split_80_10_10_without_shared_texts(domain):
    splits = load_dataset(f"hatn:{domain}", data_dir=DATA, split_seed=0)
    texts = _texts(splits)
    assert len(texts) == len(set(texts))  # duplicates dropped, so no text is in two splits
    assert 5600 < len(texts) < 6000  # 6000 lines, a few per cent duplicates
    held_out = (len(texts) + 5) // 10
    assert len(splits.dev) == len(splits.test) == held_out
    assert not any("&quot;" in t or "&amp;" in t for t in texts)
    for part in (splits.train, splits.dev, splits.test):
        counts = collections.Counter(e.label for e in part)
        assert set(counts) == {"positive", "negative"}
        assert abs(counts["positive"] / len(part) - 0.5) < 0.05


@needs_hatn
def test_split_is_deterministic_in_the_seed():
    a = load_dataset("hatn:kitchen", data_dir=DATA, split_seed=3)
    assert load_dataset("hatn:kitchen", data_dir=DATA, split_seed=3) == a
    b = load_dataset("hatn:kitchen", data_dir=DATA, split_seed=4)
    assert {e.text for e in a.test} != {e.text for e in b.test}
    assert sorted(_texts(a)) == sorted(_texts(b))


# ------------------------------------------------------------------------------------------
# Download


class _Response(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _serve(monkeypatch, files: dict[str, bytes] | None = None, error: BaseException | None = None) -> list[str]:
    calls: list[str] = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        if error is not None:
            raise error
        assert files is not None
        return _Response(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def _urls(domain: str, content) -> dict[str, bytes]:
    return {
        download.HATN_URL.format(domain=domain, name=name): content(name)
        for name in ("review_positive", "review_negative")
    }


@needs_hatn
def test_download_fetches_verifies_and_installs(monkeypatch, tmp_path):
    calls = _serve(monkeypatch, _urls("kitchen", lambda name: (HATN / "kitchen" / name).read_bytes()))
    splits = load_dataset("hatn:kitchen", data_dir=tmp_path / "nothing-here", split_seed=0)
    assert sorted(calls) == sorted(_urls("kitchen", lambda name: b""))
    installed = default_cache_dir() / "amazon-hatn" / "kitchen"
    for name in ("review_positive", "review_negative"):
        digest = hashlib.sha256((installed / name).read_bytes()).hexdigest()
        assert digest == download.HATN_SHA256[f"kitchen/{name}"]
    assert sorted(p.name for p in installed.parent.iterdir()) == ["kitchen"]  # no temporary folder left
    assert splits == load_dataset("hatn:kitchen", data_dir=DATA, split_seed=0)
    assert load_dataset("hatn:kitchen", split_seed=0) == splits  # from the cache: no second download
    assert len(calls) == 2


def test_download_checksum_mismatch_installs_nothing(monkeypatch):
    _serve(monkeypatch, _urls("books", lambda name: b"a review. fine\n"))
    with pytest.raises(UserError) as info:
        load_dataset("hatn:books")
    _one_line(info.value, "checksum", "raw_data/books/review_", "--data-dir", "SPARSE_RATIONAL_DATA")
    parent = default_cache_dir() / "amazon-hatn"
    assert not parent.exists() or list(parent.iterdir()) == []


@pytest.mark.parametrize("error", [urllib.error.URLError("Name or\nservice not known"), TimeoutError("timed out")])
def test_download_failure_is_one_line(monkeypatch, tmp_path, error):
    _serve(monkeypatch, error=error)
    with pytest.raises(UserError) as info:
        load_dataset("hatn:dvd", data_dir=tmp_path)
    _one_line(info.value, "hsqmlzno1/HATN", str(tmp_path), "--data-dir")
    assert list((default_cache_dir() / "amazon-hatn").iterdir()) == []
