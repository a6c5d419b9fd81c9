"""Running a graph from Python: `nodeflow.run(graph)` and the `Result` it returns.

The result is indexed by node handle or id, then by output name. A whole value (a metric,
a model, a basis) comes back as it is; a streamed output (images, latents, scores) comes
back whole, every batch concatenated, which suits the small data of a notebook. For a big
folder iterate `result.stream(node, output)` instead: it yields one `Batch` at a time
(running the stream's nodes again as it goes) and never holds the whole folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeflow.builder import Graph as BuilderGraph
from nodeflow.builder import NodeHandle
from nodeflow.graph import Graph

if TYPE_CHECKING:
    from nodeflow.engine.events import Event
    from nodeflow.engine.executor import Executor, RunResult
    from nodeflow.registry import Registry
    from nodeflow.types import Stream

NodeRef = NodeHandle | str


def run(
    graph: Graph,
    *,
    device: str = "auto",
    precision: str = "fp32",
    cache: bool | str | Path = True,
    on_event: Callable[[Event], None] | None = None,
    only: list[NodeRef] | None = None,
    fail_fast: bool = False,
) -> Result:
    """Validate `graph`, run it, and return every node's outputs.

    `device`: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps";
    `precision`: "fp32", "bf16" or "fp16". `cache`: True for the user's cache folder (as
    `nodeflow run`), False to compute everything afresh, or a folder. Runs with the same
    device, precision and cache share a memory cache: collecting nodes (fits, trained
    models, metrics) whose params and inputs did not change are not computed again, in a
    notebook's next run too. `on_event` receives every run event (node
    started, progress, finished, failed). `only` runs just what these nodes need (by
    default every node runs). Raises `GraphFileError` listing the problems of an
    invalid graph; a node that fails does not raise here: see `Result.ok`.
    """
    chosen = graph.registry if isinstance(graph, BuilderGraph) else None
    registry = chosen if chosen is not None and not chosen.described else _process_registry()
    executor = _executor(registry, device, precision, cache, fail_fast)
    targets = [_node_id(n) for n in only] if only else list(graph.nodes)
    return Result(executor.run(graph, targets=targets, on_event=on_event))


def _process_registry() -> Registry:
    from nodeflow.plugins import load_registry

    return load_registry()


_executors: dict[tuple[Any, ...], Executor] = {}


def _executor(
    registry: Registry, device: str, precision: str, cache: bool | str | Path, fail_fast: bool
) -> Executor:
    """The executor of these settings, kept for the process so its memory cache is reused."""
    from nodeflow.engine.cache import Cache, default_cache_dir
    from nodeflow.engine.executor import Executor

    folder = default_cache_dir() if cache is True or cache is False else Path(cache)
    folder = folder.expanduser().resolve()
    key = (id(registry), device, precision, cache is not False, folder, fail_fast)
    if key not in _executors or _executors[key].registry is not registry:
        store = Cache(folder, enabled=cache is not False)
        _executors[key] = Executor(
            registry, store, device=device, precision=precision, fail_fast=fail_fast
        )
    return _executors[key]


def _node_id(node: NodeRef) -> str:
    return node.id if isinstance(node, NodeHandle) else node


class NodeFailedError(RuntimeError):
    """The outputs of a node that failed (or was skipped) were asked for."""


class Result:
    """The outputs of one run: `result[node][output]`, `result.stream(node, output)`."""

    def __init__(self, run_result: RunResult):
        self.run_result = run_result
        self.ok = run_result.ok
        self.seconds = run_result.seconds
        self.failed = dict(run_result.failed)  # node id -> why
        self.cancelled = run_result.cancelled

    def __getitem__(self, node: NodeRef) -> NodeOutputs:
        return NodeOutputs(_node_id(node), self._outputs(_node_id(node)))

    def __contains__(self, node: NodeRef) -> bool:
        return _node_id(node) in self.run_result.outputs

    def stream(self, node: NodeRef, output: str | None = None) -> Stream:
        """A streamed output to iterate batch by batch (`for batch in ...`: `.data`, `.names`).

        `output` may be left out when the node has one output.
        """
        from nodeflow.types import Stream

        node_id = _node_id(node)
        outputs = self._outputs(node_id)
        name = output if output is not None else _only_output(node_id, outputs)
        value = NodeOutputs(node_id, outputs).raw(name)
        if not isinstance(value, Stream):
            raise TypeError(f"{node_id}.{name} is a whole value, not a stream: use result[...]")
        return value

    def _outputs(self, node_id: str) -> dict[str, Any]:
        if node_id in self.failed:
            raise NodeFailedError(self.failed[node_id])
        if node_id not in self.run_result.outputs:
            ran = ", ".join(self.run_result.outputs) or "none"
            raise KeyError(f"the run has no outputs of node {node_id!r}; nodes that ran: {ran}")
        return self.run_result.outputs[node_id]

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {', '.join(self.failed)}"
        return f"<nodeflow result: {len(self.run_result.outputs)} nodes, {state}>"


def _only_output(node_id: str, outputs: Mapping[str, Any]) -> str:
    if len(outputs) != 1:
        raise KeyError(f"node {node_id!r} has outputs {', '.join(outputs)}: name one")
    return next(iter(outputs))


class NodeOutputs(Mapping[str, Any]):
    """One node's outputs by name; a streamed one comes back whole (batches concatenated)."""

    def __init__(self, node_id: str, outputs: dict[str, Any]):
        self.node_id = node_id
        self._values = outputs

    def raw(self, name: str) -> Any:
        """The output as the engine holds it (a `Stream` for streamed outputs)."""
        if name not in self._values:
            names = ", ".join(self._values) or "none"
            raise KeyError(f"node {self.node_id!r} has no output {name!r}; its outputs: {names}")
        return self._values[name]

    def __getitem__(self, name: str) -> Any:
        from nodeflow.types import Stream

        value = self.raw(name)
        return concatenate(value) if isinstance(value, Stream) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def concatenate(stream: Stream) -> Any:
    """A stream's batches as one value: tensors, latents and scores joined along the batch.

    Batches of different image sizes cannot be joined: they come back as a list of tensors.
    Data of other kinds comes back joined by its type's `cat`, or as a list.
    """
    import torch

    from nodeflow.types import Latent, Scores

    parts = [batch.data for batch in stream]
    if not parts:
        return []
    first = parts[0]
    if isinstance(first, torch.Tensor):
        same = all(p.shape[1:] == first.shape[1:] for p in parts)
        return torch.cat(parts) if same else parts
    if isinstance(first, Latent):
        return Latent(torch.cat([p.tensor for p in parts]), first.source)
    if isinstance(first, Scores):
        maps = [p.patch_map for p in parts]
        patch_map = torch.cat(maps) if all(m is not None for m in maps) else None
        return Scores(torch.cat([p.score for p in parts]), patch_map)
    joiner = getattr(type(first), "cat", None)
    return joiner(parts) if callable(joiner) else parts
