"""The error a failing node becomes: what failed, where, on what inputs, and the traceback."""

from __future__ import annotations

import traceback as tb
from pathlib import Path

_ENGINE = Path(__file__).parent


class NodeError(Exception):
    """A node raised while running; the message names the node, its type and its inputs.

    `traceback` is the node's own Python traceback (`nodeflow run --traceback` prints it,
    and `NodeFailed` events carry it), so a plugin author sees the line that failed.
    """

    def __init__(self, node_id: str, type_id: str, cause: BaseException, inputs: str = ""):
        self.node_id = node_id
        self.type_id = type_id
        self.cause = cause
        reason = str(cause) or type(cause).__name__
        text = f"node {node_id!r} ({type_id}) failed: {reason}"
        if inputs:
            text += f"\n  inputs: {inputs}"
        self.traceback = _own_traceback(cause)
        super().__init__(text)


class OutputError(TypeError):
    """A node returned something that does not fit its declared outputs."""


def _own_traceback(cause: BaseException) -> str:
    """The traceback from the node's own code on: the engine's frames above it are left out."""
    frames = cause.__traceback__
    while frames is not None and Path(frames.tb_frame.f_code.co_filename).parent == _ENGINE:
        frames = frames.tb_next
    if frames is None:
        frames = cause.__traceback__
    if frames is None:
        return ""
    return "".join(tb.format_exception(type(cause), cause, frames))
