"""The rich tables samat prints of sweeps and fronts: `samat sweep` at its end, `samat frontier` on any store."""

from __future__ import annotations

from rich.table import Table

from analysis.curves import method_summary
from analysis.trials import LISTED_STOPPED, SEPARATION_ALPHA, SweepRecord, SweepSummary, TrialRow, format_params


def print_sweeps(uri: str, sweeps: list[dict], console) -> None:
    table = Table(title=f"sweeps at {uri}")
    for column in ("sweep", "status", "trials", "finished", "stopped", "failed", "hypervolume"):
        table.add_column(column, justify="left" if column in ("sweep", "status") else "right")
    for s in sweeps:
        hv = "-" if s["hypervolume"] is None else f"{s['hypervolume']:.4f}"
        counts = (s["trials"], s["finished"], s["stopped"], s["failed"])
        table.add_row(s["name"], s["status"], *map(str, counts), hv)
    console.print(table)


def front_table(title: str, objectives: list[str], front: list[TrialRow]) -> Table:
    """The Pareto front as a table: trial, method, model, searched params, objective values (validation), the
    same metrics on the test images where the trials report them, and the audit's verdict where there is one."""
    tests = [t for t in dict.fromkeys(k for r in front for k, v in r.test_values.items() if v is not None)]
    audited = any(r.audit for r in front)
    table = Table(title=title)
    for column in ("trial", "method", "model", "params", *objectives, *tests, *(["audit"] if audited else [])):
        # a trial id is never cut (it is what users copy); narrow terminals wrap the params instead
        table.add_column(
            column,
            justify="right" if column in (*objectives, *tests) else "left",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    for row in front:
        test_cells = (f"{row.test_values[t]:.4f}" if row.test_values.get(t) is not None else "-" for t in tests)
        table.add_row(
            row.trial_id,
            row.method,
            row.model,
            format_params(row.params),
            *(f"{row.objectives[m]:.4f}" for m in objectives),
            *test_cells,
            *([row.audit or "-"] if audited else []),
        )
    return table


def show_front(record: SweepRecord, summary: SweepSummary, console) -> None:
    """The front of `record` (its front rows, reseeds and stopped rows are all it needs) under the sweep's figures;
    a running sweep's as of its last re-rank."""
    title = (
        f"Pareto front of {record.name} ({record.status}): {len(record.front)} of {summary.ranked} "
        f"finished trials, hypervolume {summary.hypervolume:.4f}"
    )
    console.print(
        seeded_front_table(title, record) if record.reseeds else front_table(title, record.objectives, record.front)
    )
    if summary.stopped:
        console.print(stopped_line(summary.stopped_at, summary.trials, record.stopped), soft_wrap=True)


def summary_table(record: SweepRecord) -> Table:
    """Per method, on the test images: best clean, best robust, robust at matched clean accuracy."""
    rows = method_summary(record)
    table = Table(
        title=f"{record.name} by method (test images; matched clean = the least clean method's best, "
        f"{rows[0]['matched_clean']:.4f})"
        if rows
        else f"{record.name} by method"
    )
    for column in ("method", "trials", "best clean", "best robust", "robust at matched clean"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in rows:
        table.add_row(
            r["method"],
            str(r["trials"]),
            f"{r['best_clean']:.4f}",
            f"{r['best_robust']:.4f}",
            f"{r['robust_at_matched_clean']:.4f}",
        )
    return table


def seeded_front_table(title: str, record: SweepRecord) -> Table:
    """The front with each objective as the search's value (the selected seed) and, apart, the mean ± std over
    the new seeds, their number, and the neighbour each point cannot be told from on the new seeds."""
    table = Table(
        title=f"{title}\neach objective: the selected seed's value (biased upward: the search chose it for it), "
        f"then mean ± sample std over the new seeds alone; not separable: Welch's t-test on the new seeds finds "
        f"no objective in which the two differ at α = {SEPARATION_ALPHA:g}"
    )
    columns = [c for m in record.objectives for c in (f"{m} selected", f"{m} new seeds")]
    for column in ("trial", "method", "model", "params", *columns, "new seeds", "not separable from"):
        table.add_column(
            column,
            justify="right" if column in (*columns, "new seeds") else "left",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    inseparable = record.inseparable()
    for row in record.front:
        stats = record.seed_stats(row)
        table.add_row(
            row.trial_id,
            row.method,
            row.model,
            format_params(row.params),
            *(cell for m in record.objectives for cell in (f"{row.objectives[m]:.4f}", str(stats[m]))),
            str(min(s.n for s in stats.values())),
            inseparable.get(row.trial_id, ""),
        )
    return table


def stopped_line(stopped_at: dict[str, int], trials: int, stopped: list[TrialRow]) -> str:
    """The trials the scheduler stopped early (not ranked, so never on the front), counted by the epoch they
    stopped at (`stopped_at`, see stopped_counts), and named when `stopped` holds them all and they are few."""
    named: dict[str, list[str]] = {}
    if len(stopped) == sum(stopped_at.values()) <= LISTED_STOPPED:
        for row in sorted(stopped, key=lambda r: r.trial_id):
            named.setdefault(str(row.stopped_at or 0), []).append(row.trial_id)
    where = "; ".join(
        f"at epoch {epoch}: {', '.join(named[epoch]) if named else f'{n} trials'}" for epoch, n in stopped_at.items()
    )
    return f"stopped early by MO-ASHA (not ranked): {sum(stopped_at.values())} of {trials} trials; {where}"
