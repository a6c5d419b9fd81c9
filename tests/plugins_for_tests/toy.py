"""Small test-only nodes (ids `toy.<name>`), independent of the built-in image nodes.

Nodes that take a `log` path append one line per call of their function (the node id), so
tests can count real calls across runs without module-level state.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from nodeflow.node import Choice, Float, Input, Int, Output, Str, node
from nodeflow.node import Path as PathParam
from nodeflow.plugins import hookimpl
from nodeflow.types import FLOAT, IMAGE, Batch, Stream

LOG_HELP = "append the node id to this file on every call (for counting calls)"


def _log(log: str | None, ctx: Any) -> None:
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{ctx.node_id}\n")


@node(
    "numbers",
    outputs={"image": Output(IMAGE)},
    params={
        "count": Int(3, min=1, max=50, help="how many batches"),
        "batch_size": Int(2, min=1, max=16),
        "seed": Int(0),
        "fill": Float(None, help="a constant value instead of random ones"),
        "log": PathParam(None, help=LOG_HELP),
    },
)
def numbers(
    *, count: int, batch_size: int, seed: int, fill: float | None, log: str | None, ctx: Any
) -> Stream:
    """Yield `count` small random gray batches (batch_size x 1 x 4 x 4)."""
    _log(log, ctx)

    def produce() -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(seed)
        for index in range(count):
            data = torch.rand(batch_size, 1, 4, 4, generator=generator)
            if fill is not None:
                data = torch.full_like(data, fill)
            names = [f"{index:03d}-{i}" for i in range(batch_size)]
            yield Batch(data.to(ctx.device), names)

    return Stream(produce, total=count)


@node(
    "scale",
    inputs={"image": Input(IMAGE)},
    outputs={"image": Output(IMAGE)},
    params={
        "factor": Float(1.0, min=0, max=10, help="how much to scale by"),
        "mode": Choice(["multiply", "divide"], "multiply"),
        "log": PathParam(None, help=LOG_HELP),
    },
)
def scale(image: torch.Tensor, *, factor: float, mode: str, log: str | None, ctx: Any) -> Any:
    """Multiply (or divide) every value by `factor`."""
    _log(log, ctx)
    return image * factor if mode == "multiply" else image / factor


@node(
    "total",
    inputs={"image": Input(IMAGE)},
    outputs={"value": Output(FLOAT)},
    params={"log": PathParam(None, help=LOG_HELP)},
    output_node=True,
)
def total(image: Stream, *, log: str | None, ctx: Any) -> float:
    """Sum every value of every batch of the stream."""
    _log(log, ctx)
    return float(sum(batch.sum().item() for batch in image.tensors()))


@node(
    "offset",
    inputs={"value": Input(FLOAT)},
    outputs={"value": Output(FLOAT)},
    params={"amount": Float(0.0), "log": PathParam(None, help=LOG_HELP)},
)
def offset(value: float, *, amount: float, log: str | None, ctx: Any) -> float:
    """Add `amount` to a number."""
    _log(log, ctx)
    return value + amount


@node(
    "add",
    inputs={"a": Input(FLOAT), "b": Input(FLOAT, optional=True)},
    outputs={"value": Output(FLOAT)},
    params={"log": PathParam(None, help=LOG_HELP)},
    output_node=True,
)
def add(a: float, b: float | None, *, log: str | None, ctx: Any) -> float:
    """Add two numbers (b is optional and counts as 0)."""
    _log(log, ctx)
    return a + (b or 0.0)


@node(
    "fail",
    inputs={"image": Input(IMAGE)},
    outputs={"value": Output(FLOAT)},
    params={"message": Str("toy failure"), "log": PathParam(None, help=LOG_HELP)},
    output_node=True,
)
def fail(image: Stream, *, message: str, log: str | None, ctx: Any) -> float:
    """Always raise ValueError(message), after reading the stream."""
    _log(log, ctx)
    for _batch in image:
        pass
    raise ValueError(message)


@node(
    "sum_one_then_other",
    inputs={"first": Input(IMAGE), "second": Input(IMAGE)},
    outputs={"value": Output(FLOAT)},
)
def sum_one_then_other(first: Stream, second: Stream) -> float:
    """Sum every value of `first`, then every value of `second` (not in lockstep)."""
    total = sum(float(batch.sum()) for batch in first.tensors())
    return total + sum(float(batch.sum()) for batch in second.tensors())


@node(
    "crash",
    inputs={"image": Input(IMAGE)},
    outputs={"image": Output(IMAGE)},
    params={"at": Int(0, min=0, help="the batch index to raise at")},
)
def crash(image: torch.Tensor, *, at: int, ctx: Any) -> torch.Tensor:
    """Pass batches through, and raise RuntimeError at batch index `at`."""
    if ctx.batch_index >= at:
        raise RuntimeError(f"crashed at batch {ctx.batch_index}")
    return image


def _file_state(params: dict[str, Any]) -> str:
    path = Path(params["file"])
    if not path.is_file():
        return "missing"
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@node(
    "read_number",
    outputs={"value": Output(FLOAT)},
    params={
        "file": PathParam(help="a text file holding one number"),
        "log": PathParam(None, help=LOG_HELP),
    },
    fingerprint=_file_state,
)
def read_number(*, file: str, log: str | None, ctx: Any) -> float:
    """Read one number from a text file."""
    _log(log, ctx)
    return float(Path(file).read_text(encoding="utf-8"))


NODES = (numbers, scale, total, offset, add, fail, crash, read_number, sum_one_then_other)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in NODES:
        register(node_type)
