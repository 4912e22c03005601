"""``sparse-rational serve``: an ASGI app (starlette) run by uvicorn; the ``serve`` extra.

Endpoints (every error is JSON ``{"error": "one line"}`` with a clear status):

==================  ======================================================================
``POST /predict``   ``{"texts": [str, ...]}`` -> ``{"predictions": [{"label", "probabilities"}]}``
                    (the numbers of ``sparse-rational predict``)
``POST /explain``   ``{"text": str}`` -> one explanation: tokens, probabilities, each WFSA's score,
                    contributions and best/worst path (:mod:`.payload`)
``GET /``           the interactive page (:mod:`.demo`, ``api`` mode), scoring through ``/explain``
``GET /health``     ``{"status": "ok", ...}`` and counters, for load balancers
==================  ======================================================================

Limits: a body over ``max_body_bytes`` gets 413 (checked on ``Content-Length`` and while
reading, so a lying or missing length cannot get more through); more than ``max_texts``
texts, or a body of the wrong shape, 422; a content type other than ``application/json``,
415; invalid JSON or bytes that are not UTF-8, 400. Texts longer than ``max_tokens`` tokens
are cut as ``predict`` cuts them; ``/explain`` explains the first ``max_explain_tokens``
tokens (``"truncated": true`` says it cut the text: explaining is a Python loop over the
tokens, about 1 ms a token, where predicting is a fused kernel). An unexpected failure is a
500 for that request only.

Batching (:class:`Batcher`): every ``/predict`` request puts its texts on one queue; a
single task takes everything waiting (up to ``max_batch`` texts), scores it in one model
call, and hands each request its rows. Requests that arrive while the model is busy
therefore share the next call; ``batch_wait_ms`` can hold a call back to gather more. A
call of at most ``inline_chars`` characters (a few reviews: about a millisecond) runs on
the event loop itself, which costs less CPU than handing it to the model thread and back;
a larger one runs on the model thread, so the loop goes on answering meanwhile, and so does
every call of a model that is not scored by the folded predictor (transformer vectors, or
the PyTorch scan while the fused kernel loads).
``/explain`` runs on a thread of its own, so a long explanation does not hold up
predictions (both only read the model).

A well-formed ``POST /predict`` is answered by :class:`FastPredict`, an ASGI middleware in
front of Starlette's routing; everything else, every refusal included, by the routes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from ..errors import UserError, one_line
from .options import ServeOptions
from .tables import table_for

ENV = "SPARSE_RATIONAL_SERVE_OPTIONS"  # the options, as JSON, for the worker processes of --workers N
INSTALL = "pip install 'sparse-rational[serve]'"


def _require():
    """starlette and uvicorn, or a one-line error naming the install command."""
    try:
        import starlette  # noqa: F401  # lazy: optional (starlette)
        import uvicorn  # lazy: optional (uvicorn)
    except ImportError:
        raise UserError(f"serve needs starlette and uvicorn: {INSTALL}") from None
    return uvicorn


def _json_bytes() -> Callable[[Any], bytes]:
    """orjson's ``dumps`` when installed (the serve extra's: several times faster on the
    responses' many floats), else the standard library's, as compact UTF-8 bytes."""
    try:
        import orjson  # lazy: optional (orjson: the serve extra)
    except ImportError:
        return lambda content: json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return orjson.dumps


def _json_loads() -> Callable[[bytes], Any]:
    """orjson's ``loads`` when installed, else the standard library's on the body decoded as
    UTF-8 (both raise a ValueError for what is not UTF-8 JSON)."""
    try:
        import orjson  # lazy: optional (orjson: the serve extra)
    except ImportError:
        return lambda body: json.loads(body.decode("utf-8"))
    return orjson.loads


class Problem(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Batcher:
    """Scores the texts of concurrent requests together (module doc).

    ``score(texts) -> rows`` runs on ``executor``, or on the event loop itself when the batch
    holds at most ``inline_chars`` characters and ``cheap()`` says the scorer is the fast one
    (its cost per character known); :meth:`submit` returns this request's rows."""

    def __init__(
        self,
        score: Callable[[list[str]], Sequence[Any]],
        executor: ThreadPoolExecutor,
        max_batch: int = 256,
        wait: float = 0.0,
        inline_chars: int = 0,
        cheap: Callable[[], bool] = lambda: True,
    ):
        self.score, self.executor, self.max_batch, self.wait = score, executor, max_batch, wait
        self.inline_chars, self.cheap = inline_chars, cheap
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
        self.batches = 0
        self.texts = 0
        self.largest = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, texts: list[str]) -> Sequence[Any]:
        if not texts:
            return []
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    def _take(self, items: list, count: int) -> int:
        while count < self.max_batch and not self.queue.empty():
            item = self.queue.get_nowait()
            items.append(item)
            count += len(item[0])
        return count

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            count = self._take(items, len(items[0][0]))
            if self.wait > 0 and count < self.max_batch:
                await asyncio.sleep(self.wait)
                count = self._take(items, count)
            items = [(texts, fut) for texts, fut in items if not fut.done()]  # a client that left
            if not items:
                continue
            texts = [t for ts, _ in items for t in ts]
            try:
                if sum(map(len, texts)) <= self.inline_chars and self.cheap():  # cheaper than a hand-off
                    rows = self.score(texts)
                else:
                    rows = await loop.run_in_executor(self.executor, self.score, texts)
            except Exception as exc:  # each request gets the error; the server goes on
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.texts += len(texts)
            self.largest = max(self.largest, len(texts))
            k = 0
            for ts, fut in items:
                if not fut.done():
                    fut.set_result(rows[k : k + len(ts)])
                k += len(ts)


def _is_json(ctype: str) -> bool:
    return ctype.split(";")[0].strip().lower() == "application/json"


async def read_json(request, limit: int) -> Any:
    """The request's JSON body, or a :class:`Problem` (415, 413, 400)."""
    ctype = request.headers.get("content-type", "")
    if not _is_json(ctype):
        raise Problem(415, f"send the body as application/json (got content type {ctype or 'none'!r})")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(413, f"the body has {int(length)} bytes, more than the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"the body has more than the limit of {limit} bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Problem(400, f"the body is not valid JSON ({one_line(exc, 120)})") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(text: str, field: str) -> str:
    """``text``, unless it holds a lone surrogate (JSON's ``"\\ud800"`` escape parses to
    one), which is not Unicode text and could not be written back as UTF-8: a 422."""
    found = _SURROGATE.search(text)
    if found:
        raise Problem(422, f"{field} holds a lone surrogate (\\u{ord(found[0]):04x}), which is not Unicode text")
    return text


async def client_gone(request) -> None:
    """Returns when the client of ``request`` (whose body was read) disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _texts(body: Any, max_texts: int) -> list[str]:
    if not isinstance(body, dict) or "texts" not in body:
        raise Problem(422, 'send a JSON object {"texts": [text, ...]}')
    texts = body["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise Problem(422, '"texts" must be a list of strings')
    if len(texts) > max_texts:
        raise Problem(422, f"{len(texts)} texts in one request; the limit is {max_texts} (split the request)")
    for k, text in enumerate(texts):
        _unicode(text, f'"texts"[{k}]')
    return texts


def _text(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise Problem(422, 'send a JSON object {"text": "..."}')
    return _unicode(body["text"], '"text"')


class FastPredict:
    """ASGI middleware: answers a well-formed ``POST /predict`` itself, without Starlette's
    routing, exception wrappers and request and response objects (about a third of the
    server's CPU time per request; docs/results/web/fast_path.md). It reads the body, parses it
    with ``loads`` (orjson's: stricter than the standard library's, never more lenient) and
    checks it as the ``/predict`` route does. Every other request, and every ``/predict`` whose
    headers or body are not what the fast path takes, goes on to ``app`` (the route) with the
    body replayed, so each error answer is the route's own. An exception while scoring
    propagates, as from the route, to Starlette's error handler (the same 500)."""

    def __init__(self, app, batcher: Batcher, options: ServeOptions, loads: Callable[[bytes], Any], dumps):
        self.app, self.batcher, self.options, self.loads, self.dumps = app, batcher, options, loads, dumps

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        ctype = length = None
        for key, value in scope["headers"]:  # the first of each, as the route's request.headers.get
            if key == b"content-type" and ctype is None:
                ctype = value
            elif key == b"content-length" and length is None:
                length = value
        limit = self.options.max_body_bytes
        fits = length is None or (length.isdigit() and len(length) < 16 and int(length) <= limit)
        if ctype is None or not _is_json(ctype.decode("latin-1")) or not fits:
            return await self.app(scope, receive, send)
        messages, chunks, size = [], [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit or not message.get("more_body", False):
                break
        texts = self._texts(b"".join(chunks)) if message["type"] == "http.request" and size <= limit else None
        if texts is None:
            return await self.app(scope, _replay(messages, receive), send)
        content = self.dumps({"predictions": list(await self.batcher.submit(texts))})
        headers = [(b"content-length", str(len(content)).encode("latin-1")), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _texts(self, body: bytes) -> list[str] | None:
        """The texts of a body that the route would take, else None (the route answers)."""
        try:
            return _texts(self.loads(body), self.options.max_texts)
        except (ValueError, RecursionError, Problem):  # orjson's JSONDecodeError is a ValueError
            return None


def _replay(messages: list[dict], receive):
    """An ASGI ``receive`` that gives ``messages`` again, then those of ``receive``."""
    pending = list(messages)

    async def again() -> dict:
        return pending.pop(0) if pending else await receive()

    return again


class Model:
    """The loaded classifier and what the endpoints compute with it (on the model thread)."""

    def __init__(self, options: ServeOptions, clf=None):
        from ..ops import forced_impl  # lazy: start-up (torch)
        from ..pipeline import TextClassifier  # lazy: start-up (torch)

        self.options = options
        # serve with the pure-PyTorch scan at once, the fused kernel once it is loaded (load_kernel)
        self.kernel_later = clf is None and forced_impl() is None
        if clf is None:
            impl = "scan" if self.kernel_later else "auto"
            clf = TextClassifier.load(options.model, impl=impl, allow_download=options.allow_download)
        self.clf = clf

    def load_kernel(self) -> None:
        """Switch to the fused C++ kernel (``impl="auto"``) once it is loaded: its first load
        imports ``torch._dynamo``, seconds that the server need not wait; until then the
        pure-PyTorch scan serves (the same numbers to float32 rounding)."""
        if not self.kernel_later:
            return
        from ..ops.cpu import cpp_available  # lazy: start-up (torch)

        if cpp_available():
            self.clf.model.wfsa.impl = "auto"

    @property
    def impl(self) -> str:
        return str(self.clf.model.wfsa.impl)

    _fast: Any = None  # the folded predictor, once the model serves through it (static vectors)

    def folded(self) -> bool:
        """Whether :meth:`predict` scores through the folded predictor (static word vectors,
        once the fused kernel is loaded): about a millisecond for a few reviews, cheap enough
        for the event loop. A transformer model, or the PyTorch scan before the kernel loads,
        costs far more per character."""
        return self.impl == "auto" and self.clf.vocab is not None

    def predict(self, texts: list[str]) -> list[dict]:
        classes = self.clf.classes
        if self._fast is None and self.folded():
            self._fast = self.clf.folded()  # built once: the served model never changes
        if self._fast is not None:
            probs = self._fast.predict_proba(texts, self.options.max_tokens)
        else:
            probs = self.clf.predict_proba(texts, max_tokens=self.options.max_tokens)
        return [
            {"label": classes[int(row.argmax())], "probabilities": {c: float(p) for c, p in zip(classes, row)}}
            for row in probs
        ]

    def explain(self, text: str) -> dict:
        from ..embeddings.featurizer import cut_text  # lazy: start-up (torch)
        from ..explain.contributions import explain_documents  # lazy: start-up (torch)
        from ..explain.documents import Document, encode_documents  # lazy: start-up (torch)
        from .payload import explanation_payload  # lazy: start-up (data readers)

        clf, max_tokens = self.clf, self.options.max_explain_tokens
        text, truncated = cut_text(text, max_tokens)
        if clf.vocab is not None:  # cut as predict cuts (StaticVectors.encode)
            words = clf.vocab.words(text)
            keep = max(max_tokens, 2)
            if max_tokens > 0 and len(words) > keep:
                words = words[: keep - 1] + words[-1:]
                truncated = True
            doc = Document(words, ids=clf.vocab.ids(words), text=text)
        else:
            doc = encode_documents(clf, [text])[0]
        out = explanation_payload(explain_documents(clf, [doc])[0], clf.model.config.structure)
        out["truncated"] = truncated
        return out

    def page(self) -> str:
        from .demo import render_page, say  # lazy: start-up (torch)

        try:
            patterns, note = table_for(self.options.table_source(), self.clf)
        except UserError as exc:
            say(f"warning: Table 1 left out ({exc})")
            patterns, note = None, f"Table 1 left out: {exc}"
        cfg = self.clf.model.config
        return render_page(
            self.clf,
            "api",
            patterns,
            note,
            title=f"sparse-rational: {os.path.basename(os.path.normpath(self.options.model))}",
            subtitle=f"{len(cfg.structure)} WFSAs, {cfg.transitions} transitions, classes "
            f"{', '.join(self.clf.classes)}; served by sparse-rational serve.",
            max_tokens=self.options.max_tokens,
        )


def create_app(options: ServeOptions, clf=None):
    """The ASGI app (module doc); loads the model now (a bad model folder is a UserError)."""
    _require()
    import torch  # lazy: start-up (torch)
    from starlette.applications import Starlette  # lazy: optional (starlette)
    from starlette.exceptions import HTTPException  # lazy: optional (starlette)
    from starlette.middleware import Middleware  # lazy: optional (starlette)
    from starlette.requests import Request  # lazy: optional (starlette)
    from starlette.responses import HTMLResponse, JSONResponse  # lazy: optional (starlette)
    from starlette.routing import Route  # lazy: optional (starlette)

    dumps = _json_bytes()

    def render(content: Any) -> bytes:  # orjson when it is there
        try:
            return dumps(content)
        except TypeError:  # what orjson refuses (a lone surrogate in a class name): the standard library's
            return bytes(JSONResponse(content).body)

    class FastJSON(JSONResponse):  # the same responses, rendered by orjson when it is there
        def render(self, content: Any) -> bytes:
            return render(content)

    # One request's texts are few: with more threads each model call pays for waking them
    # (measured: 2.9 ms a call with 1 thread, 12-60 ms with 2 on a loaded 2-core machine;
    # docs/results/web/README.md). Scale with --workers instead.
    torch.set_num_threads(options.threads)
    model = Model(options, clf)
    executor = ThreadPoolExecutor(1, thread_name_prefix="sparse-rational-predict")
    explainer = ThreadPoolExecutor(1, thread_name_prefix="sparse-rational-explain")
    threading.Thread(target=model.load_kernel, name="sparse-rational-kernel", daemon=True).start()
    wait = options.batch_wait_ms / 1000
    batcher = Batcher(model.predict, executor, options.max_batch, wait, options.inline_chars, model.folded)
    started = time.time()
    page_lock = asyncio.Lock()
    page_html: list[str] = []
    counts = {"requests": 0, "errors": 0}

    async def predict(request: Request):
        body = await read_json(request, options.max_body_bytes)
        texts = _texts(body, options.max_texts)
        rows = await batcher.submit(texts)
        return FastJSON({"predictions": list(rows)})

    explaining = {"pending": 0, "seconds": 1.0}  # in the explain queue; a moving mean of one's time

    def explain_done(seconds: float) -> None:
        explaining["pending"] -= 1
        if seconds > 0:
            explaining["seconds"] = 0.8 * explaining["seconds"] + 0.2 * seconds

    async def explain(request: Request):
        body = await read_json(request, options.max_body_bytes)
        text = _text(body)
        if explaining["pending"] >= options.max_explain_queue:
            wait = math.ceil(explaining["seconds"] * explaining["pending"])
            raise Problem(
                503,
                f"{explaining['pending']} explanations are queued, the limit of --max-explain-queue; retry later",
                {"Retry-After": str(max(1, wait))},
            )
        gone = threading.Event()  # set when the client disconnects: its queued work is dropped

        def job() -> dict | None:
            if gone.is_set():
                return None
            return model.explain(text)

        explaining["pending"] += 1
        start = time.monotonic()
        work = asyncio.get_running_loop().run_in_executor(explainer, job)

        def finished(f: asyncio.Future) -> None:
            ran = not f.cancelled() and f.exception() is None and f.result() is not None
            explain_done(time.monotonic() - start if ran else 0.0)

        work.add_done_callback(finished)
        left: asyncio.Future = asyncio.ensure_future(client_gone(request))
        try:
            await asyncio.wait([work, left], return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
        if not work.done():  # nobody to answer: drop the work if it has not started
            gone.set()
            return JSONResponse({"error": "the client went away"}, status_code=503)
        return JSONResponse(work.result())

    async def page(request: Request):
        async with page_lock:
            if not page_html:  # built on first use (Table 1 reads the training data)
                page_html.append(await asyncio.get_running_loop().run_in_executor(None, model.page))
        return HTMLResponse(page_html[0])

    async def health(request: Request):
        return JSONResponse(
            {
                "status": "ok",
                "model": options.model,
                "classes": list(model.clf.classes),
                "uptime_s": round(time.time() - started, 3),
                "pid": os.getpid(),
                "batches": batcher.batches,
                "texts": batcher.texts,
                "largest_batch": batcher.largest,
                "impl": model.impl,
                **counts,
            }
        )

    def error(status: int, message: str) -> JSONResponse:
        counts["errors"] += 1
        return JSONResponse({"error": message}, status_code=status)

    async def on_problem(request: Request, exc: Exception):
        assert isinstance(exc, Problem)
        response = error(exc.status, exc.message)
        response.headers.update(exc.headers or {})
        return response

    async def on_http(request: Request, exc: Exception):
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail))

    async def on_error(request: Request, exc: Exception):
        print(f"sparse-rational: error on {request.url.path}: {one_line(exc, 300)}", file=sys.stderr)
        return error(500, f"internal error: {one_line(exc, 200)}")

    class Count:  # ASGI middleware: count the requests
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                counts["requests"] += 1
            await self.app(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            explainer.shutdown(wait=False, cancel_futures=True)

    fast = [Middleware(FastPredict, batcher, options, _json_loads(), render)] if options.fast_path else []
    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/explain", explain, methods=["POST"]),
            Route("/", page, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={Problem: on_problem, HTTPException: on_http, Exception: on_error},
        middleware=[Middleware(Count)] + fast,
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.model = model
    return app


def app_from_environment():
    """The app of one worker process of ``--workers N`` (options from ``$SPARSE_RATIONAL_SERVE_OPTIONS``)."""
    return create_app(ServeOptions(**json.loads(os.environ[ENV])))


def _check_port(host: str, port: int) -> None:
    """A one-line error now, rather than uvicorn's log lines, if the address is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"--host {host}: cannot resolve ({exc.strerror or exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def serve(
    options: ServeOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    access_log=False,
    http: str = "auto",
    loop: str = "auto",
) -> int:
    """Run the server until interrupted (Ctrl-C or SIGTERM: a graceful stop). ``http`` and
    ``loop``: uvicorn's parser and event loop (``auto``: httptools and uvloop when installed)."""
    uvicorn = _require()
    for name, value, module in (("--http", http, "httptools"), ("--loop", loop, "uvloop")):
        if value == module:
            try:
                __import__(module)
            except ImportError:
                raise UserError(f"{name} {value}: the package {module} is not installed ({INSTALL})") from None
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "info",
        "timeout_graceful_shutdown": 5,
        "http": http,
        "loop": loop,
    }
    if workers == 1:
        app = create_app(options)  # the model is loaded (and checked) before the port is taken
        _check_port(host, port)
        print(f"sparse-rational: serving {options.model} on http://{host}:{port}", file=sys.stderr, flush=True)
        uvicorn.run(app, **common)
        return 0
    Model(options)  # check the model once, with a one-line error, before starting the workers
    _check_port(host, port)
    os.environ[ENV] = json.dumps(asdict(options))
    print(f"sparse-rational: serving {options.model} on http://{host}:{port} ({workers} workers)", file=sys.stderr)
    uvicorn.run("sparse_rational.web.server:app_from_environment", factory=True, workers=workers, **common)
    return 0
