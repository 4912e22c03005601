"""95 % intervals for differences of test accuracy between configurations, and the paper's
claims judged with them.

A configuration's accuracy is the mean over its reruns of their test accuracies. The
interval of a contrast (a difference, or a mean of differences) comes from a two-level
bootstrap (:func:`bootstrap`): each resample draws the test documents with replacement
(the same documents for every configuration: paired) and, for every configuration, its
reruns with replacement; the interval is the 2.5 and 97.5 percentiles of the contrast over
the resamples. It thus holds both sources of noise: which seeds ran, and which documents
happen to be in the test set. Without per-document results (records of older sweeps), the
test-document noise of a configuration is one binomial draw per resample (its reruns share
the test set), independent between configurations: unpaired, so wider.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
#: "similar" in the paper's third claim: not worse than the best baseline by this many points
SIMILAR_POINTS = 1.0
#: the paper's second claim: the strongly regularised model gains 1-2 points over the unigram
#: baseline; it fails when the gain is surely below the lower end
GAIN_POINTS = 1.0


@dataclass(frozen=True)
class Group:
    """One configuration's reruns: ``correct`` ``[R, N]`` (1 = test document right), or,
    without per-document results, ``accuracies`` ``[R]`` and ``n_docs``."""

    accuracies: np.ndarray  # [R], fractions
    n_docs: int
    correct: np.ndarray | None = None  # [R, N] of 0/1

    @classmethod
    def from_runs(cls, accuracies: list[float], flags: list[str], n_docs: int | None = None) -> Group:
        """``flags``: per rerun its ``test_correct`` string (``""`` where unknown)."""
        acc = np.asarray(accuracies, np.float64)
        if flags and all(flags) and len({len(f) for f in flags}) == 1:
            correct = np.array([[c == "1" for c in f] for f in flags], np.float64)
            return cls(correct.mean(1), correct.shape[1], correct)
        return cls(acc, int(n_docs or 0))


@dataclass(frozen=True)
class Interval:
    estimate: float  # points (x100)
    low: float
    high: float
    paired: bool  # documents resampled jointly (per-document results of every group known)

    def text(self) -> str:
        return f"{self.estimate:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def bootstrap(
    groups: Mapping[str, Group],
    contrast: Callable[[Mapping[str, np.ndarray]], np.ndarray],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """The contrast of the groups' mean accuracies (in points) with its bootstrap interval.
    ``contrast`` maps ``{name: mean accuracies [B]}`` (points) to ``[B]``; it is applied to
    the observed means (``[1]`` arrays) for the estimate."""
    rng = np.random.default_rng(seed)
    observed = contrast({k: np.array([100 * g.accuracies.mean()]) for k, g in groups.items()})
    n = {g.correct.shape[1] for g in groups.values() if g.correct is not None}
    paired = len(n) == 1 and all(g.correct is not None for g in groups.values())
    weights = None
    if paired:
        n_docs = n.pop()
        weights = rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=n_boot).astype(np.float64) / n_docs
    draws: dict[str, np.ndarray] = {}
    for name, g in groups.items():
        runs = len(g.accuracies)
        if weights is not None and g.correct is not None:
            per_run = weights @ g.correct.T  # [B, R]: each rerun's accuracy on the resampled documents
        elif g.n_docs > 0:  # the test set is shared by the reruns: one binomial shift per resample
            mean = float(np.clip(g.accuracies.mean(), 0, 1))
            shift = rng.binomial(g.n_docs, mean, size=(n_boot, 1)) / g.n_docs - mean
            per_run = g.accuracies[None, :] + shift
        else:
            per_run = np.broadcast_to(g.accuracies, (n_boot, runs))
        pick = rng.integers(runs, size=(n_boot, runs))
        draws[name] = 100 * np.take_along_axis(per_run, pick, axis=1).mean(1)
    values = contrast(draws)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(observed[0]), float(low), float(high), paired)


def difference(a: Group, b: Group, **kw) -> Interval:
    """Mean accuracy of ``a`` minus that of ``b``, in points."""
    return bootstrap({"a": a, "b": b}, lambda d: d["a"] - d["b"], **kw)


def nearest_baseline(transitions: float, baselines: list[dict]) -> dict:
    """The baseline whose number of transitions is nearest (ties: the smaller one)."""
    return min(baselines, key=lambda e: (abs(e["transitions"][0] - transitions), e["transitions"][0]))


def is_unigram(patterns: str) -> bool:
    return set(patterns.replace(",", "x").split("x")[1::2]) == {"1"}


def _group(entry: dict) -> Group:
    return Group.from_runs(entry["accuracies"], entry["flags"], entry.get("n_docs"))


def verdict_better(iv: Interval) -> str:
    """Claim 1, 'a better tradeoff': the learned structures beat baselines of their size."""
    return "holds" if iv.low > 0 else "fails" if iv.high < 0 else "undecided"


def verdict_gain(iv: Interval) -> str:
    """Claim 2, '1-2 points over the unigram baseline': fails when the gain is surely below
    :data:`GAIN_POINTS`; holds when it is surely positive (and may reach the claimed size)."""
    return "fails" if iv.high < GAIN_POINTS else "holds" if iv.low > 0 else "undecided"


def verdict_similar(iv: Interval) -> str:
    """Claim 3, 'similar or better than the best baseline': holds when the learned model is
    surely not worse by :data:`SIMILAR_POINTS` or more, fails when it surely is worse."""
    return "holds" if iv.low > -SIMILAR_POINTS else "fails" if iv.high < -SIMILAR_POINTS else "undecided"


@dataclass
class Claims:
    pairs: list[tuple[dict, dict, Interval]]  # (learned, nearest-size baseline, difference)
    verdicts: list[tuple[str, str, Interval | None, str]]  # (claim, verdict, interval, what was compared)


CLAIM_NAMES = (
    "better tradeoff than the baselines",
    "1-2 points over the unigram baseline at strong regularisation",
    "similar or better than the best baseline at weak regularisation",
    "fewer transitions and similar or better than the best baseline",
    "the baselines improve with more transitions",
)


def judgeable(entries: list[dict]) -> bool:
    """Whether :func:`judge` can judge the claims on these entries: both baselines and
    learned structures with test accuracies (the datasets a summary pools)."""
    return all(any(e["method"] == m and e["accuracies"] for e in entries) for m in ("baseline", "sparse"))


def judge(entries: list[dict], seed: int = 0) -> Claims | None:
    """The paper's claims (:data:`CLAIM_NAMES`) on one dataset's aggregated entries (with ``accuracies``,
    ``flags`` and ``n_docs``, as :func:`.report.aggregate` gives them); None without both
    baselines and learned structures (:func:`judgeable`)."""
    if not judgeable(entries):
        return None
    base = [e for e in entries if e["method"] == "baseline" and e["accuracies"]]
    sparse = [e for e in entries if e["method"] == "sparse" and e["accuracies"]]
    sparse = sorted(sparse, key=lambda e: e["transitions"][0])
    pairs = []
    for e in sparse:
        b = nearest_baseline(e["transitions"][0], base)
        pairs.append((e, b, difference(_group(e), _group(b), seed=seed)))
    verdicts: list[tuple[str, str, Interval | None, str]] = []
    # 1: the mean over the learned structures of (learned - nearest-size baseline)
    groups = {f"s{i}": _group(e) for i, (e, _, _) in enumerate(pairs)}
    groups.update({f"b:{b['configuration']}": _group(b) for _, b, _ in pairs})

    def mean_gap(d):
        return sum(d[f"s{i}"] - d[f"b:{b['configuration']}"] for i, (_, b, _) in enumerate(pairs)) / len(pairs)

    iv = bootstrap(groups, mean_gap, seed=seed)
    verdicts.append(
        (CLAIM_NAMES[0], verdict_better(iv), iv, f"mean over the {len(pairs)} learned structures of the difference")
    )
    # 2: the strongest regularisation against the unigram baseline
    unigram = [b for b in base if is_unigram(b["patterns"])]
    strong = sparse[0]
    if unigram:
        u = min(unigram, key=lambda b: b["transitions"][0])
        iv = difference(_group(strong), _group(u), seed=seed)
        what = f"{strong['configuration']} ({strong['transitions'][0]:.1f} transitions) - {u['configuration']}"
        verdicts.append((CLAIM_NAMES[1], verdict_gain(iv), iv, what))
    else:
        verdicts.append((CLAIM_NAMES[1], "undecided", None, "no unigram baseline in this sweep"))
    # 3: the weakest regularisation against the best baseline (by mean test accuracy, as
    # Figure 3 is read: the strictest comparison)
    weak = sparse[-1]
    best = max(base, key=lambda b: (b["test"][0], -b["transitions"][0]))
    iv = difference(_group(weak), _group(best), seed=seed)
    what = f"{weak['configuration']} ({weak['transitions'][0]:.1f} transitions) - the best baseline, "
    what += best["configuration"]
    verdicts.append((CLAIM_NAMES[2], verdict_similar(iv), iv, what))
    # 4 (the introduction's summary): every learned structure smaller than the best baseline
    # against it, their mean difference judged as "similar or better"
    smaller = [e for e in sparse if e["transitions"][0] < best["transitions"][0]]
    if smaller:
        groups = {f"s{i}": _group(e) for i, e in enumerate(smaller)} | {"best": _group(best)}
        iv = bootstrap(
            groups, lambda d: sum(d[f"s{i}"] - d["best"] for i in range(len(smaller))) / len(smaller), seed=seed
        )
        what = f"mean over the {len(smaller)} learned structures with fewer transitions than the best baseline, "
        what += f"{best['configuration']} ({best['transitions'][0]:.0f}), of the difference"
        verdicts.append((CLAIM_NAMES[3], verdict_similar(iv), iv, what))
    else:
        verdicts.append((CLAIM_NAMES[3], "undecided", None, "no learned structure is smaller than the best baseline"))
    # 5: the largest baseline against the smallest (no choice by test accuracy on either side)
    small = min(base, key=lambda b: b["transitions"][0])
    large = max(base, key=lambda b: b["transitions"][0])
    if large["transitions"][0] > small["transitions"][0]:
        iv = difference(_group(large), _group(small), seed=seed)
        what = f"{large['configuration']} ({large['transitions'][0]:.0f} transitions) - {small['configuration']} "
        what += f"({small['transitions'][0]:.0f})"
        verdicts.append((CLAIM_NAMES[4], verdict_better(iv), iv, what))
    else:
        verdicts.append((CLAIM_NAMES[4], "undecided", None, "one baseline size only"))
    return Claims(pairs, verdicts)


def pool(per_dataset: Mapping[str, list[dict]]) -> list[dict]:
    """The entries of several datasets as one dataset whose test set is all of theirs: one
    entry per configuration that every dataset has. Pooled rerun ``i`` is rerun ``i`` of
    each dataset, its per-document results concatenated (the reruns of a configuration are
    exchangeable, so pairing them by index is as good as any pairing); with fewer reruns on
    one dataset, the pooled entry has that many. A pooled accuracy weights each dataset by
    its number of test documents. Transitions: the mean over the datasets. Datasets without
    per-document results pool their accuracies only (and the intervals are then unpaired)."""
    names = [ds for ds, entries in per_dataset.items() if entries]
    if len(names) < 2:
        return []
    by_conf = [{e["configuration"]: e for e in per_dataset[ds] if e["accuracies"]} for ds in names]
    pooled = []
    for conf in [c for c in by_conf[0] if all(c in d for d in by_conf[1:])]:
        parts = [d[conf] for d in by_conf]
        runs = min(len(e["accuracies"]) for e in parts)
        flags = ["".join(e["flags"][i] for e in parts) for i in range(runs)]
        sizes: list[int] = [int(e.get("n_docs") or 0) for e in parts]
        if all(all(e["flags"][:runs]) for e in parts) and all(
            len({len(f) for f in e["flags"][:runs]}) == 1 for e in parts
        ):
            accuracies = [f.count("1") / len(f) for f in flags]
            n_docs: int | None = len(flags[0])
        else:
            flags = [""] * runs
            n_docs = sum(sizes) if all(sizes) else None
            weights = np.asarray(sizes if n_docs else [1] * len(parts), np.float64)
            accuracies = [float(np.average([e["accuracies"][i] for e in parts], weights=weights)) for i in range(runs)]
        test = 100 * np.asarray(accuracies)
        pooled.append(
            {
                "configuration": conf,
                "method": parts[0]["method"],
                "patterns": parts[0]["patterns"],
                "transitions": (
                    float(np.mean([e["transitions"][0] for e in parts])),
                    float(np.mean([e["transitions"][1] for e in parts])),
                ),
                "test": (float(test.mean()), float(test.std(ddof=1)) if runs > 1 else 0.0),
                "runs": runs,
                "accuracies": accuracies,
                "flags": flags,
                "n_docs": n_docs,
            }
        )
    return pooled


def reference_gap(entry: dict, reference: dict, seed: int = 0) -> Interval | None:
    """A configuration minus a reference row (one run; its test documents resampled with
    the configuration's when both have per-document results)."""
    if reference.get("status") != "ok" or not entry["accuracies"]:
        return None
    flags = reference.get("test_correct") or ""
    ref = Group.from_runs([reference["test_accuracy"]], [flags], entry.get("n_docs"))
    iv = difference(_group(entry), ref, seed=seed)
    return iv if not math.isnan(iv.estimate) else None
