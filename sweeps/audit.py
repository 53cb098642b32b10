"""`samat frontier audit`: re-evaluate the front's trials from their final checkpoints on the test images, with
AutoAttack and the sanity checks of `trainables.audit` at every audited radius, as Ray tasks with the sweep's
resources (GPUs where the sweep had them), and record the outcome: `audit/...` metrics and an `audit` tag
(passed | suspect) on each trial's MLflow run, and on the parent run the audited front (artifacts under `audit/`)
and two hypervolumes on the same test images: the audited front's and the search's points' own.

Like with like: the search selected on validation images; the audit reports on test images only. Each objective of
the audited front is a test figure: clean accuracy on the whole test set, each robust objective as AutoAttack at
its norm and radius on the first `eval_n` test images, any other objective the trial's `test/` value, and one
with no test value (training time, say) as the search recorded it. `audit/search_hypervolume` ranks the same
points on their `test/` values (PGD and all), so the step from it to `audit/hypervolume` is AutoAttack's alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ray
import torch
from ray.tune import Checkpoint

from analysis.tracking import AUDIT, SweepStore
from analysis.trials import SweepRecord, TrialRow, rank_rows
from sweeps.ray_start import start_ray
from sweeps.results import FinishedSweep, load_finished_sweep
from sweeps.trainable import CHECKPOINT_FILE
from trainables.audit import Audit, audit, named
from trainables.config import TrainConfig
from trainables.evaluate import clean_accuracy
from trainables.run import Run, read_checkpoint
from trainables.usage import UsageError
from trainables.vocabulary import (
    CLEAN_ACC,
    ROBUST_PREFIX,
    AttackSpec,
    metric_on_test,
    parse_attack,
    parse_evaluation,
)

FULL_TEST_CLEAN = f"full_test_{CLEAN_ACC}"  # audit metric: clean accuracy on every test image


class AuditRefused(UsageError):
    """A sweep the audit has nothing to check in."""


@ray.remote
def audit_checkpoint(checkpoint: Checkpoint, radii: dict[str, tuple[float, ...]], n: int, threads: int) -> Audit:
    """The trial's final weights audited per norm at its radii, on the first `n` test images; the audit's
    accuracies also hold clean accuracy on the whole test set."""
    torch.set_num_threads(threads)
    with checkpoint.as_directory() as folder:
        state = read_checkpoint(Path(folder) / CHECKPOINT_FILE)
    run = Run(TrainConfig(**state["config"]))
    run.load_state_dict(state)
    torch.manual_seed(0)  # attacks' random starts: the same images and seed give the same audit
    data = run.data
    audits = [
        audit(run.model, data.test_x[:n], data.test_y[:n], data.num_classes, norm, eps) for norm, eps in radii.items()
    ]
    merged = dataclasses.replace(
        audits[0],
        radii=tuple(e for a in audits for e in a.radii),
        accuracies={k: v for a in audits for k, v in a.accuracies.items()},
        checks=[c for a in audits for c in a.checks],
    )
    merged.accuracies[FULL_TEST_CLEAN] = clean_accuracy(run.model, data.test_x, data.test_y)[CLEAN_ACC]
    return merged


def robust_objectives(spec) -> list[AttackSpec]:
    """The attacks behind the sweep's robust objectives (`robust_acc/<attack>`), in objective order."""
    return [parse_attack(m.removeprefix(ROBUST_PREFIX)) for m in spec.directions if m.startswith(ROBUST_PREFIX)]


def audited_radii(spec) -> dict[str, tuple[float, ...]]:
    """Per norm of the robust objectives: their radii first, then the other radii of that norm among the spec's
    final attacks."""
    objectives = robust_objectives(spec)
    finals = [a for a in map(parse_evaluation, spec.final_attacks) if isinstance(a, AttackSpec)]
    return {
        norm: tuple(dict.fromkeys([a.eps for a in [*objectives, *finals] if a.norm == norm and a.eps]))
        for norm in dict.fromkeys(a.norm for a in objectives)
    }


def audit_sweep(
    store: SweepStore, name: str, ranks: int = 1, address: str | None = None, on_audit=None
) -> tuple[FinishedSweep, dict[str, Audit]]:
    """Audit the trials of Pareto rank ≤ `ranks`, record the results, and return them by trial id.
    `on_audit(row, audit)` is called as each one arrives (for progress output)."""
    sweep = load_finished_sweep(store, name)
    robust = robust_objectives(sweep.spec)
    if not robust:
        raise AuditRefused(
            f"sweep {name!r} has no robust objective (robust_acc/<attack>): the audit checks the attack behind one"
        )
    rows = sweep.best(ranks)
    missing = [r.trial_id for r in rows if r.trial_id not in sweep.checkpoints]
    if missing:
        raise FileNotFoundError(f"no checkpoint of trial(s) {', '.join(missing)} under {sweep.experiment_path}")
    resources = sweep.spec.resources
    task = audit_checkpoint.options(num_cpus=resources.cpu, num_gpus=resources.gpu)
    connected = start_ray(address)
    try:
        pending = {
            task.remote(
                sweep.checkpoints[r.trial_id], audited_radii(sweep.spec), sweep.spec.eval_n, max(1, int(resources.cpu))
            ): r
            for r in rows
        }
        audits = {}
        while pending:
            (done,), _ = ray.wait(list(pending))
            row = pending.pop(done)
            audits[row.trial_id] = ray.get(done)
            if on_audit:
                on_audit(row, audits[row.trial_id])
    finally:
        if connected:
            ray.shutdown()
    for row in rows:
        result = audits[row.trial_id]
        store.record_audit(row.run_id, result.accuracies, result.verdict, result.reasons, result.pgd_unreliable_at)
    store.record_audited_front(audited_record(sweep.record, rows, audits, robust), searched_on_test(sweep.record, rows))
    return sweep, audits


def on_test(metric: str, rows: list[TrialRow]) -> str:
    """Where an objective's test figure is: `test/<metric>`, or the objective itself where no data split changes
    it (no trial reported a `test/` value: training time, say)."""
    tested = metric_on_test(metric)
    return tested if any(tested in r.metrics for r in rows) else metric


def renamed(record: SweepRecord, rows: list[TrialRow], names: dict[str, str], label: str) -> SweepRecord:
    """`rows` as a record of their own whose objectives are `names` (old -> new, in the record's order), ranked."""
    directions = {names[m]: d for m, d in record.directions.items()}
    return dataclasses.replace(
        record, name=f"{record.name} ({label})", directions=directions, rows=rank_rows(rows, directions)
    )


def searched_on_test(record: SweepRecord, rows: list[TrialRow]) -> SweepRecord:
    """The audited points as the search measured them on the test images (PGD, not AutoAttack), ranked; each
    objective named for what it is (`test/robust_acc/pgd_linf_0.1`)."""
    names = {m: on_test(m, rows) for m in record.directions}
    tested = [
        dataclasses.replace(r, objectives={names[m]: r.metrics.get(names[m], r.objectives.get(m)) for m in names})
        for r in rows
    ]
    return renamed(record, tested, names, "search, test")


def audited_record(
    record: SweepRecord, rows: list[TrialRow], audits: dict[str, Audit], robust: list[AttackSpec]
) -> SweepRecord:
    """The audited points as a sweep record of their own, every objective a test figure named for what it is
    (module docstring): `audit/full_test_clean_acc`, `audit/autoattack_<norm>_<eps>` for each robust objective,
    `test/<metric>` for the others. A point whose checks found signs of a masked gradient is unranked; one whose
    only finding is PGD's gap to AutoAttack keeps its place, ranked on AutoAttack, which that gap does not impugn."""
    names = {m: on_test(m, rows) for m in record.directions} | {CLEAN_ACC: f"{AUDIT}/{FULL_TEST_CLEAN}"}
    names |= {a.metric: f"{AUDIT}/{named('autoattack', a.norm, a.eps).name}" for a in robust}
    audited = []
    for row in rows:
        result = audits[row.trial_id]
        values = {f"{AUDIT}/{k}": v for k, v in result.accuracies.items()}
        audited.append(
            dataclasses.replace(
                row,
                objectives={
                    names[m]: values.get(names[m], row.metrics.get(names[m], row.objectives.get(m))) for m in names
                },
                status="error" if result.masking_suspected else "complete",
                error="; ".join(result.reasons) or None,
            )
        )
    return renamed(record, audited, names, "audited")


def gap_rows(rows: list[TrialRow], audits: dict[str, Audit], objective: AttackSpec) -> list[dict]:
    """Per point, on the test images: clean accuracy on all of them; PGD-10 and AutoAttack at the objective's
    norm and radius on the audited ones, their gap; the verdict and its reasons."""
    pgd = named("pgd", objective.norm, objective.eps, 10).name
    auto = named("autoattack", objective.norm, objective.eps).name
    out = []
    for row in rows:
        result = audits[row.trial_id]
        out.append(
            {
                "row": row,
                "clean": result.accuracies[FULL_TEST_CLEAN],
                "pgd": result.accuracies[pgd],
                "autoattack": result.accuracies[auto],
                "gap": result.accuracies[pgd] - result.accuracies[auto],
                "verdict": result.verdict,
                "reasons": result.reasons,
            }
        )
    return out
