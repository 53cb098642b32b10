"""The paper's figures from a sweep: robust accuracy against attack radius, and accuracy under each common
corruption against its severity 1-5 (on the test images, from the spec's final attacks and corruptions), for each
front point and for the best trial of each method, and a per-method summary (best clean, best robust, and robust
accuracy at matched clean accuracy).

A point of a curve is either the accuracy under the attack alone at its radius (`robust_acc/`, a filled marker)
or the worst case over that attack at every radius up to it (`robust_acc_upto/`, a hollow marker: a cascade,
trainables.evaluate.evaluate), which cannot rise with ε by construction; `samat frontier audit` measures its
radii alone for its monotonicity check."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from analysis.plots import PLOT_FORMATS, colour, written_whole
from analysis.trials import SweepRecord, TrialRow
from trainables.vocabulary import (
    CLEAN_ACC,
    CORRUPTION_PREFIX,
    PAPER9,
    ROBUST_PREFIX,
    ROBUST_UPTO_PREFIX,
    metric_on_test,
    parse_attack,
)

WORST_CASE_NOTE = "hollow markers: the worst case over every radius up to ε (cannot rise with ε)"


class CurvePoint(NamedTuple):
    eps: float  # the attack's radius, or the corruption's severity
    accuracy: float
    worst_case: bool  # the worst case over the attack at every radius up to eps, not the attack alone


SEVERITY = "severity"  # the first part of a corruption curve's kind: (SEVERITY, corruption)


def radius_curves(row: TrialRow) -> dict[tuple[str, str], list[CurvePoint]]:
    """(attack kind, norm) -> its points from ε = 0 (clean) upward, and (SEVERITY, corruption) -> its points from
    severity 0 (clean) upward, on the test images, for every kind with 2+ radii or severities."""
    curves = defaultdict(list)
    for prefix in (ROBUST_PREFIX, ROBUST_UPTO_PREFIX):
        for key, value in row.metrics.items():
            if key.startswith(metric_on_test(prefix)) and value is not None:
                attack = parse_attack(key.removeprefix(metric_on_test(prefix)))
                curves[(attack.name.split("_")[0], attack.norm)].append(
                    CurvePoint(attack.eps, value, prefix == ROBUST_UPTO_PREFIX)
                )
    for key, value in row.metrics.items():
        if key.startswith(metric_on_test(CORRUPTION_PREFIX)) and value is not None:
            corruption, severity = key.removeprefix(metric_on_test(CORRUPTION_PREFIX)).rsplit("_", 1)
            curves[(SEVERITY, corruption)].append(CurvePoint(int(severity), value, False))
    clean = row.metrics.get(metric_on_test(CLEAN_ACC))
    return {
        k: sorted([CurvePoint(0.0, clean, False), *v]) for k, v in curves.items() if len(v) > 1 and clean is not None
    }


def kind_order(kind: tuple[str, str]) -> tuple:
    """Radius curves first, then the mean corruption, then each corruption."""
    return kind[0] == SEVERITY, kind[1] != PAPER9, kind


def axis_label(kind: tuple[str, str]) -> str:
    if kind[0] != SEVERITY:
        return f"ε ({kind[0].upper()} {kind[1]})"
    return f"severity, {'mean of the paper' + chr(39) + 's nine' if kind[1] == PAPER9 else kind[1]} (0: clean)"


def robust_objective(record: SweepRecord) -> str | None:
    """The first robust objective; None for a sweep with none (clean against corruption accuracy, say)."""
    return next((m for m in record.directions if m.startswith(ROBUST_PREFIX)), None)


def best_per_method(record: SweepRecord) -> dict[str, TrialRow]:
    """Each method's trial with the best robust objective (validation), among trials that finished."""
    metric, best = robust_objective(record), {}
    if metric is None:
        return best
    for row in record.finished:
        if row.method not in best or row.objectives[metric] > best[row.method].objectives[metric]:
            best[row.method] = row
    return best


def method_summary(record: SweepRecord) -> list[dict]:
    """Per method, on the test images: best clean accuracy, best robust accuracy (the robust objective's attack),
    and the best robust accuracy among trials at least as clean as the least clean method's best (matched)."""
    if robust_objective(record) is None:
        return []
    robust = metric_on_test(robust_objective(record))
    clean = metric_on_test(CLEAN_ACC)
    by_method = defaultdict(list)
    for row in record.finished:
        if row.metrics.get(clean) is not None and row.metrics.get(robust) is not None:
            by_method[row.method].append(row)
    if not by_method:
        return []
    matched = min(max(r.metrics[clean] for r in rows) for rows in by_method.values())
    return [
        {
            "method": method,
            "trials": len(rows),
            "best_clean": max(r.metrics[clean] for r in rows),
            "best_robust": max(r.metrics[robust] for r in rows),
            "matched_clean": matched,
            "robust_at_matched_clean": max(r.metrics[robust] for r in rows if r.metrics[clean] >= matched),
        }
        for method, rows in sorted(by_method.items())
    ]


def write_curves(record: SweepRecord, path: str | Path) -> Path:
    """The curves as PNG (matplotlib) or interactive HTML (plotly); solid: front points, dashed: each method's
    best. Raises ValueError when no trial reports a final attack at two or more radii of one kind."""
    lines = [(f"front {r.trial_id}", r, "solid") for r in record.front]
    lines += [(f"best {m} ({r.trial_id})", r, "dash") for m, r in best_per_method(record).items()]
    series = [(label, r, style, kind, points) for label, r, style in lines for kind, points in radius_curves(r).items()]
    if not series:
        raise ValueError(
            f"{record.name}: no trial reports a final attack at two or more radii, nor a corruption at two or more "
            f"severities (add final_attacks such as pgd_linf_2of255, pgd_linf_4of255, pgd_linf_8of255, or "
            f"corrupt_paper9_1 ... corrupt_paper9_5, to the spec)"
        )
    path = Path(path)
    if path.suffix not in PLOT_FORMATS:
        raise ValueError(f"unknown plot format {path.suffix or '(none)'!r}: use .png or .html")
    title = f"{record.name}: test accuracy against attack radius and corruption severity (0: clean)"
    with written_whole(path) as tmp:
        (_png if path.suffix == ".png" else _html)(series, title, tmp)
    return path


def _png(series, title: str, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - ~1-2 s to import: only the plot being written pays

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kinds = sorted({s[3] for s in series}, key=kind_order)
    columns = min(len(kinds), 4)
    rows = -(-len(kinds) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.6 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(kinds) :]:
        ax.set_visible(False)
    for ax, kind in zip(axes.flat, kinds):
        for label, row, style, _, points in (s for s in series if s[3] == kind):
            line = ax.plot(
                [p.eps for p in points],
                [p.accuracy for p in points],
                linestyle="--" if style == "dash" else "-",
                color=colour(row.method),
                label=f"{label} {row.method}",
                alpha=0.85,
            )[0]
            for worst_case in (False, True):
                chosen = [p for p in points if p.worst_case == worst_case]
                ax.scatter(
                    [p.eps for p in chosen],
                    [p.accuracy for p in chosen],
                    color=line.get_color(),
                    facecolors="none" if worst_case else line.get_color(),
                    zorder=3,
                )
        ax.set_xlabel(axis_label(kind))
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}\n{WORST_CASE_NOTE}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _html(series, title: str, path: Path) -> None:
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    kinds = sorted({s[3] for s in series}, key=kind_order)
    columns = min(len(kinds), 3)
    fig = make_subplots(rows=-(-len(kinds) // columns), cols=columns, subplot_titles=[axis_label(k) for k in kinds])
    for label, row, style, kind, points in series:
        at, at_severity = kinds.index(kind), kind[0] == SEVERITY
        fig.add_trace(
            go.Scatter(
                x=[p.eps for p in points],
                y=[p.accuracy for p in points],
                mode="lines+markers",
                name=f"{label} {row.method}",
                line={"color": colour(row.method), "dash": style},
                marker={"symbol": ["circle-open" if p.worst_case else "circle" for p in points], "size": 9},
                text=[
                    "worst case up to this ε" if p.worst_case else "this corruption" if at_severity else "this attack"
                    for p in points
                ],
                legendgroup=label,
                showlegend=at == kinds.index(next(s[3] for s in series if s[0] == label)),
            ),
            row=at // columns + 1,
            col=at % columns + 1,
        )
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(
        title=f"{title}<br><sub>{WORST_CASE_NOTE}</sub>",
        height=380 * (-(-len(kinds) // columns)),
        template="plotly_white",
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)
