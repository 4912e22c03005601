"""``predict`` of two checkouts of this repository, side by side in one run (A/B).

    git worktree add /tmp/before COMMIT
    nice -n 5 python benchmarks/predict_ab.py --model MODEL_DIR --docs FILE --a /tmp/before --b . \
        [--workers 1 2] [--repeat 5] [--json OUT.json]

Each variant (checkout x ``--workers``) runs ``python -m sparse_rational predict`` (what the
``sparse-rational`` script runs; ``python -m sparse_rational.cli`` in a checkout older than
``sparse_rational/__main__.py``) in a fresh process in its checkout's folder, with
``PYTHONPATH`` set to it (checked: the module imported is the checkout's), output to
/dev/null (bytecode is written and used, as by an installed package: without it the
checkout whose modules have no up-to-date bytecode compiles them in every run); the
variants take turns, after one warm-up round, so that a slow minute of a shared machine
slows them all.
Prints, per variant, the median wall time and every run; the outputs of all variants are
checked to be the same bytes once (a change that alters a prediction is not a speed-up).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model folder")
    ap.add_argument("--docs", required=True, help="one document per line")
    ap.add_argument("--a", required=True, help="checkout A (a folder holding sparse_rational/)")
    ap.add_argument("--b", required=True, help="checkout B")
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="predict --workers values (default: 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args(argv)
    for root in (args.a, args.b):
        if not (Path(root) / "sparse_rational" / "cli.py").is_file():
            ap.error(f"{root}: not a checkout of sparse-rational (no sparse_rational/cli.py)")
    variants = {}
    model, docs = str(Path(args.model).resolve()), str(Path(args.docs).resolve())
    for label, root in (("A", args.a), ("B", args.b)):
        root = str(Path(root).resolve())
        env = {**os.environ, "PYTHONPATH": root}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # both checkouts run from bytecode, as an installed package
        new = (Path(root) / "sparse_rational" / "__main__.py").is_file()
        entry = "sparse_rational" if new else "sparse_rational.cli"
        for w in args.workers:
            cmd = [sys.executable, "-m", entry, "predict", "--model", model, "--workers", str(w), docs]
            # run in the checkout: `python -m` puts the working folder first on sys.path
            variants[f"{label} --workers {w}"] = (cmd, env, root)
    digests, used = set(), {}
    for name, (cmd, env, root) in variants.items():  # warm-up, the outputs compared, the code checked
        out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, check=True).stdout
        digests.add(hashlib.sha256(out).hexdigest())
        probe = "import sparse_rational.cli as c; print(c.__file__)"
        used[name] = subprocess.run(
            [sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        if not used[name].startswith(root):
            raise SystemExit(f"{name} ran {used[name]}, not the checkout {root}")
    if len(digests) != 1:
        raise SystemExit("the variants' outputs differ: not comparable")
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, (cmd, env, root) in variants.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, check=True)
            runs[name].append(round(time.perf_counter() - start, 3))
    result = {
        "docs": args.docs,
        "a": args.a,
        "b": args.b,
        "variants": {name: {"median_s": statistics.median(r), "runs_s": r} for name, r in runs.items()},
    }
    for name, row in result["variants"].items():
        print(f"{name}: median {row['median_s']:.3f} s  runs {row['runs_s']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
