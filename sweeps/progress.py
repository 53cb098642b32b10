"""Live progress of a sweep on stderr: a bar over the trials, the running ones' epochs, a line per finished trial.

Tune pickles its callbacks with the experiment and brings them back on resume, so `ProgressCallback` holds no
state: it forwards events to whichever `SweepDisplay` is open in this process (none in scripts that do not
want one)."""

from __future__ import annotations

from ray.tune import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from analysis.trials import format_params, stopped_epoch
from sweeps.space import searched_params, train_config
from sweeps.spec import SweepSpec
from trainables.vocabulary import EPOCH

_open_display: SweepDisplay | None = None


class SweepDisplay:
    def __init__(self, spec: SweepSpec, n_trials: int, console: Console | None = None):
        self.spec, self.console = spec, console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[running]}"),
            console=self.console,
        )
        self.task = self.progress.add_task(f"sweep {spec.name}", total=n_trials, running="")
        self.running: dict[str, str] = {}
        self.console.print(f"finished trials show: trial method model params -> {' / '.join(spec.directions)}")

    def __enter__(self):
        global _open_display
        self.progress.start()
        _open_display = self
        return self

    def __exit__(self, *exc):
        global _open_display
        _open_display = None
        self.progress.stop()

    def _refresh(self):
        self.progress.update(self.task, running="  ".join(self.running.values()))

    def trial_started(self, trial) -> None:
        self.running[trial.trial_id] = f"{trial.trial_id[-4:]}:{trial.config.get('method')}"
        self._refresh()

    def trial_result(self, trial, result: dict) -> None:
        epochs = self.spec.train.get("epochs", "?")
        self.running[trial.trial_id] = (
            f"{trial.trial_id[-4:]}:{trial.config.get('method')} "
            f"ep {result.get(EPOCH)}/{epochs if isinstance(epochs, int) else '?'}"
        )
        self._refresh()

    def trial_finished(self, trial, error: str | None = None) -> None:
        self.running.pop(trial.trial_id, None)
        params = searched_params(trial.config, self.spec)
        head = f"{trial.trial_id} {params['method']:<7} {params['model']:<9} {format_params(params)}"
        result = trial.last_result or {}
        stopped = None if error else stopped_epoch(result, train_config(trial.config).epochs)
        if error:
            self.console.print(f"[red]✗[/red] {head} -> failed: {error}", soft_wrap=True)
        elif stopped is not None:
            values = " / ".join(f"{result.get(m, float('nan')):.3f}" for m in self.spec.directions)
            self.console.print(
                f"[yellow]■[/yellow] {head} -> stopped at epoch {stopped} by MO-ASHA ({values} there; "
                f"{result.get('time_total_s', 0):.1f} s)",
                soft_wrap=True,
            )
        else:
            values = " / ".join(f"{result.get(m, float('nan')):.3f}" for m in self.spec.directions)
            self.console.print(
                f"[green]✓[/green] {head} -> {values}  ({result.get('time_total_s', 0):.1f} s)", soft_wrap=True
            )
        self._refresh()

    def count(self, trials) -> None:
        """The bar counts the trials Tune holds as ended: a resumed sweep's earlier ones included."""
        ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        self.progress.update(self.task, completed=ended)


class ProgressCallback(Callback):
    def on_step_end(self, iteration, trials, **info):
        if _open_display:
            _open_display.count(trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        if _open_display:
            _open_display.trial_started(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if _open_display:
            _open_display.trial_result(trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if _open_display:
            _open_display.trial_finished(trial, error=(trial.last_result or {}).get("failure"))

    def on_trial_error(self, iteration, trials, trial, **info):
        if _open_display:
            message = str(getattr(trial, "error_msg", None) or "error").strip().splitlines()
            _open_display.trial_finished(trial, error=message[-1] if message else "error")
