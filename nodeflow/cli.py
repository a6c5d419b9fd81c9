"""The `nodeflow` command. Imports of torch and the engine happen inside commands, so
`nodeflow --help` answers at once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from nodeflow.graph import Graph
    from nodeflow.registry import Registry

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _registry() -> Registry:
    """The registry with runnable nodes (imports every plugin, and torch)."""
    from nodeflow.plugins import load_registry

    return load_registry()


def _described_registry() -> Registry:
    """The registry as its manifest describes it: enough to validate and list, no torch."""
    from nodeflow.manifest import load_described_registry

    return load_described_registry()


def _load(path: str, registry: Registry, overrides: tuple[str, ...] = ()) -> Graph:
    """Read a graph and apply overrides, or print every problem and exit 2.

    Validation is left to `Executor.run`, which does it once before running.
    """
    from nodeflow.graph import Graph, GraphFileError

    try:
        graph = Graph.load(path)
        graph.apply_overrides(list(overrides))
    except GraphFileError as exc:
        _print_problems(path, exc.all_problems(registry))
        sys.exit(EXIT_INVALID)
    return graph


def _print_problems(path: str, problems: list[Any]) -> None:
    click.secho(
        f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", fg="red", err=True
    )
    for problem in problems:
        click.echo(f"  {problem.format(path)}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nodeflow")
def main() -> None:
    """Build and run image-synthesis node graphs with PyTorch.

    Graph files (TOML or JSON) name nodes, their params and the links between them.
    Start with `nodeflow nodes` to see what exists and `nodeflow run GRAPH` to run one.
    """


@main.command()
@click.argument("graph_file", type=click.Path(dir_okay=False))
@click.option("--output-root", type=click.Path(file_okay=False),
              help="Refuse every write outside DIR (default for a graph taken from an image: "
              "the current folder).")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="NODE.PARAM=VALUE",
              help="Override a param without editing the file (repeatable).")  # fmt: skip
@click.option("--only", "targets", multiple=True, metavar="NODE",
              help="Run only what these nodes need (repeatable); default: every output node.")  # fmt: skip
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")  # fmt: skip
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="Compute precision (autocast below fp32).")  # fmt: skip
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing node or bad file.")
@click.option("--no-cache", is_flag=True, help="Recompute everything; read and write no cache.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and results.")
@click.option("--events", type=click.Choice(["jsonl"]),
              help="Write every run event as a JSON line on stdout, for scripts.")  # fmt: skip
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Print the Python traceback of a failing node (for plugin authors).")  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's threads; ray: folder passes on Ray Data (docs/scale.md).")  # fmt: skip
@click.option("--ray-address", envvar="RAY_ADDRESS", metavar="ADDR",
              help="A Ray cluster to join (also RAY_ADDRESS); default: start a local runtime.")  # fmt: skip
@click.option("--ray-workers", type=click.IntRange(min=1), metavar="N",
              help="CPUs of the local Ray runtime and most actors per model stage.")  # fmt: skip
@click.option("--ray-gpus-per-worker", type=click.FloatRange(min=0), default=0.0, metavar="F",
              help="GPUs each Ray worker that runs a model asks for (0.5: two share one).")  # fmt: skip
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train under torch DDP with N processes on this machine (torchrun).")  # fmt: skip
@click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Machines that train together (with --nproc per machine).")  # fmt: skip
@click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True,
              help="This machine's number among --nnodes.")  # fmt: skip
@click.option("--rdzv-endpoint", metavar="HOST:PORT",
              help="torchrun's rendezvous: one machine's address, the same on all.")  # fmt: skip
def run(
    graph_file: str,
    output_root: str | None,
    overrides: tuple[str, ...],
    targets: tuple[str, ...],
    device: str,
    precision: str,
    fail_fast: bool,
    no_cache: bool,
    quiet: bool,
    events: str | None,
    show_traceback: bool,
    engine: str,
    ray_address: str | None,
    ray_workers: int | None,
    ray_gpus_per_worker: float,
    nproc: int,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
) -> None:
    """Run GRAPH_FILE: everything its output nodes need, reusing cached results.

    GRAPH_FILE may be a PNG or TIFF written by save_images: the graph it carries runs, its
    relative paths resolve against the current folder, and it writes only under the
    current folder unless --output-root says otherwise.

    Ctrl-C (or SIGTERM) stops at the next batch or training step; a training node saves
    a checkpoint it resumes from next time. A second signal while that checkpoint is being
    written waits for it; a third stops at once.
    """
    from nodeflow import launch
    from nodeflow.cli_progress import ProgressView, print_results, traceback_hint
    from nodeflow.engine.cache import Cache
    from nodeflow.engine.context import CancelToken
    from nodeflow.engine.device import DeviceError
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.ray_engine import RayOptions
    from nodeflow.graph import GraphFileError
    from nodeflow.training import distributed

    if (nproc > 1 or nnodes > 1) and "WORLD_SIZE" not in os.environ:
        try:
            command = launch.torchrun_command(sys.argv[1:], nproc, nnodes, node_rank, rdzv_endpoint)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        sys.exit(launch.relaunch(command))
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise click.UsageError("--engine ray needs Ray: pip install 'nodeflow[ray]'")
    registry = _registry()
    graph = _load(graph_file, registry, overrides)
    follower = not distributed.is_main()
    if distributed.world_size() > 1:
        local_rank = os.environ.get("LOCAL_RANK", "0")
        if device == "auto" and _cuda_available():
            device = f"cuda:{local_rank}"
        if follower:  # ranks above 0 train alongside rank 0 and write nothing
            targets = tuple(launch.training_nodes(graph, registry, list(targets)))
            quiet, events = True, None
    cache_type = launch.ReadOnlyCache if follower else Cache
    root = Path(output_root) if output_root else Path.cwd() if graph.image else None
    try:
        executor = Executor(
            registry, cache_type(enabled=not no_cache), device=device, precision=precision,
            fail_fast=fail_fast, output_root=root, engine=engine,
            ray=RayOptions(ray_address, ray_workers, ray_gpus_per_worker),
        )  # fmt: skip
    except DeviceError as exc:
        raise click.UsageError(str(exc)) from None
    distributed.join(executor.device)
    if follower and not targets:  # nothing trains: rank 0 runs the graph alone
        distributed.leave()
        sys.exit(0)

    cancel = CancelToken()
    signals = 0

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal signals
        signals += 1
        cancel.cancel()
        if signals == 1:
            click.secho(
                "\nstopping at the next batch or training step (a training saves its checkpoint "
                "first); signal twice more to stop at once",
                err=True,
                fg="yellow",
            )
        elif signals >= 3:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    view = ProgressView(
        quiet=quiet or events is not None, fail_fast=fail_fast, cancel=cancel,
        show_traceback=show_traceback,
    )  # fmt: skip
    handler = view.handle
    if events == "jsonl":

        def handler(event: Any) -> None:
            view.handle(event)
            click.echo(json.dumps(event.to_json(), default=str))

    try:
        with view:
            result = executor.run(
                graph, targets=list(targets) or None, on_event=handler, cancel=cancel
            )
    except GraphFileError as exc:
        _print_problems(graph_file, exc.problems)
        sys.exit(EXIT_INVALID)
    except KeyboardInterrupt:
        click.secho("stopped; no partial output files were left behind", err=True, fg="yellow")
        sys.exit(EXIT_CANCELLED)
    finally:
        for sig, handler in previous.items():
            # After a stop signal the process is leaving, its outputs clean: a late second
            # signal must not kill it mid-exit (Python restores the default handler then).
            signal.signal(sig, signal.SIG_IGN if signals else handler)
        distributed.leave()
    if follower:
        sys.exit(0 if result.ok or result.cancelled else EXIT_FAILED)
    if events is None:
        print_results(graph, registry, result, quiet=quiet, skipped=view.skipped)
    hint = traceback_hint(view.untraced)
    if hint:
        click.secho(hint, err=True, fg="yellow")
    if result.cancelled:
        click.secho("cancelled; no partial output files were left behind", err=True, fg="yellow")
        sys.exit(EXIT_CANCELLED)
    if not result.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("graph_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def validate(graph_files: tuple[str, ...], as_json: bool) -> None:
    """Check graph files and report every problem at once (exit 2 if any)."""
    from nodeflow.graph import Graph, GraphFileError

    registry = _described_registry()
    report: dict[str, list[Any]] = {}
    for path in graph_files:
        try:
            problems = Graph.load(path).validate(registry)
        except GraphFileError as exc:
            problems = exc.all_problems(registry)
        report[path] = problems
    if as_json:
        click.echo(
            json.dumps({p: [x.to_json() for x in probs] for p, probs in report.items()}, indent=2)
        )
    else:
        for path, problems in report.items():
            if problems:
                _print_problems(path, problems)
            else:
                click.secho(f"{path}: ok", fg="green")
    if any(report.values()):
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def nodes(name: str | None, as_json: bool) -> None:
    """List node types, or show one in full (inputs, outputs, params, doc)."""
    from nodeflow.cli_help import node_detail, node_table

    registry = _described_registry()
    if name is not None:
        node_type = registry.node_type(name)
        if node_type is None:
            close = registry.close_matches(name)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise click.UsageError(f"no node type {name!r}{hint}")
        click.echo(json.dumps(node_type.to_json(), indent=2) if as_json else node_detail(node_type))
        return
    if as_json:
        click.echo(json.dumps([n.to_json() for n in registry.nodes.values()], indent=2))
    else:
        node_table(registry)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List plugins: where each came from, what it registered, and any error."""
    from nodeflow.cli_help import plugin_table

    registry = _described_registry()
    if as_json:
        click.echo(json.dumps([p.to_json() for p in registry.plugins.values()], indent=2))
    else:
        plugin_table(registry)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--file", "checkpoint", metavar="PATH",
              help="Say what one checkpoint is (a file, or a shipped model's name).")  # fmt: skip
def models(as_json: bool, checkpoint: str | None) -> None:
    """List the checkpoints shipped with nodeflow: load_model takes their names.

    With --file, load one checkpoint (nodeflow's, the pix2pix/CycleGAN reference's, or a
    community file through the nodeflow-spandrel plugin) and say what it is: architecture,
    task, scale, channels, parameters, size rules, precisions and licence where known.
    """
    from nodeflow.cli_help import checkpoint_report, checkpoint_text, model_table, shipped_models

    if checkpoint is not None:
        try:
            report = checkpoint_report(checkpoint, _registry())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps(report, indent=2) if as_json else checkpoint_text(report))
        return
    found = shipped_models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no models are shipped in this installation; `make models` trains them")
    else:
        model_table(found)


@main.command("graph-of")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the graph to this .toml or .json file instead of printing it.")  # fmt: skip
def graph_of(image: str, output: str | None) -> None:
    """Print the graph that made IMAGE (a PNG or TIFF written by save_images), as TOML."""
    from nodeflow.graph import Graph, GraphFileError

    try:
        graph = Graph.from_image(Path(image))
    except GraphFileError as exc:
        _print_problems(image, exc.problems)
        sys.exit(EXIT_INVALID)
    if output is None:
        click.echo(graph.to_toml(), nl=False)
        return
    if Path(output).suffix.lower() not in (".toml", ".json"):
        raise click.UsageError(f"name the graph file .toml or .json, not {output!r}")
    graph.save(output)
    click.echo(f"wrote the graph of {image} to {output}")


@main.command()
@click.argument("graph_file", required=False, type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")  # fmt: skip
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="Compute precision (autocast below fp32).")  # fmt: skip
def edit(graph_file: str | None, device: str, precision: str) -> None:
    """Edit and run GRAPH_FILE in the terminal UI (a new graph if it is not given or not there).

    GRAPH_FILE may be a PNG or TIFF written by save_images: its graph opens unsaved, and
    its runs write only under the current folder.
    """
    from pathlib import Path

    from nodeflow.engine.device import DeviceError, resolve_device
    from nodeflow.graph import GraphFileError
    from nodeflow.tui.app import NodeflowApp

    try:
        resolve_device(device)
    except DeviceError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        app = NodeflowApp(
            Path(graph_file) if graph_file else None, device=device, precision=precision
        )
    except GraphFileError as exc:
        _print_problems(graph_file or "", exc.problems)
        sys.exit(EXIT_INVALID)
    app.run()


@main.command("export-python")
@click.argument("graph_file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the script to this file (default: print it).")  # fmt: skip
def export_python(graph_file: str, output: str | None) -> None:
    """Write GRAPH_FILE as a Python script that builds it with nodeflow.Graph and runs it.

    The script runs from any folder: its relative paths resolve against GRAPH_FILE's
    folder, as `nodeflow run` resolves them.
    """
    from nodeflow.atomic import write_text_atomic
    from nodeflow.builder import to_script

    registry = _registry()
    graph = _load(graph_file, registry)
    problems = graph.validate(registry)
    if problems:
        _print_problems(graph_file, problems)
        sys.exit(EXIT_INVALID)
    script = to_script(graph, registry, Path(output) if output else None)
    if output is None:
        click.echo(script, nl=False)
        return
    write_text_atomic(Path(output), script)
    click.echo(f"wrote {output}", err=True)


@main.group()
def cache() -> None:
    """Inspect or clear the on-disk result cache."""


_KINDS = {
    "results": "whole results (bases, models, metrics)",
    "streams": "per-item batches",
    "sinks": "records of written files",
    "work": "training work folders",
    "temporary": "files left by killed runs",
}


@cache.command("info")
def cache_info() -> None:
    """Show where the cache is and what it holds, kind by kind."""
    from nodeflow.engine.cache import Cache

    store = Cache()
    usage = store.disk_usage()
    total = sum(size for _, size in usage.values())
    click.echo(f"cache folder  {store.folder}")
    for kind, (count, size) in usage.items():
        click.echo(f"{kind:<12}  {count:>6} entries  {size / 1e6:>9.1f} MB  {_KINDS[kind]}")
    click.echo(
        f"{'total':<12}  {sum(c for c, _ in usage.values()):>6} entries  {total / 1e6:>9.1f} MB"
    )
    click.echo(f"limit         {store.max_bytes / 1e9:.1f} GB for results and streams "
               "(NODEFLOW_CACHE_SIZE), least recently used evicted first")  # fmt: skip


@cache.command("clear")
def cache_clear() -> None:
    """Delete everything the cache made, training work folders included."""
    from nodeflow.engine.cache import Cache

    store = Cache()
    removed = store.clear_disk()
    click.echo(f"removed {removed} entries from {store.folder}")


@main.group()
def plugin() -> None:
    """Write plugins: `nodeflow plugin new NAME` starts one (see docs/plugins.md)."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "folder", type=click.Path(file_okay=False),
              help="Where to write it (default: ./nodeflow-NAME); must be new or empty.")  # fmt: skip
def plugin_new(name: str, folder: str | None) -> None:
    """Write a ready plugin distribution NAME: one node, one architecture, a test, a README.

    It installs as it is (pip install -e DIR) and passes its own test (pytest DIR).
    """
    from nodeflow.scaffold import new_plugin

    try:
        target = new_plugin(name, Path(folder) if folder else None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote the plugin {name!r} to {target}")
    click.echo(f"  pip install -e {target}     then: nodeflow plugins, pytest {target}")


if __name__ == "__main__":
    main()
