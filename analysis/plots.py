"""Front plots: every finished trial, coloured by method, the Pareto front highlighted (and joined, for two
objectives); with three objectives, each pair's view side by side (PNG) and a 3-D scatter to turn (HTML).
PNG through matplotlib, interactive HTML (hover shows each trial's parameters) through plotly."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from analysis.trials import TrialRow
from trainables.vocabulary import METHODS

PLOT_FORMATS = (".png", ".html")


def colour(method: str) -> str:
    """A method keeps its colour in every plot, whichever methods a sweep has."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    return palette[METHODS.index(method) % len(palette)] if method in METHODS else "#7f7f7f"


@contextmanager
def written_whole(path: Path):
    """Yields a temporary path beside `path` to write to; it becomes `path` only if the writing succeeded."""
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_plot(record, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in PLOT_FORMATS:
        raise ValueError(f"unknown plot format {path.suffix or '(none)'!r}: use .png or .html")
    with written_whole(path) as tmp:
        (_png if path.suffix == ".png" else _html)(record, tmp)
    return path


ARROW = {"max": "↑", "min": "↓"}


def _label(record, metric: str) -> str:
    return f"{metric} {ARROW[record.directions[metric]]}"


def _pairs(record) -> list[tuple[str, str]]:
    """The views a plot shows: the two objectives, or each pair of three (the front of all three projected)."""
    objectives = record.objectives
    return (
        [(objectives[0], objectives[1])]
        if len(objectives) == 2
        else [(a, b) for i, a in enumerate(objectives) for b in objectives[i + 1 :]]
    )


def _by_method(record) -> dict[str, list[TrialRow]]:
    rows = record.finished
    return {m: [r for r in rows if r.method == m] for m in sorted({r.method for r in rows})}


def _hover(rows: list[TrialRow]) -> list[str]:
    return [
        "<br>".join(
            [
                f"trial {r.trial_id} (rank {r.rank})",
                *(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items()),
                *(f"{m}={v:.4f}" for m, v in r.objectives.items()),
            ]
        )
        for r in rows
    ]


def _png(record, path: Path) -> None:
    # matplotlib takes ~1-2 s to import and plotly's figures ~0.3 s: only the plot being written pays
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pairs = _pairs(record)
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(7 if len(pairs) == 1 else 5.2 * len(pairs), 5), dpi=120, squeeze=False
    )
    front = record.front
    for ax, (x, y) in zip(axes[0], pairs):
        for method, rows in _by_method(record).items():
            ax.scatter(
                [r.objectives[x] for r in rows],
                [r.objectives[y] for r in rows],
                label=method,
                alpha=0.75,
                s=30,
                color=colour(method),
            )
        if len(pairs) == 1:  # two objectives: the front is a staircase, joined
            line = sorted(front, key=lambda r: r.objectives[x])
            ax.plot(
                [r.objectives[x] for r in line], [r.objectives[y] for r in line], color="black", linewidth=1, zorder=1
            )
        ax.scatter(
            [r.objectives[x] for r in front],
            [r.objectives[y] for r in front],
            facecolors="none",
            edgecolors="black",
            s=90,
            linewidths=1.5,
            label="Pareto front",
            zorder=3,
        )
        ax.set_xlabel(_label(record, x))
        ax.set_ylabel(_label(record, y))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    of = "" if len(pairs) == 1 else " of all three objectives, in each pair's view"
    fig.suptitle(f"{record.name}: {len(front)} of {len(record.finished)} trials on the front{of}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _html(record, path: Path) -> None:
    """Two objectives: a scatter with the front joined; three: a 3-D scatter to turn, the front circled."""
    import plotly.graph_objects as go  # noqa: PLC0415

    axes = record.objectives
    three = len(axes) == 3
    scatter = go.Scatter3d if three else go.Scatter

    def coordinates(rows):
        return dict(zip("xyz", ([r.objectives[m] for r in rows] for m in axes)))

    fig = go.Figure()
    for method, rows in _by_method(record).items():
        fig.add_trace(
            scatter(
                **coordinates(rows),
                mode="markers",
                name=method,
                text=_hover(rows),
                hoverinfo="text",
                marker={"size": 5 if three else 9, "opacity": 0.8, "color": colour(method)},
            )
        )
    front = record.front if three else sorted(record.front, key=lambda r: r.objectives[axes[0]])
    fig.add_trace(
        scatter(
            **coordinates(front),
            mode="markers" if three else "lines+markers",
            name="Pareto front",
            hoverinfo="skip",
            line=None if three else {"color": "black", "width": 1},
            marker={"size": 9 if three else 14, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}},
        )
    )
    titles = {f"{axis}axis_title": _label(record, m) for axis, m in zip("xyz", axes)}
    fig.update_layout(
        title=f"{record.name}: Pareto front of {' vs '.join(axes)}",
        **(
            {
                "scene": {k.replace("axis_title", "axis"): {"title": v} for k, v in titles.items()},
                "height": 750,
                "margin": {"l": 0, "r": 0, "b": 0, "t": 60},
            }
            if three
            else titles
        ),
        template="plotly_white",
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)  # self-contained: the MLflow UI may be offline
