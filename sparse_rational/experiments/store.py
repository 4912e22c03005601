"""The ``--out`` folder of a sweep: ``sweep.json`` (which command it belongs to) and one
JSON file per finished trial, ``trials/<key>.json``, written atomically as it finishes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_write_json
from ..validate import read_json

MAX_RECORD_BYTES = 64 << 20  # sweep.json or one trial's record: kilobytes in practice

SWEEP = "sweep.json"
TRIALS = "trials"
OUTPUTS = (
    "results.csv",
    "summary.md",
    "figure3.png",
    "figure3.svg",
    "figure3-pooled.png",
    "figure3-pooled.svg",
    "README.md",
)


class TrialStore:
    def __init__(self, out: str | Path):
        self.root = Path(out)
        self.trials_dir = self.root / TRIALS

    # -- the sweep's identity -------------------------------------------------------------
    def claim(self, identity: dict, command: str) -> bool:
        """Make ``out`` this sweep's folder. Returns True when it already was (a resume).
        A folder holding something else, or another sweep's results, is a one-line error."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise UserError(f"--out {root}: exists and is not a folder")
        manifest = root / SWEEP
        if manifest.is_file():
            try:
                old = read_json(manifest, limit=MAX_RECORD_BYTES)
            except UserError as exc:
                raise UserError(f"--out {root}: {exc}; not a sweep folder") from None
            old_id = old.get("identity") if isinstance(old, dict) else None
            if old_id != identity:
                raise UserError(
                    f"--out {root}: holds the results of a different command "
                    f"({_first_difference(old_id, identity)}); use another --out folder"
                )
            return True
        if root.is_dir() and any(p.name not in OUTPUTS and not p.name.startswith(".") for p in root.iterdir()):
            raise UserError(f"--out {root}: exists, is not empty and holds no {SWEEP}; refusing to write into it")
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest, {"identity": identity, "command": command})
        return False

    def add_invocation(self, entry: dict) -> list[dict]:
        """Append one invocation (wall time, trials run, executor) to ``sweep.json``; returns all."""
        manifest = self.root / SWEEP
        data = read_json(manifest, limit=MAX_RECORD_BYTES)
        data.setdefault("invocations", []).append(entry)
        atomic_write_json(manifest, data)
        return data["invocations"]

    def lock(self):
        """Hold ``out/.lock`` while a sweep runs there: a second sweep into the same folder
        is a one-line error (where the OS has advisory locks). Returns the open lock file."""
        try:
            import fcntl  # lazy: optional (fcntl: POSIX only)
        except ImportError:  # not POSIX: no lock
            return None
        fh = open(self.root / ".lock", "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise UserError(f"--out {self.root}: another sweep is running in this folder") from None
        return fh

    @staticmethod
    def read_identity(out: str | Path) -> dict:
        manifest = Path(out) / SWEEP
        if not os.path.lexists(manifest):
            raise UserError(f"--out {out}: no {SWEEP}; not a sweep folder")
        data = read_json(manifest, limit=MAX_RECORD_BYTES)  # a damaged one: one line naming it
        if not isinstance(data, dict):
            raise UserError(f"{manifest}: not a JSON object; not a sweep folder")
        return data

    # -- trials ---------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.trials_dir / f"{key}.json"

    def save(self, record: dict) -> None:
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(record["key"]), record)

    def load_all(self) -> dict[str, dict]:
        """Every readable trial record by key (a half-written file cannot exist: writes are
        atomic; an unreadable one is ignored and its trial runs again)."""
        out: dict = {}
        if not self.trials_dir.is_dir():
            return out
        for p in sorted(self.trials_dir.glob("*.json")):
            try:
                rec = read_json(p, limit=MAX_RECORD_BYTES)
            except UserError:  # damaged (bytes, digits, nesting): its trial runs again
                continue
            if isinstance(rec, dict) and rec.get("key") == p.stem and rec.get("status") in ("ok", "failed"):
                out[p.stem] = rec
        return out


def _first_difference(old, new) -> str:
    if not isinstance(old, dict):
        return "unreadable sweep identity"
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            a, b = json.dumps(old.get(k)), json.dumps(new.get(k))
            if len(a) > 60:
                a = a[:57] + "..."
            if len(b) > 60:
                b = b[:57] + "..."
            return f"{k}: {a} there, {b} now"
    return "identity differs"
