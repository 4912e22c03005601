"""The frozen transformer encoder: from texts to one vector per word piece, written once
to the disk cache (see docs/DESIGN.md, 'From text to logits').

A document becomes one vector per word piece:

* it is tokenised once, keeping each piece's character offsets in the original text;
* the pieces are cut into segments of at most ``segment_length`` pieces (special tokens
  included): whole sentences (ending in ``.``, ``!`` or ``?`` before a space, or at a line
  break) are packed greedily, a sentence longer than a segment is cut at a word start;
* each segment is encoded on its own, and the vector of a piece is the sum of the last 4
  hidden states (``layers="last4sum"``, the authors' choice) or the last one (``"last"``);
* the segments are joined back: the rows of a document are ``[CLS] p_1 .. p_n [SEP]``,
  the first segment's leading and the last segment's trailing special tokens standing
  where static vectors have ``<s>`` and ``</s>``.

Vectors are not normalised unless ``normalize=True``. The vectors of a corpus are written
once per (encoder, options, texts) to a memory-mapped cache (:mod:`.cache`). Which encoder
files may be read, and from where: :mod:`.hf_options`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ParameterError, UserError, one_line
from ..log import get_logger, progress_disable
from . import cache as vcache
from .hf_options import (
    ENCODER_FILES,
    SAFE_WEIGHTS,
    TransformerOptions,
    _bad,
    _hub_folder,
    _offline,
    has_safetensors,
    resolve_location,
)
from .rows import EncodedTexts
from .segments import segment_pieces

_log = get_logger(__name__)


class ContextualEncoder:
    """An encoder (loaded lazily) with its options, its identity, and the disk cache.

    ``source``: ``hf:minilm``, ``hf:FOLDER`` or ``hf:ID``. ``expected_fingerprint``: the
    encoder a saved model was trained with (a different one is an error, not a silent
    mismatch). ``calls`` counts the encoder's forward passes (batches) run so far.
    ``allow_download``: a Hugging Face id not in the local cache may be downloaded (else it
    is a one-line error; ``HF_HUB_OFFLINE=1`` still forbids it). ``named_by``: the model
    config that named this encoder, for error messages (see :meth:`from_config`).
    The weights are read from safetensors only, with no remote code, whoever names them.
    """

    def __init__(
        self,
        source: str,
        options: TransformerOptions | None = None,
        *,
        device: str | None = None,
        batch_tokens: int = 8192,
        cache_dir: str | os.PathLike | None = None,
        verbose: bool = True,
        expected_fingerprint: str | None = None,
        allow_download: bool = False,
        named_by: str | None = None,
    ):
        if not isinstance(source, str):
            if named_by:
                raise UserError(f"{named_by}: the encoder source must be a string, got {source!r}")
            raise ParameterError("embeddings", f"the encoder source must be a string, got {source!r}")
        self.source = source.strip()
        self.allow_download = bool(allow_download)
        self.named_by = named_by
        self.options = options or TransformerOptions()
        self.location = resolve_location(self.source)
        self.device = device
        self.batch_tokens = batch_tokens
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.verbose = verbose
        self.expected_fingerprint = expected_fingerprint
        self.calls = 0
        self.loads = 0
        self._tokenizer: Any = None  # loaded on first use
        self._model: Any = None
        self._folder: Path | None = None
        self._identity: dict | None = None
        if not Path(self.location).is_dir() and _hub_folder(self.location) is None:
            if not self.allow_download and self.named_by:
                raise ParameterError(
                    "allow_download",
                    f"{self.named_by}: the encoder {self.source} is not in the local Hugging Face cache, so it "
                    "is not available offline; pass {allow_download} (allow_download=True) to download it",
                )
            if not self.allow_download:
                raise self._bad(
                    f"no such folder, and {self.location!r} is not in the local "
                    "Hugging Face cache (not available offline); give the folder of a transformers encoder, "
                    "or allow downloads (allow_download=True)"
                )
            if _offline():
                raise self._bad(
                    f"no such folder, and {self.location!r} is not in the local "
                    "Hugging Face cache (offline); give the folder of a transformers encoder"
                )

    def _bad(self, text: str) -> UserError:
        """The one-line error ``embeddings SOURCE: TEXT`` (``--embeddings`` on the command line);
        for an encoder a model folder names, ``CONFIG: the encoder SOURCE: TEXT`` (the user
        gave ``--model``, not ``--embeddings``)."""
        if self.named_by:
            return UserError(f"{self.named_by}: the encoder {self.source}: {text}")
        return _bad(self.source, text)

    # -- identity --------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The local folder of the encoder's files (a hub id is downloaded once, if online)."""
        if self._folder is None:
            if Path(self.location).is_dir():
                self._folder = Path(self.location)
            else:
                folder = _hub_folder(self.location)
                if self.allow_download and (folder is None or not has_safetensors(folder)):
                    self.load()  # downloads what the cache lacks
                    folder = _hub_folder(self.location)
                if folder is None:
                    raise self._bad(f"cannot find the files of {self.location!r} after loading it")
                self._folder = folder
        return self._folder

    def _config(self) -> dict:
        try:
            cfg = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
            if not isinstance(cfg, dict):
                raise ValueError("not a JSON object")
            return cfg
        except (OSError, ValueError) as exc:
            raise self._bad(f"{self.folder / 'config.json'} is not a model config ({exc})") from None

    def identity(self) -> dict:
        """``location``, ``fingerprint`` (sha256 of the config, tokenizer and weight files),
        ``model_type``, ``hidden_size``, ``num_hidden_layers``."""
        if self._identity is None:
            files = [
                p
                for p in self.folder.iterdir()
                if p.is_file()
                and p.suffix in ENCODER_FILES
                and not p.name.startswith(".")
                and not p.name.lower().startswith("readme")
            ]
            if not any(p.suffix in (".safetensors", ".bin") for p in files):
                raise self._bad(
                    f"{self.folder} is not a transformers encoder folder "
                    "(expected config.json, tokenizer files and weights)"
                )
            self._check_safetensors(self.folder)
            cfg = self._config()
            dim = cfg.get("hidden_size", cfg.get("d_model", cfg.get("dim")))
            layers = cfg.get("num_hidden_layers", cfg.get("n_layers", cfg.get("num_layers")))
            if not isinstance(dim, int) or dim < 1:
                raise self._bad(f"{self.folder / 'config.json'} has no hidden_size")
            self._identity = {
                "location": self.location,
                "fingerprint": vcache.fingerprint_files(files, self.cache_dir),
                "model_type": cfg.get("model_type"),
                "hidden_size": dim,
                "num_hidden_layers": layers,
            }
            if self.expected_fingerprint and self._identity["fingerprint"] != self.expected_fingerprint:
                raise self._bad(
                    "the model was trained with encoder files of fingerprint "
                    f"{self.expected_fingerprint[:12]}, but {self.location} has {self._identity['fingerprint'][:12]}; "
                    "use the same encoder or train again"
                )
        return self._identity

    @property
    def dim(self) -> int:
        return int(self.identity()["hidden_size"])

    def describe(self) -> dict:
        """The ``embeddings`` section of a saved model's config.json."""
        return {
            "source": self.source,
            "kind": "transformer",
            "normalized": self.options.normalize,
            "options": self.options.to_dict(),
            "encoder": self.identity(),
        }

    def _check_safetensors(self, folder: Path) -> None:
        """Refuse, in one line, a folder whose weights are not safetensors (a pickle would be
        loaded: ``torch.load`` of ``pytorch_model.bin``), before anything reads them."""
        if has_safetensors(folder):
            return
        if self.named_by:
            raise UserError(
                f"{folder}: has no {SAFE_WEIGHTS}; refusing to load pickle weights named by {self.named_by}"
            )
        raise self._bad(
            f"{folder} has no {SAFE_WEIGHTS}; encoder weights are read from "
            "safetensors only, never from pickle (.bin) files (save the encoder with safe_serialization=True)"
        )

    @classmethod
    def from_config(
        cls, section, where: str = "config.json", *, allow_download: bool = False, **kwargs
    ) -> ContextualEncoder:
        """The encoder named by a saved model's ``embeddings`` section. The model folder is not
        trusted: the weights are read from safetensors only, with no remote code, and a
        Hugging Face id must be in the local cache unless ``allow_download`` is True."""
        if not isinstance(section, dict) or section.get("kind") != "transformer":
            raise UserError(f"{where}: a model that reads vectors needs an embeddings section of kind 'transformer'")
        try:
            options = TransformerOptions.from_dict(section["options"])
            fingerprint = section["encoder"]["fingerprint"]
            source = section["source"]
        except (KeyError, TypeError) as exc:
            raise UserError(f"{where}: bad transformer embeddings section (missing {exc})") from None
        if not isinstance(fingerprint, str):
            raise UserError(f"{where}: bad transformer embeddings section (the encoder fingerprint must be a string)")
        kwargs.setdefault("named_by", where)
        return cls(source, options, expected_fingerprint=fingerprint, allow_download=allow_download, **kwargs)

    # -- the encoder -------------------------------------------------------------------------
    def load(self) -> None:
        if self._model is not None:
            return
        try:
            import transformers  # lazy: optional (transformers)
        except ImportError:
            need = f"{self.source} needs transformers: pip install 'sparse-rational[hf]'"
            raise ParameterError("embeddings", "{embeddings} " + need) from None
        # a folder (or the snapshot of a cached id) is read locally: safetensors only, no code
        # of its own, no network; an id not cached is downloaded only when allowed
        local = Path(self.location) if Path(self.location).is_dir() else _hub_folder(self.location)
        if local is not None and local != Path(self.location) and self.allow_download and not has_safetensors(local):
            local = None  # a cached id without its safetensors: download them
        if local is None and not self.allow_download:
            raise self._bad(
                f"{self.location!r} is not in the local Hugging Face cache "
                "(not available offline); allow downloads to fetch it"
            )
        if local is not None:
            self._check_safetensors(local)
        name = str(local) if local is not None else self.location
        offline = local is not None or _offline()
        try:
            with _quiet_transformers(transformers):
                tok = transformers.AutoTokenizer.from_pretrained(
                    name, trust_remote_code=False, local_files_only=offline
                )
                model = transformers.AutoModel.from_pretrained(
                    name, use_safetensors=True, trust_remote_code=False, local_files_only=offline
                )
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad folders
            where = "folder" if Path(self.location).is_dir() else "Hugging Face model"
            raise self._bad(
                f"cannot load the {where} {self.location} as a transformers encoder ({one_line(exc, limit=240)})"
            ) from None
        if not getattr(tok, "is_fast", False):
            raise self._bad("its tokenizer gives no character offsets (a fast tokenizer is needed)")
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.options.segment_length > max_pos:
            raise ParameterError(
                "hf_segment_length",
                "{hf_segment_length} " + f"{self.options.segment_length}: the encoder reads at most {max_pos} pieces",
            )
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = model.eval().to(device)
        self._tokenizer = tok
        full = tok("a", add_special_tokens=True)["input_ids"]
        plain = tok("a", add_special_tokens=False)["input_ids"]
        at = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), 0)
        self._prefix, self._suffix = list(full[:at]), list(full[at + len(plain) :])
        if self.options.segment_length <= len(self._prefix) + len(self._suffix):
            raise ParameterError(
                "hf_segment_length",
                "{hf_segment_length} " + f"{self.options.segment_length}: too short for the special tokens",
            )
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.loads += 1

    def _cache_expected(self) -> dict:
        return {"encoder": self.identity(), "options": self.options.to_dict()}

    def _cache_folder(self) -> Path:
        slug = Path(self.location).name if Path(self.location).is_dir() else self.location.replace("/", "-")
        if self.source == "hf:minilm":
            slug = "minilm"
        return vcache.encoder_dir(slug, {"location": self.location, "options": self.options.to_dict()}, self.cache_dir)

    # -- planning: pieces and segments -------------------------------------------------------
    def _plan(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
        """Per text: piece ids ``[n]``, offsets ``[n, 2]``, segments ``[(a, b)]`` of pieces."""
        self.load()
        budget = self.options.segment_length - len(self._prefix) - len(self._suffix)
        plans = []
        step = 256
        for i in range(0, len(texts), step):
            enc = self._tokenizer(
                texts[i : i + step],
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
            for text, ids, offs in zip(texts[i : i + step], enc["input_ids"], enc["offset_mapping"]):
                ids = np.asarray(ids, dtype=np.int64)
                offs = np.asarray(offs, dtype=np.int32).reshape(-1, 2)
                plans.append((ids, offs, segment_pieces(text, offs, budget)))
        return plans

    def rows_of(self, n_pieces: int) -> int:
        return len(self._prefix) + n_pieces + len(self._suffix)

    @torch.inference_mode()
    def _encode_into(
        self, texts: list[str], plans, vectors: np.ndarray, offsets: np.ndarray, starts: np.ndarray
    ) -> None:
        """Encode ``texts`` into rows ``starts[i] ..`` of ``vectors [R, e]`` / ``offsets [R, 2]``."""
        P, S = len(self._prefix), len(self._suffix)
        segs = []  # (length with specials, text index, segment index)
        for i, (ids, offs, segments) in enumerate(plans):
            r0 = int(starts[i])
            offsets[r0 : r0 + P] = 0
            offsets[r0 + P : r0 + P + len(ids)] = offs
            offsets[r0 + P + len(ids) : r0 + P + len(ids) + S] = len(texts[i])
            segs += [(b - a + P + S, i, k) for k, (a, b) in enumerate(segments)]
        segs.sort(key=lambda s: -s[0])
        batches: list[list[tuple[int, int, int]]] = []
        cur: list[tuple[int, int, int]] = []
        for s in segs:  # sorted by length: each batch pads to its first (longest) segment
            if cur and (len(cur) + 1) * cur[0][0] > self.batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(s)
        if cur:
            batches.append(cur)
        device = next(self._model.parameters()).device
        total = sum(s[0] for s in segs)
        bar = tqdm(
            total=total,
            desc=f"encode {self.source}",
            unit="piece",
            disable=progress_disable(self.verbose),
            file=sys.stderr,
            leave=False,
        )
        for batch in batches:
            T = batch[0][0]
            ids = torch.full((len(batch), T), self._pad, dtype=torch.long)
            mask = torch.zeros(len(batch), T, dtype=torch.long)
            for r, (n, i, k) in enumerate(batch):
                a, b = plans[i][2][k]
                ids[r, :n] = torch.as_tensor(self._prefix + plans[i][0][a:b].tolist() + self._suffix)
                mask[r, :n] = 1
            out = self._model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            self.calls += 1
            hs = out.hidden_states
            if self.options.layers == "last4sum":
                if len(hs) < 4:
                    raise ParameterError(
                        "hf_layers", "{hf_layers} " + f"last4sum: the encoder has only {len(hs)} hidden states"
                    )
                h = hs[-4] + hs[-3] + hs[-2] + hs[-1]
            else:
                h = hs[-1]
            h = h.float()
            if self.options.normalize:
                h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            h = h.cpu().numpy()
            for r, (n, i, k) in enumerate(batch):
                ids_i, _, segments = plans[i]
                a, b = segments[k]
                r0 = int(starts[i])
                vectors[r0 + P + a : r0 + P + b] = h[r, P : P + b - a]
                if k == 0:
                    vectors[r0 : r0 + P] = h[r, :P]
                if k == len(segments) - 1:
                    vectors[r0 + P + len(ids_i) : r0 + P + len(ids_i) + S] = h[r, P + b - a : n]
            bar.update(sum(s[0] for s in batch))
        bar.close()

    # -- vectors of texts --------------------------------------------------------------------
    def vectors(self, texts: Sequence[str], cache: str = "readwrite") -> EncodedTexts:
        """The vectors of ``texts`` (duplicates allowed): from a cache shard that holds them
        all, else encoded (and, with ``cache="readwrite"``, written as a new shard).
        ``cache``: ``"readwrite"``, ``"read"`` (never writes) or ``"off"``."""
        texts = list(texts)
        keys = [vcache.text_key(t) for t in texts]
        unique = sorted(set(keys))
        by_key = dict(zip(keys, texts))
        t0 = time.perf_counter()
        if cache != "off":
            folder = self._cache_folder()
            shard = vcache.find_shard(folder, unique, self._cache_expected(), log=self._log)
            if shard is not None:
                return EncodedTexts(
                    torch.from_numpy(shard.vectors),
                    shard.offsets,
                    shard.docs,
                    shard.path,
                    time.perf_counter() - t0,
                    0.0,
                    shard.nbytes,
                    True,
                    self._specials(shard.manifest),
                )
        ordered = [by_key[k] for k in unique]
        plans = self._plan(ordered)
        lengths = [self.rows_of(len(p[0])) for p in plans]
        dtype = np.float16 if self.options.fp16 else np.float32
        if cache == "readwrite":
            manifest = {
                "encoder": self.identity(),
                "options": self.options.to_dict(),
                "specials": {"prefix": len(self._prefix), "suffix": len(self._suffix)},
                "library": "sparse-rational",
            }
            shard = vcache.write_shard(
                folder,
                unique,
                lengths,
                self.dim,
                dtype,
                manifest,
                lambda v, o, s: self._encode_into(ordered, plans, v, o, s),
            )
            seconds = time.perf_counter() - t0
            self._log(
                f"encoded {len(unique)} texts ({shard.manifest['rows']} pieces) with {self.source} in "
                f"{seconds:.1f}s; cache {shard.path} ({shard.nbytes / 2**20:.1f} MiB)"
            )
            return EncodedTexts(
                torch.from_numpy(shard.vectors),
                shard.offsets,
                shard.docs,
                shard.path,
                0.0,
                seconds,
                shard.nbytes,
                False,
                self._specials(shard.manifest),
            )
        starts = np.concatenate([[0], np.cumsum(lengths)])
        vec = np.empty((int(starts[-1]), self.dim), dtype=dtype)
        off = np.empty((int(starts[-1]), 2), dtype=np.int32)
        self._encode_into(ordered, plans, vec, off, starts[:-1])
        docs = {k: (int(a), int(n)) for k, a, n in zip(unique, starts[:-1], lengths)}
        return EncodedTexts(
            torch.from_numpy(vec),
            off,
            docs,
            None,
            0.0,
            time.perf_counter() - t0,
            0,
            False,
            (len(self._prefix), len(self._suffix)),
        )

    @staticmethod
    def _specials(manifest: dict) -> tuple[int, int]:
        sp = manifest.get("specials", {})
        return int(sp.get("prefix", 0)), int(sp.get("suffix", 0))

    def _log(self, msg: str) -> None:
        if self.verbose:
            _log.info(msg)


@contextlib.contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    log = transformers.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    hub = logging.getLogger("huggingface_hub")  # its retry lines when offline: the error says it once
    hub_level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(hub_level)
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()
