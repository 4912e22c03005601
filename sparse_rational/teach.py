"""Learning from a teacher: knowledge distillation into a rational RNN (docs/DESIGN.md,
"Learning from a teacher").

A teacher gives class probabilities ``p`` for any text. The student's loss on a labelled
training text mixes the usual cross-entropy with the teacher's temperature-softened
probabilities (Hinton, Vinyals & Dean 2015)::

    loss = (1 - a) * CE(y, softmax(z)) + a * T^2 * CE(q_T, softmax(z / T)),
    q_T = softmax(log p / T)

and on a text without a label (a transfer text, an augmented copy) only the second term.
``a`` is ``TeachOptions.weight``, ``T`` its ``temperature``.

Teachers:

* a model folder of ours (any embeddings: ``hf:minilm``, GloVe, another structure), read
  with :meth:`~sparse_rational.pipeline.TextClassifier.load`: JSON and safetensors only;
* ``tfidf``: TF-IDF of word 1-2-grams and a logistic regression whose C is chosen on dev,
  fitted in-process on the training split (seconds). Its probabilities of the training
  texts are cross-fitted (each fifth by a model fitted on the other four fifths), so they
  are as uncertain as on new text, not memorised.

Transfer texts: the training texts, the unlabelled texts of ``--transfer FILE`` (one per
line), and ``--augment K`` copies of each training text made as Tang et al. 2019 ("Distilling
task-specific knowledge from BERT into simple neural networks") do: every word is masked
with probability 0.1 (:data:`MASK`, unknown to the student) or replaced with probability
0.1 by a word drawn from the training texts (Tang et al. draw one of the same part of
speech; no tagger is available offline, so any word is drawn), and with probability 0.25
the copy is then cut to a random n-gram of 1 to 5 words. A folder teacher's probabilities
are computed once per text and cached on disk, keyed by the teacher's files and the text
(``$SPARSE_RATIONAL_CACHE/../teacher`` or ``~/.cache/sparse-rational/teacher``).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import tokenize
from .data.reading import is_device
from .errors import ParameterError, UserError
from .fileio import atomic_write_bytes
from .log import get_logger
from .validate import read_file

_log = get_logger(__name__)

TFIDF = "tfidf"
MASK = "xxmaskxx"  # one token to the tokenizer, no word vector: the student reads <unk>
P_MASK, P_REPLACE, P_NGRAM, MAX_NGRAM = 0.1, 0.1, 0.25, 5
CROSS_FIT_FOLDS = 5


@dataclass
class Taught:
    """What a teacher contributes to a run: the transfer texts (training texts first, in
    order), the teacher's probabilities of each ``[n, C]`` in the student's class order, and
    the record for the model's metrics and card."""

    texts: list[str]
    probabilities: np.ndarray
    record: dict


def cache_root() -> Path:
    env = os.environ.get("SPARSE_RATIONAL_CACHE")
    base = Path(env).expanduser().parent if env else Path.home() / ".cache" / "sparse-rational"
    return base / "teacher"


def read_transfer(path: str | os.PathLike) -> list[str]:
    """The unlabelled texts of ``path``, one per non-empty line (an FDU-MTL ``*.task.unlabel``
    file, whose lines start with a label column, gives the text after the tab). A missing,
    empty, binary or non-UTF-8 file is a one-line error."""
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            if is_device(handle):
                raise ParameterError("transfer", f"{path}: a device, not a file of texts (one text per line)")
            raw = handle.read()
    except OSError as exc:
        raise ParameterError("transfer", f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\0" in raw[:65536]:
        raise ParameterError("transfer", f"{path}: a binary file, not text (one text per line)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ParameterError("transfer", f"{path}: line {line} is not UTF-8 text") from None
    unlabel = p.name.endswith(".unlabel")  # FDU-MTL: label<TAB>text
    lines = [line.split("\t", 1)[1] if unlabel and "\t" in line else line for line in text.splitlines()]
    texts = [t.strip() for t in lines if t.strip()]
    if not texts:
        raise ParameterError("transfer", f"{path}: no text in it (one text per line)")
    return texts


def augment(texts: Sequence[str], copies: int, seed: int = 0) -> list[str]:
    """``copies`` augmented versions of every text (Tang et al. 2019, see the module doc),
    distinct from one another and from the originals, as space-joined tokens. Deterministic
    for a ``seed``."""
    if copies <= 0:
        return []
    rng = random.Random(f"augment:{seed}")
    tokenized = [tokenize(t) for t in texts]
    pool = [w for doc in tokenized for w in doc]
    seen = {" ".join(doc) for doc in tokenized}
    out: list[str] = []
    for doc in tokenized:
        if not doc:
            continue
        for _ in range(copies):
            for _try in range(3):  # a copy equal to one already made is drawn again
                new = []
                for w in doc:
                    r = rng.random()
                    new.append(MASK if r < P_MASK else rng.choice(pool) if r < P_MASK + P_REPLACE else w)
                if rng.random() < P_NGRAM:
                    n = rng.randint(1, min(MAX_NGRAM, len(new)))
                    start = rng.randrange(len(new) - n + 1)
                    new = new[start : start + n]
                text = " ".join(new)
                if text not in seen:
                    seen.add(text)
                    out.append(text)
                    break
    return out


class FolderTeacher:
    """A model folder of ours as a teacher; probabilities cached per text."""

    kind = "model"

    def __init__(self, path: str | os.PathLike, load: Callable[..., Any], device: str = "auto"):
        """``load(folder, device=...)``: the model-folder loader (``TextClassifier.load``)."""
        p = Path(path)
        if not p.is_dir():
            raise ParameterError("teacher", f"{path}: not a model folder (or 'tfidf')")
        if not (p / "model.safetensors").is_file():
            pickles = [f.name for f in p.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
            why = f" ({', '.join(sorted(pickles))} would need a pickle, which is never loaded)" if pickles else ""
            raise ParameterError("teacher", f"{path}: not a model folder of sparse-rational{why}")
        try:
            self.clf = load(p, device=device)
        except UserError as exc:
            raise ParameterError("teacher", f"{path}: {exc}") from None
        self.classes = list(self.clf.classes)
        h = hashlib.sha256()
        for name in ("config.json", "model.safetensors", "vocab.txt"):  # the loader bounded their sizes
            h.update(name.encode() + b"\0" + read_file(p / name, 1 << 40))
        self.identity = h.hexdigest()
        self.source = str(path)
        self.describe = {
            "kind": self.kind,
            "folder": str(path),
            "sha256": self.identity,
            "embeddings": self.clf.embeddings_source,
            "structure": self.clf.metrics.get("structure_summary"),
            "test_accuracy": self.clf.metrics.get("test_accuracy"),
        }

    def probabilities(self, texts: Sequence[str], train_count: int = 0) -> np.ndarray:
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
        path = cache_root() / f"{self.identity[:24]}.npz"
        cached: dict[str, np.ndarray] = {}
        try:
            with np.load(path) as z:
                if z["probs"].shape[1] == len(self.classes):
                    cached = dict(zip(z["keys"].tolist(), z["probs"]))
        except (OSError, ValueError, KeyError):
            pass  # no cache yet, or a damaged one: computed again and rewritten
        # in order: the training texts first, in chunks a transformer teacher reads from its
        # vector cache (a shard of its own training corpus holds them), then the new texts
        todo = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in cached]
        if todo:
            _log.info(f"teacher {self.source}: scoring {len(todo)} texts ({len(texts) - len(todo)} cached)")
        for start in range(0, len(todo), 1024):
            part = todo[start : start + 1024]
            probs = self.clf.predict_proba([t for _, t in part], max_tokens=0)
            cached.update(zip([k for k, _ in part], probs))
            self._write(path, cached)  # after every chunk: an interrupted run keeps what it scored
        return np.stack([cached[k] for k in keys]).astype(np.float64)

    @staticmethod
    def _write(path: Path, cached: dict[str, np.ndarray]) -> None:
        try:
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(list(cached)), probs=np.stack(list(cached.values())).astype(np.float32))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # a read-only cache: the probabilities are still used
            _log.warning(f"teacher cache {path}: not written ({exc.strerror or exc})")


class TfidfTeacher:
    """TF-IDF 1-2-grams + logistic regression (C on dev), fitted on the training split."""

    kind = TFIDF

    def __init__(self, splits, seed: int = 0):
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: F401  # lazy: optional (sklearn)
        except ImportError:
            raise ParameterError(
                "teacher", "'tfidf' needs scikit-learn: pip install 'sparse-rational[sklearn]'"
            ) from None
        self.splits, self.seed = splits, seed
        self.classes = sorted({e.label for e in splits.train})
        texts = [e.text for e in splits.train]
        labels = [e.label for e in splits.train]
        self.C, self.dev_accuracy = self._choose_c(texts, labels)
        self.model = self._fit(texts, labels)
        self.source = TFIDF
        self.identity = TFIDF
        self.describe = {"kind": TFIDF, "C": self.C, "dev_accuracy": self.dev_accuracy}

    def _fit(self, texts, labels, c: float | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer  # lazy: optional (sklearn)
        from sklearn.linear_model import LogisticRegression  # lazy: optional (sklearn)
        from sklearn.pipeline import make_pipeline  # lazy: optional (sklearn)

        vec = TfidfVectorizer(
            tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), min_df=2, sublinear_tf=True
        )
        return make_pipeline(vec, LogisticRegression(C=c or self.C, max_iter=5000)).fit(texts, labels)

    def _choose_c(self, texts, labels) -> tuple[float, float | None]:
        if not self.splits.dev:
            return 10.0, None
        best: tuple[float, float] | None = None
        for c in (1.0, 3.0, 10.0, 30.0, 100.0):
            model = self._fit(texts, labels, c)
            predicted = model.predict([e.text for e in self.splits.dev])
            acc = float(np.mean(predicted == np.array([e.label for e in self.splits.dev])))
            if best is None or acc > best[1]:
                best = (c, acc)
        assert best is not None
        return best

    def _ordered(self, model, texts) -> np.ndarray:
        probs = model.predict_proba(texts)
        cols = [list(model.classes_).index(c) for c in self.classes]
        return probs[:, cols]

    def probabilities(self, texts: Sequence[str], train_count: int = 0) -> np.ndarray:
        """``texts[:train_count]`` are the training texts, in order: cross-fitted."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.classes)))
        if train_count:
            labels = [e.label for e in self.splits.train]
            folds = np.random.default_rng(self.seed).permutation(train_count) % CROSS_FIT_FOLDS
            for k in range(CROSS_FIT_FOLDS):
                held = np.flatnonzero(folds == k)
                kept = np.flatnonzero(folds != k)
                model = self._fit([texts[i] for i in kept], [labels[i] for i in kept])
                out[held] = self._ordered(model, [texts[i] for i in held])
        if len(texts) > train_count:
            out[train_count:] = self._ordered(self.model, texts[train_count:])
        return out


def load_teacher(spec: str, splits, load: Callable[..., Any], seed: int = 0, device: str = "auto"):
    """The teacher ``spec`` names (a model folder, read with ``load``, or ``tfidf``), checked
    against the data's classes."""
    teacher = TfidfTeacher(splits, seed) if spec == TFIDF else FolderTeacher(spec, load, device)
    classes = sorted({e.label for e in splits.train})
    if sorted(teacher.classes) != classes:
        raise ParameterError(
            "teacher",
            f"{spec}: its classes ({', '.join(teacher.classes)}) differ from the data's ({', '.join(classes)})",
        )
    return teacher


def teach(
    splits,
    options,
    classes: Sequence[str],
    load: Callable[..., Any],
    seed: int = 0,
    device: str = "auto",
    verbose: bool = True,
) -> Taught:
    """The transfer texts of a run (the training texts, ``options.transfer``'s, and
    ``options.augment`` copies of each training text) and the teacher's probabilities of
    them, columns in the order of ``classes``."""
    teacher = load_teacher(options.teacher, splits, load, seed, device)
    train_texts = [e.text for e in splits.train]
    transfer = read_transfer(options.transfer) if options.transfer else []
    augmented = augment(train_texts, options.augment, seed)
    texts = train_texts + transfer + augmented
    probs = teacher.probabilities(texts, train_count=len(train_texts))
    cols = [list(teacher.classes).index(c) for c in classes]
    probs = probs[:, cols]
    gold = [list(classes).index(e.label) for e in splits.train]
    train_acc = float(np.mean(probs[: len(train_texts)].argmax(1) == gold))
    record = {
        **teacher.describe,
        "weight": options.teacher_weight,
        "temperature": options.temperature,
        "transfer_file": str(options.transfer) if options.transfer else None,
        "transfer_texts": len(transfer),
        "augment": options.augment,
        "augmented_texts": len(augmented),
        "teacher_train_accuracy": round(train_acc, 4),
    }
    if verbose:
        _log.info(
            f"teacher {teacher.source}: {len(train_texts)} training texts (teacher accuracy {train_acc:.3f}), "
            f"{len(transfer)} transfer texts, {len(augmented)} augmented copies"
        )
    return Taught(texts, probs, record)
