"""The whole plugin contract: three hooks, each taking a `register` callback.

A plugin module marks its implementations with `hookimpl` (also exported by
`nodeflow.api`); `nodeflow.plugins` finds and loads plugins and calls these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "nodeflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hooks a plugin may implement. Each takes a `register` callback."""

    @hookspec
    def register_types(self, register: Callable[[Any], None]) -> None:
        """Register socket types: call `register(SocketType(...))` for each."""

    @hookspec
    def register_nodes(self, register: Callable[[Any], None]) -> None:
        """Register node types: call `register(node_type)` for each `@node` function."""

    @hookspec
    def register_architectures(self, register: Callable[[Any], None]) -> None:
        """Register model architectures: call `register(Architecture(...))` for each."""
