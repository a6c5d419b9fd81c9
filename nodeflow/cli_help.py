"""`nodeflow nodes` and `nodeflow plugins` output for people."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from safetensors import safe_open

from nodeflow.node import NodeType
from nodeflow.registry import Registry


def node_table(registry: Registry) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("node")
    table.add_column("inputs")
    table.add_column("outputs")
    table.add_column("what it does")
    for type_id, node_type in sorted(registry.nodes.items()):
        inputs = ", ".join(
            f"{n}{'?' if i.optional else ''}:{i.type.name}" for n, i in node_type.inputs.items()
        )
        outputs = ", ".join(f"{n}:{o.type.name}" for n, o in node_type.outputs.items())
        table.add_row(type_id, inputs or "-", outputs or "-", node_type.summary)
    Console().print(table)
    Console().print(
        "\n[dim]? marks an optional input. `nodeflow nodes NAME` shows one node's params and doc.[/]"
    )


def node_detail(node_type: NodeType) -> str:
    lines = [
        f"{node_type.id}  (plugin {node_type.plugin}, version {node_type.version}, {node_type.mode})",
        "",
    ]
    lines += [node_type.doc, ""]
    if node_type.inputs:
        lines.append("inputs:")
        for name, socket in node_type.inputs.items():
            optional = ", optional" if socket.optional else ""
            lines.append(f"  {name:<14} {socket.type.name}{optional}  {socket.help}".rstrip())
    if node_type.outputs:
        lines.append("outputs:")
        for name, socket in node_type.outputs.items():
            lines.append(f"  {name:<14} {socket.type.name}  {socket.help}".rstrip())
    if node_type.params:
        lines.append("params:")
        for name, param in node_type.params.items():
            required = " (required)" if param.required else ""
            lines.append(f"  {name:<14} {param.describe()}{required}")
            if param.help:
                lines.append(f"  {'':<14} {param.help}")
    return "\n".join(lines)


def plugin_table(registry: Registry) -> None:
    console = Console()
    table = Table(box=None, header_style="bold")
    table.add_column("plugin")
    table.add_column("version")
    table.add_column("from")
    table.add_column("registered")
    table.add_column("status")
    for record in registry.plugins.values():
        parts = []
        if record.nodes:
            parts.append(f"{len(record.nodes)} nodes")
        if record.architectures:
            parts.append(f"{len(record.architectures)} architectures")
        if record.types:
            parts.append(f"{len(record.types)} types")
        status = "[red]" + "; ".join(record.errors) + "[/]" if record.errors else "[green]ok[/]"
        table.add_row(record.name, record.version, record.source, ", ".join(parts) or "-", status)
    console.print(table)


def shipped_models() -> list[dict[str, Any]]:
    """Name, file size and recorded ArchInfo of each checkpoint shipped in the package."""
    from nodeflow.models.checkpoint import METADATA_KEY, shipped_checkpoints

    found = []
    for name, path in shipped_checkpoints().items():
        with safe_open(str(path), framework="pt") as handle:
            info = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
        entry = {"name": name, "bytes": path.stat().st_size, "path": str(path), **info}
        found.append({**entry, "description": what_it_does(entry)})
    return found


def what_it_does(entry: dict[str, Any]) -> str:
    """One line on what a checkpoint does, from the ArchInfo fields it records."""
    task, extra = entry.get("task", ""), entry.get("extra", {})
    if entry.get("purpose") == "discriminator":
        judged = f"{task} " if task else ""
        return f"scores how real {judged}images look, per patch"
    if task == "colorize":
        return "colours gray images (predicts ab from Lab lightness)"
    if task == "denoise":
        sigma = extra.get("sigma")
        return "removes Gaussian noise" + (f" of sigma {sigma:g}" if sigma else "")
    if task == "superres":
        return f"enlarges images {entry.get('scale', '?')} times"
    if task == "edges2photo":
        return "turns edge maps into photos"
    if task == "autoencode":
        shape = "x".join(map(str, entry.get("latent_shape", []))) or "small"
        return f"encodes images to a {shape} latent and decodes them back"
    if entry.get("purpose") == "generator":
        size = entry.get("hparams", {}).get("size", "?")
        return f"makes new {size}x{size} images from random noise (a GAN generator)"
    return task or entry.get("purpose", "")


def training_summary(record: dict[str, Any] | None) -> str:
    """Steps and minutes from a trained model's record (time summed over resumed runs)."""
    if not record:
        return "-"
    return f"{record['steps']} steps, {record['seconds'] / 60:.0f} min"


def model_table(found: list[dict[str, Any]]) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("what it does", ratio=1)
    table.add_column("network", no_wrap=True)
    table.add_column("trained", no_wrap=True)
    table.add_column("size", no_wrap=True, justify="right")
    for entry in found:
        channels = f"{entry.get('in_channels', '?')}->{entry.get('out_channels', '?')}"
        table.add_row(
            entry["name"],
            entry["description"],
            f"{entry.get('arch', '?')} {channels}",
            training_summary(entry.get("extra", {}).get("training")),
            f"{entry['bytes'] / 1e6:.1f} MB",
        )
    Console().print(table)
