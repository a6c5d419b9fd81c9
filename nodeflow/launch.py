"""`nodeflow run --nproc N`: the same command again in N processes under torchrun.

The first `nodeflow run` starts `python -m torch.distributed.run ... -m nodeflow.cli run ...`
with the same arguments; each process it starts sees WORLD_SIZE and runs the graph. Rank 0
runs the whole graph as one process would. The other ranks run only the training nodes
(and what they read), with a cache they read but never write, so every rank makes the same
decision about what is cached, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from nodeflow.engine.cache import Cache
from nodeflow.graph import Graph
from nodeflow.registry import Registry


def torchrun_command(
    argv: list[str], nproc: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None
) -> list[str]:
    """The torchrun command that runs `nodeflow <argv>` in `nproc` processes per machine."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes > 1 or rdzv_endpoint:
        if not rdzv_endpoint:
            raise ValueError(
                "--nnodes above 1 needs --rdzv-endpoint HOST:PORT, the address of one of "
                "the machines (the same on all of them)"
            )
        command += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
        ]
    else:
        command.append("--standalone")
    return [*command, "-m", "nodeflow.cli", *_without_launch_options(argv)]


LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")


def _without_launch_options(argv: list[str]) -> list[str]:
    """`argv` without the options torchrun already took (it would also misread them as
    abbreviations of its own)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            kept.append(arg)
    return kept


def relaunch(command: list[str]) -> int:
    """Run torchrun and wait; its exit code, or 130 when Ctrl-C or SIGTERM stopped it.

    SIGTERM is passed on to torchrun, which passes it to its processes (Ctrl-C reaches
    them all from the terminal); whichever
    of them sees it first, and whatever torchrun's own exit code then is, the run was
    stopped, and says so with 130.
    """
    process = subprocess.Popen(command)
    stopped = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True
        if signum == signal.SIGTERM:  # Ctrl-C reaches the whole process group by itself
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():  # once stopped, a late signal must not kill the exit
            signal.signal(sig, signal.SIG_IGN if stopped else handler)
    return 130 if stopped else code


def training_nodes(graph: Graph, registry: Registry, targets: list[str]) -> list[str]:
    """The nodes that train (collecting nodes that read a Dataset) among those `targets`
    (default: the graph's outputs) need."""
    from nodeflow import dag
    from nodeflow.engine.plan import default_targets

    wanted = dag.ancestors(targets or default_targets(graph, registry), graph.producers())
    trainers = []
    for node_id, spec in graph.nodes.items():
        node_type = registry.nodes[spec.type]
        reads_dataset = any(i.type.name == "Dataset" for i in node_type.inputs.values())
        trains = node_type.mode == "collect" and not node_type.inference and reads_dataset
        if trains and node_id in wanted:
            trainers.append(node_id)
    return trainers


class ReadOnlyCache(Cache):
    """The cache as rank 0 keeps it, read but never written (ranks above 0)."""

    def put(self, key: str, node_type: Any, outputs: dict[str, Any], seconds: float = 0.0) -> bool:
        return False

    def put_batch(self, key: str, index: int, node_type: Any, outputs: dict[str, Any]) -> bool:
        return False

    def complete_stream(self, key: str, batches: int, singles: dict[str, bool]) -> None:
        return None

    def put_sink(self, key: str, written: list[Path]) -> None:
        return None
