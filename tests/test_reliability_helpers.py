"""Shared by the reliability tests (test_reliability_checkpoints.py, _model_files.py,
_inputs.py, _training.py): tiny synthetic data on one-hot vectors, training through the API
and the command line, and comparisons of results. It holds no tests; a module that uses it
makes its fixtures from ``one_torch_thread`` (autouse ``_one_thread``) and
``onehot_vectors`` (``onehot``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_rational.checkpoint import Checkpointer
from sparse_rational.data import Example, Splits
from sparse_rational.learn import StructureOptions
from sparse_rational.pipeline import TextClassifier, train_text_classifier
from sparse_rational.train import TrainConfig

WORDS = [f"w{i}" for i in range(12)]


def one_torch_thread():
    """Tiny tensors: more threads only add contention on a shared machine (each module
    makes this its autouse, module-scoped fixture ``_one_thread``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TIMING = {"train_seconds", "seconds_per_epoch"}


def onehot_vectors(tmp_path_factory) -> str:
    """A one-hot vector file of ``WORDS`` (modules make this their fixture ``onehot``)."""
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(WORDS))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(WORDS, eye)))
    return str(path)


def task(n: int, seed: int, pos_share: float = 0.5) -> list[Example]:
    """Positive iff the document holds w0 (negatives hold w1), in random filler."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.random() < pos_share)
        words = list(rng.choice(WORDS[2:], size=rng.integers(4, 9)))
        words.insert(rng.integers(0, len(words) + 1), "w0" if label else "w1")
        out.append(Example(" ".join(words), "pos" if label else "neg"))
    return out


SPLITS = Splits(task(96, 1), task(32, 2), task(32, 3))


def run_api(
    vectors, checkpoint=None, splits=SPLITS, patterns="3x2", reg=0.0, target=None, epochs=6, reg_epochs=3, **opts
):
    cfg = TrainConfig(epochs=epochs, patience=epochs, batch_size=16, lr=0.05, seed=3)
    # the paper's phases (penalty gradient, lambda search, scores at the end) unless a test says otherwise
    opts = {"penalty_update": "gradient", "structure_search": "lambda", **opts}
    readout = opts.pop("readout", "final")
    sopts = StructureOptions(reg_epochs=reg_epochs, **opts)
    return train_text_classifier(
        splits,
        vectors,
        patterns,
        reg_strength=reg,
        target_transitions=target,
        train_config=cfg,
        structure_options=sopts,
        dropout=0.2,
        input_dropout=0.2,
        readout=readout,
        verbose=False,
        checkpoint=checkpoint,
    )


def without_timing(metrics) -> dict:
    """The metrics that a rerun must reproduce: no wall times (nor the seconds of each
    epoch in history, or the date and the command line, with its --out, in provenance)."""
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    if out.get("history"):
        out["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in out["history"]]
    if out.get("provenance"):
        out["provenance"] = {k: v for k, v in out["provenance"].items() if k not in ("date", "call")}
    return out


def same_result(a: TextClassifier, b: TextClassifier, atol: float = 1e-6) -> None:
    ma, mb = without_timing(a.metrics), without_timing(b.metrics)
    assert ma.keys() == mb.keys()
    for k in ma:
        if isinstance(ma[k], float):
            assert ma[k] == pytest.approx(mb[k], abs=atol), k
        else:
            assert ma[k] == mb[k], k
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=atol)


def one_line(exc: BaseException, *needles: str) -> str:
    msg = str(exc)
    assert msg.splitlines() == [msg] and msg.strip() == msg, f"not one line: {msg!r}"
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def _train_cli(tiny_files, out, *extra):
    return [
        "train",
        "--train",
        str(tiny_files["train"]),
        "--dev",
        str(tiny_files["dev"]),
        "--embeddings",
        "glove-6b-50d",
        "--patterns",
        "2x2",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--quiet",
        "--threads",
        "1",
        *extra,
    ]


class Interrupt(Exception):
    """What :class:`StopAfter` raises: the run stopped as a kill would stop it."""


class StopAfter(Checkpointer):
    """Raises :class:`Interrupt` right after the n-th checkpoint of this process, like a kill
    would (``stop_after=-1``: never; ``saves`` counts them)."""

    def __init__(self, *args, stop_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.left = stop_after
        self.saves = 0

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.saves += 1
        self.left -= 1
        if self.left == 0:
            raise Interrupt
