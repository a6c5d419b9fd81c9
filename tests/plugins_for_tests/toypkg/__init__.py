"""A plugin written as a package folder; its node lives in a submodule (ids `toypkg.<name>`)."""

from collections.abc import Callable
from typing import Any

from nodeflow.plugins import hookimpl

from .constants import constant


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(constant)
