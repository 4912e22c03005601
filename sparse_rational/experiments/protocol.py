"""The paper's experimental protocol (see docs/DESIGN.md, 'Structure learning') as plain
data: budgets, the configurations (baselines and structure-learning targets), the authors' hyperparameter
space, and the trials a sweep consists of.

Nothing here imports torch: the driver plans and hashes trials, workers run them
(:mod:`sparse_rational.experiments.trial`).

A *configuration* is one point of Figure 3: a fixed-size baseline (no penalty) or a sparse
model learned from ``24x4`` for a target number of transitions (or with a fixed lambda).
For each configuration the sweep runs ``assignments`` random hyperparameter assignments
(the *search* phase, seed 0), picks the best by dev accuracy, and reruns it ``reruns``
times with seeds 1..R (the *rerun* phase). As in the authors' code
(``regularization_search_experiments.train_k_then_l_models``), a sparse rerun reuses the
lambda its search trial found and does not search again, so the number of transitions
varies between reruns (the horizontal error bars).

With ``structure_search="path"`` the target configurations of a dataset share their search:
one penalised run per assignment, its lambda growing along a regularisation path, yields a
model for every target (a *path trial*, configuration ``sparse path 80,60,40,20``); its
record holds one result per target, and a target the path missed is a failed attempt for
that target only (replaced by a new assignment, as a failed lambda search is). Each
target's best assignment is then rerun as a single-target path with seeds 1..R: the path is
walked again until that target (the same trajectory a path to every target takes up to it),
rather than reusing the snapshot's lambda, which belongs to a warm-started, growing
schedule and means nothing for a run from scratch. A target's model is the path's step
nearest to the target within the tolerance (the authors' band, +-10), not the first step
inside the band (its upper edge); path trials carry ``snapshot: nearest`` in their identity,
so the records of the earlier rule are not reused (baselines keep their keys).

``readout``, ``penalty_update`` and ``structure_search`` are part of a trial's identity
only when they differ from the paper's (``final``, ``gradient``, ``lambda``), so a sweep
made before they existed is the same sweep as one with their defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace

from ..config import PATH_SNAPSHOT, ModelOptions, StructureOptions, default
from ..errors import ParameterError, UserError

FORMAT = "sparse-rational-sweep/1"

#: Hyperparameter space of the authors (docs/DESIGN.md, 'Structure learning';
#: ``regularization_search_experiments.hparam_sample``): clip U[1,5], dropout on the WFSA
#: scores and on the input vectors U[0,0.5], lr and weight decay log-uniform.
LR_STATIC = (7e-3, 0.5)
LR_CONTEXTUAL = (7e-5, 5e-3)
WEIGHT_DECAY = (1e-7, 1e-5)
CLIP = (1.0, 5.0)
DROPOUT = (0.0, 0.5)


@dataclass(frozen=True)
class Budget:
    """How much of the protocol to run. ``baselines``/``targets`` of ``None``: all of them."""

    name: str
    assignments: int  # random hyperparameter assignments per configuration
    reruns: int  # reruns of the best assignment (seeds 1..reruns)
    epochs: int  # max epochs (baselines and finetuning)
    patience: int  # early stopping on dev accuracy
    reg_epochs: int  # length of the penalised phase of structure learning (each lambda-search try)
    baselines: tuple[str, ...] | None = None
    targets: tuple[int, ...] | None = None
    # the longest regularisation path (--structure-search path): it ends at its smallest target,
    # and a path of reg_epochs epochs would not reach lambdas that prune (x1.25 per epoch)
    path_epochs: int = 50

    def describe(self) -> str:
        return (
            f"{self.name}: {self.assignments} assignment(s) + {self.reruns} rerun(s) per configuration, "
            f"<= {self.epochs} epochs (patience {self.patience}), penalised phase {self.reg_epochs} epochs"
        )


BUDGETS: dict[str, Budget] = {
    # minutes on 2 cores: a subset of the configurations, a few epochs
    "smoke": Budget(
        "smoke",
        assignments=1,
        reruns=2,
        epochs=5,
        patience=3,
        reg_epochs=3,
        baselines=("24x1", "24x4", "6x1,6x2,6x3,6x4"),
        targets=(40, 20),
        path_epochs=30,
    ),
    # every configuration, a small search: about half an hour per Amazon domain on 2 cores
    "medium": Budget("medium", assignments=4, reruns=3, epochs=40, patience=8, reg_epochs=10),
    # the authors' setting: 20 assignments, 5 reruns, up to 500 epochs, patience 30
    "paper": Budget("paper", assignments=20, reruns=5, epochs=500, patience=30, reg_epochs=50, path_epochs=100),
}


def _choices(cls, name: str) -> tuple[str, ...]:
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"]


#: ``reproduce`` keeps the paper's choices by default, whatever ``train``'s defaults are
READOUTS = _choices(ModelOptions, "readout")
PENALTY_UPDATES = _choices(StructureOptions, "penalty_update")
STRUCTURE_SEARCHES = _choices(StructureOptions, "structure_search")
PAPER = {"readout": "final", "penalty_update": "gradient", "structure_search": "lambda"}
#: the path's schedule (the library's defaults when the plan is made; in path trials' keys)
PATH_OPTIONS = ("path_start", "path_growth", "path_warmup")


def path_defaults() -> dict:
    return {k: default(StructureOptions, k) for k in PATH_OPTIONS}


def is_contextual(embeddings: str) -> bool:
    """Contextual (transformer) embeddings are named ``hf:<model>``."""
    return str(embeddings).startswith("hf:")


def default_baselines(embeddings: str) -> tuple[str, ...]:
    """24 WFSAs of each length 1..4 and the 6,6,6,6 mix (12 and 3,3,3,3 for contextual)."""
    d = 12 if is_contextual(embeddings) else 24
    q = d // 4
    return (*(f"{d}x{n}" for n in (1, 2, 3, 4)), f"{q}x1,{q}x2,{q}x3,{q}x4")


def sparse_start(embeddings: str) -> str:
    """Structure learning starts from as many WFSAs as the baselines, all of length 4: the
    paper's regularised models have "the same number of WFSAs" as the baselines (24 for
    GloVe, 12 for BERT), each the 4-state WFSA of its Fig. 2, and the authors' code learns
    from ``d_out 0,0,0,24`` (every WFSA a 4-gram)."""
    return "12x4" if is_contextual(embeddings) else "24x4"


def default_targets(embeddings: str) -> tuple[int, ...]:
    """80, 60, 40, 20 transitions (out of 96); for contextual embeddings the start has 48
    transitions, so the same fractions of it: 40, 30, 20, 10."""
    return (40, 30, 20, 10) if is_contextual(embeddings) else (80, 60, 40, 20)


def lr_range(embeddings: str) -> tuple[float, float]:
    return LR_CONTEXTUAL if is_contextual(embeddings) else LR_STATIC


@dataclass(frozen=True)
class Configuration:
    """One curve point: ``method`` is ``baseline`` or ``sparse``. A path trial's
    configuration (``targets``: every target of the sweep, largest first) is no curve point:
    its record yields one result per target configuration."""

    method: str
    patterns: str  # the baseline's structure, or the start of structure learning
    target_transitions: int | None = None
    reg_strength: float = 0.0  # a fixed lambda (the optional lambda grid)
    targets: tuple[int, ...] = ()  # a regularisation path to all of these

    @property
    def label(self) -> str:
        if self.method == "baseline":
            return f"baseline {self.patterns}"
        if self.targets:
            return "sparse path " + ",".join(map(str, self.targets))
        if self.target_transitions is not None:
            return f"sparse target {self.target_transitions}"
        return f"sparse lambda {self.reg_strength:g}"

    @classmethod
    def from_dict(cls, d: dict) -> Configuration:
        return cls(**{**d, "targets": tuple(d.get("targets") or ())})


def configurations(embeddings: str, baselines=None, targets=None, reg_strengths=()) -> list[Configuration]:
    from ..structure import parse_patterns  # lazy: start-up (torch)

    baselines = default_baselines(embeddings) if baselines is None else tuple(baselines)
    targets = default_targets(embeddings) if targets is None else tuple(targets)
    start = sparse_start(embeddings)
    most = sum(parse_patterns(start))
    out = []
    for p in baselines:
        try:
            parse_patterns(p)  # one-line error for a bad pattern
        except ParameterError as exc:  # named as the option that gave it
            raise ParameterError("baselines", exc.message) from None
        out.append(Configuration("baseline", p))
    for t in targets:
        if not 1 <= t <= most:
            raise ParameterError(
                "targets", "{targets} " + f"{t}: must be between 1 and the {most} transitions of {start}"
            )
        out.append(Configuration("sparse", start, target_transitions=int(t)))
    for lam in reg_strengths:
        if not (lam > 0 and math.isfinite(lam)):
            raise ParameterError("reg_strengths", "{reg_strengths} " + f"{lam}: must be a finite number > 0")
        out.append(Configuration("sparse", start, reg_strength=float(lam)))
    labels = [c.label for c in out]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise UserError(f"configuration given twice: {sorted(dup)[0]}")
    return out


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def sample_assignments(n: int, embeddings: str, seed_text: str) -> list[dict]:
    """``n`` assignments from the authors' space, reproducible from ``seed_text`` (the
    sweep's search seed, the dataset and the configuration)."""
    import numpy as np  # lazy: start-up (numpy)

    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    lo, hi = lr_range(embeddings)
    out = []
    for _ in range(n):
        out.append(
            {
                "lr": _sig(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
                "clip": _sig(rng.uniform(*CLIP)),
                "dropout": _sig(rng.uniform(*DROPOUT)),
                "input_dropout": _sig(rng.uniform(*DROPOUT)),
                "weight_decay": _sig(math.exp(rng.uniform(math.log(WEIGHT_DECAY[0]), math.log(WEIGHT_DECAY[1])))),
            }
        )
    return out


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as trials see it: a benchmark name or the user's files. ``data_dir`` and
    ``read_from`` say where to read it on this machine and are not part of a trial's identity
    (nor recorded): ``files`` are the paths as the user spelled them, what sweep.json, the
    trial records and references.json keep; ``read_from``, the same files resolved to
    absolute paths when the sweep started (trials may run in another folder or process)."""

    name: str  # shown in tables and panels
    spec: str | None = None  # amazon:kitchen, hatn:dvd, fdu:books
    files: tuple[str, str | None, str | None] | None = None  # train, dev, test (as given)
    split_seed: int = 0
    max_train: int | None = None
    data_dir: str | None = None
    read_from: tuple[str, str | None, str | None] | None = None  # ``files`` resolved (default: ``files``)

    def identity(self) -> dict:
        d = {"name": self.name, "split_seed": self.split_seed}
        if self.spec:
            d["spec"] = self.spec
        if self.files:
            d["files"] = list(self.files)
        if self.max_train:
            d["max_train"] = self.max_train
        return d

    @property
    def paths(self) -> tuple[str, str | None, str | None] | None:
        """The files to read: ``read_from``, else ``files``."""
        return self.read_from or self.files

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "files": list(self.files) if self.files else None,
            "read_from": list(self.read_from) if self.read_from else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetRef:
        files, read_from = d.get("files"), d.get("read_from")
        return cls(
            d["name"],
            d.get("spec"),
            tuple(files) if files else None,
            d.get("split_seed", 0),
            d.get("max_train"),
            d.get("data_dir"),
            tuple(read_from) if read_from else None,
        )


@dataclass(frozen=True)
class TrialSpec:
    """Everything one training run needs. ``key`` hashes all of it except where the data
    lives (``dataset.data_dir``) and how many threads run it."""

    dataset: DatasetRef
    embeddings: str
    config: Configuration
    phase: str  # "search" or "rerun"
    index: int  # assignment number (search) or rerun number
    seed: int
    hyperparameters: dict
    epochs: int
    patience: int
    reg_epochs: int
    reg_strength: float = 0.0  # sparse reruns: the lambda the best search trial found
    tolerance: int = 10
    epsilon: float = 0.1
    batch_size: int = 64
    threads: int = field(default=1, compare=False)
    device: str = field(default="cpu", compare=False)  # where it runs: not part of what it computes
    readout: str = "final"  # how a WFSA's score is read over the document ("final": the paper's)
    penalty_update: str = "gradient"  # how the group lasso acts ("gradient": the paper's)
    structure_search: str = "lambda"  # how a target size is reached ("lambda": the authors' search)
    path: dict | None = None  # with structure_search "path": path_start, path_growth, path_warmup

    @property
    def uses_path(self) -> bool:
        """A sparse trial that reaches its target(s) along a regularisation path."""
        c = self.config
        return c.method == "sparse" and self.structure_search == "path" and (bool(c.targets) or self.target is not None)

    def identity(self) -> dict:
        c = self.config
        d = {
            "dataset": self.dataset.identity(),
            "embeddings": self.embeddings,
            "method": c.method,
            "configuration": c.label,
            "patterns": c.patterns,
            "phase": self.phase,
            "index": self.index,
            "seed": self.seed,
            "hyperparameters": dict(sorted(self.hyperparameters.items())),
            "epochs": self.epochs,
            "patience": self.patience,
            "batch_size": self.batch_size,
        }
        if c.method == "sparse":
            d.update(reg_epochs=self.reg_epochs, epsilon=self.epsilon)
            if self.reg_strength > 0:
                d["reg_strength"] = self.reg_strength
            elif c.targets:
                d.update(targets=list(c.targets), tolerance=self.tolerance)
            else:
                d.update(target_transitions=c.target_transitions, tolerance=self.tolerance)
            # the paper's choices leave the identity as it was before they could be changed
            if self.penalty_update != PAPER["penalty_update"]:
                d["penalty_update"] = self.penalty_update
            if self.uses_path:
                d.update(structure_search="path", path=dict(sorted((self.path or path_defaults()).items())))
                # where the path takes each target's snapshot: records of the earlier rule (the
                # first step inside the band) have no "snapshot" and are not reused
                d["snapshot"] = PATH_SNAPSHOT
        if self.readout != PAPER["readout"]:
            d["readout"] = self.readout
        return d

    @property
    def key(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def target(self) -> int | None:
        """The one target the trial reaches (by a lambda search or a single-target path);
        None for a baseline, a fixed or reused lambda, or a path trial to several targets."""
        return self.config.target_transitions if self.reg_strength == 0 else None

    @property
    def targets(self) -> tuple[int, ...]:
        """Every target size this trial yields a model for (largest first)."""
        return self.config.targets or ((self.target,) if self.target is not None else ())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dataset"] = self.dataset.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrialSpec:
        d = dict(d)
        d["dataset"] = DatasetRef.from_dict(d["dataset"])
        d["config"] = Configuration.from_dict(d["config"])
        return cls(**d)


@dataclass
class Plan:
    """The sweep: per dataset and configuration, its search trials (reruns are planned
    once the search is finished, from its best assignment). With ``structure_search``
    ``path``, the target configurations of a dataset share one list of path trials."""

    datasets: list[DatasetRef]
    embeddings: str
    budget: Budget
    configs: list[Configuration]
    tolerance: int = 10
    search_seed: int = 0
    threads: int = 1
    device: str = "cpu"  # "cpu" or "cuda" (each GPU worker sees its own GPU as cuda:0)
    readout: str = "final"
    penalty_update: str = "gradient"
    structure_search: str = "lambda"
    path: dict = field(default_factory=path_defaults)  # the path's schedule (the library's defaults)

    def __post_init__(self):
        for name, allowed in (
            ("readout", READOUTS),
            ("penalty_update", PENALTY_UPDATES),
            ("structure_search", STRUCTURE_SEARCHES),
        ):
            if getattr(self, name) not in allowed:
                raise ParameterError(name, f"{{{name}}} {getattr(self, name)}: use one of {', '.join(allowed)}")
        if self.structure_search == "path" and not self.targets:
            raise ParameterError(
                "structure_search",
                "{structure_search} path yields the target sizes ({targets}) from one run per "
                "assignment; this sweep has no targets",
                "targets",
            )
        if self.penalty_update != "gradient" and not any(c.method == "sparse" for c in self.configs):
            raise ParameterError(
                "penalty_update",
                "{penalty_update} " + f"{self.penalty_update} changes structure learning only; this sweep "
                "has no targets and no {reg_strengths}",
                "reg_strengths",
            )

    @property
    def cells(self) -> list[tuple[DatasetRef, Configuration]]:
        return [(d, c) for d in self.datasets for c in self.configs]

    @property
    def targets(self) -> tuple[int, ...]:
        """The target sizes of the sweep, largest first."""
        return tuple(
            sorted(
                (
                    c.target_transitions
                    for c in self.configs
                    if c.method == "sparse" and c.target_transitions is not None
                ),
                reverse=True,
            )
        )

    def by_path(self, config: Configuration) -> bool:
        """Whether ``config`` is reached along the shared regularisation path."""
        return self.structure_search == "path" and config.method == "sparse" and config.target_transitions is not None

    def path_config(self) -> Configuration:
        """The configuration of the path trials: from the sparse start to every target."""
        start = next(c.patterns for c in self.configs if self.by_path(c))
        return Configuration("sparse", start, targets=self.targets)

    def search_trials(self, dataset: DatasetRef, config: Configuration, n: int | None = None) -> list[TrialSpec]:
        """The first ``n`` (default: the budget's) search trials; the sampled sequence does
        not depend on ``n``, so trials past the budget's are replacements for failed ones.
        For a target reached by the path: the dataset's path trials (the same for every
        target)."""
        if self.by_path(config):
            config = self.path_config()
        # by the dataset's name, not its paths: the same files elsewhere get the same assignments
        seed_text = json.dumps([self.search_seed, dataset.name, dataset.split_seed, config.label])
        assignments = sample_assignments(n or self.budget.assignments, self.embeddings, seed_text)
        return [
            TrialSpec(
                dataset,
                self.embeddings,
                config,
                "search",
                i,
                0,
                hp,
                self.budget.epochs,
                self.budget.patience,
                self.budget.path_epochs if config.targets else self.budget.reg_epochs,
                reg_strength=config.reg_strength,
                tolerance=self.tolerance,
                threads=self.threads,
                device=self.device,
                **self._choices(config),
            )
            for i, hp in enumerate(assignments)
        ]

    def _choices(self, config: Configuration) -> dict:
        d: dict = {"readout": self.readout, "penalty_update": self.penalty_update}
        if config.method == "sparse" and (config.targets or self.by_path(config)):
            d.update(structure_search="path", path=dict(self.path))
        return d

    def rerun_trials(
        self, best: TrialSpec, found_reg_strength: float, config: Configuration | None = None
    ) -> list[TrialSpec]:
        """Seeds 1..R of the best search trial of ``config`` (default: the trial's own). A
        lambda-search target reuses the lambda its search found (the authors' protocol); a
        path target walks a single-target path again (the snapshot's lambda belongs to the
        path's warm-started schedule)."""
        config = config or best.config
        lam = found_reg_strength if config.method == "sparse" and not self.by_path(config) else 0.0
        return [
            replace(best, config=config, phase="rerun", index=r, seed=r, reg_strength=lam, **self._choices(config))
            for r in range(1, self.budget.reruns + 1)
        ]

    @property
    def max_replacements(self) -> int:
        """Failed search trials are replaced by new assignments, as the authors resampled an
        assignment whose lambda search failed; at most this many per configuration."""
        return self.budget.assignments

    @property
    def own_search_cells(self) -> int:
        """Configurations with a search of their own (all but the path's targets), per dataset."""
        return sum(not self.by_path(c) for c in self.configs)

    @property
    def total_trials(self) -> int:
        """Trials without failures: searches and reruns of every configuration; with the
        path, one search per assignment serves every target."""
        b = self.budget
        per_dataset = self.own_search_cells * (b.assignments + b.reruns)
        if self.structure_search == "path":
            per_dataset += b.assignments + len(self.targets) * b.reruns
        return len(self.datasets) * per_dataset

    def penalised_runs(self) -> tuple[int, str]:
        """Penalised trainings the target configurations need without failures (rough for
        the lambda search: ``SEARCH_TRIES`` tries per search), and how they are counted."""
        b, n, k = self.budget, len(self.datasets), len(self.targets)
        if not k:
            return 0, ""
        if self.structure_search == "path":
            return n * (b.assignments + k * b.reruns), "path: one per assignment for every target, one per rerun"
        return (
            n * k * (b.assignments * SEARCH_TRIES + b.reruns),
            f"lambda search: ~{SEARCH_TRIES} tries per assignment and target, one per rerun",
        )

    def identity(self) -> dict:
        """What makes two invocations "the same command" for one ``--out`` folder."""
        b = self.budget
        d = {
            "format": FORMAT,
            "datasets": [d.identity() for d in self.datasets],
            "embeddings": self.embeddings,
            "budget": b.name,
            "assignments": b.assignments,
            "reruns": b.reruns,
            "epochs": b.epochs,
            "patience": b.patience,
            "reg_epochs": b.reg_epochs,
            "configurations": [c.label for c in self.configs],
            "tolerance": self.tolerance,
            "search_seed": self.search_seed,
        }
        # only when not the paper's: a sweep folder made before these options is the same command
        d.update({k: getattr(self, k) for k, v in PAPER.items() if getattr(self, k) != v})
        if self.structure_search == "path":
            d["path_epochs"] = b.path_epochs
        return d


# -- a rough cost model, for the estimate printed before a sweep -------------------------
def epoch_seconds(n_docs: int, transitions: int) -> float:
    """Seconds per epoch on one core (torch 2.13 CPU, 50d vectors, Amazon reviews of ~100
    tokens): measured 0.19 s for 24x1 and 0.38 s for 24x4 on 1600+200 kitchen reviews."""
    return n_docs / 1800 * (0.13 + 0.0027 * transitions)


#: lambda tries of a target search, typically (start 8e-6, doubling to ~5e-4, then halving steps)
SEARCH_TRIES = 9
#: share of GloVe-range assignments (lr up to 0.5) whose lambda search fails after all 25
#: tries and is replaced (about a third on Amazon kitchen)
SEARCH_FAILURES = 0.35

#: epochs a path to 20 of 96 transitions typically takes (amazon:kitchen, glove-6b-50d, the
#: library's path defaults: 8 to 15 epochs at lr 0.01-0.13, up to 39 with gradient updates)
PATH_EPOCHS = 20


def trial_seconds(spec: TrialSpec, n_docs: int, expected_failures: bool = True) -> float:
    """Rough seconds of one trial on one free core; ``expected_failures`` adds the expected
    cost of failed lambda searches (replaced assignments) to a target search."""
    from ..structure import parse_patterns  # lazy: start-up (torch)

    start = sum(parse_patterns(spec.config.patterns))
    typical = min(spec.epochs, 3 * spec.patience)  # early stopping usually ends it here
    overhead = 2.0
    if spec.config.method == "baseline":
        return overhead + typical * epoch_seconds(n_docs, start)
    if spec.uses_path:  # one penalised run (it ends at its smallest target), a finetuning per target
        warmup = (spec.path or path_defaults())["path_warmup"]
        path = min(warmup + spec.reg_epochs, PATH_EPOCHS)
        return (
            overhead
            + path * epoch_seconds(n_docs, start)
            + sum(typical * epoch_seconds(n_docs, t) for t in spec.targets)
        )
    tries = SEARCH_TRIES + (SEARCH_FAILURES * 25 if expected_failures else 0) if spec.target is not None else 1
    end = spec.target or start // 3
    return overhead + tries * spec.reg_epochs * epoch_seconds(n_docs, start) + typical * epoch_seconds(n_docs, end)
