"""How `nodeflow run` shows a run: rich progress bars while it runs, results when it ends."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from nodeflow.engine.context import CancelToken
from nodeflow.engine.events import (
    Event,
    ItemError,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunStarted,
    RunWarning,
)
from nodeflow.engine.executor import RunResult
from nodeflow.graph import Graph
from nodeflow.registry import Registry

_SCALARS = {"Float", "Int", "Bool", "Str"}


def _info_text(info: dict[str, Any]) -> str:
    return "  ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
    )


class ProgressView:
    """Turns run events into a live progress display on stderr."""

    def __init__(
        self,
        quiet: bool = False,
        fail_fast: bool = False,
        cancel: CancelToken | None = None,
        show_traceback: bool = False,
    ):
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.show_traceback = show_traceback
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=quiet,
        )
        self.tasks: dict[str, TaskID] = {}
        self.types: dict[str, str] = {}
        self.counts: dict[str, tuple[int, int | None]] = {}
        self.skipped: dict[str, int] = {}  # items (files) each node skipped
        self.untraced: list[str] = []  # nodes that raised, their tracebacks not printed

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.progress.stop()

    def _task(self, node: str) -> TaskID:
        if node not in self.tasks:
            label = f"{node} [dim]{self.types.get(node, '')}[/]"
            self.tasks[node] = self.progress.add_task(label, total=None, info="")
        return self.tasks[node]

    def handle(self, event: Event) -> None:
        match event:
            case RunStarted(nodes=nodes, device=device, precision=precision):
                if not self.quiet:
                    self.console.print(
                        f"[bold]running[/] {len(nodes)} nodes on {device} ({precision})"
                    )
            case NodeStarted(node=node, type=type_id) if not self.quiet:
                self.types[node] = type_id
                self._task(node)
            case NodeProgress(node=node, done=done, total=total, info=info) if not self.quiet:
                self.counts[node] = (done, total)
                self.progress.update(
                    self._task(node), completed=done, total=total, info=_info_text(info)
                )
            case NodeFinished(node=node, seconds=seconds, cached=cached) if not self.quiet:
                done, total = self.counts.get(node, (0, None))
                total = total or max(done, 1)
                note = "[dim]cached[/]" if cached else f"[dim]{seconds:.2f}s[/]"
                self.progress.update(self._task(node), total=total, completed=total, info=note)
            case NodeFailed(node=node, type=type_id, message=message, upstream=upstream):
                if node in self.tasks:
                    self.progress.remove_task(self.tasks.pop(node))
                if upstream is None:
                    self.console.print(f"[red]✗ {message}[/]", highlight=False)
                    if self.show_traceback and event.traceback:
                        self.console.print(event.traceback.rstrip(), highlight=False, markup=False)
                    elif event.traceback:
                        self.untraced.append(node)
                else:
                    self.console.print(f"[dim]✗ {node} {type_id}: {message}[/]")
            case ItemError(node=node, item=item, message=message):
                self.skipped[node] = self.skipped.get(node, 0) + 1
                self.console.print(
                    f"[yellow]! {node}: skipped {item}: {message}[/]", highlight=False
                )
            case RunWarning(message=message):
                self.console.print(f"[yellow]! {message}[/]", highlight=False)


def traceback_hint(untraced: list[str]) -> str | None:
    """One line on how to see the tracebacks of the nodes that raised, if any did."""
    if not untraced:
        return None
    return f"run again with --traceback to see where in its code {', '.join(untraced)} failed"


def print_results(
    graph: Graph,
    registry: Registry,
    result: RunResult,
    quiet: bool = False,
    skipped: dict[str, int] | None = None,
) -> None:
    """Scalar outputs of the output nodes (metrics and the like), skipped items, a verdict.

    `skipped` counts the items (files) each node skipped. The verdict counts the nodes not
    run because a node upstream failed apart from the nodes that failed themselves.
    """
    console = Console()
    for node_id in result.outputs:
        node_type = registry.nodes[graph.nodes[node_id].type]
        if not node_type.output_node:
            continue
        for name, value in result.outputs[node_id].items():
            if node_type.outputs[name].type.name in _SCALARS:
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                console.print(f"{node_id}.{name} = [bold]{shown}[/]")
    err = Console(stderr=True)
    for node_id, count in (skipped or {}).items():
        err.print(
            f"[yellow]{node_id}: skipped {count} item{'s' if count != 1 else ''}[/] (named above)"
        )
    failed = [node for node in result.failed if node not in result.skipped]
    not_run = [node for node in result.failed if node in result.skipped]
    if result.failed:
        verdict = f"[red]{len(failed)} node(s) failed:[/] {', '.join(failed)}"
        if not_run:
            verdict += f"; {len(not_run)} skipped after them: {', '.join(not_run)}"
        err.print(verdict)
    elif not quiet and not result.cancelled:
        err.print(f"[green]done[/] in {result.seconds:.2f}s")
