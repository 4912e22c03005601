"""``sparse-rational serve`` on loopback, with a real HTTP client: answers equal the library's,
concurrent requests are batched, bad input gets a clear HTTP error and the server goes on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_web_helpers import TRICKY_TEXTS, chromium_path, open_with_text

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from sparse_rational.cli import main  # noqa: E402
from sparse_rational.pipeline import TextClassifier  # noqa: E402

MAX_BODY = 1_500_000
MAX_TEXTS = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(baseline, tiny_files, tmp_path_factory):
    """``sparse-rational serve`` in its own process (the default parser and loop: httptools and
    uvloop when installed); yields its base URL."""
    args = ["--max-body-bytes", str(MAX_BODY), "--max-texts", str(MAX_TEXTS), "--batch-wait-ms", "20"]
    yield from _serving(
        baseline, tmp_path_factory.mktemp("serve") / "serve.log", args + ["--train", str(tiny_files["train"])]
    )


def _serving(baseline, log, args):
    port = _free_port()
    cmd = [sys.executable, "-m", "sparse_rational.cli", "serve", "--model", str(baseline), "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() - start < 120, "the server did not start: " + log.read_text()
            time.sleep(0.1)
        yield {"url": url, "proc": proc, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def clf(baseline):
    return TextClassifier.load(baseline)


def _same(got: list[dict], clf, texts, tol=1e-5):  # the agreement the README promises (float32 paths)
    probs = clf.predict_proba(texts)
    assert len(got) == len(texts)
    for g, row in zip(got, probs):
        assert g["label"] == clf.classes[int(row.argmax())]
        assert set(g["probabilities"]) == set(clf.classes)
        for c, p in zip(clf.classes, row):
            assert abs(g["probabilities"][c] - float(p)) <= tol


def test_predict_and_explain(server, clf, kitchen):
    url = server["url"]
    texts = TRICKY_TEXTS + [ex.text for ex in kitchen.test[:8]]
    r = httpx.post(url + "/predict", json={"texts": texts}, timeout=60)
    assert r.status_code == 200, r.text
    _same(r.json()["predictions"], clf, texts)

    r = httpx.post(url + "/explain", json={"text": kitchen.test[0].text}, timeout=60)
    assert r.status_code == 200, r.text
    exp = r.json()
    assert exp["tokens"] == clf.vocab.words(kitchen.test[0].text)
    _same([exp], clf, [kitchen.test[0].text])
    structure = clf.model.config.structure
    assert [w["length"] for w in exp["wfsas"]] == list(structure)
    for c in range(len(clf.classes)):  # logit = bias + sum of the WFSAs' contributions
        total = exp["bias"][c] + sum(w["contributions"][c] for w in exp["wfsas"])
        assert abs(total - exp["logits"][c]) < 1e-4
    for w in exp["wfsas"]:
        assert len(w["best"]["states"]) == len(exp["tokens"])
        assert max(w["best"]["states"]) >= 1  # it reads at least one transition
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["classes"] == clf.classes


def test_concurrent_requests_are_batched(server, clf, kitchen):
    url = server["url"]
    texts = [ex.text for ex in kitchen.test[:32]]
    before = httpx.get(url + "/health").json()

    def one(i: int):
        return httpx.post(url + "/predict", json={"texts": [texts[i]]}, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(len(texts))))
    assert all(a.status_code == 200 for a in answers)
    _same([a.json()["predictions"][0] for a in answers], clf, texts)
    after = httpx.get(url + "/health").json()
    assert after["texts"] - before["texts"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts)  # some requests shared a model call
    assert after["largest_batch"] > 1


def _post(url, body: bytes, ctype="application/json"):
    return httpx.post(url, content=body, headers={"content-type": ctype}, timeout=120)


def test_bad_input_gets_clear_errors(server, clf):
    url = server["url"]
    predict, explain = url + "/predict", url + "/explain"
    # empty texts and an empty list: correct answers
    r = httpx.post(predict, json={"texts": ["", "   "]})
    assert r.status_code == 200
    _same(r.json()["predictions"], clf, ["", "   "])
    assert httpx.post(predict, json={"texts": []}).json() == {"predictions": []}
    assert httpx.post(explain, json={"text": ""}).json()["tokens"] == ["<s>", "</s>"]
    # a 1 MB text: under the body limit, a correct answer (cut at --max-tokens, as predict cuts it)
    big = "the lid does not fit and it rusted " * 30_000
    assert 1_000_000 < len(big) < MAX_BODY - 100
    r = httpx.post(predict, json={"texts": [big]}, timeout=120)
    assert r.status_code == 200
    _same(r.json()["predictions"], clf, [big])
    r = httpx.post(explain, json={"text": big}, timeout=120)
    assert r.status_code == 200 and r.json()["truncated"] is True  # the first --max-explain-tokens
    assert len(r.json()["tokens"]) == 2000

    cases = [
        (_post(predict, b'{"texts": ["a", '), 400, "not valid JSON"),
        (_post(predict, b'{"texts": ["caf\xe9"]}'), 400, "not UTF-8"),
        (_post(predict, json.dumps({"texts": ["a"]}).encode(), "text/plain"), 415, "application/json"),
        (httpx.post(predict, data={"texts": "a"}), 415, "application/json"),
        (httpx.post(predict, json={"texts": ["x"] * 10_000}), 422, "limit is 100"),
        (httpx.post(predict, json={"texts": "just one"}), 422, "list of strings"),
        (httpx.post(predict, json={"texts": [1, 2]}), 422, "list of strings"),
        (httpx.post(predict, json=["a", "b"]), 422, '{"texts"'),
        (httpx.post(explain, json={"texts": ["a"]}), 422, '{"text"'),
        (_post(predict, b"[" * 100_000 + b"]" * 100_000), 400, "not valid JSON"),
        (_post(predict, json.dumps({"texts": ["a" * MAX_BODY]}).encode()), 413, "limit"),
        (_post(explain, json.dumps({"text": "a" * MAX_BODY}).encode()), 413, "limit"),
        (httpx.get(predict), 405, ""),
        (httpx.get(url + "/nothing"), 404, ""),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text[:300])
        message = response.json()["error"]
        assert words in message and "\n" not in message

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"texts": ["'
        for _ in range(MAX_BODY // 50_000 + 2):
            yield b"a" * 50_000
        yield b'"]}'

    r = httpx.post(predict, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413

    # still serving, and still right
    assert server["proc"].poll() is None
    assert httpx.get(url + "/health").json()["status"] == "ok"
    r = httpx.post(predict, json={"texts": ["works great"]})
    _same(r.json()["predictions"], clf, ["works great"])


def test_page_scores_through_the_api(server, clf, tmp_path):
    url = server["url"]
    html = httpx.get(url + "/").text
    assert 'id="model-data"' not in html  # no model in the served page: it asks /explain
    assert "connect-src 'self'" in html and "Pattern 1:" in html  # Table 1 from --train
    chromium_path()
    text = "The knife was dull after one week & I want my money back."
    page = open_with_text(url + "/", text, tmp_path / "profile")
    _same([page], clf, [text], tol=1e-5)
    assert page["rows"] == len(clf.model.config.structure)


def test_the_plain_parser_and_loop_answer_as_the_fast_ones(server, baseline, clf, kitchen, tmp_path):
    """``--http h11 --loop asyncio`` (no httptools, no uvloop) gives the same answers as the
    default server (to float32 rounding: either may still be serving through the PyTorch scan
    while its fused kernel loads); an unknown parser is refused by the command line."""
    texts = [ex.text for ex in kitchen.test[:5]]
    fast = httpx.post(server["url"] + "/predict", json={"texts": texts}, timeout=60)
    plain_server = _serving(baseline, tmp_path / "plain.log", ["--http", "h11", "--loop", "asyncio"])
    plain = next(plain_server)
    try:
        got = httpx.post(plain["url"] + "/predict", json={"texts": texts}, timeout=60)
    finally:
        plain_server.close()
    assert fast.status_code == got.status_code == 200
    _same(fast.json()["predictions"], clf, texts)
    _same(got.json()["predictions"], clf, texts)
    assert main(["serve", "--model", str(baseline), "--http", "fast"]) == 2


def test_serve_refuses(baseline, tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    with socket.socket() as s:  # a port already taken: one line, before loading anything
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(baseline), "--port", str(port)]) == 2
    assert main(["serve", "--model", str(baseline), "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("sparse-rational: error:") for line in err), err
    assert "cannot listen" in err[1]


# -- the fast path of POST /predict, and scoring on the event loop (issue 30, item 4) ------


@pytest.fixture(scope="module")
def apps(baseline, clf):
    """The app with its fast path for ``POST /predict`` and without (the routes only)."""
    from sparse_rational.web.server import ServeOptions, create_app

    options = {"model": str(baseline), "no_table": True, "max_body_bytes": 4000, "max_texts": 5}
    return {fast: create_app(ServeOptions(**options, fast_path=fast), clf) for fast in (True, False)}


def _requests():
    """(method, path, content, headers) of good and bad requests (the route refuses most)."""
    j, big = {"content-type": "application/json"}, json.dumps({"texts": ["a" * 5000]}).encode()
    bodies = [
        b'{"texts": ["great pan", "the lid rusted", ""]}',
        b'{"texts": []}',
        b'{"texts": 1, "texts": ["last key wins"]}',
        b' {"texts": ["\\u00e9t\\u00e9 \\ud83d\\ude00"]} ',
        b'{"texts": ["a", ',
        b'{"texts": ["caf\xe9"]}',
        b'\xef\xbb\xbf{"texts": ["a BOM"]}',
        b'{"texts": [NaN]}',
        b'{"texts": ["go \\ud800"]}',
        b'{"texts": ["a\nb"]}',
        b'{"texts": ["x", "x", "x", "x", "x", "x"]}',
        b'{"texts": "just one"}',
        b'{"texts": [1, 2]}',
        b'["a", "b"]',
        b'{"text": "a"}',
        b"[" * 5000 + b"]" * 5000,
        b"[" * 900 + b"]" * 900,
        b'{"texts": [' + b"[" * 990 + b"]" * 990 + b"]}",
        b"",
        big,
    ]
    for body in bodies:
        yield "POST", "/predict", body, j
    for ctype in ("application/json; charset=utf-8", "Application/JSON", "text/plain", "application/jsonx", ""):
        yield "POST", "/predict", bodies[0], {"content-type": ctype}
    yield "POST", "/predict", iter([big[:3000], big[3000:]]), j  # no Content-Length: the limit while reading
    yield "POST", "/predict", iter([bodies[0][:9], bodies[0][9:20], bodies[0][20:]]), j  # in pieces, under it
    yield "GET", "/predict", b"", {}
    yield "PUT", "/predict", bodies[0], j
    yield "POST", "/predict/", bodies[0], j
    yield "POST", "/nothing", bodies[0], j
    yield "POST", "/explain", b'{"text": "great pan"}', j


def test_the_fast_path_answers_byte_for_byte_as_the_routes(apps, monkeypatch):
    """Every answer of the app with its fast path (status, headers, body) equals the answer of
    the routes alone, for good and bad requests; the good ones do not reach the route."""
    from starlette.testclient import TestClient

    from sparse_rational.web import server

    routed = {True: 0, False: 0}  # bodies read by the route, with and without the fast path
    read_json = server.read_json

    async def counted(request, limit):
        routed[fast] += 1
        return await read_json(request, limit)

    monkeypatch.setattr(server, "read_json", counted)
    answers = {}
    for fast, app in apps.items():
        with TestClient(app, follow_redirects=False) as client:
            answers[fast] = []
            for method, path, content, headers in _requests():
                r = client.request(method, path, content=content, headers=headers)
                answers[fast].append((method, path, r.status_code, r.headers.raw, r.content))
            assert client.get("/health").json()["requests"] == len(answers[fast]) + 1  # each counted once
    statuses = [a[2] for a in answers[True]]
    assert statuses.count(200) >= 6 and {307, 400, 404, 405, 413, 415, 422} <= set(statuses), statuses
    for got, want in zip(answers[True], answers[False], strict=True):
        assert got == want
    answered_fast = sum(1 for method, path, status, *_ in answers[True] if path == "/predict" and status == 200)
    assert answered_fast >= 6 and routed[False] - routed[True] == answered_fast, (routed, answered_fast)


def test_an_error_while_scoring_on_the_fast_path_is_the_routes_500(baseline, clf, monkeypatch):
    from starlette.testclient import TestClient

    from sparse_rational.web import server

    def broken(self, texts):
        raise RuntimeError("the model broke\nbadly")

    monkeypatch.setattr(server.Model, "predict", broken)
    answers = []
    for fast in (True, False):
        app = server.create_app(server.ServeOptions(model=str(baseline), no_table=True, fast_path=fast), clf)
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.post("/predict", json={"texts": ["great pan"]})
            answers.append((r.status_code, r.headers.raw, r.content))
            assert client.post("/predict", json={"texts": []}).status_code == 200  # still serving
    assert answers[0] == answers[1] and answers[0][0] == 500 and b"the model broke" in answers[0][2]


@pytest.mark.parametrize(
    ("inline_chars", "cheap", "on_loop"),
    [(0, True, False), (7, True, False), (8, True, True), (16000, True, True), (16000, False, False)],
)
def test_the_batcher_scores_small_calls_on_the_event_loop(inline_chars, cheap, on_loop):
    """A model call of at most ``inline_chars`` characters runs on the event loop's thread, a
    larger one (any, with 0), or any when the scorer is not the cheap one, on the model thread."""
    import asyncio
    import threading

    from sparse_rational.web.server import Batcher

    ran_on = []

    def score(texts):
        ran_on.append(threading.get_ident())
        return [len(t) for t in texts]

    async def run():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(score, pool, inline_chars=inline_chars, cheap=lambda: cheap)
            batcher.start()
            rows = await batcher.submit(["four", "five"])  # 8 characters
            await batcher.stop()
        return rows, threading.get_ident()

    rows, loop_thread = asyncio.run(run())
    assert rows == [4, 4] and len(ran_on) == 1
    assert (ran_on[0] == loop_thread) == on_loop


def test_only_the_folded_predictor_counts_as_cheap(baseline, clf):
    """The event loop scores only through the folded predictor: not a model without a
    vocabulary (transformer vectors), nor the PyTorch scan while the fused kernel loads."""
    from types import SimpleNamespace

    from sparse_rational.web.server import Model, ServeOptions

    options = ServeOptions(model=str(baseline))
    for impl, vocab, cheap in (("auto", clf.vocab, True), ("scan", clf.vocab, False), ("auto", None, False)):
        stub = SimpleNamespace(vocab=vocab, model=SimpleNamespace(wfsa=SimpleNamespace(impl=impl)))
        assert Model(options, stub).folded() is cheap


def test_serve_passes_and_checks_inline_chars(baseline, monkeypatch, capsys):
    from sparse_rational.web import server

    seen = []
    monkeypatch.setattr(server, "serve", lambda options, **kwargs: seen.append(options) or 0)
    assert main(["serve", "--model", str(baseline), "--inline-chars", "123"]) == 0
    assert main(["serve", "--model", str(baseline)]) == 0
    assert [o.inline_chars for o in seen] == [123, 16000]
    assert main(["serve", "--model", str(baseline), "--inline-chars", "-1"]) == 2
    assert "--inline-chars" in capsys.readouterr().err


def test_the_command_line_imports_no_server_until_serve_runs():
    """``predict`` and the other commands start without asyncio and the server (``serve``'s
    defaults come from ``web/options.py``): tens of milliseconds of every start."""
    names = "{'asyncio', 'sparse_rational.web.server'}"
    code = f"import sys, sparse_rational.cli; print(sorted({names} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
