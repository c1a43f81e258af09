"""Terminal output: progress bars for the pipeline stages and the closing results table."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploykit.manifest import ModelManifest

__all__ = ["console", "err_console", "RichReporter", "artifact_table", "human_bytes"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class RichReporter:
    """The pipeline's Reporter drawn as one rich progress bar per stage."""

    def __init__(self, con: Console = console):
        self.console = con
        self._progress: Optional[Progress] = None
        self._task = None

    def note(self, message: str) -> None:
        self.console.print(f"[dim]•[/dim] {message}")

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self.done()
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                  console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(name, total=total, detail="")

    def advance(self, detail: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, detail=detail)

    def done(self) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            if task.total is None:
                self._progress.update(self._task, total=1, completed=1)
            self._progress.stop()
            self._progress = None


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


_STYLE = {"passed": "green", "exported": "yellow", "failed": "red"}


def artifact_table(manifests: list[ModelManifest], title: str = "artifacts") -> Table:
    """model × format: status, size, accuracy, parity (reasons for failures are printed apart).

    A pass whose reference was degenerate (Parity.strength "weak") reads "passed, parity weak".
    """
    table = Table(title=title, title_justify="left", pad_edge=False)
    table.add_column("model / format")
    table.add_column("status")
    for col in ("size", "accuracy", "max |Δp|", "top-1 agree"):
        table.add_column(col, justify="right")
    for manifest in manifests:
        train_acc = f"{manifest.training.accuracy:.2%}" if manifest.training else "—"
        table.add_row(f"[bold]{manifest.model}[/bold] [dim]({manifest.framework})[/dim]", "trained", "", train_acc, "", "")
        for a in manifest.artifacts:
            par = a.parity
            weak = a.status == "passed" and par is not None and par.strength == "weak"
            status = "[yellow]passed, parity weak[/]" if weak else f"[{_STYLE[a.status]}]{a.status}[/]"
            table.add_row(
                f"  {a.format}", status, human_bytes(a.bytes) if a.bytes else "—",
                f"{a.accuracy:.2%}" if a.accuracy is not None else "—",
                f"{par.max_abs_diff:.1e}" if par else "—", f"{par.top1_agreement:.2%}" if par else "—",
            )
    return table
