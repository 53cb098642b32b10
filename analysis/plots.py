"""Front plots: every finished trial, coloured by method, the Pareto front highlighted and joined.
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


def _axes(record):
    (x, dx), (y, dy) = list(record.directions.items())[:2]
    arrow = {"max": "↑", "min": "↓"}
    return x, y, f"{x} {arrow[dx]}", f"{y} {arrow[dy]}"


def _by_method(record) -> dict[str, list[TrialRow]]:
    rows = record.finished
    return {m: [r for r in rows if r.method == m] for m in sorted({r.method for r in rows})}


def _front_line(record):
    x, y, *_ = _axes(record)
    front = sorted(record.front, key=lambda r: r.objectives[x])
    return [r.objectives[x] for r in front], [r.objectives[y] for r in front]


def _png(record, path: Path) -> None:
    # matplotlib takes ~1-2 s to import and plotly's figures ~0.3 s: only the plot being written pays
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    x, y, xlabel, ylabel = _axes(record)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for method, rows in _by_method(record).items():
        ax.scatter(
            [r.objectives[x] for r in rows],
            [r.objectives[y] for r in rows],
            label=method,
            alpha=0.75,
            s=30,
            color=colour(method),
        )
    fx, fy = _front_line(record)
    ax.plot(fx, fy, color="black", linewidth=1, zorder=1)
    ax.scatter(fx, fy, facecolors="none", edgecolors="black", s=90, linewidths=1.5, label="Pareto front", zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    extra = f" (colour: method; {record.objectives[2]} not shown)" if len(record.objectives) > 2 else ""
    ax.set_title(
        f"{record.name}: {len(record.front)} of {len(record.finished)} trials on the front{extra}", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _html(record, path: Path) -> None:
    import plotly.graph_objects as go  # noqa: PLC0415

    x, y, xlabel, ylabel = _axes(record)
    fig = go.Figure()
    for method, rows in _by_method(record).items():
        hover = [
            "<br>".join(
                [
                    f"trial {r.trial_id} (rank {r.rank})",
                    *(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items()),
                    *(f"{m}={v:.4f}" for m, v in r.objectives.items()),
                ]
            )
            for r in rows
        ]
        fig.add_trace(
            go.Scatter(
                x=[r.objectives[x] for r in rows],
                y=[r.objectives[y] for r in rows],
                mode="markers",
                name=method,
                text=hover,
                hoverinfo="text",
                marker={"size": 9, "opacity": 0.8, "color": colour(method)},
            )
        )
    fx, fy = _front_line(record)
    fig.add_trace(
        go.Scatter(
            x=fx,
            y=fy,
            mode="lines+markers",
            name="Pareto front",
            hoverinfo="skip",
            line={"color": "black", "width": 1},
            marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}},
        )
    )
    fig.update_layout(
        title=f"{record.name}: Pareto front of {' vs '.join(record.objectives)}",
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        template="plotly_white",
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)  # self-contained: the MLflow UI may be offline
