"""`nodeflow nodes`, `nodeflow plugins` and `nodeflow models` output for people."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from nodeflow.node import NodeType
from nodeflow.registry import Registry

SHIPPED_LICENCE = "shipped with nodeflow, under nodeflow's MIT licence"


def _print(*renderables: Any) -> None:
    """Print to the terminal at its width; piped, each row on one line, however long."""
    console = Console()
    if console.is_terminal:
        console.print(*renderables)
        return
    wide = Console(width=100_000, no_color=True)
    with wide.capture() as captured:
        wide.print(*renderables)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


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
    _print(
        table,
        "\n[dim]? marks an optional input. `nodeflow nodes NAME` shows one node's params and doc.[/]",
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
        status = "[green]ok[/]"
        if record.disabled:
            status = "[yellow]disabled by NODEFLOW_DISABLE_PLUGINS[/]"
        elif record.errors:
            status = "[red]" + "; ".join(record.errors) + "[/]"
        table.add_row(record.name, record.version, record.source, ", ".join(parts) or "-", status)
    _print(table)


def shipped_models() -> list[dict[str, Any]]:
    """Name, file size and recorded ArchInfo of each checkpoint shipped in the package."""
    from nodeflow.models.checkpoint import METADATA_KEY, shipped_checkpoints

    found = []
    for name, path in shipped_checkpoints().items():
        from safetensors import safe_open

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
    if task in ("superres", "face-superres"):
        faces = "faces in " if task == "face-superres" else ""
        return f"enlarges {faces}images {entry.get('scale', '?')} times"
    if task == "restore":
        return "restores images (noise, blur or compression artefacts, as it was trained)"
    if task == "inpaint":
        return "fills masked regions (inpainting)"
    if task == "edges2photo":
        return "turns edge maps into photos"
    if task == "autoencode":
        shape = "x".join(map(str, entry.get("latent_shape", []))) or "small"
        return f"encodes images to a {shape} latent and decodes them back"
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


def checkpoint_report(name: str, registry: Registry) -> dict[str, Any]:
    """What the checkpoint `name` (a path or a shipped model's name) is, as plain data."""
    from nodeflow.models.checkpoint import SHIPPED_FOLDER, load_model
    from nodeflow.models.file_kind import file_kind
    from nodeflow.nodes.models import resolve_checkpoint

    path = resolve_checkpoint(name)
    model = load_model(path, registry)
    info = model.info
    entry = info.to_metadata()
    shipped = path.resolve().parent == SHIPPED_FOLDER
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "format": file_kind(path) or "unknown",
        "architecture": info.hparams.get("architecture", info.arch),
        "nodeflow_arch": info.arch,
        "plugin": _plugin_name(registry, registry.architectures[info.arch].plugin),
        "description": what_it_does(entry),
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "licence": SHIPPED_LICENCE if shipped else info.extra.get("licence", ""),
        **entry,
    }


def checkpoint_text(report: dict[str, Any]) -> str:
    """`checkpoint_report` as aligned lines for a terminal."""
    precisions = (
        ["fp32"] + ["fp16"] * report["supports_half"] + ["bf16"] * report["supports_bfloat16"]
    )
    low, high = report["value_range"]
    hparams = {k: v for k, v in report["hparams"].items() if k != "architecture"}
    architecture = report["architecture"]
    if architecture != report["nodeflow_arch"]:
        architecture += f" (nodeflow architecture {report['nodeflow_arch']})"
    rows = [
        ("file", f"{report['path']} ({report['bytes'] / 1e6:.1f} MB, {report['format']})"),
        ("architecture", f"{architecture}, from {report['plugin']}"),
        ("settings", ", ".join(f"{k}={_setting(v)}" for k, v in hparams.items()) or "-"),
        ("what it does", f"{report['purpose']}: {report['description']}"),
        ("scale", f"{report['scale']}x"),
        ("channels", f"{report['in_channels']} in, {report['out_channels']} out"),
        ("parameters", f"{report['parameters']:,}"),
        ("image sizes", _size_rule(report["size_multiple"], report["min_size"])),
        ("tiling", "yes, for large images" if report["tiling"] else "no: sees each image whole"),
        ("precisions", ", ".join(precisions)),
        ("value range", f"{low:g} to {high:g}"),
        ("licence", report["licence"] or "not recorded: ask whoever trained it"),
    ]
    return "\n".join(f"{label:<13} {value}" for label, value in rows)


def _plugin_name(registry: Registry, plugin: str) -> str:
    record = registry.plugins.get(plugin)
    return "nodeflow itself" if record is not None and record.builtin else f"plugin {plugin}"


def _setting(value: Any) -> str:
    return "/".join(map(str, value)) if isinstance(value, list) else str(value)


def _size_rule(multiple: int, minimum: int) -> str:
    rules = []
    if multiple > 1:
        rules.append(f"padded to a multiple of {multiple}")
    if minimum > 1:
        rules.append(f"at least {minimum}x{minimum}")
    return "any" + (f" ({', '.join(rules)})" if rules else "")
