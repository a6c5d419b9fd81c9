"""Plugin hooks and plugin loading.

The whole plugin contract is the three hook specs in `nodeflow.hooks`. Plugins come from three places,
loaded in this order: nodeflow's built-in node modules (registered exactly like any other
plugin), distributions with an entry point in group `nodeflow`, and the modules in the
folders named by `NODEFLOW_PLUGIN_PATH`. `NODEFLOW_DISABLE_PLUGINS=a,b` skips plugins by
name. A plugin that fails to import or register is recorded with its error; the rest load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from nodeflow.hooks import PROJECT, HookSpecs, hookimpl
from nodeflow.registry import PluginRecord, RegistrationError, Registry, set_default_loader

__all__ = ["BUILTIN_PLUGINS", "build_registry", "hookimpl", "load_registry", "reset_registry"]

BUILTIN_PLUGINS = (
    "nodeflow.nodes.builtin_types",
    "nodeflow.nodes.io",
    "nodeflow.nodes.transforms",
    "nodeflow.nodes.pca",
    "nodeflow.nodes.report",
    "nodeflow.nodes.architectures",
    "nodeflow.nodes.models",
    "nodeflow.nodes.training",
    "nodeflow.nodes.gan",
    "nodeflow.nodes.swd",
)


_HOOKS: tuple[tuple[str, str], ...] = (
    ("register_types", "add_type"),
    ("register_nodes", "add_node"),
    ("register_architectures", "add_architecture"),
)


def _disabled() -> set[str]:
    return {name.strip() for name in os.environ.get("NODEFLOW_DISABLE_PLUGINS", "").split(",")}


_NODEFLOW = Path(__file__).resolve().parent


def _error_text(exc: BaseException) -> str:
    """The error and where it happened: the plugin's own line, not nodeflow's.

    An error nodeflow raises (a node declared without a docstring, say) is named at the
    deepest line outside nodeflow, the plugin's line that called it; other errors at
    their last line.
    """
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames and _in_nodeflow(frames[-1].filename):
        theirs = [f for f in frames if not (_in_nodeflow(f.filename) or f.filename[0] == "<")]
        frames = theirs or frames
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _in_nodeflow(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(_NODEFLOW)


def _entry_point_modules() -> list[tuple[PluginRecord, Callable[[], ModuleType]]]:
    found = []
    for entry in importlib.metadata.entry_points(group=PROJECT):
        dist = entry.dist
        source = f"entry point {entry.value}" + (f" in {dist.name}" if dist else "")
        record = PluginRecord(entry.name, source, version=dist.version if dist else "")
        found.append((record, entry.load))
    return found


def _path_modules() -> list[tuple[PluginRecord, Callable[[], ModuleType]]]:
    found = []
    for folder in filter(None, os.environ.get("NODEFLOW_PLUGIN_PATH", "").split(os.pathsep)):
        root = Path(folder).expanduser()
        if not root.is_dir():
            record = PluginRecord(root.name, f"NODEFLOW_PLUGIN_PATH {root}")
            record.errors.append(f"NODEFLOW_PLUGIN_PATH names {root}, which is not a folder")
            found.append((record, None))
            continue
        for path in sorted(root.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.suffix == ".py" or (path / "__init__.py").is_file():
                record = PluginRecord(path.stem, f"file {path}")
                found.append((record, _file_loader(path)))
    return found


def _file_loader(path: Path) -> Callable[[], ModuleType]:
    def load() -> ModuleType:
        name = f"nodeflow_local_plugins.{path.stem}"
        if path.is_dir():
            spec = importlib.util.spec_from_file_location(
                name, path / "__init__.py", submodule_search_locations=[str(path)]
            )
        else:
            spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module

    return load


def _builtin_modules() -> list[tuple[PluginRecord, Callable[[], ModuleType]]]:
    from nodeflow import __version__

    found = []
    for module_name in BUILTIN_PLUGINS:
        record = PluginRecord(module_name, "built in", version=__version__, builtin=True)
        found.append((record, lambda m=module_name: importlib.import_module(m)))
    return found


def build_registry() -> Registry:
    """Import every plugin, call its hooks one plugin at a time, and record what happened."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(HookSpecs)
    registry = Registry()
    disabled = _disabled()
    candidates = _builtin_modules() + _entry_point_modules() + _path_modules()
    loaded: list[tuple[PluginRecord, ModuleType]] = []
    broken: set[str] = set()  # plugins whose hook raised: their later hooks are skipped
    for record, load in candidates:
        if record.name in disabled and not record.builtin:
            record.disabled = True
            registry.plugins.setdefault(record.name, record)
            continue
        if record.name in registry.plugins:
            first = registry.plugins[record.name].source
            record.errors.append(f"a plugin named {record.name!r} is already loaded from {first}")
            registry.plugins[f"{record.name} ({record.source})"] = record
            continue
        registry.plugins[record.name] = record
        if load is None:
            continue
        try:
            module = load()
            manager.register(module, name=record.name)
        except Exception as exc:
            record.errors.append(f"failed to load: {_error_text(exc)}")
            continue
        loaded.append((record, module))

    _record_unknown_hooks(manager, loaded)
    for hook_name, method in _HOOKS:
        impls = {
            impl.plugin_name: impl for impl in getattr(manager.hook, hook_name).get_hookimpls()
        }
        for record, _module in loaded:
            impl = impls.get(record.name)
            if impl is None or record.name in broken:
                continue
            if not _call_hook(record, hook_name, impl.function, getattr(registry, method)):
                broken.add(record.name)
    return registry


def _record_unknown_hooks(
    manager: pluggy.PluginManager, loaded: list[tuple[PluginRecord, ModuleType]]
) -> None:
    """A hook implementation nodeflow has no spec for (a misspelt name) is that plugin's
    error, named with the closest real hook: what pluggy's `check_pending` would refuse."""
    records = {record.name: record for record, _ in loaded}
    real = [name for name, _ in _HOOKS]
    for hook_name, caller in vars(manager.hook).items():
        if getattr(caller, "spec", True) is not None:
            continue
        close = difflib.get_close_matches(hook_name, real, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (the hooks: {', '.join(real)})"
        for impl in caller.get_hookimpls():
            record = records.get(impl.plugin_name)
            if record is not None:
                record.errors.append(f"{hook_name!r} is not a nodeflow hook{hint}")


def _call_hook(
    record: PluginRecord,
    hook_name: str,
    function: Callable[..., Any],
    add: Callable[[PluginRecord, Any], None],
) -> bool:
    """Run one plugin's hook; keep what it registered unless the hook itself raised.

    A refused registration (a duplicate id) is recorded and the others are kept.
    Returns False when the hook raised.
    """
    staged: list[Any] = []
    try:
        function(register=staged.append)
    except Exception as exc:
        record.errors.append(f"{hook_name} failed: {_error_text(exc)}")
        return False
    for item in staged:
        try:
            add(record, item)
        except RegistrationError as exc:
            record.errors.append(str(exc))
    return True


_registry: Registry | None = None


def load_registry() -> Registry:
    """The process's registry, built once on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded registry, so the next `load_registry()` looks at plugins anew."""
    global _registry
    _registry = None


set_default_loader(load_registry)
