"""Run a :class:`~.protocol.Plan` through an executor, resumably.

Per (dataset, configuration) cell: the search trials first; once all of them are finished,
the best by dev accuracy (ties: the lower assignment number) is rerun with seeds 1..R.
Every finished trial is written to the store the moment it comes back; trials already in
the store are not run again (failed ones only with ``retry_failed``). At most
``executor.capacity`` trials are in flight, reruns first, so the queue never holds work the
driver would rather reorder, and a killed sweep loses only the trials that were running.

With the regularisation path, the target cells of a dataset share their search trials (one
path per assignment, every target): a trial shared by several cells runs once, and each cell
reads its own target's result from the record (:func:`cell_metrics`). A target the path
missed is a failed attempt of that cell only, so each target gets its own replacements.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..log import get_logger, progress_disable
from .protocol import Configuration, DatasetRef, Plan, TrialSpec
from .store import TrialStore

_log = get_logger(__name__)

LOST_RETRIES = 1  # a trial whose worker died is run once more, then recorded as failed


@dataclass
class Cell:
    dataset: DatasetRef
    config: Configuration
    search: list[TrialSpec]
    reruns: list[TrialSpec] | None = None  # planned when the search is finished
    note: str = ""  # why it has no reruns

    def label(self) -> str:
        return f"{self.dataset.name} / {self.config.label}"


@dataclass
class SweepResult:
    total: int
    finished_before: int
    ran: int = 0
    failed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def cell_metrics(cell: Cell, record: dict | None) -> dict | None:
    """The metrics ``record`` holds for ``cell``'s configuration: a path trial's result for
    the cell's target (None where the path missed it); None for a failed trial."""
    if not record or record.get("status") != "ok":
        return None
    m = record.get("metrics") or {}
    if "targets" in m:  # a path trial: one result per target reached
        return m["targets"].get(str(cell.config.target_transitions))
    return m


def best_search_trial(cell: Cell, records: dict[str, dict]) -> tuple[TrialSpec, dict] | None:
    """The search trial with the best dev accuracy (ties: the lower assignment) and its
    metrics for this cell."""
    ok = []
    for s in cell.search:
        m = cell_metrics(cell, records.get(s.key))
        if m is not None and m.get("dev_accuracy") is not None:
            ok.append((s, m))
    if not ok:
        return None
    return max(ok, key=lambda sm: (sm[1]["dev_accuracy"], -sm[0].index))


def plan_reruns(plan: Plan, cell: Cell, records: dict[str, dict]) -> None:
    best = best_search_trial(cell, records)
    if best is None:
        cell.reruns = []
        cell.note = "no search trial succeeded, so nothing to rerun"
        return
    spec, metrics = best
    cell.reruns = plan.rerun_trials(spec, float(metrics.get("reg_strength") or 0.0), cell.config)


def _failed_record(spec: TrialSpec, error: str) -> dict:
    return {
        "format": "sparse-rational-trial/1",
        "key": spec.key,
        "config": spec.identity(),
        "status": "failed",
        "error": error,
        "seconds": 0.0,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def extend_search(plan: Plan, cell: Cell, records: dict[str, dict]) -> int:
    """Add a replacement assignment for each failed search trial (up to the plan's cap).
    Returns how many trials were added."""
    added = 0
    while True:
        failed = sum(cell_metrics(cell, records[s.key]) is None for s in cell.search if s.key in records)
        want = plan.budget.assignments + min(failed, plan.max_replacements)
        if want <= len(cell.search):
            return added
        added += want - len(cell.search)
        cell.search = plan.search_trials(cell.dataset, cell.config, want)


def update_cell(plan: Plan, cell: Cell, records: dict[str, dict]) -> int:
    """Replacements for failed search trials, then the reruns once the search is over."""
    added = extend_search(plan, cell, records)
    if cell.reruns is None and all(s.key in records for s in cell.search):
        plan_reruns(plan, cell, records)
    return added


def planned_trials(cells: list[Cell]) -> list[TrialSpec]:
    """Every trial the cells have planned so far, each once (cells may share path trials)."""
    seen: dict[str, TrialSpec] = {}
    for c in cells:
        for s in c.search + (c.reruns or []):
            seen.setdefault(s.key, s)
    return list(seen.values())


def count_trials(plan: Plan, cells: list[Cell]) -> int:
    """Trials planned, plus the reruns of cells whose search is not finished yet."""
    return len(planned_trials(cells)) + sum(plan.budget.reruns for c in cells if c.reruns is None)


def prepare_cells(plan: Plan, records: dict[str, dict]) -> tuple[list[Cell], int]:
    """The plan's cells, with replacements and reruns planned as far as the stored records
    allow; and how many of their trials are finished already."""
    cells = [Cell(d, c, plan.search_trials(d, c)) for d, c in plan.cells]
    for cell in cells:
        update_cell(plan, cell, records)
    finished = sum(s.key in records for s in planned_trials(cells))
    return cells, finished


def usable_records(store: TrialStore, retry_failed: bool) -> dict[str, dict]:
    records = store.load_all()
    if retry_failed:
        records = {k: r for k, r in records.items() if r["status"] == "ok"}
    return records


def run_sweep(
    plan: Plan,
    executor,
    store: TrialStore,
    retry_failed: bool = False,
    progress: bool = True,
    poll_seconds: float = 1.0,
) -> SweepResult:
    records = usable_records(store, retry_failed)
    cells, finished_before = prepare_cells(plan, records)

    def total() -> int:
        return count_trials(plan, cells)

    def settled(spec: TrialSpec) -> bool:
        return spec.key in records

    result = SweepResult(total(), finished_before)
    start = time.perf_counter()
    bar = tqdm(
        total=total(),
        initial=finished_before,
        desc="trials",
        unit="trial",
        file=sys.stderr,
        disable=bool(progress_disable(progress)),
        dynamic_ncols=True,
        smoothing=0.05,
    )
    in_flight: dict = {}  # handle -> spec
    lost: dict[str, int] = {}

    def pending() -> list[TrialSpec]:
        busy = {s.key for s in in_flight.values()}
        todo = [s for s in planned_trials(cells) if not settled(s) and s.key not in busy]
        reruns = [s for s in todo if s.phase == "rerun"]
        # longest first among search trials: sparse target searches and paths before baselines
        search = [s for s in todo if s.phase != "rerun"]
        search.sort(key=lambda s: (s.config.method != "sparse" or not s.targets, s.index))
        return reruns + search

    try:
        while True:
            todo = pending()
            while todo and len(in_flight) < getattr(executor, "queue_depth", executor.capacity):
                spec = todo.pop(0)
                in_flight[executor.submit(spec)] = spec
            if not in_flight:
                break
            for handle, outcome in executor.wait(list(in_flight), timeout=poll_seconds):
                spec = in_flight.pop(handle)
                if isinstance(outcome, BaseException):
                    lost[spec.key] = lost.get(spec.key, 0) + 1
                    if lost[spec.key] <= LOST_RETRIES:
                        continue  # run it again
                    outcome = _failed_record(spec, f"{type(outcome).__name__}: {outcome}".splitlines()[0])
                store.save(outcome)
                records[spec.key] = outcome
                result.ran += 1
                if outcome["status"] != "ok":
                    result.failed += 1
                    _log.info(
                        f"failed: {spec.dataset.name} / {spec.config.label} {spec.phase} {spec.index}: "
                        f"{outcome.get('error', '?')}",
                    )
                elif (outcome.get("metrics") or {}).get("missed"):
                    _log.info(
                        f"{spec.dataset.name} / {spec.config.label} {spec.phase} {spec.index}: the path "
                        f"missed target(s) {', '.join(map(str, outcome['metrics']['missed']))}",
                    )
                bar.update(1)
                for cell in cells:
                    had_reruns = cell.reruns is not None
                    if update_cell(plan, cell, records):
                        _log.info(f"{cell.label()}: a new assignment replaces the failed one")
                    if cell.note and not had_reruns and cell.reruns is not None:
                        _log.info(f"{cell.label()}: {cell.note}")
                bar.total = total()
                bar.refresh()
                bar.set_postfix(failed=result.failed, refresh=False)
    except BaseException:
        executor.close(cancel=True)
        bar.close()
        raise
    bar.close()
    result.seconds = time.perf_counter() - start
    result.total = total()
    result.notes = [f"{c.label()}: {c.note}" for c in cells if c.note]
    return result
