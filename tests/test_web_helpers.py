"""Helpers of the web tests (no tests here): headless Chromium and the page's output elements.

The browser is Debian's ``chromium`` (``.ci/run`` installs it when missing); without it the
browser tests skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
MAX_URL = 100_000  # one command-line argument stays well under Linux's 128 KiB


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (Debian package `chromium`; .ci/run installs it)")


def chromium(args: list[str], profile: Path, timeout: float = 120) -> str:
    """Run headless Chromium once; its stdout (the DOM with ``--dump-dom``)."""
    cmd = [
        chromium_path(),
        "--headless",
        "--no-sandbox",  # as root (CI), Chromium refuses to start with its sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


class _Elements(HTMLParser):
    """The attributes of every element with an id (scripts' contents are not elements)."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.rows = 0  # <tr data-wfsa> rows of the WFSA table
        self.marked = 0  # highlighted tokens

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a and a["id"] not in self.by_id:
            self.by_id[a["id"] or ""] = a
        if tag == "tr" and "data-wfsa" in a:
            self.rows += 1
        if tag == "span" and "box-shadow" in (a.get("style") or ""):
            self.marked += 1


def elements(dom: str) -> _Elements:
    parser = _Elements()
    parser.feed(dom)
    return parser


def open_with_text(url: str, text: str, profile: Path, extra: tuple[str, ...] = ()) -> dict:
    """Open ``url#text=...``; the ``<output id="prediction">`` the page wrote, and the DOM."""
    dom = chromium(
        [*extra, "--virtual-time-budget=10000", "--dump-dom", url + "#text=" + urllib.parse.quote(text)], profile
    )
    found = elements(dom)
    out = found.by_id.get("prediction")
    assert out is not None, dom[:2000]
    assert "data-error" not in out, out
    return {
        "label": out["data-label"],
        "probabilities": json.loads(out["data-probabilities"] or "{}"),
        "ms": float(out.get("data-ms") or "nan"),
        "rows": found.rows,
        "marked": found.marked,
    }


def open_with_texts(url: str, texts: list[str], profile: Path) -> list[dict]:
    """Score ``texts`` through the page's ``#texts=`` hook, as few loads as the URL length allows."""
    chunks: list[list[str]] = [[]]
    for text in texts:
        if chunks[-1] and len(urllib.parse.quote(json.dumps(chunks[-1] + [text]))) > MAX_URL:
            chunks.append([])
        chunks[-1].append(text)
    results = []
    for chunk in chunks:
        hash_ = "#texts=" + urllib.parse.quote(json.dumps(chunk))
        assert len(hash_) < 2 * MAX_URL, "one text is too long for the URL"
        dom = chromium(["--virtual-time-budget=10000", "--dump-dom", url + hash_], profile)
        out = elements(dom).by_id.get("predictions")
        assert out is not None and "data-error" not in out, (out, dom[:2000])
        results += json.loads(out["data-results"] or "[]")
    assert len(results) == len(texts)
    return results


# Texts that exercise the tokenizer: clitics, abbreviations, numbers, URLs, HTML entities,
# typographic quotes, other scripts, emoji, odd whitespace, and the empty text.
TRICKY_TEXTS = [
    "",
    "Don't buy it!!! The handle broke &amp; it's \u201cawful\u201d\u2026 can't recommend -- 1/5",
    "Made in the u.s. by Mr. Smith & co. for $1,000.50 at 10:30 -- w/o rust, and/or dents?!",
    "Caf\u00e9 cre\u0300me na\u00efve \u2014 \u00bd price, \u2153 off; "
    "\u4e2d\u6587\u5b57 \u0430\u0431\u0432 \U0001f600 ok",
    "see http://amazon.com/dp/x?y=1&z=2 or amazon.com now; e.g. the 90's pans, '90s, o'clock",
    "tabs\tand\u00a0nbsp\u3000ideographic  spaces\u2028line\nnew &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &copy;",
    "WELL-KNOWN brand ``quoted'' I'M HAPPY YOU'LL SEE they've we'd 'em",
    "\u0130stanbul \u03a3\u039f\u03a3 stra\u00dfe \ufb01ne \u2460 x\u00b2 \u0661\u0662\u0663 under_score a_b",
]
