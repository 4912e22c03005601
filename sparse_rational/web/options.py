"""The options of ``sparse-rational serve`` (:class:`ServeOptions`), apart from the server so
that reading them (the command line's defaults) imports neither asyncio nor the server."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .. import config
from .tables import TableSource


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` needs besides where to listen (JSON-serialisable: the worker processes
    of ``--workers N`` read it from the environment)."""

    model: str
    allow_download: bool = False
    max_body_bytes: int = 2 * 1024 * 1024  # the defaults of serve's options (web/cli.py reads them here)
    max_texts: int = 1000
    max_tokens: int = config.default(config.TrainConfig, "max_tokens")  # as predict
    max_explain_tokens: int = 2000
    max_explain_queue: int = 8  # /explain requests waiting or running; more get 503 + Retry-After
    max_batch: int = 256
    batch_wait_ms: float = 0.0
    inline_chars: int = 16000  # a batch of at most this many characters is scored on the event loop
    threads: int = 1  # torch threads per server process
    dataset: str | None = None  # Table 1 on the page: its training split
    train: str | None = None
    data_dir: str | None = None
    split_seed: int = 0
    top_k: int = 4
    no_table: bool = False
    fast_path: bool = True  # POST /predict through FastPredict (False: the route only; tests compare the two)

    def table_source(self) -> TableSource:
        """Where Table 1 on the page comes from (the fields above that :class:`TableSource` holds)."""
        return TableSource(**{f.name: getattr(self, f.name) for f in fields(TableSource)})
