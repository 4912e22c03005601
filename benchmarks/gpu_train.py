"""Training on a GPU against the CPU, in one run (issue "Train, predict and sweep on a GPU").

    python benchmarks/gpu_train.py --data-dir ../shared/data --json docs/results/gpu_train.json
    python benchmarks/gpu_train.py --devices cpu --epochs 1           # the same on a CPU only

For each device (default: cpu and cuda when torch sees one), on amazon:kitchen with
glove-6b-50d:

1. ``24x4``: a fixed structure trained ``--epochs`` epochs (no early stop): seconds per epoch
   and the dev/test accuracy, once per pooled readout of ``--readouts`` (default mean, the
   model's default, and max), and ``24x4/24x4``, two stacked layers (the lower layer runs
   the per-step kernel);
2. ``t20``: ``--target-transitions 20`` along the regularisation path (at most
   ``--reg-epochs`` penalised epochs, then ``--epochs`` of finetuning): seconds per epoch
   of the whole run, transitions reached;
3. ``predict``: the test and dev texts through ``TextClassifier.predict_proba`` (docs/s).

Then, on CUDA, the probabilities of the CUDA-trained 24x4 model loaded on the CPU against
those on the GPU (max difference), and ``bf16`` projections against fp32 (max difference).
``--reproduce`` also times ``sparse-rational reproduce --budget smoke`` on each device, and
``--pytest`` runs the gpu-marked tests. Every ratio is measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sparse_rational.config import ModelOptions, RunOptions, StructureOptions, TrainConfig  # noqa: E402
from sparse_rational.data import load_dataset  # noqa: E402
from sparse_rational.pipeline import TextClassifier, train_text_classifier  # noqa: E402

try:
    from _provenance import provenance  # noqa: E402
except ImportError:  # pragma: no cover
    provenance = None  # type: ignore[assignment]


def _run(
    splits, device: str, target: int | None, args, readout: str = "mean", patterns: str = "24x4"
) -> tuple[dict, TextClassifier]:
    layers = patterns.count("/") + 1
    options = RunOptions(
        "glove-6b-50d",
        ModelOptions(patterns=patterns, readout=readout, layers=layers),
        TrainConfig(epochs=args.epochs, patience=args.epochs + 1, seed=0, batch_size=args.batch_size),
        StructureOptions(target_transitions=target, reg_epochs=args.reg_epochs),
        device=device,
    )
    start = time.perf_counter()
    clf = train_text_classifier(splits, options=options, verbose=False)
    seconds = time.perf_counter() - start
    m = clf.metrics
    epochs = len(m["history"])
    row = {
        "device": device,
        "model": f"t{target}" if target else patterns,
        "readout": readout,
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(sum(h["seconds"] for h in m["history"]) / max(epochs, 1), 3),
        # the median epoch: the first ones also compile the kernels (C on the CPU, Triton on a GPU)
        "median_epoch_seconds": round(float(np.median([h["seconds"] for h in m["history"]])), 3),
        "transitions": m["transitions"],
        "dev_accuracy": m["dev_accuracy"],
        "test_accuracy": m["test_accuracy"],
        "kernel": m["provenance"]["kernel"],
    }
    texts = [ex.text for ex in splits.test + splits.dev]
    clf.predict_proba(texts[:64])  # warm-up
    t0 = time.perf_counter()
    clf.predict_proba(texts)
    row["predict_docs_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
    return row, clf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="amazon:kitchen", help="a benchmark dataset (hatn:kitchen is 3x larger)")
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda when available)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="documents per batch (64: the default)")
    parser.add_argument("--reg-epochs", type=int, default=30)
    parser.add_argument("--readouts", default="mean,max", help="comma-separated readouts of the 24x4 rows")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--pytest", action="store_true", help="also run the gpu-marked tests")
    parser.add_argument("--reproduce", action="store_true", help="also time reproduce --budget smoke per device")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    splits = load_dataset(args.dataset, args.data_dir, split_seed=0)
    rows: list[dict] = []
    checks: dict = {}
    sweeps: list[dict] = []
    tests = None

    def save() -> None:  # after every section: a run cut short keeps what it measured
        if args.json:
            result = {"rows": rows, "checks": checks, "reproduce_smoke": sweeps, "gpu_tests": tests}
            if provenance is not None:
                result["provenance"] = provenance()
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

    models = {}
    readouts = args.readouts.split(",")
    for device in devices:
        runs = [(None, r, "24x4") for r in readouts] + [(None, readouts[0], "24x4/24x4"), (20, readouts[0], "24x4")]
        for target, readout, patterns in runs:
            try:
                row, clf = _run(splits, device, target, args, readout, patterns)
            except Exception as e:  # one failed row is a figure too; the others still run
                row = {"device": device, "model": f"t{target}" if target else patterns, "readout": readout}
                row["error"] = f"{type(e).__name__}: {e}"
                clf = None
            rows.append(row)
            if clf is not None and readout == readouts[0] and patterns == "24x4":
                models[(device, target)] = clf
            print(json.dumps(row), flush=True)
            save()
    if ("cuda", None) in models:
        gpu_model = models[("cuda", None)]
        texts = [ex.text for ex in splits.test]
        on_gpu = gpu_model.predict_proba(texts)
        with tempfile.TemporaryDirectory() as tmp:
            gpu_model.save(Path(tmp) / "m")
            on_cpu = TextClassifier.load(Path(tmp) / "m", device="cpu").predict_proba(texts)
        checks["cuda_saved_loaded_on_cpu_max_abs_diff"] = float(np.abs(on_cpu - on_gpu).max())
        for precision in ("bf16", "fp16"):
            gpu_model.model.precision = precision
            half = gpu_model.predict_proba(texts)
            checks[f"{precision}_vs_fp32_max_abs_diff"] = float(np.abs(half - on_gpu).max())
            checks[f"{precision}_label_agreement"] = float((half.argmax(1) == on_gpu.argmax(1)).mean())
        gpu_model.model.precision = "fp32"
        for cpu_row in rows:
            gpu_row = next(
                (
                    r
                    for r in rows
                    if r["device"] == "cuda" and (r["model"], r["readout"]) == (cpu_row["model"], cpu_row["readout"])
                ),
                None,
            )
            if cpu_row["device"] == "cpu" and gpu_row and "error" not in cpu_row and "error" not in gpu_row:
                checks[f"{cpu_row['model']}_{cpu_row['readout']}_epoch_speedup_gpu_over_cpu"] = round(
                    cpu_row["median_epoch_seconds"] / gpu_row["median_epoch_seconds"], 2
                )
        print(json.dumps(checks), flush=True)
        save()
    if args.pytest:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rs"]
            + ["--continue-on-collection-errors"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        tests = {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-12:]}
        print(json.dumps(tests), flush=True)
    save()
    if args.reproduce:
        for device in reversed(devices):  # the GPU's first: it is the figure the check asks for
            with tempfile.TemporaryDirectory() as tmp:
                command = [sys.executable, "-m", "sparse_rational.cli", "reproduce", "--dataset", args.dataset]
                command += ["--embeddings", "glove-6b-50d", "--budget", "smoke", "--device", device, "--quiet"]
                command += ["--out", str(Path(tmp) / "sweep")] + (
                    ["--data-dir", args.data_dir] if args.data_dir else []
                )
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                sweeps.append(
                    {
                        "device": device,
                        "returncode": done.returncode,
                        "wall_seconds": round(time.perf_counter() - start, 1),
                        "tail": (done.stdout + done.stderr).strip().splitlines()[-2:],
                    }
                )
                print(json.dumps(sweeps[-1]), flush=True)
                save()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
