"""Figures the library itself draws: the regularisation path of ``path`` runs
(:meth:`~sparse_rational.pipeline.PathRun.save` writes ``path.png`` beside ``path.json``).

matplotlib is an optional dependency (the ``reproduce`` extra): it is imported inside the
function that draws, so that importing this module (and the pipeline) never needs it.
Without it the picture is skipped with a warning; the numbers stay in ``path.json``.
"""

from __future__ import annotations

import io
from pathlib import Path

from .fileio import atomic_write_bytes
from .warn import warn

__all__ = ["plot_path"]


def plot_path(path: list[dict], snapshots: dict[int, dict], out: Path) -> Path:
    """A regularisation path: surviving transitions (left axis) and dev accuracy (right
    axis) against lambda at the end of each epoch (log scale); the snapshot of each target
    is marked where it was taken. Without matplotlib (the ``reproduce`` extra) no picture
    is drawn: a warning says so, and path.json holds the same numbers."""
    try:
        import matplotlib  # lazy: optional (matplotlib: the `reproduce` extra)
    except ImportError:
        warn(f"{out.name} not drawn: it needs matplotlib (pip install 'sparse-rational[reproduce]')")
        return out
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: optional (matplotlib)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lam = [p["reg_strength"] for p in path]
    ax.plot(lam, [p["transitions"] for p in path], "o-", color="tab:blue", markersize=3, label="transitions")
    for target, snap in sorted(snapshots.items()):
        ax.plot([snap["reg_strength"]], [snap["transitions"]], "s", color="tab:red", markersize=6)
        ax.annotate(
            f"t{target}",
            (snap["reg_strength"], snap["transitions"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            color="tab:red",
        )
    ax.set_xscale("log")
    ax.set_xlabel("lambda (end of epoch)")
    ax.set_ylabel("transitions surviving pruning", color="tab:blue")
    ax.grid(alpha=0.3)
    dev = [(p["reg_strength"], p["dev_accuracy"]) for p in path if p.get("dev_accuracy") is not None]
    if dev:
        ax2 = ax.twinx()
        ax2.plot([d[0] for d in dev], [100 * d[1] for d in dev], "^--", color="tab:green", markersize=3)
        ax2.set_ylabel("dev accuracy (%) of the penalised model", color="tab:green")
    ax.set_title("regularisation path (squares: the snapshot of each target)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)
