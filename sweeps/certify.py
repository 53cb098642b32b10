"""`samat frontier certify`: re-evaluate the front's trials from their final checkpoints with AutoAttack and the
sanity checks of `trainables.certify`, as Ray tasks with the sweep's resources (GPUs where the sweep had them),
and record the outcome: `certified/...` metrics and a `certified` tag (true | suspect) on each trial's MLflow
run, and on the parent run the certified front (artifacts under `certified/`) and its hypervolume.

Certification uses the first `eval_n` test images, model in eval mode; the search selected on validation data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ray
import torch
from ray.tune import Checkpoint

from analysis.tracking import SweepStore
from analysis.trials import SweepRecord, TrialRow, rank_rows
from sweeps.ray_start import start_ray
from sweeps.results import FinishedSweep, load_finished_sweep
from sweeps.trainable import CHECKPOINT_FILE
from trainables.certify import Certificate, certify, named
from trainables.config import TrainConfig
from trainables.run import Run, read_checkpoint
from trainables.vocabulary import CLEAN_ACC, AttackSpec, parse_attack


@ray.remote
def certify_checkpoint(
    checkpoint: Checkpoint, norm: str, eps: float, radii: tuple[float, ...], n: int, threads: int
) -> Certificate:
    torch.set_num_threads(threads)
    with checkpoint.as_directory() as folder:
        state = read_checkpoint(Path(folder) / CHECKPOINT_FILE)
    run = Run(TrainConfig(**state["config"]))
    run.load_state_dict(state)
    torch.manual_seed(0)  # attacks' random starts: the same images and seed give the same certificate
    data = run.data
    return certify(run.model, data.test_x[:n], data.test_y[:n], data.num_classes, norm, eps, radii)


def certified_radii(spec) -> tuple[AttackSpec, tuple[float, ...]]:
    """The objective's attack, and the other radii of its norm among the spec's final attacks."""
    objective = parse_attack(spec.objective_attack)
    others = {a.eps for a in map(parse_attack, spec.final_attacks) if a.norm == objective.norm and a.eps}
    return objective, tuple(sorted(others - {objective.eps}))


def certify_sweep(
    store: SweepStore, name: str, ranks: int = 1, address: str | None = None, on_certificate=None
) -> tuple[FinishedSweep, dict[str, Certificate]]:
    """Certify the trials of Pareto rank ≤ `ranks`, record the results, and return them by trial id.
    `on_certificate(row, certificate)` is called as each one arrives (for progress output)."""
    sweep = load_finished_sweep(store, name)
    rows = sweep.best(ranks)
    missing = [r.trial_id for r in rows if r.trial_id not in sweep.checkpoints]
    if missing:
        raise FileNotFoundError(f"no checkpoint of trial(s) {', '.join(missing)} under {sweep.experiment_path}")
    objective, radii = certified_radii(sweep.spec)
    resources = sweep.spec.resources
    task = certify_checkpoint.options(num_cpus=resources.cpu, num_gpus=resources.gpu)
    connected = start_ray(address)
    try:
        pending = {
            task.remote(
                sweep.checkpoints[r.trial_id],
                objective.norm,
                objective.eps,
                radii,
                sweep.spec.eval_n,
                max(1, int(resources.cpu)),
            ): r
            for r in rows
        }
        certificates = {}
        while pending:
            (done,), _ = ray.wait(list(pending))
            row = pending.pop(done)
            certificates[row.trial_id] = ray.get(done)
            if on_certificate:
                on_certificate(row, certificates[row.trial_id])
    finally:
        if connected:
            ray.shutdown()
    for row in rows:
        cert = certificates[row.trial_id]
        store.record_certificate(row.run_id, cert.accuracies, cert.verdict, cert.reasons)
    store.record_certified_front(certified_record(sweep.record, rows, certificates, objective))
    return sweep, certificates


def certified_record(
    record: SweepRecord, rows: list[TrialRow], certificates: dict[str, Certificate], objective: AttackSpec
) -> SweepRecord:
    """The certified points as a sweep record of their own: clean accuracy and AutoAttack accuracy at the
    objective's ε in place of the search's values (other objectives kept); suspect points are left unranked."""
    auto = named("autoattack", objective.norm, objective.eps).name
    certified = []
    for row in rows:
        cert = certificates[row.trial_id]
        values = {CLEAN_ACC: cert.accuracies[CLEAN_ACC], objective.metric: cert.accuracies[auto]}
        certified.append(
            dataclasses.replace(
                row,
                objectives={m: values.get(m, v) for m, v in row.objectives.items()},
                status="complete" if cert.verdict == "true" else "error",
                error="; ".join(cert.reasons) or None,
            )
        )
    return dataclasses.replace(record, name=f"{record.name} (certified)", rows=rank_rows(certified, record.directions))


def gap_rows(rows: list[TrialRow], certificates: dict[str, Certificate], objective: AttackSpec) -> list[dict]:
    """Per point: PGD-10 and AutoAttack at the objective's ε on the test images, their gap, the verdict."""
    pgd = named("pgd", objective.norm, objective.eps, 10).name
    auto = named("autoattack", objective.norm, objective.eps).name
    out = []
    for row in rows:
        cert = certificates[row.trial_id]
        out.append(
            {
                "row": row,
                "clean": cert.accuracies[CLEAN_ACC],
                "pgd": cert.accuracies[pgd],
                "autoattack": cert.accuracies[auto],
                "gap": cert.accuracies[pgd] - cert.accuracies[auto],
                "verdict": cert.verdict,
                "reasons": cert.reasons,
            }
        )
    return out
