"""What is registered: node types, model architectures, socket types, and the plugins behind them.

One `Registry` is built per process by `nodeflow.plugins.load_registry()`; nothing here is
global. Ids of third-party plugins are namespaced `<plugin>.<name>`; built-ins are bare.
A second registration of an id is refused with an error naming both plugins.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from nodeflow.node import NodeType
from nodeflow.types import SocketType


@dataclass(frozen=True)
class Architecture:
    """A model architecture: how to recognise its state dict and how to rebuild it.

    `detect(state_dict)` answers whether the tensors have this architecture's layout;
    `build(state_dict, metadata)` returns a loaded model (with its hyperparameters read
    from the metadata or, for a bare state dict, from the tensor shapes). A `fallback`
    architecture (a catch-all detector such as spandrel's) is asked only after every
    other architecture has declined the tensors.
    """

    id: str
    detect: Callable[[dict[str, Any]], bool]
    build: Callable[[dict[str, Any], dict[str, str]], Any]
    doc: str = ""
    plugin: str = field(default="", compare=False)
    fallback: bool = False


@dataclass
class PluginRecord:
    """Where a plugin came from, what it registered, and what went wrong."""

    name: str
    source: str
    version: str = ""
    nodes: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    builtin: bool = False
    disabled: bool = False  # named in NODEFLOW_DISABLE_PLUGINS: found, not loaded

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "builtin": self.builtin,
            "disabled": self.disabled,
            "nodes": self.nodes,
            "architectures": self.architectures,
            "types": self.types,
            "errors": self.errors,
        }


class RegistrationError(Exception):
    """A registration was refused (duplicate id, wrong namespace, wrong object)."""


@dataclass
class Registry:
    """Node types, architectures and socket types by id, with their plugins' records."""

    nodes: dict[str, NodeType] = field(default_factory=dict)
    architectures: dict[str, Architecture] = field(default_factory=dict)
    types: dict[str, SocketType] = field(default_factory=dict)
    plugins: dict[str, PluginRecord] = field(default_factory=dict)
    described: bool = False
    """True for a registry read from the manifest: it validates and lists, but cannot run."""

    def node_type(self, type_id: str) -> NodeType | None:
        return self.nodes.get(type_id)

    def close_matches(self, type_id: str, limit: int = 3) -> list[str]:
        """Registered node ids that look like `type_id`, best first."""
        names = list(self.nodes)
        bare = {name.rsplit(".", 1)[-1]: name for name in names}
        found = difflib.get_close_matches(type_id, names, n=limit, cutoff=0.6)
        found += [bare[b] for b in difflib.get_close_matches(type_id, list(bare), n=limit)]
        return list(dict.fromkeys(found))[:limit]

    def qualified(self, record: PluginRecord, name: str, kind: str) -> str:
        """The id `name` gets when plugin `record` registers it."""
        if record.builtin:
            return name
        prefix = f"{record.name}."
        if name.startswith(prefix):
            return name
        if "." in name:
            raise RegistrationError(
                f"{kind} {name!r}: plugin {record.name!r} may only register ids under {prefix!r}"
            )
        return prefix + name

    def add_node(self, record: PluginRecord, node_type: NodeType) -> None:
        if not isinstance(node_type, NodeType):
            raise RegistrationError(
                f"register() takes a node declared with @node, got {type(node_type).__name__}"
            )
        type_id = self.qualified(record, node_type.id, "node")
        _refuse_duplicate(self.nodes, type_id, record.name, "node")
        try:
            node_type = replace(node_type, id=type_id).with_types(self.types)
        except ValueError as exc:
            raise RegistrationError(f"plugin {record.name!r}: {exc}") from None
        self.nodes[type_id] = replace(node_type, plugin=record.name)
        record.nodes.append(type_id)

    def add_architecture(self, record: PluginRecord, arch: Architecture) -> None:
        if not isinstance(arch, Architecture):
            raise RegistrationError(f"register() takes an Architecture, got {type(arch).__name__}")
        arch_id = self.qualified(record, arch.id, "architecture")
        _refuse_duplicate(self.architectures, arch_id, record.name, "architecture")
        self.architectures[arch_id] = replace(arch, id=arch_id, plugin=record.name)
        record.architectures.append(arch_id)

    def add_type(self, record: PluginRecord, socket_type: SocketType) -> None:
        if not isinstance(socket_type, SocketType):
            raise RegistrationError(
                f"register() takes a SocketType, got {type(socket_type).__name__}"
            )
        existing = self.types.get(socket_type.name)
        if existing is not None and existing != socket_type:
            owner = next(r.name for r in self.plugins.values() if socket_type.name in r.types)
            raise RegistrationError(
                f"type {socket_type.name!r} is already registered by plugin {owner!r}; "
                f"plugin {record.name!r} cannot register it again"
            )
        self.types[socket_type.name] = socket_type
        record.types.append(socket_type.name)


def _refuse_duplicate(table: dict[str, Any], key: str, plugin: str, kind: str) -> None:
    if key in table:
        raise RegistrationError(
            f"{kind} id {key!r} is already registered by plugin {table[key].plugin!r}; "
            f"plugin {plugin!r} cannot register it again"
        )


_default_loader: Callable[[], Registry] | None = None


def set_default_loader(loader: Callable[[], Registry]) -> None:
    """Name the function that gives the process's registry (`nodeflow.plugins` does)."""
    global _default_loader
    _default_loader = loader


def default_registry() -> Registry:
    """The process's registry, for code handed none (a checkpoint read from the cache).

    Code below the plugin loader (types, checkpoint I/O) asks here instead of importing
    the loader, so it never reaches the plugins by import.
    """
    if _default_loader is None:
        raise RuntimeError(
            "no registry is loaded: call nodeflow.plugins.load_registry() first, or pass one"
        )
    return _default_loader()
