"""The package plugin's node: a constant number."""

from nodeflow.node import Float, Output, node
from nodeflow.types import FLOAT


@node("constant", outputs={"value": Output(FLOAT)}, params={"value": Float(1.0)})
def constant(*, value: float) -> float:
    """Give a fixed number."""
    return value
