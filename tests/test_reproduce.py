"""`sparse-rational reproduce`: the smoke protocol end to end on tiny files, resuming after a
killed sweep, Ray against the local pool, failed trials, the readout, the regularisation path
(one penalised run per assignment for every target), and the one-line errors."""

import csv
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_args

from sparse_rational.errors import UserError
from sparse_rational.experiments import cli as rcli
from sparse_rational.experiments.protocol import (
    BUDGETS,
    Budget,
    Configuration,
    DatasetRef,
    Plan,
    TrialSpec,
    configurations,
    sample_assignments,
)
from sparse_rational.experiments.report import aggregate, rows_from_records
from sparse_rational.experiments.store import TrialStore
from sparse_rational.experiments.sweep import run_sweep
from sparse_rational.experiments.trial import run_trial

REPO = Path(__file__).resolve().parents[1]


def reproduce(*argv) -> int:
    return rcli.main(["reproduce", *map(str, argv)])


def trial_files(out: Path) -> list[Path]:
    return sorted((out / "trials").glob("*.json"))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- the protocol as data ----------------------------------------------------------------
def test_configurations_follow_the_paper():
    glove = configurations("glove-6b-50d")
    assert [c.label for c in glove] == [
        "baseline 24x1",
        "baseline 24x2",
        "baseline 24x3",
        "baseline 24x4",
        "baseline 6x1,6x2,6x3,6x4",
        "sparse target 80",
        "sparse target 60",
        "sparse target 40",
        "sparse target 20",
    ]
    assert {c.patterns for c in glove if c.method == "sparse"} == {"24x4"}
    bert = configurations("hf:bert-large-uncased")
    assert [c.patterns for c in bert if c.method == "baseline"] == ["12x1", "12x2", "12x3", "12x4", "3x1,3x2,3x3,3x4"]
    assert {c.patterns for c in bert if c.method == "sparse"} == {"12x4"}
    assert BUDGETS["paper"].assignments == 20 and BUDGETS["paper"].reruns == 5
    assert (BUDGETS["paper"].epochs, BUDGETS["paper"].patience) == (500, 30)
    with pytest.raises(UserError, match="between 1 and the 96"):
        configurations("glove-6b-50d", targets=[100])


def test_assignments_come_from_the_authors_space():
    glove = sample_assignments(200, "glove-6b-50d", "x")
    assert all(
        7e-3 <= a["lr"] <= 0.5
        and 1 <= a["clip"] <= 5
        and 0 <= a["dropout"] <= 0.5
        and 0 <= a["input_dropout"] <= 0.5
        and 1e-7 <= a["weight_decay"] <= 1e-5
        for a in glove
    )
    assert all(7e-5 <= a["lr"] <= 5e-3 for a in sample_assignments(50, "hf:minilm", "x"))
    assert sample_assignments(3, "glove-6b-50d", "x") == glove[:3]  # replacements extend the sequence


def test_trial_key_hashes_the_config_but_not_where_the_data_lives():
    hp = {"lr": 0.01, "clip": 2.0, "dropout": 0.1, "input_dropout": 0.1, "weight_decay": 1e-6}
    a = TrialSpec(
        DatasetRef("amazon:kitchen", spec="amazon:kitchen", data_dir="/a"),
        "glove-6b-50d",
        Configuration("baseline", "24x1"),
        "search",
        0,
        0,
        hp,
        5,
        3,
        3,
    )
    b = TrialSpec(
        DatasetRef("amazon:kitchen", spec="amazon:kitchen", data_dir="/b"),
        "glove-6b-50d",
        Configuration("baseline", "24x1"),
        "search",
        0,
        0,
        hp,
        5,
        3,
        3,
        threads=4,
    )
    assert a.key == b.key
    assert TrialSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    for change in ({"seed": 1}, {"epochs": 6}, {"hyperparameters": {**hp, "lr": 0.02}}):
        assert TrialSpec(**{**a.__dict__, **change}).key != a.key


def test_the_papers_choices_keep_the_identity_of_earlier_sweeps():
    """A sweep folder made before --readout/--penalty-update/--structure-search existed is the
    same sweep as one run with their defaults: these keys were computed by that code."""
    hp = {"lr": 0.01, "clip": 2.0, "dropout": 0.1, "input_dropout": 0.1, "weight_decay": 1e-6}
    ds = DatasetRef("amazon:kitchen", spec="amazon:kitchen", data_dir="/a")
    target20 = Configuration("sparse", "24x4", target_transitions=20)
    specs = {
        "d16e18b7f2ffdd249ab6": TrialSpec(
            ds, "glove-6b-50d", Configuration("baseline", "24x1"), "search", 0, 0, hp, 5, 3, 3
        ),
        "9eb375d67216ac59fb1d": TrialSpec(ds, "glove-6b-50d", target20, "search", 1, 0, hp, 5, 3, 3, tolerance=15),
        "f72501da97abeb179afe": TrialSpec(ds, "glove-6b-50d", target20, "rerun", 2, 2, hp, 5, 3, 3, reg_strength=5e-4),
        "1aa4a1f8c915e9cb851b": TrialSpec(
            ds,
            "glove-6b-50d",
            Configuration("sparse", "24x4", reg_strength=0.002),
            "search",
            0,
            0,
            hp,
            5,
            3,
            3,
            reg_strength=0.002,
        ),
    }
    for key, spec in specs.items():
        assert spec.key == key
        explicit = TrialSpec(
            **{**spec.__dict__, "readout": "final", "penalty_update": "gradient", "structure_search": "lambda"}
        )
        assert explicit.key == key
        assert TrialSpec(**{**spec.__dict__, "readout": "mean"}).key != key
    for key in list(specs)[1:]:  # the penalty only matters where there is one
        assert TrialSpec(**{**specs[key].__dict__, "penalty_update": "proximal"}).key != key
    baseline = specs["d16e18b7f2ffdd249ab6"]
    assert TrialSpec(**{**baseline.__dict__, "penalty_update": "proximal"}).key == baseline.key

    def plan_hash(**choices):
        plan = Plan(
            [ds], "glove-6b-50d", BUDGETS["smoke"], configurations("glove-6b-50d", ("24x1",), (40, 20)), **choices
        )
        return hashlib.sha256(json.dumps(plan.identity(), sort_keys=True).encode()).hexdigest()[:20]

    assert (
        plan_hash()
        == plan_hash(readout="final", penalty_update="gradient", structure_search="lambda")
        == "bff0abef2de77eac638a"
    )
    others = {plan_hash(readout="max"), plan_hash(penalty_update="proximal"), plan_hash(structure_search="path")}
    assert len(others) == 3 and "bff0abef2de77eac638a" not in others


def test_path_trials_are_shared_by_the_targets():
    ds = DatasetRef("tiny", files=("/x/train.tsv", None, None))
    plan = Plan(
        [ds],
        "glove-6b-50d",
        BUDGETS["smoke"],
        configurations("glove-6b-50d", ("24x1",), (40, 20)),
        structure_search="path",
        penalty_update="proximal",
    )
    base, t40, t20 = plan.configs
    assert plan.search_trials(ds, t40) == plan.search_trials(ds, t20)
    (path,) = plan.search_trials(ds, t40)
    assert path.config.label == "sparse path 40,20" and path.targets == (40, 20)
    assert path.reg_epochs == BUDGETS["smoke"].path_epochs and path.identity()["penalty_update"] == "proximal"
    rerun = plan.rerun_trials(path, 0.5, t20)
    assert [r.seed for r in rerun] == [1, 2]
    assert all(r.target == 20 and r.reg_strength == 0 and r.uses_path for r in rerun)  # a path again, no lambda
    assert plan.total_trials == 3 + 1 + 2 * 2 and plan.penalised_runs()[0] == 1 + 2 * 2
    assert TrialSpec.from_dict(json.loads(json.dumps(path.to_dict()))) == path
    lam = Plan([ds], "glove-6b-50d", BUDGETS["smoke"], plan.configs)
    assert lam.total_trials == 3 * 3 and lam.penalised_runs()[0] > plan.penalised_runs()[0]


def test_files_are_recorded_as_given_and_read_resolved(tiny_files, tmp_path, monkeypatch):
    from sparse_rational.experiments.trial import _load_splits

    monkeypatch.chdir(tiny_files["train"].parent)
    args = rcli.build_parser().parse_args(
        ["reproduce", "--train", "train.tsv", "--dev", "./dev.tsv", "--test", "test.tsv"]
        + ["--embeddings", "glove-6b-50d", "--budget", "smoke", "--out", str(tmp_path / "o")]
    )
    args.trial_device = "cpu"
    plan, _ = rcli.build_plan(args)
    (ds,) = plan.datasets
    assert plan.identity()["datasets"][0]["files"] == ["train.tsv", "./dev.tsv", "test.tsv"]  # what sweep.json keeps
    assert ds.paths == tuple(str(tiny_files[k].resolve()) for k in ("train", "dev", "test"))
    spec = plan.search_trials(ds, plan.configs[0])[0]
    assert "read_from" not in json.dumps(spec.identity())  # nor in the trial records and their keys
    again = TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # as a worker process gets it
    assert again == spec
    monkeypatch.chdir(tmp_path)  # a trial run from another folder reads the same files
    assert len(_load_splits(again.dataset).train) == 160


# -- end to end ------------------------------------------------------------------------------
def test_smoke_protocol_end_to_end(tiny_files, tmp_path, capsys):
    out = tmp_path / "smoke"
    args = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--targets",
        "20",
        "--reg-epochs",
        "20",
        "--tolerance",
        "15",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--quiet",
        "--out",
        out,
    ]
    assert reproduce(*args) == 0
    text = capsys.readouterr().out
    assert "12 trials = 4 x (1 + 2)" in text and "estimate" in text
    rows = read_csv(out / "results.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["configuration"] for r in ok} >= {"baseline 24x1", "baseline 24x4", "baseline 6x1,6x2,6x3,6x4"}
    for r in ok:
        assert 0 <= float(r["test_accuracy"]) <= 1 and int(r["transitions"]) > 0 and float(r["lr"]) > 0
    reruns = [r for r in ok if r["phase"] == "rerun"]
    assert {r["seed"] for r in reruns} == {"1", "2"}
    sparse = [r for r in reruns if r["method"] == "sparse"]
    assert sparse, "the lambda search should reach 20 +- 15 transitions on the tiny data"
    assert all(int(r["transitions"]) < 96 and float(r["reg_strength"]) > 0 for r in sparse)
    summary = (out / "summary.md").read_text()
    assert "| baseline 24x1 | 2 |" in summary and "sparse target 20" in summary and "±" in summary
    assert (out / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "figure3.svg").read_text()
    n = len(trial_files(out))
    # the same command again: nothing to run
    assert reproduce(*args) == 0
    assert f"0 trials run (0 failed), {n} skipped as finished" in capsys.readouterr().out
    # another command into the same folder: a one-line error
    assert reproduce(*[a if a != "smoke" else "medium" for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds the results of a different command" in err and "\n" not in err


def test_path_sweep_end_to_end_one_row_per_target(tiny_files, tmp_path, capsys):
    out = tmp_path / "path"
    args = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--baselines",
        "24x1",
        "--targets",
        "40",
        "20",
        "--structure-search",
        "path",
        "--penalty-update",
        "proximal",
        "--tolerance",
        "15",
        "--path-epochs",
        "40",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--quiet",
        "--out",
        out,
    ]
    assert reproduce(*args) == 0
    text = capsys.readouterr().out
    assert "8 trials = 1 x (1 + 2) + 1 x (1 path(s) for 2 targets + 2 x 2 reruns)" in text
    assert "5 penalised runs for the targets (path: one per assignment" in text
    records = {p.stem: json.loads(p.read_text()) for p in trial_files(out)}
    paths = {k: r for k, r in records.items() if r["config"]["configuration"] == "sparse path 40,20"}
    assert paths and all(
        r["config"]["targets"] == [40, 20] and r["config"]["penalty_update"] == "proximal" for r in paths.values()
    )
    rows = read_csv(out / "results.csv")
    search = [r for r in rows if r["method"] == "sparse" and r["phase"] == "search"]
    # one penalised run per assignment served both targets: one row per target and path trial
    assert sorted(r["configuration"] for r in search) == ["sparse target 20", "sparse target 40"] * len(paths)
    assert {r["key"] for r in search} == set(paths) and {r["search"] for r in search} == {"path"}
    for r in search:
        t, metrics = r["target_transitions"], paths[r["key"]]["metrics"]
        if r["status"] == "ok":
            assert r["structure"] and abs(int(r["transitions"]) - int(t)) <= 15 and float(r["reg_strength"]) > 0
        else:
            assert f"the path missed target {t}" in r["error"] and int(t) in metrics["missed"]
    reruns = [r for r in rows if r["method"] == "sparse" and r["phase"] == "rerun"]
    assert reruns, "the path should reach 40 or 20 +- 15 transitions on the tiny data"
    assert len(records) == 3 + len(paths) + len(reruns)
    for r in reruns:  # a single-target path with a new seed, on the best assignment of its target
        rec = records[r["key"]]
        assert (
            rec["config"]["structure_search"] == "path"
            and rec["config"]["target_transitions"] == int(r["target_transitions"])
            and "reg_strength" not in rec["config"]
        )
        assert r["search"] == "path" and rec["config"]["hyperparameters"] in [
            p["config"]["hyperparameters"] for p in paths.values()
        ]
        if r["status"] == "ok":
            assert abs(int(r["transitions"]) - int(r["target_transitions"])) <= 15
            flags = rec["metrics"]["test_correct"]  # one flag per test document, for the paired intervals
            assert len(flags) == 40 and set(flags) <= {"0", "1"}
            assert flags.count("1") / 40 == pytest.approx(float(r["test_accuracy"]), abs=1e-6)
    for rec in records.values():
        for m in [rec["metrics"], *rec["metrics"].get("targets", {}).values()]:
            assert "test_accuracy" not in m or m["test_correct"].count("1") / 40 == pytest.approx(m["test_accuracy"])
    summary = (out / "summary.md").read_text()
    assert "| baseline 24x1 | 2 | - |" in summary and "Targets by the regularisation path" in summary
    assert any(f"| sparse target {t} | 2 | path |" in summary for t in (40, 20))
    # the reference rows on the same splits, the intervals and the claims
    refs = json.loads((out / "references.json").read_text())["datasets"]["train"]["rows"]
    assert {k: r["status"] for k, r in refs.items()} == {"tfidf": "ok", "mean_vectors": "ok"}
    assert all(len(r["test_correct"]) == 40 and 0.5 <= r["test_accuracy"] <= 1 for r in refs.values())
    tfidf_line = f"| TF-IDF 1-2-gram + LR | {100 * refs['tfidf']['test_accuracy']:.1f} |"
    assert tfidf_line in summary and "| mean word vectors + LR |" in summary
    assert "paired bootstrap over the reruns and the test documents" in summary
    assert "## The paper's claims at 95 % confidence" in summary
    assert "TF-IDF 1-2-gram + LR" in (out / "figure3.svg").read_text()
    # the outputs rewritten from the stored trials keep the command and the wall time
    (out / "summary.md").unlink()
    assert reproduce("--report-only", "--out", out) == 0
    rewritten = (out / "summary.md").read_text()
    assert rewritten.startswith(summary.split("\n\n")[0]) and "Command: `sparse-rational reproduce" in rewritten
    assert "Wall time:" in rewritten and tfidf_line in rewritten and "(`--report-only`)" in rewritten
    capsys.readouterr()
    # the same command again: nothing to run
    assert reproduce(*args) == 0
    assert f"0 trials run (0 failed), {len(records)} skipped as finished" in capsys.readouterr().out


def test_readout_reaches_the_trained_models(tiny_files, tmp_path, capsys):
    out = tmp_path / "mean"
    args = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--baselines",
        "2x1",
        "--no-targets",
        "--assignments",
        "1",
        "--reruns",
        "1",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--readout",
        "mean",
        "--quiet",
        "--out",
        out,
    ]
    assert reproduce(*args) == 0
    records = [json.loads(p.read_text()) for p in trial_files(out)]
    assert len(records) == 2
    for rec in records:
        assert rec["status"] == "ok" and rec["config"]["readout"] == "mean"
        assert rec["metrics"]["hyperparameters"]["readout"] == "mean"  # what the model was built with
    assert {r["readout"] for r in read_csv(out / "results.csv")} == {"mean"}
    assert "Readout: mean" in (out / "summary.md").read_text()
    assert "--readout mean" in json.loads((out / "sweep.json").read_text())["command"]
    # the same folder with another readout is another command
    capsys.readouterr()
    assert reproduce(*[a if a != "mean" else "max" for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different command (readout" in err


def test_killed_sweep_resumes_without_rerunning_finished_trials(tiny_files, tmp_path, capsys):
    out = tmp_path / "killed"
    args = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--baselines",
        "24x1",
        "24x2",
        "24x4",
        "--no-targets",
        "--assignments",
        "2",
        "--reruns",
        "1",
        "--epochs",
        "2",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparse_rational.experiments.cli", "reproduce", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while not trial_files(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = trial_files(out)  # after the kill: one, or two if another finished meanwhile
    assert first, "no trial finished before the deadline"
    snapshot = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first}
    assert len(first) < 9
    assert reproduce(*args) == 0
    text = capsys.readouterr().out
    assert f"{len(first)} skipped as finished" in text and f"{9 - len(first)} trials run" in text
    assert len(trial_files(out)) == 9
    for p, (mtime, data) in snapshot.items():
        assert (p.stat().st_mtime_ns, p.read_bytes()) == (mtime, data)
    assert len([r for r in read_csv(out / "results.csv") if r["status"] == "ok"]) == 9


def test_ray_and_local_executors_agree(tiny_files, tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparse-rational[ray]'")
    common = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--baselines",
        "24x1",
        "--no-targets",
        "--reg-strengths",
        "0.002",
        "--assignments",
        "1",
        "--reruns",
        "1",
        "--epochs",
        "2",
        "--reg-epochs",
        "3",
        "--workers",
        "2",
        "--quiet",
    ]
    assert reproduce(*common, "--out", tmp_path / "local") == 0
    assert reproduce(*common, "--executor", "ray", "--out", tmp_path / "ray") == 0
    assert "trials run with ray x 2" in (tmp_path / "ray" / "summary.md").read_text()
    keep = [
        "configuration",
        "phase",
        "seed",
        "lr",
        "reg_strength",
        "structure",
        "transitions",
        "parameters",
        "dev_accuracy",
        "test_accuracy",
        "epochs",
        "status",
        "key",
    ]
    local = [{k: r[k] for k in keep} for r in read_csv(tmp_path / "local" / "results.csv")]
    ray = [{k: r[k] for k in keep} for r in read_csv(tmp_path / "ray" / "results.csv")]
    assert len(local) == 4 and all(r["status"] == "ok" for r in local)
    assert local == ray


def test_unreachable_ray_address_is_one_line(tiny_files, tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparse-rational[ray]'")
    code = reproduce(
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--executor",
        "ray",
        "--ray-address",
        "127.0.0.1:9",
        "--out",
        tmp_path / "r",
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--ray-address 127.0.0.1:9: cannot connect" in err
    assert not (tmp_path / "r").exists()


def test_a_second_sweep_into_the_same_folder_is_refused(tiny_files, tmp_path, capsys):
    out = tmp_path / "locked"
    args = [
        *tiny_args(tiny_files),
        "--budget",
        "smoke",
        "--no-targets",
        "--baselines",
        "2x1",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out,
    ]
    from sparse_rational.experiments.store import TrialStore as Store

    out.mkdir()
    holder = Store(out).lock()  # as a running sweep holds it
    try:
        assert reproduce(*args, "--dry-run") == 0  # looking is fine
        assert reproduce(*args) == 2
        assert "another sweep is running" in capsys.readouterr().err
    finally:
        holder.close()


# -- faults ------------------------------------------------------------------------------------
class InProcess:
    """An executor that runs trials in this process (the sweep logic without spawning)."""

    name, capacity = "inprocess", 1

    class Handle:
        def __init__(self, record):
            self.record = record

    def submit(self, spec):
        return self.Handle(run_trial(spec.to_dict()))

    def wait(self, handles, timeout=None):
        return [(handles[0], handles[0].record)]

    def close(self, cancel=False):
        pass


def test_a_crashing_trial_is_recorded_and_the_sweep_goes_on(tiny_files, tmp_path):
    ds = DatasetRef("tiny", files=tuple(str(tiny_files[k]) for k in ("train", "dev", "test")))
    budget = Budget("t", assignments=1, reruns=1, epochs=1, patience=1, reg_epochs=1)
    bad = Configuration("baseline", "0x4")  # not a structure: every trial of it fails
    plan = Plan([ds], "glove-6b-50d", budget, [bad, Configuration("baseline", "2x1")])
    store = TrialStore(tmp_path / "sweep")
    result = run_sweep(plan, InProcess(), store, progress=False)
    records = list(store.load_all().values())
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2  # the search trial and its replacement
    assert all("0x4" in r["error"] and "Traceback" in r["traceback"] for r in failed)
    assert sum(r["status"] == "ok" for r in records) == 2  # the other configuration: search + rerun
    assert result.failed == 2 and any("nothing to rerun" in n for n in result.notes)


class Fabricated(InProcess):
    """Records made up from the spec (no training): the sweep's decisions, quickly."""

    def __init__(self, metrics):
        self.metrics, self.submitted = metrics, []

    def submit(self, spec):
        self.submitted.append(spec.key)
        return self.Handle(
            {
                "format": "sparse-rational-trial/1",
                "key": spec.key,
                "config": spec.identity(),
                "status": "ok",
                "metrics": self.metrics(spec),
                "seconds": 0.0,
            }
        )


def test_a_target_the_path_missed_is_a_failed_attempt_of_that_target(tmp_path):
    ds = DatasetRef("tiny", files=("/x/train.tsv", None, None))
    budget = Budget("t", assignments=1, reruns=2, epochs=1, patience=1, reg_epochs=1, path_epochs=9)
    plan = Plan([ds], "glove-6b-50d", budget, configurations("glove-6b-50d", (), (40, 20)), structure_search="path")

    def result(dev, n, lam):
        return {
            "dev_accuracy": dev,
            "test_accuracy": dev,
            "transitions": n,
            "structure": [n],
            "wfsas": 1,
            "parameters": 10,
            "reg_strength": lam,
        }

    def metrics(spec):
        if spec.phase == "rerun":
            return result(0.5, spec.target, 0.01)
        if spec.index == 0:  # jumps over 20; 40 reached
            return {
                "targets": {"40": result(0.6, 41, 0.01)},
                "missed": [20],
                "path": [{"transitions": 5}],
                "snapshots": {"40": {"transitions": 41}},
            }
        return {
            "targets": {"40": result(0.9, 40, 0.02), "20": result(0.7, 21, 0.03)},
            "missed": [],
            "path": [{"transitions": 21}],
            "snapshots": {},
        }

    store = TrialStore(tmp_path / "sweep")
    executor = Fabricated(metrics)
    result_ = run_sweep(plan, executor, store, progress=False)
    assert len(executor.submitted) == len(set(executor.submitted)) == 2 + 2 * 2  # a replacement path for 20
    assert result_.total == 6 and result_.failed == 0
    records = store.load_all()
    path0, path1 = plan.search_trials(ds, plan.configs[0], 2)
    reruns = {
        t: [
            r["config"]
            for r in records.values()
            if r["config"].get("target_transitions") == t and r["config"]["phase"] == "rerun"
        ]
        for t in (40, 20)
    }
    # 40 reruns its only counted assignment (0), though assignment 1, run for 20, did better on 40
    assert [c["hyperparameters"] for c in reruns[40]] == [path0.hyperparameters] * 2
    assert [c["hyperparameters"] for c in reruns[20]] == [path1.hyperparameters] * 2
    rows = rows_from_records(records)
    missed = [r for r in rows if r["status"] == "failed"]
    assert len(missed) == 1 and missed[0]["configuration"] == "sparse target 20" and missed[0]["index"] == 0
    assert missed[0]["error"] == (
        "the path missed target 20: it went from more than 30 to fewer than 10 transitions within one step"
    )
    assert sum(r["phase"] == "search" for r in rows) == 4  # two paths x two targets
    best = {e["configuration"]: e["best_dev_search"] for e in aggregate(rows)["tiny"]}
    assert best == {"sparse target 40": 60.0, "sparse target 20": 70.0}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "huge"], "invalid choice: 'huge'"),
        (["--executor", "slurm"], "invalid choice: 'slurm'"),
        (["--targets", "200"], "must be between 1 and the 96 transitions"),
        (["--baselines", "24y1"], "24y1"),
        (["--readout", "median"], "invalid choice: 'median'"),
        (["--penalty-update", "lasso"], "invalid choice: 'lasso'"),
        (["--structure-search", "grid"], "invalid choice: 'grid'"),
        (["--structure-search", "path", "--no-targets"], "--structure-search path yields the target sizes"),
        (["--structure-search", "path", "--no-targets", "--reg-strengths", "0.01"], "this sweep has no targets"),
        (["--penalty-update", "proximal", "--no-targets"], "--penalty-update proximal changes structure learning only"),
        (["--path-epochs", "20"], "--path-epochs goes with --structure-search path"),
    ],
)
def test_bad_input_is_one_line(tiny_files, tmp_path, capsys, extra, message):
    assert reproduce(*tiny_args(tiny_files), *extra, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_out_folder_of_something_else_is_refused(tiny_files, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert reproduce(*tiny_args(tiny_files), "--budget", "smoke", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no sweep.json" in err


# -- significance and reference rows (constructed inputs, known answers) -------------------
def _flags(n_right: int, n: int, rng=None) -> str:
    flags = ["1"] * n_right + ["0"] * (n - n_right)
    if rng is not None:
        rng.shuffle(flags)
    return "".join(flags)


def _entry(name, method, transitions, flags, patterns=None):
    accs = [f.count("1") / len(f) for f in flags]
    mean = 100 * sum(accs) / len(accs)
    return {
        "configuration": name,
        "method": method,
        "patterns": patterns or "24x4",
        "transitions": (float(transitions), 0.0),
        "test": (mean, 0.0),
        "accuracies": accs,
        "flags": flags,
        "n_docs": len(flags[0]),
    }


def test_bootstrap_interval_finds_a_known_difference_and_none_where_there_is_none():
    from sparse_rational.experiments.significance import Group, difference, verdict_better

    better = Group.from_runs([], [_flags(450, 500)] * 3)
    worse = Group.from_runs([], [_flags(400, 500)] * 3)
    iv = difference(better, worse)
    assert iv.paired and iv.estimate == pytest.approx(10.0)
    assert 7 < iv.low < 10 < iv.high < 13 and verdict_better(iv) == "holds"
    assert verdict_better(difference(worse, better)) == "fails"
    same = difference(better, better)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and verdict_better(same) == "undecided"


def test_pairing_by_document_detects_a_small_consistent_gain():
    from sparse_rational.experiments.significance import Group, difference

    # five reruns alike (no seed noise), wrong on the first 8 of 400 documents and on 92 more;
    # the learned model gets those 8 right as well: +2 points on exactly the same documents
    base = ["0" * 8 + _flags(300, 392)] * 5
    gain = ["1" * 8 + _flags(300, 392)] * 5
    paired = difference(Group.from_runs([], gain), Group.from_runs([], base))
    unpaired = difference(
        Group.from_runs([g.count("1") / 400 for g in gain], [""] * 5, 400),
        Group.from_runs([b.count("1") / 400 for b in base], [""] * 5, 400),
    )
    assert paired.paired and not unpaired.paired
    assert paired.estimate == pytest.approx(unpaired.estimate) == pytest.approx(2.0)
    assert paired.low > 0  # the same documents: the gain is certain
    assert unpaired.low < 0 < unpaired.high  # independent binomials: lost in the noise
    assert paired.high - paired.low < unpaired.high - unpaired.low


def test_interval_covers_a_zero_difference_about_95_percent_of_the_time():
    import numpy as np

    from sparse_rational.experiments.significance import Group, difference

    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(80):
        # two configurations of equal quality: per-document difficulty shared, run noise on top
        p = rng.uniform(0.5, 1.0, 300)
        runs = [
            ["".join("1" if u < q else "0" for u, q in zip(rng.uniform(size=300), p)) for _ in range(4)] for _ in (0, 1)
        ]
        iv = difference(Group.from_runs([], runs[0]), Group.from_runs([], runs[1]), n_boot=400, seed=trial)
        covered += iv.low <= 0 <= iv.high
    assert 0.85 <= covered / 80 <= 1.0


def test_claims_hold_and_fail_where_constructed_to():
    from sparse_rational.experiments.significance import judge

    def entries(shift: int):
        base = [
            _entry("baseline 24x1", "baseline", 24, [_flags(380, 500)] * 3, "24x1"),
            _entry("baseline 24x2", "baseline", 48, [_flags(390, 500)] * 3, "24x2"),
            _entry("baseline 24x4", "baseline", 96, [_flags(400, 500)] * 3, "24x4"),
        ]
        sparse = [
            _entry("sparse target 20", "sparse", 21, [_flags(380 + shift, 500)] * 3),
            _entry("sparse target 80", "sparse", 85, [_flags(400 + shift, 500)] * 3),
        ]
        return base + sparse

    good = judge(entries(25))
    assert good is not None
    assert [b["configuration"] for _, b, _ in good.pairs] == ["baseline 24x1", "baseline 24x4"]
    # claim 5 compares the baselines alone: 24x4 (80 %) - 24x1 (76 %) holds in every case
    assert [v for _, v, _, _ in good.verdicts] == ["holds", "holds", "holds", "holds", "holds"]
    assert good.verdicts[0][2].estimate == pytest.approx(5.0)
    # claim 4: both learned structures (21, 85 transitions) are smaller than 24x4 (96), the best
    assert good.verdicts[3][2].estimate == pytest.approx((81 - 80 + 85 - 80) / 2)
    assert good.verdicts[4][2].estimate == pytest.approx(4.0)
    bad = judge(entries(-25))
    assert [v for _, v, _, _ in bad.verdicts] == ["fails", "fails", "fails", "fails", "holds"]
    tie = judge(entries(0))
    # no gain at all: claim 1 undecided, claim 2 fails (surely below +1), claim 3 holds (not
    # worse), claim 4 fails (the smaller learned structures are 2 points worse on average)
    assert [v for _, v, _, _ in tie.verdicts] == ["undecided", "fails", "holds", "fails", "holds"]
    assert tie.verdicts[3][2].estimate == pytest.approx(-2.0)
    assert judge([e for e in entries(0) if e["method"] == "baseline"]) is None


def _toy_splits():
    from sparse_rational.data import Example, Splits

    pos = ["excellent , wonderful and great", "great great , i love it", "wonderful product , excellent value"]
    neg = ["terrible , awful and horrible", "awful awful , i hate it", "horrible product , terrible value"]

    def part(k):
        return [Example(f"{t} {i}", "positive") for i, t in enumerate(pos * k)] + [
            Example(f"{t} {i}", "negative") for i, t in enumerate(neg * k)
        ]

    return Splits(part(10), part(2), part(3))


def test_reference_rows_learn_a_separable_toy_task():
    from sparse_rational.experiments.references import mean_vector_reference, tfidf_reference

    splits = _toy_splits()
    for ref in (tfidf_reference(splits), mean_vector_reference(splits, "glove-6b-50d")):
        assert ref["test_accuracy"] == 1.0 and ref["dev_accuracy"] == 1.0
        assert ref["test_correct"] == "1" * len(splits.test) and ref["C"] > 0 and ref["features"] > 0


def test_reference_rows_are_computed_once_and_reach_summary_and_figure(tmp_path, monkeypatch):
    from sparse_rational.experiments import references
    from sparse_rational.experiments.report import figure3, summary_markdown

    calls = []

    def fake_compute(dataset, embeddings):
        calls.append(dataset.name)
        return {
            "tfidf": {
                "status": "ok",
                "test_accuracy": 0.875,
                "dev_accuracy": 0.9,
                "C": 10.0,
                "features": 7,
                "test_correct": _flags(7, 8),
            },
            "mean_vectors": {"status": "failed", "error": "ValueError: boom"},
        }

    monkeypatch.setattr(references, "compute", fake_compute)
    ds = [DatasetRef("hatn:kitchen", spec="hatn:kitchen")]
    first = references.ensure(tmp_path, ds, "glove-6b-50d")
    assert references.ensure(tmp_path, ds, "glove-6b-50d") == first and calls == ["hatn:kitchen"]
    references.ensure(tmp_path, ds, "vectors.txt")  # other vectors: computed again
    assert calls == ["hatn:kitchen"] * 2
    text = summary_markdown([], "t", [], [], first)
    assert "| TF-IDF 1-2-gram + LR | 87.5 | 90.0 | 10 | 7 |" in text and "failed: ValueError: boom" in text
    figure3([], tmp_path / "fig", references=first)
    assert "TF-IDF 1-2-gram + LR" in (tmp_path / "fig.svg").read_text()


def test_aggregate_keeps_the_reruns_of_the_best_assignment_when_a_folder_holds_two():
    from sparse_rational.experiments.report import COLUMNS

    def row(phase, index, lr, dev, test):
        r = dict.fromkeys(COLUMNS, "")
        r.update(
            dataset="d", method="baseline", configuration="baseline 24x1", patterns="24x1", phase=phase,
            index=index, lr=lr, clip=2, dropout=0.1, input_dropout=0.1, weight_decay=1e-6, status="ok",
            transitions=24, parameters=10, dev_accuracy=dev, test_accuracy=test, structure="24x1",
        )  # fmt: skip
        return r

    # a sweep run with 1 assignment (reruns of lr 0.2), then continued with 2 (lr 0.05 is better on dev)
    rows = [row("search", 0, 0.2, 0.70, 0.70), row("search", 1, 0.05, 0.85, 0.84)]
    rows += [row("rerun", i, 0.2, 0.7, 0.6) for i in (1, 2, 3)] + [row("rerun", i, 0.05, 0.86, 0.9) for i in (1, 2)]
    (entry,) = aggregate(rows)["d"]
    assert entry["runs"] == 2 and entry["test"][0] == pytest.approx(90.0) and float(entry["hp"]["lr"]) == 0.05
    assert entry["best_dev_search"] == pytest.approx(85.0)
    (only,) = aggregate(rows[:5])["d"]  # one assignment's reruns: kept whatever the search says
    assert only["runs"] == 3 and only["test"][0] == pytest.approx(60.0)


def test_pooling_datasets_concatenates_their_test_documents_and_narrows_the_intervals():
    import numpy as np

    from sparse_rational.experiments.significance import judge, pool

    rng = np.random.default_rng(3)

    def runs(p_right: float, n: int) -> list[str]:  # 4 reruns, each document right with p_right
        return ["".join("1" if u < p_right else "0" for u in rng.uniform(size=n)) for _ in range(4)]

    def dataset(n):
        return [
            _entry("baseline 24x1", "baseline", 24, runs(0.80, n), "24x1"),
            _entry("baseline 24x4", "baseline", 96, runs(0.84, n), "24x4"),
            _entry("sparse target 20", "sparse", 30, runs(0.83, n)),
            _entry("sparse target 80", "sparse", 90, runs(0.85, n)),
        ]

    per = {"a": dataset(300), "b": dataset(500)}
    per["b"][0]["accuracies"] = per["b"][0]["accuracies"][:3]  # one rerun fewer on b
    per["b"][0]["flags"] = per["b"][0]["flags"][:3]
    pooled = {e["configuration"]: e for e in pool(per)}
    assert set(pooled) == {"baseline 24x1", "baseline 24x4", "sparse target 20", "sparse target 80"}
    b1 = pooled["baseline 24x1"]
    assert b1["runs"] == 3 and b1["n_docs"] == 800 and len(b1["flags"][2]) == 800
    a_flags, b_flags = per["a"][0]["flags"][2], per["b"][0]["flags"][2]
    assert b1["flags"][2] == a_flags + b_flags  # rerun 2 of a, then rerun 2 of b
    assert b1["accuracies"][2] == pytest.approx((a_flags.count("1") + b_flags.count("1")) / 800)
    assert pooled["sparse target 20"]["transitions"][0] == 30.0
    widths = []
    for entries in (per["a"], per["b"], list(pooled.values())):
        claims = judge(entries)
        assert claims is not None and claims.pairs[0][2].paired
        widths.append(claims.verdicts[0][2].high - claims.verdicts[0][2].low)
    assert widths[2] < min(widths[:2])  # more test documents: a narrower interval
    # without per-document results the accuracies pool, weighted by the test documents
    for e in per["a"] + per["b"]:
        e["flags"] = [""] * len(e["accuracies"])
    e = {x["configuration"]: x for x in pool(per)}["baseline 24x4"]
    acc_a, acc_b = per["a"][1]["accuracies"][0], per["b"][1]["accuracies"][0]
    assert e["n_docs"] == 800 and e["accuracies"][0] == pytest.approx((300 * acc_a + 500 * acc_b) / 800)
    assert pool({"a": per["a"]}) == [] and pool({"a": per["a"], "b": []}) == []


def test_summary_of_two_datasets_pools_them(tmp_path):
    from sparse_rational.experiments.report import COLUMNS, summary_markdown

    def row(ds, conf, method, phase, index, transitions, flags):
        r = dict.fromkeys(COLUMNS, "")
        acc = flags.count("1") / len(flags)
        r.update(
            dataset=ds, method=method, configuration=conf, patterns="24x1" if conf.endswith("24x1") else "24x4",
            phase=phase, index=index, lr=0.01, clip=2, dropout=0.1, input_dropout=0.1, weight_decay=1e-6,
            status="ok", transitions=transitions, parameters=10, dev_accuracy=acc, test_accuracy=acc,
            structure="x", test_correct=flags, test_size=len(flags),
        )  # fmt: skip
        return r

    rows = []
    for ds in ("d1", "d2"):
        for conf, method, t, right in (
            ("baseline 24x1", "baseline", 24, 150),
            ("baseline 24x4", "baseline", 96, 160),
            ("sparse target 20", "sparse", 30, 170),
        ):
            rows.append(row(ds, conf, method, "search", 0, t, _flags(right, 200)))
            rows += [row(ds, conf, method, "rerun", i, t, _flags(right - i, 200)) for i in (1, 2, 3)]
    text = summary_markdown(rows, "t", [], [])
    assert "## All 2 datasets pooled" in text and "one test set of 400 test documents" in text
    assert "| sparse target 20 | 3 | 30.0 ± 0.0 | 84.0 ± 0.5 |" in text
    assert "| all 2 pooled | holds (" in text  # +10 points over 24x1, the same on each dataset
    one = summary_markdown([r for r in rows if r["dataset"] == "d1"], "t", [], [])
    assert "pooled" not in one


# -- Figure 3, per dataset and pooled ------------------------------------------------------
#: (configuration, method, patterns, transitions, documents right of 200 in the search trial)
_FIG_CONFIGS = (
    ("baseline 24x1", "baseline", "24x1", 24, 150),
    ("baseline 24x4", "baseline", "24x4", 96, 160),
    ("sparse target 20", "sparse", "24x4", 30, 170),
    ("sparse target 80", "sparse", "24x4", 90, 165),
)


def _figure_rows(docs: dict[str, int], learned=True) -> list[dict]:
    """Rows of a sweep over the datasets of ``docs`` (name: test documents): a search trial and
    reruns 1-3 of each configuration (without the learned ones where ``learned`` is False)."""
    from sparse_rational.experiments.report import COLUMNS

    rows = []
    for ds, n in docs.items():
        for conf, method, patterns, t, right in _FIG_CONFIGS:
            if method == "sparse" and not learned:
                continue
            for phase, i in (("search", 0), ("rerun", 1), ("rerun", 2), ("rerun", 3)):
                flags = _flags(round((right - i) * n / 200), n)
                r = dict.fromkeys(COLUMNS, "")
                r.update(
                    dataset=ds, method=method, configuration=conf, patterns=patterns, phase=phase, index=i,
                    lr=0.01, clip=2, dropout=0.1, input_dropout=0.1, weight_decay=1e-6, status="ok",
                    transitions=t, parameters=10, dev_accuracy=0.8, test_accuracy=flags.count("1") / n,
                    structure="x", test_correct=flags, test_size=n,
                )  # fmt: skip
                rows.append(r)
    return rows


def _tfidf(right: int, n: int) -> dict:
    """A TF-IDF reference row with ``right`` of ``n`` test documents right."""
    acc = right / n
    return {"tfidf": {"status": "ok", "test_accuracy": acc, "dev_accuracy": acc, "C": 1.0, "features": 9,
                      "test_correct": _flags(right, n)}}  # fmt: skip


def _assert_one_legend_clear_of_the_panels(fig):
    """One legend for the figure, inside it, overlapping no panel's data, ticks or labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes and not any(ax.get_legend() for ax in fig.axes)
    for ax in axes:
        panel = ax.get_tightbbox(renderer)  # the plot area with its tick labels, axis labels and title
        assert not box.overlaps(panel), (box, panel)
        assert panel.x0 >= -1 and panel.y0 >= -1 and panel.x1 <= fig.bbox.x1 + 1 and panel.y1 <= fig.bbox.y1 + 1
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == ["baseline (fixed structure)", "group lasso (learned structure)"]
    return labels


@pytest.mark.parametrize("n", [1, 3, 5])
def test_figure3_has_one_legend_clear_of_every_panel(n, tmp_path):
    import matplotlib.pyplot as plt

    from sparse_rational.experiments.report import draw_figure3, figure3

    docs = {f"d{i}": 200 for i in range(n)}
    refs = {ds: _tfidf(180, 200) for ds in docs}
    fig = draw_figure3(_figure_rows(docs), references=refs)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == n
    assert _assert_one_legend_clear_of_the_panels(fig)[2:] == ["TF-IDF 1-2-gram + LR"]
    plt.close(fig)
    paths = figure3(_figure_rows(docs), tmp_path / "figure3", references=refs)
    assert [p.name for p in paths] == ["figure3.png", "figure3.svg"]
    drawn = [p.read_bytes() for p in paths]
    figure3(_figure_rows(docs), tmp_path / "figure3", references=refs)
    assert [p.read_bytes() for p in paths] == drawn  # the same rows, the same bytes (SVG ids included)


def test_pooled_figure3_draws_the_summarys_pooling_with_its_legend_clear(tmp_path):
    import matplotlib.pyplot as plt

    from sparse_rational.experiments.report import (
        aggregate,
        draw_figure3_pooled,
        figure3_pooled,
        pooled_datasets,
        summary_markdown,
    )
    from sparse_rational.experiments.significance import pool

    # d3 has no learned rows: its claims are not judged, so neither the summary nor the figure pools it
    rows = _figure_rows({"d1": 200, "d2": 400}) + _figure_rows({"d3": 300}, learned=False)
    refs = {"d1": _tfidf(180, 200), "d2": _tfidf(300, 400), "d3": _tfidf(150, 300)}
    per = pooled_datasets(aggregate(rows))
    assert list(per) == ["d1", "d2"]
    pooled = {e["configuration"]: e for e in pool(per)}
    text = summary_markdown(rows, "t", [], [], refs)
    assert "## All 2 datasets pooled" in text and "one test set of 600 test documents" in text
    fig = draw_figure3_pooled(rows, references=refs)
    (ax,) = fig.axes
    assert "d1, d2 pooled" in ax.get_title() and "600 test documents" in ax.get_title()
    curves = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: the data line of each curve
    curves.update((c.get_label(), c) for c in ax.get_lines() if not c.get_label().startswith("_"))  # references
    for label, confs in (
        ("baseline (fixed structure)", ["baseline 24x1", "baseline 24x4"]),
        ("group lasso (learned structure)", ["sparse target 20", "sparse target 80"]),
    ):
        line = curves[label]
        assert list(line.get_xdata()) == [pooled[c]["transitions"][0] for c in confs]
        assert list(line.get_ydata()) == pytest.approx([pooled[c]["test"][0] for c in confs])
        for c in confs:  # the numbers of the summary's pooled table
            e = pooled[c]
            assert f"| {c} | 3 | {e['transitions'][0]:.1f} ± 0.0 | {e['test'][0]:.1f} ± {e['test'][1]:.1f} |" in text
    # the reference row pooled as the configurations are: all test documents of d1 and d2
    assert curves["TF-IDF 1-2-gram + LR"].get_ydata()[0] == pytest.approx(100 * (180 + 300) / 600)
    assert _assert_one_legend_clear_of_the_panels(fig)[2:] == ["TF-IDF 1-2-gram + LR"]
    plt.close(fig)
    paths = figure3_pooled(rows, tmp_path / "figure3-pooled", references=refs)
    assert [p.name for p in paths] == ["figure3-pooled.png", "figure3-pooled.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "d1, d2 pooled" in paths[1].read_text()
    # one dataset, or two of which one has no learned rows: nothing to pool, no figure
    assert draw_figure3_pooled(_figure_rows({"d1": 200})) is None
    assert figure3_pooled(rows[: len(rows) // 2 + 1], tmp_path / "none") == []


def _fake_sweep(folder: Path, docs: dict[str, int], tfidf_right: int) -> Path:
    """A sweep folder whose trial records and reference rows hold :func:`_figure_rows`."""
    (folder / "trials").mkdir(parents=True)
    command = f"sparse-rational reproduce --dataset {' --dataset '.join(docs)} --out {folder.name}"
    (folder / "sweep.json").write_text(json.dumps({"identity": {"datasets": list(docs)}, "command": command}))
    refs = {ds: {"identity": {}, "rows": _tfidf(tfidf_right * n // 200, n)} for ds, n in docs.items()}
    (folder / "references.json").write_text(json.dumps({"format": "sparse-rational-references/1", "datasets": refs}))
    for r in _figure_rows(docs):
        key = hashlib.sha1(f"{r['dataset']} {r['configuration']} {r['phase']} {r['index']}".encode()).hexdigest()[:20]
        config = {
            "dataset": {"name": r["dataset"]}, "embeddings": "glove-6b-50d", "method": r["method"],
            "configuration": r["configuration"], "patterns": r["patterns"], "phase": r["phase"],
            "index": r["index"], "seed": r["index"], "epochs": 3, "patience": 1, "batch_size": 8,
            "hyperparameters": {k: r[k] for k in ("lr", "clip", "dropout", "input_dropout", "weight_decay")},
        }  # fmt: skip
        metrics = {k: r[k] for k in ("dev_accuracy", "test_accuracy", "transitions", "parameters", "test_correct")}
        record = {"key": key, "config": config, "metrics": {**metrics, "test_size": r["test_size"]}, "status": "ok"}
        (folder / "trials" / f"{key}.json").write_text(json.dumps(record))
    return folder


def test_report_only_draws_the_pooled_figure_from_one_or_several_sweep_folders(tmp_path, capsys):
    a = _fake_sweep(tmp_path / "a", {"d1": 200}, 180)
    b = _fake_sweep(tmp_path / "b", {"d2": 400, "d3": 200}, 150)
    # one dataset: Figure 3 without a pooled one (a stale one goes: it would contradict the summary)
    (a / "figure3-pooled.png").write_bytes(b"stale")
    assert reproduce("--report-only", "--out", a) == 0
    assert (a / "figure3.png").is_file() and not (a / "figure3-pooled.png").exists()
    assert reproduce("--report-only", "--out", b) == 0
    assert "## All 2 datasets pooled" in (b / "summary.md").read_text()
    assert "d2, d3 pooled" in (b / "figure3-pooled.svg").read_text()
    # two folders' trials together, into a folder of its own (again: it holds outputs only)
    capsys.readouterr()
    for _ in range(2):
        assert reproduce("--report-only", "--trials-from", a, "--trials-from", b, "--out", tmp_path / "all") == 0
    assert "figure3-pooled.png" in capsys.readouterr().out
    summary = (tmp_path / "all" / "summary.md").read_text()
    assert "stored trials of 2 sweep folder(s)" in summary and f"`{a}`, 16 trial records" in summary
    assert "## All 3 datasets pooled" in summary and "one test set of 800 test documents" in summary
    svg = (tmp_path / "all" / "figure3-pooled.svg").read_text()
    assert "d1, d2, d3 pooled" in svg and "TF-IDF 1-2-gram + LR" in svg
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "figure3-pooled.png", "figure3-pooled.svg", "figure3.png", "figure3.svg", "results.csv", "summary.md"
    ]  # fmt: skip


def test_report_only_errors_are_one_line(tmp_path, capsys):
    a = _fake_sweep(tmp_path / "a", {"d1": 200}, 180)
    empty = tmp_path / "empty"
    (empty / "trials").mkdir(parents=True)
    (empty / "sweep.json").write_text(json.dumps({"identity": {}, "command": "x"}))
    (tmp_path / "plain").mkdir()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for argv, message in (
        (["--trials-from", a, "--out", tmp_path / "o"], "--trials-from goes with --report-only"),
        (["--report-only", "--out", tmp_path / "missing"], "no sweep.json; not a sweep folder"),
        (["--report-only", "--out", empty], "no trial records in"),
        (["--report-only", "--trials-from", tmp_path / "missing", "--out", tmp_path / "o"], "no such folder"),
        (["--report-only", "--trials-from", tmp_path / "plain", "--out", tmp_path / "o"], "not a sweep folder"),
        (["--report-only", "--trials-from", a, "--trials-from", empty, "--out", tmp_path / "o"], "no trial records"),
        (["--report-only", "--trials-from", a, "--out", a], "a sweep folder; --trials-from writes into a folder"),
        (["--report-only", "--trials-from", a, "--out", tmp_path / "busy"], "refusing to write into it"),
    ):
        assert reproduce(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert not (tmp_path / "o").exists() and (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_path_records_of_the_earlier_snapshot_rule_are_run_again_and_baselines_reused(tmp_path):
    """The path now snapshots each target at its nearest step (not at the band's upper edge):
    a sweep folder holding path records of the earlier rule runs its path trials again under
    new keys, reuses its baselines, and reports the new rows only, with the band beside them."""
    from sparse_rational.experiments.report import placement_lines

    ds = DatasetRef("tiny", files=("/x/train.tsv", None, None))
    budget = Budget("t", assignments=1, reruns=2, epochs=1, patience=1, reg_epochs=1, path_epochs=9)
    plan = Plan(
        [ds], "glove-6b-50d", budget, configurations("glove-6b-50d", ("2x1",), (40, 20)), structure_search="path"
    )

    def result(n):
        return {"dev_accuracy": 0.5, "test_accuracy": 0.5, "transitions": n, "structure": [n], "wfsas": 1,
                "parameters": 10, "reg_strength": 0.01}  # fmt: skip

    def metrics(edge):  # the earlier rule: the band's upper edge; the current one: the target
        def m(spec):
            if spec.config.method == "baseline":
                return result(2)
            if spec.phase == "rerun":
                return result(spec.target + edge)
            return {"targets": {str(t): result(t + edge) for t in (40, 20)}, "missed": [], "path": [], "snapshots": {}}

        return m

    store = TrialStore(tmp_path / "sweep")
    run_sweep(plan, Fabricated(metrics(10)), store, progress=False)
    # make the path records those of the code before the rule: no "snapshot" in their identity
    for key, rec in store.load_all().items():
        if rec["config"].get("structure_search") == "path":
            assert rec["config"].pop("snapshot") == "nearest"
            rec["key"] = hashlib.sha256(
                json.dumps(rec["config"], sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()[:20]
            store.path(key).unlink()
            store.save(rec)
    old = store.load_all()
    assert len(old) == (1 + 2) + (1 + 2 * 2)  # the baseline; the path, rerun for each target
    executor = Fabricated(metrics(0))
    run_sweep(plan, executor, store, progress=False)
    baselines = [k for k, r in old.items() if r["config"]["method"] == "baseline"]
    assert len(executor.submitted) == 1 + 2 * 2 and not set(executor.submitted) & set(old)  # paths only
    assert all(k in store.load_all() for k in baselines)
    rows = rows_from_records(store.load_all())
    learned = [r for r in rows if r["method"] == "sparse"]
    assert len(learned) == 2 * (1 + 2)  # the old path rows are left out
    assert all(r["transitions"] == r["target_transitions"] for r in learned)
    assert {r["snapshot"] for r in learned} == {"nearest to the target"}
    assert {r["target_transitions"]: r["band"] for r in learned} == {40: "30-50", 20: "10-30"}
    lines = placement_lines(aggregate(rows)["tiny"])
    line = "- target 20: 20.0 ± 0.0 transitions, +0.0 (the authors' band 10-30; snapshot nearest to the target)"
    assert line in lines
    # the old records alone (a folder not yet continued) report the earlier rule as such
    old_rows = [r for r in rows_from_records(old) if r["method"] == "sparse"]
    assert {r["snapshot"] for r in old_rows} == {"first in band"} and {r["transitions"] for r in old_rows} == {30, 50}


def test_path_trial_keys_changed_with_the_snapshot_rule_and_baseline_keys_did_not():
    ds = DatasetRef("amazon:kitchen", spec="amazon:kitchen", data_dir="/a")
    plan = Plan(
        [ds],
        "glove-6b-50d",
        BUDGETS["smoke"],
        configurations("glove-6b-50d", ("24x1",), (40, 20)),
        structure_search="path",
        penalty_update="proximal",
    )
    base, t40, t20 = plan.configs
    (path,) = plan.search_trials(ds, t40)
    rerun = plan.rerun_trials(path, 0.5, t20)[0]
    # the keys of the code before the rule ("4b307f...", "9df598...") are not reused
    assert (path.key, rerun.key) == ("7fdc27de78227c766c6e", "1d8d389cdd70dee88dde")
    assert path.identity()["snapshot"] == rerun.identity()["snapshot"] == "nearest"
    assert plan.search_trials(ds, base)[0].key == "fffda90bc7a56d4aea7c"  # as before: reused
    assert "snapshot" not in plan.search_trials(ds, base)[0].identity()
    # and the sweep's identity is the one of before: a folder of the earlier code resumes
    assert hashlib.sha256(json.dumps(plan.identity(), sort_keys=True).encode()).hexdigest()[:20] == (
        "91ff67f5cc767a8b0670"
    )


def test_cost_lines_count_a_path_trial_once_against_the_start_baseline():
    from sparse_rational.experiments.report import cost_lines

    def row(method, phase, patterns, transitions, seconds, key="", search="", target=""):
        return {
            "status": "ok",
            "seconds": seconds,
            "method": method,
            "phase": phase,
            "patterns": patterns,
            "transitions": transitions,
            "search": search,
            "key": key,
            "target_transitions": target,
        }

    rows = [
        row("baseline", "search", "24x4", 96, 100.0),
        row("baseline", "search", "24x4", 96, 100.0),
        row("baseline", "search", "24x1", 24, 10.0),  # not the start: not the unit
        row("baseline", "rerun", "24x4", 96, 900.0),  # reruns of baselines are not counted
        *(row("sparse", "search", "24x4", t, 400.0, "k1", "path", t) for t in (20, 40)),
        *(row("sparse", "search", "24x4", t, 200.0, "k2", "path", t) for t in (20, 40)),
        row("sparse", "rerun", "24x4", 21, 150.0, "k3", "path", 20),
        row("sparse", "rerun", "24x4", 40, 50.0, "k4", "path", 40),
    ]
    text = "\n".join(cost_lines(rows))
    assert "baseline 24x4: 100 s, mean of 2 assignments" in text
    assert "one path to all 2 targets with their 2 finetunings: 300 s (mean of 2): **3.0x** one baseline run" in text
    assert "1.5x per target" in text
    assert "100 s (mean of 2): **1.0x** one baseline run" in text
    assert cost_lines([r for r in rows if r["method"] == "baseline"]) == []
