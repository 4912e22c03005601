"""The model card: ``README.md`` in every model folder, saying what the model is, its data,
structure and metrics, the call that made it, and its limits (from config and metrics)."""

from __future__ import annotations

from typing import Any

from .config import TrainConfig, default
from .structure import format_structure

__all__ = ["CARD_MARKER", "model_card"]

# the card's first line: a README.md of a model folder is replaced with the folder only if it has it
CARD_MARKER = "<!-- model card written by sparse-rational (replaced with its model folder) -->"


def _data(metrics: Any) -> str:
    dataset = metrics.get("dataset")
    sizes = (
        f"{metrics.get('train_size')} training texts, {metrics.get('dev_size')} dev texts"
        + (f", {metrics.get('test_size')} test texts" if metrics.get("test_size") else "")
        + "."
    )
    if isinstance(dataset, str):
        return f"`{dataset}`: {sizes}"
    if isinstance(dataset, dict):
        files = ", ".join(f"{k} `{v}`" for k, v in dataset.items() if v)
        return f"Files: {files}. {sizes}"
    return f"Data given in memory through the Python API: {sizes}"


def model_card(config: dict, metrics: Any) -> str:
    """The card's Markdown for a model of ``config`` (config.json) and ``metrics``."""
    import jinja2  # lazy: start-up (jinja2); classifier.py imports this module, a card is only written on save

    env = jinja2.Environment(loader=jinja2.PackageLoader("sparse_rational", "templates"), autoescape=False)
    model = config.get("model", {})
    classes = [str(c) for c in config.get("classes", [])]
    embeddings = (config.get("embeddings") or {}).get("source") or metrics.get("embeddings") or "unknown"
    dataset = metrics.get("dataset")
    initial = metrics.get("structure_initial")
    return (
        CARD_MARKER
        + "\n"
        + env.get_template("model_card.md.j2").render(
            title=f"sparse-rational model: {' / '.join(classes)}"
            + (f" ({dataset})" if isinstance(dataset, str) else ""),
            m=metrics,
            prov=metrics.get("provenance") or {},
            classes=classes,
            embeddings=embeddings,
            dim=model.get("embedding_dim"),
            vocab=model.get("vocab_size"),
            readout=model.get("readout", "final"),
            initial=format_structure(initial) if initial else None,
            data=_data(metrics),
            dataset=dataset if isinstance(dataset, str) else None,
            max_tokens=(metrics.get("hyperparameters") or {}).get("max_tokens", default(TrainConfig, "max_tokens")),
        )
    )
