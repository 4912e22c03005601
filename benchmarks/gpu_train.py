"""Training on a GPU against the CPU, in one run (issue "Train, predict and sweep on a GPU").

    python benchmarks/gpu_train.py --data-dir ../shared/data --json docs/results/gpu_train.json
    python benchmarks/gpu_train.py --devices cpu --epochs 1           # the same on a CPU only

For each device (default: cpu and cuda when torch sees one), on amazon:kitchen with
glove-6b-50d:

1. ``24x4``: a fixed structure trained ``--epochs`` epochs (no early stop): seconds per epoch
   and the dev/test accuracy;
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


def _run(splits, device: str, target: int | None, args) -> tuple[dict, TextClassifier]:
    options = RunOptions(
        "glove-6b-50d",
        ModelOptions(patterns="24x4"),
        TrainConfig(epochs=args.epochs, patience=args.epochs + 1, seed=0),
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
        "model": f"t{target}" if target else "24x4",
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(sum(h["seconds"] for h in m["history"]) / max(epochs, 1), 3),
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
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda when available)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reg-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--pytest", action="store_true", help="also run the gpu-marked tests")
    parser.add_argument("--reproduce", action="store_true", help="also time reproduce --budget smoke per device")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    splits = load_dataset("amazon:kitchen", args.data_dir, split_seed=0)
    rows, models = [], {}
    for device in devices:
        for target in (None, 20):
            row, clf = _run(splits, device, target, args)
            rows.append(row)
            models[(device, target)] = clf
            print(json.dumps(row), flush=True)
    checks = {}
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
        for model in ("24x4", "t20"):
            cpu_row = next(r for r in rows if r["device"] == "cpu" and r["model"] == model)
            gpu_row = next(r for r in rows if r["device"] == "cuda" and r["model"] == model)
            checks[f"{model}_epoch_speedup_gpu_over_cpu"] = round(
                cpu_row["seconds_per_epoch"] / gpu_row["seconds_per_epoch"], 2
            )
        print(json.dumps(checks), flush=True)
    sweeps = []
    if args.reproduce:
        for device in devices:
            with tempfile.TemporaryDirectory() as tmp:
                command = [sys.executable, "-m", "sparse_rational.cli", "reproduce", "--dataset", "amazon:kitchen"]
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
    tests = None
    if args.pytest:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        tests = {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-3:]}
        print(json.dumps(tests), flush=True)
    if args.json:
        result = {"rows": rows, "checks": checks, "reproduce_smoke": sweeps, "gpu_tests": tests}
        if provenance is not None:
            result["provenance"] = provenance()
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
