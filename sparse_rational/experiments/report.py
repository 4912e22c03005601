"""A sweep's outputs from its stored trials: ``results.csv`` (every run), ``summary.md``
(mean +- std per configuration over the reruns, as the paper reports, the reference rows,
and the paper's claims with 95 % intervals), Figure 3 (test accuracy against transitions,
error bars on both axes, the reference rows as horizontal lines; one panel per dataset) and,
with two or more datasets, the pooled Figure 3 (one panel: their test documents pooled as the
summary's pooled section pools them)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..config import PATH_SNAPSHOT
from ..errors import UserError
from ..fileio import atomic_write_bytes, atomic_write_text
from ..structure import format_structure
from .references import NAMES
from .significance import GAIN_POINTS, N_BOOT, SIMILAR_POINTS, judge, judgeable, pool, reference_gap

COLUMNS = [
    "dataset",
    "embeddings",
    "method",
    "configuration",
    "patterns",
    "target_transitions",
    "phase",
    "index",
    "seed",
    "lr",
    "clip",
    "dropout",
    "input_dropout",
    "weight_decay",
    "max_epochs",
    "patience",
    "batch_size",
    "reg_epochs",
    "epsilon",
    "tolerance",
    "reg_strength",
    "structure",
    "wfsas",
    "transitions",
    "parameters",
    "dev_accuracy",
    "test_accuracy",
    "epochs",
    "seconds",
    "status",
    "error",
    "key",
    "search",
    "readout",
    "penalty_update",
    "band",
    "snapshot",
]
#: where a path took a target's snapshot (the ``snapshot`` column): a record without a rule in
#: its identity was made by the earlier rule, the first step inside the band
SNAPSHOT_NAMES = {"nearest": "nearest to the target", None: "first in band"}
#: how a sparse row's size was reached (the ``search`` column)
SEARCH_NAMES = {"lambda": "lambda search", "path": "path", "fixed": "fixed lambda"}


def _round(x, digits: int = 6):
    """Accuracies are float32 counts over a few hundred documents: 6 decimals are exact."""
    return "" if x is None else round(float(x), digits)


def _search(c: dict) -> str:
    if c["method"] != "sparse":
        return ""
    if c.get("structure_search") == "path":
        return SEARCH_NAMES["path"]
    return SEARCH_NAMES["fixed" if c["configuration"].startswith("sparse lambda") else "lambda"]


def _is_path(c: dict) -> bool:
    return c["method"] == "sparse" and c.get("structure_search") == "path"


def _band(c: dict) -> str:
    """The sizes a target's search accepts (the authors': the target +- 10), ``low-high``."""
    t, tol = c.get("target_transitions"), c.get("tolerance")
    if c["method"] != "sparse" or t in (None, "") or tol in (None, ""):
        return ""
    return f"{max(0, int(t) - int(tol))}-{int(t) + int(tol)}"


def _current_rule(records: dict[str, dict]) -> dict[str, dict]:
    """Without the path trials of an earlier snapshot rule where a dataset also has path
    trials of the current one (a sweep folder continued after the rule changed: the path
    trials were run again under new keys, the baselines were reused)."""

    def dataset(rec):
        return (rec.get("config") or {}).get("dataset", {}).get("name")

    current = {
        dataset(r)
        for r in records.values()
        if _is_path(r.get("config") or {"method": ""}) and r["config"].get("snapshot") == PATH_SNAPSHOT
    }
    return {
        k: r
        for k, r in records.items()
        if not (
            _is_path(r.get("config") or {"method": ""})
            and dataset(r) in current
            and r["config"].get("snapshot") != PATH_SNAPSHOT
        )
    }


def _row(key: str, rec: dict, c: dict, m: dict, status: str, error: str) -> dict:
    hp = c.get("hyperparameters", {})
    structure = m.get("structure")
    return {
        "dataset": c["dataset"]["name"],
        "embeddings": c["embeddings"],
        "method": c["method"],
        "configuration": c["configuration"],
        "patterns": c["patterns"],
        "target_transitions": c.get("target_transitions", ""),
        "phase": c["phase"],
        "index": c["index"],
        "seed": c["seed"],
        **{k: hp.get(k, "") for k in ("lr", "clip", "dropout", "input_dropout", "weight_decay")},
        "max_epochs": c["epochs"],
        "patience": c["patience"],
        "batch_size": c["batch_size"],
        "reg_epochs": c.get("reg_epochs", ""),
        "epsilon": c.get("epsilon", ""),
        "tolerance": c.get("tolerance", ""),
        "reg_strength": m.get("reg_strength", c.get("reg_strength", 0.0)),
        "structure": format_structure(tuple(structure)) if structure is not None else "",
        "wfsas": m.get("wfsas", ""),
        "transitions": m.get("transitions", ""),
        "parameters": m.get("parameters", ""),
        "dev_accuracy": _round(m.get("dev_accuracy")),
        "test_accuracy": _round(m.get("test_accuracy")),
        "epochs": m.get("epochs", ""),
        "seconds": rec.get("seconds", ""),
        "status": status,
        "error": error,
        "key": key,
        "search": _search(c),
        "readout": c.get("readout", "final"),
        "penalty_update": c.get("penalty_update", "gradient") if c["method"] == "sparse" else "",
        "band": _band(c),
        "snapshot": SNAPSHOT_NAMES.get(c.get("snapshot"), str(c.get("snapshot"))) if _is_path(c) else "",
        # not in results.csv: for the intervals over test documents
        "test_correct": m.get("test_correct", ""),
        "test_size": m.get("test_size", ""),
    }


def _missed(target: int, c: dict, m: dict) -> str:
    """Why a path trial has no model for ``target``."""
    path, tol = m.get("path") or [], c.get("tolerance") or 0
    last = path[-1] if path else {}
    n = last.get("transitions")
    if n is not None and n < target - tol:
        why = f"it went from more than {target + tol} to fewer than {target - tol} transitions within one step"
    else:
        why = (
            f"it ended at {n if n is not None else '?'} transitions after {len(path)} epochs (lambda "
            f"{last.get('reg_strength') or 0:.3g})"
        )
    return f"the path missed target {target}: {why}"


def rows_from_records(records: dict[str, dict]) -> list[dict]:
    """One row per run: per trial, or for a path trial per target (a target the path missed
    is a failed row of that target). Path trials of an earlier snapshot rule are left out
    where the same dataset has path trials of the current one."""
    rows = []
    for key, rec in _current_rule(records).items():
        c, m = rec["config"], rec.get("metrics") or {}
        if "targets" not in c:
            rows.append(_row(key, rec, c, m, rec["status"], rec.get("error", "")))
            continue
        by_target = m.get("targets") or {}
        for t in c["targets"]:
            ct = {**c, "configuration": f"sparse target {t}", "target_transitions": t}
            mt = by_target.get(str(t))
            if rec["status"] != "ok":
                rows.append(_row(key, rec, ct, {}, rec["status"], rec.get("error", "")))
            elif mt is None:
                rows.append(_row(key, rec, ct, {}, "failed", _missed(t, c, m)))
            else:
                rows.append(_row(key, rec, ct, mt, "ok", ""))
    order = {"search": 0, "rerun": 1}
    rows.sort(
        key=lambda r: (
            r["dataset"],
            r["method"] != "baseline",
            r["configuration"],
            order.get(r["phase"], 2),
            r["index"],
        )
    )
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _num(x) -> float:
    return -1.0 if x in ("", None) else float(x)


def _ms(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _hp(row: dict) -> tuple:
    return tuple(str(row[k]) for k in ("lr", "clip", "dropout", "input_dropout", "weight_decay"))


def _one_assignment(reruns: list[dict], search_of) -> list[dict]:
    """The reruns of one assignment. A sweep folder holds the reruns of one assignment per
    configuration, unless trials of a smaller budget were brought into it (a sweep continued
    with more assignments): then the reruns of the assignment whose search trial has the best
    dev accuracy (ties: the lower assignment number), the one the larger budget reruns."""
    by_hp: dict[tuple, list[dict]] = defaultdict(list)
    for r in reruns:
        by_hp[_hp(r)].append(r)
    if len(by_hp) == 1:
        return reruns

    def rank(hp):
        s = search_of(hp)
        return (0, 0.0, 0) if s is None else (1, _num(s["dev_accuracy"]), -s["index"])

    return by_hp[max(by_hp, key=rank)]


def aggregate(rows: list[dict]) -> dict[str, list[dict]]:
    """Per dataset, one entry per configuration over its successful reruns."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    search_best: dict[tuple, dict] = {}  # by (dataset, configuration) and by (..., its hyperparameters)
    for r in rows:
        if r["status"] != "ok":
            continue
        k = (r["dataset"], r["configuration"])
        if r["phase"] == "rerun":
            groups[k].append(r)
        else:
            for kk in (k, (*k, _hp(r))):
                b = search_best.get(kk)
                if b is None or (_num(r["dev_accuracy"]), -r["index"]) > (_num(b["dev_accuracy"]), -b["index"]):
                    search_best[kk] = r
    out: dict[str, list[dict]] = defaultdict(list)
    for (ds, conf), rs in groups.items():
        rs = _one_assignment(rs, lambda hp, k=(ds, conf): search_best.get((*k, hp)))
        first = rs[0]
        tr = _ms([float(r["transitions"]) for r in rs])
        te = _ms([100 * float(r["test_accuracy"]) for r in rs if r["test_accuracy"] != ""])
        dv = _ms([100 * float(r["dev_accuracy"]) for r in rs if r["dev_accuracy"] != ""])
        pa = _ms([float(r["parameters"]) for r in rs])
        tested = [r for r in rs if r["test_accuracy"] != ""]
        sizes = [int(r["test_size"]) for r in tested if r.get("test_size") not in ("", None)]
        # the search trial the reruns repeat (a path's later assignments may have a better
        # dev accuracy for a target that did not need them), else the best search trial
        best = search_best.get((ds, conf, _hp(first))) or search_best.get((ds, conf))
        out[ds].append(
            {
                "configuration": conf,
                "method": first["method"],
                "patterns": first["patterns"],
                "search": first.get("search", ""),
                "target": first["target_transitions"],
                "band": first.get("band", ""),
                "snapshot": first.get("snapshot", ""),
                "runs": len(rs),
                "reg_strength": statistics.fmean(float(r["reg_strength"] or 0) for r in rs),
                "transitions": tr,
                "test": te,
                "dev": dv,
                "parameters": pa,
                "structures": sorted({r["structure"] for r in rs}),
                "best_dev_search": 100 * best["dev_accuracy"] if best else math.nan,
                "hp": {k: first[k] for k in ("lr", "clip", "dropout", "input_dropout", "weight_decay")},
                # per rerun, for the intervals (significance.py)
                "accuracies": [float(r["test_accuracy"]) for r in tested],
                "flags": [r.get("test_correct") or "" for r in tested],
                "n_docs": max(sizes) if sizes else None,
            }
        )
    for ds in out:
        out[ds].sort(
            key=lambda e: (
                e["method"] != "baseline",
                e["transitions"][0] if e["method"] == "baseline" else -e["transitions"][0],
            )
        )
    return dict(out)


def _pm(ms: tuple[float, float], digits: int = 1) -> str:
    m, s = ms
    if math.isnan(m):
        return "-"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _interp(points: list[tuple[float, float]], x: float) -> float:
    """Baseline accuracy at ``x`` transitions: linear between baseline points, the nearest
    point outside their range."""
    pts = sorted(points)
    if x <= pts[0][0]:
        return pts[0][1]
    if x >= pts[-1][0]:
        return pts[-1][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def comparisons(entries: list[dict]) -> list[str]:
    """The paper's two claims, checked on one dataset's means."""
    base = [e for e in entries if e["method"] == "baseline" and not math.isnan(e["test"][0])]
    sparse = [e for e in entries if e["method"] == "sparse" and not math.isnan(e["test"][0])]
    lines = []
    if not base or not sparse:
        return ["(needs both baselines and sparse models with test accuracy)"]
    # baselines' best-so-far curve: accuracy you can get with at most x transitions
    points = [(e["transitions"][0], e["test"][0]) for e in base]
    for e in sorted(sparse, key=lambda e: e["transitions"][0]):
        x, y = e["transitions"][0], e["test"][0]
        ref = _interp(points, x)
        lines.append(
            f"- {e['configuration']}: {x:.1f} transitions, test {y:.1f}: "
            f"{y - ref:+.1f} points against the baseline curve at {x:.0f} transitions ({ref:.1f})"
        )
    unigram = [e for e in base if set(e["patterns"].replace(",", "x").split("x")[1::2]) == {"1"}]
    if unigram:
        u = unigram[0]
        s = min(sparse, key=lambda e: e["transitions"][0])
        lines.append(
            f"- strongest regularisation ({s['configuration']}, {s['transitions'][0]:.1f} transitions) "
            f"against the unigram baseline {u['patterns']} ({u['transitions'][0]:.0f} transitions): "
            f"{s['test'][0] - u['test'][0]:+.1f} points test accuracy "
            f"(paper: +1 to +2 in 4 of 5 cases)"
        )
    return lines


def placement_lines(entries: list[dict]) -> list[str]:
    """Where the learned rows sit: each target's mean transitions over its reruns, beside
    the band the authors accepted and the rule that placed the snapshot."""
    learned = [e for e in entries if e["method"] == "sparse" and e.get("target") not in ("", None)]
    if not learned:
        return []
    out = []
    for e in sorted(learned, key=lambda e: -int(e["target"])):
        m, sd = e["transitions"]
        t = int(e["target"])
        how = f"; snapshot {e['snapshot']}" if e.get("snapshot") else ""
        band = f" (the authors' band {e['band']}{how})" if e.get("band") else ""
        out.append(f"target {t}: {m:.1f} ± {sd:.1f} transitions, {m - t:+.1f}{band}")
    return [
        "Where the learned rows sit (mean ± std of the reruns' transitions, minus the target):",
        "",
        *(f"- {x}" for x in out),
        "",
    ]


def cost_lines(rows: list[dict], label: str = "") -> list[str]:
    """The paper's "two training runs" (§1): the mean time of a path trial (one penalised
    run to every target and their finetunings) and of a sparse rerun (one target), against
    one run of the baseline the sparse models start from (the largest baseline when that one
    is not in the sweep). Rows of one or more datasets; a path trial's rows (one per target)
    count once."""
    ok = [r for r in rows if r["status"] == "ok" and r["seconds"] not in ("", None)]
    sparse = [r for r in ok if r["method"] == "sparse"]
    base = [r for r in ok if r["method"] == "baseline" and r["phase"] == "search"]
    if not sparse or not base:
        return []
    starts = {r["patterns"] for r in sparse}
    sizes = {r["patterns"]: float(r["transitions"]) for r in base}
    start = max(sizes, key=lambda p: sizes[p])
    if len(starts) == 1 and next(iter(starts)) in sizes:
        start = next(iter(starts))
    base_s = [float(r["seconds"]) for r in base if r["patterns"] == start]
    per_trial: dict[str, tuple[float, set]] = {}
    for r in sparse:
        if r["phase"] == "search" and r["search"] == "path":
            seconds, targets = per_trial.setdefault(r["key"], (float(r["seconds"]), set()))
            targets.add(r["target_transitions"])
    reruns = [float(r["seconds"]) for r in sparse if r["phase"] == "rerun"]
    one = statistics.mean(base_s)
    out = [
        f'Cost of learning the structure{label} (the paper: "only two training runs: one to learn the structure, '
        'and the other to estimate its parameters"), in runs of the baseline the sparse models start from '
        f"(baseline {start}: {one:.0f} s, mean of {len(base_s)} assignments); trial times on a shared machine, "
        "so rough:",
        "",
    ]
    if per_trial:
        path_s = [s for s, _ in per_trial.values()]
        n_targets = max(len(t) for _, t in per_trial.values())
        path_mean = statistics.mean(path_s)
        out.append(
            f"- one path to all {n_targets} targets with their {n_targets} finetunings: {path_mean:.0f} s "
            f"(mean of {len(path_s)}): **{path_mean / one:.1f}x** one baseline run, "
            f"{path_mean / one / n_targets:.1f}x per target"
        )
    if reruns:
        rerun_mean = statistics.mean(reruns)
        out.append(
            f"- one target (a rerun: the path to that target and its finetuning): {rerun_mean:.0f} s (mean of "
            f"{len(reruns)}): **{rerun_mean / one:.1f}x** one baseline run"
        )
    return [*out, ""]


def reference_lines(refs: dict[str, dict] | None, entries: list[dict]) -> list[str]:
    """The reference rows of one dataset, and how the best learned structure and the best
    baseline compare with them (95 % intervals)."""
    if not refs:
        return []
    out = [
        "Reference rows (same splits; one run each, C chosen on dev):",
        "",
        "| reference | test acc | dev acc | C | features |",
        "|---|---|---|---|---|",
    ]
    for key, name in NAMES.items():
        r = refs.get(key) or {"status": "unavailable", "error": "not computed"}
        if r.get("status") != "ok":
            out.append(f"| {name} | - | - | - | {r['status']}: {r.get('error', '')} |")
            continue
        out.append(
            f"| {name} | {100 * r['test_accuracy']:.1f} | {100 * r['dev_accuracy']:.1f} | {r['C']:g} | "
            f"{r['features']} |"
        )
    tested = [e for e in entries if e["accuracies"]]
    lines = []
    for method, what in (("sparse", "best learned structure"), ("baseline", "best baseline")):
        es = [e for e in tested if e["method"] == method]
        if not es:
            continue
        e = max(es, key=lambda e: e["test"][0])
        for key, name in NAMES.items():
            iv = reference_gap(e, refs.get(key) or {})
            if iv is not None:
                lines.append(f"- {what} ({e['configuration']}) minus {name}: {iv.text()} points")
    if lines:
        out += ["", "Against the reference rows (difference in points, 95 % interval):", "", *lines]
    return [*out, ""]


def significance_lines(entries: list[dict]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The learned structures against the nearest-size baselines, and the paper's claims,
    with 95 % intervals; also ``(claim, verdict, interval)`` for the claims table."""
    claims = judge(entries)
    if claims is None:
        return [], []
    paired = all(iv.paired for _, _, iv in claims.pairs)
    how = (
        "paired bootstrap over the reruns and the test documents"
        if paired
        else "bootstrap over the reruns, test-document noise drawn from a binomial (no per-document results)"
    )
    out = [
        f"Learned structure minus the nearest-size baseline (test accuracy, points; 95 % interval, {how}, "
        f"{N_BOOT} resamples):",
        "",
        "| learned | transitions | nearest-size baseline | difference [95 % interval] |",
        "|---|---|---|---|",
    ]
    for e, b, iv in claims.pairs:
        out.append(f"| {e['configuration']} | {_pm(e['transitions'])} | {b['configuration']} | {iv.text()} |")
    out += ["", "The paper's claims at 95 % confidence:", ""]
    table = []
    for claim, verdict, claim_iv, what in claims.verdicts:
        ivs = claim_iv.text() if claim_iv is not None else "-"
        out.append(f"- {claim}: **{verdict}** ({what}: {ivs} points)")
        table.append((claim, verdict, ivs))
    out += [
        "",
        "The intervals hold the noise of the rerun seeds and of the test sample, not that of the random "
        "search: with few assignments per configuration, a baseline whose sampled learning rate was poor "
        "loses by more than its structure explains (compare the lr column).",
        "",
        f"Rules: 1 holds when the interval lies above 0, fails below 0; 2 fails when the interval lies below "
        f"+{GAIN_POINTS:g} (a gain smaller than claimed), holds when it lies above 0 otherwise; 3 holds when the "
        f"interval lies above -{SIMILAR_POINTS:g} (not worse by a point or more), fails below it; 4 as 3; 5 as 1; "
        "otherwise undecided.",
        "",
    ]
    return out, table


def pooled_lines(per_dataset: dict[str, list[dict]], verdicts: dict[str, list[tuple[str, str, str]]]) -> list[str]:
    """With two or more datasets: their test documents pooled into one test set (a
    difference of 1-2 points, the size the paper reports, needs more documents than one
    domain has to be decided), the pooled accuracies, the differences and the claims; adds
    the pooled row to ``verdicts``."""
    pooled = pool(per_dataset) if len(per_dataset) >= 2 else []
    lines, table = significance_lines(pooled) if pooled else ([], [])
    if not table:
        return []
    n = pooled[0]["n_docs"]
    docs = f"{n} test documents" if n else "their test documents"
    label = f"all {len(per_dataset)} pooled"
    verdicts[label] = table
    out = [
        f"## All {len(per_dataset)} datasets pooled",
        "",
        f"{', '.join(per_dataset)} as one test set of {docs}: pooled rerun i is rerun i of every dataset, "
        "its test documents concatenated; an accuracy weights each dataset by its test documents. The same "
        "configurations, differences and claims as above, with the narrower intervals of the larger test set.",
        "",
        "| configuration | runs | transitions (mean over the datasets) | pooled test acc |",
        "|---|---|---|---|",
    ]
    out += [f"| {e['configuration']} | {e['runs']} | {_pm(e['transitions'])} | {_pm(e['test'])} |" for e in pooled]
    return [*out, "", *lines]


def summary_markdown(
    rows: list[dict],
    title: str,
    header_lines: list[str],
    notes: list[str],
    references: dict[str, dict] | None = None,
) -> str:
    """``references``: per dataset name, its reference rows (:mod:`.references`)."""
    agg = aggregate(rows)
    references = references or {}
    out = [f"# {title}", ""]
    out += header_lines
    out.append("")
    n_ok = sum(r["status"] == "ok" for r in rows)
    n_fail = sum(r["status"] != "ok" for r in rows)
    out.append(
        f"{n_ok} finished runs ({n_fail} failed). Mean ± std over the reruns of the best assignment "
        "(by dev accuracy) of each configuration; accuracies in %."
    )
    out.append("")
    verdicts: dict[str, list[tuple[str, str, str]]] = {}
    for ds in sorted(set(agg) | set(references)):
        entries = agg.get(ds, [])
        out += [
            f"## {ds}",
            "",
            "| configuration | runs | search | lambda | transitions | test acc | dev acc | parameters | "
            "structures | best search dev | lr | clip | dropout | input dropout | weight decay |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for e in entries:
            hp = e["hp"]
            structs = "; ".join(e["structures"][:3]) + (" ..." if len(e["structures"]) > 3 else "")
            lam = f"{e['reg_strength']:.3g}" if e["reg_strength"] else "0"
            out.append(
                f"| {e['configuration']} | {e['runs']} | {e['search'] or '-'} | {lam} | {_pm(e['transitions'])} | "
                f"{_pm(e['test'])} | "
                f"{_pm(e['dev'])} | {e['parameters'][0]:.0f} | {structs} | {e['best_dev_search']:.1f} | "
                f"{float(hp['lr']):.3g} | {float(hp['clip']):.2f} | {float(hp['dropout']):.2f} | "
                f"{float(hp['input_dropout']):.2f} | {float(hp['weight_decay']):.2g} |"
            )
        out.append("")
        out += placement_lines(entries)
        out += cost_lines([r for r in rows if r["dataset"] == ds])
        out += reference_lines(references.get(ds), entries)
        out += ["Against the paper's claims (means):", ""] + comparisons(entries) + [""]
        lines, table = significance_lines(entries)
        out += lines
        if table:
            verdicts[ds] = table
    pooled = pooled_lines(pooled_datasets(agg), verdicts)
    out += pooled
    if pooled:
        out += cost_lines(rows, ", all datasets")
    if verdicts:
        names = [claim for claim, _, _ in next(iter(verdicts.values()))]
        out += [
            "## The paper's claims at 95 % confidence",
            "",
            "| dataset | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for ds, table in verdicts.items():
            out.append(f"| {ds} | " + " | ".join(f"{v} ({iv})" for _, v, iv in table) + " |")
        out.append("")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed or notes:
        out += ["## Failed trials", ""]
        for r in failed:
            out.append(
                f"- {r['dataset']} / {r['configuration']} {r['phase']} {r['index']} (`{r['key']}`): {r['error']}"
            )
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)


#: (method, line style, colour, legend label) of Figure 3's two curves
_FIGURE_METHODS = (
    ("baseline", "-", "tab:blue", "baseline (fixed structure)"),
    ("sparse", "--", "tab:orange", "group lasso (learned structure)"),
)
#: (line style, colour) of the reference rows' horizontal lines, in the order of ``references.NAMES``
_REFERENCE_STYLES = ((":", "tab:green"), ("-.", "tab:gray"))


def pooled_datasets(agg: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The datasets a report pools, in name order: those whose claims can be judged
    (:func:`.significance.judgeable`). The summary's pooled section and claims and the
    pooled Figure 3 pool these, with :func:`.significance.pool`."""

    return {ds: agg[ds] for ds in sorted(agg) if judgeable(agg[ds])}


def pooled_references(per_dataset: dict[str, list[dict]], references: dict[str, dict] | None) -> dict[str, dict]:
    """The reference rows of ``per_dataset`` pooled as their configurations are
    (:func:`.significance.pool`: the test documents concatenated, so each dataset weighs by
    its test documents); only a reference row that every dataset has, and none unless all of
    them have one."""

    per: dict[str, list[dict]] = {}
    for ds, entries in per_dataset.items():
        sizes = [int(e["n_docs"]) for e in entries if e.get("n_docs")]
        per[ds] = [
            {
                "configuration": key,
                "method": "reference",
                "patterns": "",
                "transitions": (0.0, 0.0),
                "accuracies": [float(r["test_accuracy"])],
                "flags": [r.get("test_correct") or ""],
                "n_docs": max(sizes) if sizes else None,
            }
            for key in NAMES
            if (r := ((references or {}).get(ds) or {}).get(key) or {}).get("status") == "ok"
        ]
    if len(per) < 2 or not all(per.values()):
        return {}
    return {e["configuration"]: {"status": "ok", "test_accuracy": e["accuracies"][0]} for e in pool(per)}


def _pyplot():
    try:
        import matplotlib  # lazy: optional (matplotlib)
    except ImportError:
        raise UserError("the figure needs matplotlib: pip install 'sparse-rational[reproduce]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # lazy: optional (matplotlib)

    return plt


def _panel(ax, entries: list[dict], refs: dict, title: str, xlabel: str, ylabel: str) -> None:
    """One panel: the two curves of ``entries`` with error bars of one standard deviation on
    both axes, and the reference rows of ``refs`` (by key of ``references.NAMES``) as lines."""

    for method, style, color, label in _FIGURE_METHODS:
        es = sorted(
            (e for e in entries if e["method"] == method and not math.isnan(e["test"][0])),
            key=lambda e: e["transitions"][0],
        )
        if not es:
            continue
        ax.errorbar(
            [e["transitions"][0] for e in es],
            [e["test"][0] for e in es],
            xerr=[e["transitions"][1] for e in es],
            yerr=[e["test"][1] for e in es],
            fmt="o",
            linestyle=style,
            color=color,
            capsize=3,
            markersize=4,
            label=label,
        )
    for (key, name), (style, color) in zip(NAMES.items(), _REFERENCE_STYLES):
        r = refs.get(key) or {}
        if r.get("status") == "ok":
            ax.axhline(100 * r["test_accuracy"], linestyle=style, color=color, linewidth=1.2, label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend_below(fig, axes, ncol_max: int) -> None:
    """One legend for all panels, one entry per label (the models first, then the reference
    rows), outside the panels below them: constrained layout keeps it clear of the data, the
    tick labels and the axis labels."""
    legend: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if not legend:
        return
    models = {m[3] for m in _FIGURE_METHODS}
    order = sorted(legend, key=lambda label: label not in models)
    fig.legend(
        [legend[k] for k in order], order, loc="outside lower center", ncol=min(len(order), ncol_max), fontsize=8
    )


def _save(fig, base: Path) -> list[Path]:
    """``base.png`` (150 dpi) and ``base.svg`` (without a date, with fixed element ids: the same
    trials, the same bytes)."""
    import matplotlib.pyplot as plt  # lazy: optional (matplotlib)

    written = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        with plt.rc_context({"svg.hashsalt": base.name}):  # the SVG's element ids, else random
            fig.savefig(
                buf, format=ext, dpi=150 if ext == "png" else None, metadata={"Date": None} if ext == "svg" else None
            )
        path = base.with_suffix(f".{ext}")
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def draw_figure3(rows: list[dict], title: str = "", references: dict[str, dict] | None = None):
    """Figure 3 as a matplotlib figure (:func:`figure3` saves it): one panel per dataset,
    four to a row, and one legend below the panels."""
    plt = _pyplot()
    agg = aggregate(rows)
    references = references or {}
    names = sorted(set(agg) | set(references)) or ["(no finished reruns)"]
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows + 0.5), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, ds in zip(axes.flat, names):
        _panel(ax, agg.get(ds, []), references.get(ds, {}), ds, "number of WFSA transitions", "test accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    _legend_below(fig, axes.flat, 2 if ncols == 1 else 4)  # one panel is too narrow for four entries in a row
    return fig


def figure3(rows: list[dict], base: Path, title: str = "", references: dict[str, dict] | None = None) -> list[Path]:
    """``base.png`` and ``base.svg``: one panel per dataset, test accuracy against the
    number of transitions; baselines solid, sparse models dashed, one standard deviation of
    both on the error bars; the reference rows of ``references`` (per dataset name) as
    horizontal lines; one legend below the panels."""
    return _save(draw_figure3(rows, title, references), base)


def draw_figure3_pooled(rows: list[dict], title: str = "", references: dict[str, dict] | None = None):
    """The pooled Figure 3 as a matplotlib figure, or None when fewer than two datasets
    pool: one panel, the datasets of :func:`pooled_datasets` as one test set
    (:func:`.significance.pool`, as the summary's pooled section has them), their reference
    rows pooled the same way (:func:`pooled_references`)."""

    per_dataset = pooled_datasets(aggregate(rows))
    pooled = pool(per_dataset) if len(per_dataset) >= 2 else []
    if not pooled:
        return None
    plt = _pyplot()
    n = pooled[0]["n_docs"]
    runs = sorted({e["runs"] for e in pooled})
    reruns = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
    docs = f"{n} test documents" if n else "their test documents"
    heading = f"{', '.join(per_dataset)} pooled\n{docs}, {reruns} pooled reruns per configuration"
    fig, ax = plt.subplots(figsize=(6.4, 5.0), layout="constrained")
    _panel(
        ax,
        pooled,
        pooled_references(per_dataset, references),
        heading,
        "number of WFSA transitions (mean over the datasets)",
        "pooled test accuracy (%)",
    )
    if title:
        fig.suptitle(title, fontsize=10)
    _legend_below(fig, [ax], 2)
    return fig


def figure3_pooled(
    rows: list[dict], base: Path, title: str = "", references: dict[str, dict] | None = None
) -> list[Path]:
    """``base.png`` and ``base.svg`` of :func:`draw_figure3_pooled`; none (an empty list)
    when fewer than two datasets pool."""
    fig = draw_figure3_pooled(rows, title, references)
    return [] if fig is None else _save(fig, base)
