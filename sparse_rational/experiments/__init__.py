"""The paper's experiments (see docs/DESIGN.md, 'Structure learning'): the protocol as data, one trial function,
executors (local process pool, Ray), a resumable sweep, and the outputs (results.csv,
summary.md, Figure 3).

    protocol.py   budgets, configurations, the authors' hyperparameter space, trial specs and keys
    trial.py      run_trial(spec) -> record: what a worker runs (never raises)
    executors.py  LocalExecutor (spawned process pool), RayExecutor (optional extra)
    store.py      the --out folder: sweep.json + trials/<key>.json, written atomically
    sweep.py      search -> best by dev -> reruns, at most `capacity` trials in flight
    report.py     results.csv, summary.md, figure3.png/.svg, figure3-pooled.png/.svg
    cli.py        `sparse-rational reproduce`
"""
