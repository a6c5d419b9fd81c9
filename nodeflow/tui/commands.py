"""The command palette's node types: fuzzy search over every registered type, plugins too.

Choosing a type adds a node of it after the selected node (its inputs linked to the nearest
fitting outputs), or, from `t`, changes the selected node to that type in place. The editor's other actions reach the palette as system commands
(`NodeflowApp.get_system_commands`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from nodeflow.node import NodeType


class NodeTypeCommands(Provider):
    """`add <type>` for each node type, with the type's one-line summary as help."""

    verb = "add"

    def _types(self) -> list[NodeType]:
        registry = self.app.registry  # type: ignore[attr-defined]
        return sorted(registry.nodes.values(), key=lambda node_type: node_type.id)

    def _add(self, type_id: str) -> None:
        self.app.add_node(type_id)  # type: ignore[attr-defined]

    async def discover(self) -> Hits:
        for node_type in self._types():
            yield DiscoveryHit(
                f"{self.verb} {node_type.id}",
                partial(self._add, node_type.id),
                help=node_type.summary,
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        words = query.lower().split()
        for node_type in self._types():
            text = f"{self.verb} {node_type.id}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(self._add, node_type.id),
                    text=text,
                    help=node_type.summary,
                )
            elif words and all(word in node_type.doc.lower() for word in words):
                yield Hit(
                    0.1, text, partial(self._add, node_type.id), text=text, help=node_type.summary
                )


class ChangeTypeCommands(NodeTypeCommands):
    """`change to <type>` for each node type: the selected node becomes one, in place."""

    verb = "change to"

    def _add(self, type_id: str) -> None:
        self.app.change_node_type(type_id)  # type: ignore[attr-defined]
