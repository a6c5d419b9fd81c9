"""How a node type is declared: typed inputs, params, outputs and a docstring, in one block.

    @node(
        "add_noise",
        inputs={"image": Input(IMAGE)},
        outputs={"image": Output(IMAGE)},
        params={"sigma": Float(25.0, min=0, max=255, help="noise level on the 0-255 scale")},
    )
    def add_noise(image, *, sigma, ctx):
        "Add Gaussian noise."
        ...

The function body is only the work. How it is called depends on the node's mode:

- `map`: per-item. Streamed inputs arrive one mini-batch at a time (their tensors);
  the function returns the batch's outputs. Whole values (a model, a basis) and params
  arrive as they are.
- `source`: no streamed inputs, streamed outputs. Returns a `Stream` (or a tensor, which
  becomes a one-batch stream).
- `collect`: consumes whole streams (`Stream` objects, iterate them) and returns whole
  values: a PCA fit, a contact sheet, metrics, a trained model, files written.

A function that names a `ctx` parameter receives the run context (device, progress,
cancellation, item errors); see `nodeflow.engine.context.NodeContext`.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path as FilePath
from typing import Any, Literal

from nodeflow.memory import Footprint
from nodeflow.types import SocketType

Mode = Literal["map", "source", "collect"]
_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """A literal setting of a node, checked at validation.

    `kind` is one of int, float, bool, str, path, choice, size. A param whose default is
    `None` is optional; one without a default is required.
    """

    kind: str
    default: Any = _REQUIRED
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    fields: tuple[str, ...] = ()
    """For a text param that is a format pattern (`{name}-{index:04d}`): the fields it may
    use. Validation refuses a pattern that does not format with them."""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """A short human summary: kind, range or choices, default."""
        text = self.kind
        if self.choices:
            text = " | ".join(self.choices)
        elif self.min is not None or self.max is not None:
            low = "" if self.min is None else _fmt(self.min)
            high = "" if self.max is None else _fmt(self.max)
            text += f" {low}..{high}"
        if not self.required:
            text += f" = {self.default!r}"
        return text

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable for this param, or None when it is."""
        if value is None:
            return None if self.default is None else "a value is required"
        checker = _CHECKERS[self.kind]
        reason = checker(self, value)
        if reason is None and self.kind in ("int", "float", "size"):
            reason = self._check_range(value)
        return reason

    def _check_range(self, value: Any) -> str | None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if self.min is not None and v < self.min:
                return f"{v} is below the minimum {_fmt(self.min)}"
            if self.max is not None and v > self.max:
                return f"{v} is above the maximum {_fmt(self.max)}"
        return None

    def coerce(self, value: Any, base_dir: FilePath) -> Any:
        """The value a node function receives for this param.

        A path param arrives as a `pathlib.Path`, a relative one resolved against
        `base_dir` (the graph file's folder) and `~` expanded; other kinds as they are.
        """
        if self.kind != "path" or not isinstance(value, str | os.PathLike):
            return value
        path = FilePath(value).expanduser()
        return path if path.is_absolute() else base_dir / path

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "required": self.required, "help": self.help}
        if not self.required:
            data["default"] = self.default
        if self.min is not None:
            data["min"] = self.min
        if self.max is not None:
            data["max"] = self.max
        if self.choices:
            data["choices"] = list(self.choices)
        if self.fields:
            data["fields"] = list(self.fields)
        return data


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(_param: Param, value: Any) -> str | None:
    return None if _is_int(value) else f"expected a whole number, got {value!r}"


def _check_float(_param: Param, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {value!r}"
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    return None if finite else f"expected a finite number, got {value!r}"


def _check_bool(_param: Param, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _check_str(param: Param, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected text, got {value!r}"
    if param.fields:
        try:
            value.format(**dict.fromkeys(param.fields, 0))
        except (KeyError, IndexError, ValueError) as exc:
            fields = ", ".join(f"{{{f}}}" for f in param.fields)
            return (
                f"the pattern {value!r} does not work ({type(exc).__name__}: {exc}); it may "
                f"use the fields {fields}, with a format like {{{param.fields[-1]}:04d}}"
            )
    return None


def _check_path(_param: Param, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"expected a path, got {value!r}"
    return None


def _check_choice(param: Param, value: Any) -> str | None:
    if value in param.choices:
        return None
    return f"{value!r} is not one of {', '.join(param.choices)}"


def _check_size(_param: Param, value: Any) -> str | None:
    if _is_int(value):
        return None
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value):
        return None
    return f"expected a size: one whole number, or [height, width], got {value!r}"


_CHECKERS: dict[str, Callable[[Param, Any], str | None]] = {
    "int": _check_int,
    "float": _check_float,
    "bool": _check_bool,
    "str": _check_str,
    "path": _check_path,
    "choice": _check_choice,
    "size": _check_size,
}


def Int(default: Any = _REQUIRED, *, min: float | None = None, max: float | None = None,
        help: str = "") -> Param:  # fmt: skip
    """A whole-number param."""
    return Param("int", default, min, max, help=help)


def Float(default: Any = _REQUIRED, *, min: float | None = None, max: float | None = None,
          help: str = "") -> Param:  # fmt: skip
    """A number param."""
    return Param("float", default, min, max, help=help)


def Bool(default: Any = _REQUIRED, *, help: str = "") -> Param:
    """A true/false param."""
    return Param("bool", default, help=help)


def Str(default: Any = _REQUIRED, *, help: str = "", fields: Sequence[str] = ()) -> Param:
    """A text param; with `fields`, a format pattern that may use only those fields."""
    return Param("str", default, help=help, fields=tuple(fields))


def Path(default: Any = _REQUIRED, *, help: str = "") -> Param:
    """A file or folder param; the function gets a `pathlib.Path`, a relative one resolved
    against the graph file's folder."""
    return Param("path", default, help=help)


def Choice(choices: Sequence[str], default: Any = _REQUIRED, *, help: str = "") -> Param:
    """One of a fixed set of strings."""
    return Param("choice", default, choices=tuple(choices), help=help)


def Size(default: Any = _REQUIRED, *, min: float | None = 1, max: float | None = None,
         help: str = "") -> Param:  # fmt: skip
    """An image size: one number (square) or [height, width]."""
    return Param("size", default, min, max, help=help)


@dataclass(frozen=True)
class Input:
    """A typed input socket; an optional one may be left unlinked (the function gets None).

    Images read from files travel as 8-bit pixels until a node needs floats: an image input
    receives float32 in [0, 1] unless it says `uint8=True`, in which case it may also get
    uint8 B x C x H x W tensors (0..255) as they were decoded, and must handle both.

    `type` is a `SocketType` or the name of a registered one (`Input("Image")`), which is
    looked up when the plugin's node is registered.
    """

    type: SocketType | str
    optional: bool = False
    help: str = ""
    uint8: bool = False

    def __post_init__(self) -> None:
        _check_socket_type("Input", self.type)


@dataclass(frozen=True)
class Output:
    """A typed output socket; `type` is a `SocketType` or a registered type's name."""

    type: SocketType | str
    help: str = ""

    def __post_init__(self) -> None:
        _check_socket_type("Output", self.type)


def _check_socket_type(socket: str, type_: Any) -> None:
    if not isinstance(type_, SocketType | str):
        raise TypeError(
            f"{socket}() takes a socket type (IMAGE, MODEL, ... from nodeflow.api) or a "
            f'registered type\'s name such as "Image", got {type_!r}'
        )


@dataclass(frozen=True)
class NodeType:
    """A registered kind of node. Build one with the `node` decorator."""

    id: str
    fn: Callable[..., Any]
    inputs: dict[str, Input]
    outputs: dict[str, Output]
    params: dict[str, Param]
    doc: str
    mode: Mode | None  # None until registration when sockets name their types as text
    version: int = 1
    output_node: bool = False
    persist: bool = False
    fingerprint: Callable[[dict[str, Any]], str] | None = None
    inference: bool = True
    wants_ctx: bool = False
    writes: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    footprint: Footprint | None = None
    plugin: str = field(default="", compare=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function the node wraps, as it is (for unit tests and scripts)."""
        return self.fn(*args, **kwargs)

    @property
    def where(self) -> str:
        """The file and line the node's function is defined at, for error messages."""
        code = getattr(self.fn, "__code__", None)
        return f"{FilePath(code.co_filename).name}:{code.co_firstlineno}" if code else "?"

    def with_types(self, types: Mapping[str, SocketType]) -> NodeType:
        """This node with socket types given by name looked up in `types`.

        The mode is inferred here when the decorator could not (it had only names).
        Raises ValueError naming the node, its file and the unknown type names.
        """
        unknown = sorted(
            {s.type for s in [*self.inputs.values(), *self.outputs.values()]
             if isinstance(s.type, str) and s.type not in types}
        )  # fmt: skip
        if unknown:
            known = ", ".join(sorted(types))
            raise ValueError(
                f"node {self.id!r} ({self.where}) names socket type(s) "
                f"{', '.join(map(repr, unknown))}, which no plugin registers; use a "
                f"registered type (IMAGE from nodeflow.api, or one of: {known})"
            )

        def resolved(socket: Input | Output) -> Input | Output:
            if isinstance(socket.type, str):
                return replace(socket, type=types[socket.type])
            return socket

        inputs = {name: resolved(i) for name, i in self.inputs.items()}
        outputs = {name: resolved(o) for name, o in self.outputs.items()}
        mode = self.mode or _infer_mode(inputs, outputs)
        return replace(self, inputs=inputs, outputs=outputs, mode=mode)

    @property
    def summary(self) -> str:
        """The first line of the doc."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plugin": self.plugin,
            "version": self.version,
            "mode": self.mode,
            "doc": self.doc,
            "inputs": {
                name: {"type": i.type.name, "optional": i.optional, "help": i.help}
                for name, i in self.inputs.items()
            },
            "outputs": {
                name: {"type": o.type.name, "help": o.help} for name, o in self.outputs.items()
            },
            "params": {name: p.to_json() for name, p in self.params.items()},
        }


def _inferred_mode(inputs: dict[str, Input], outputs: dict[str, Output]) -> Mode | None:
    """The mode the sockets imply, or None while some name their type as text."""
    sockets = [*inputs.values(), *outputs.values()]
    if any(isinstance(s.type, str) for s in sockets):
        return None
    return _infer_mode(inputs, outputs)


def _infer_mode(inputs: dict[str, Input], outputs: dict[str, Output]) -> Mode:
    streamed_in = any(i.type.streamed for i in inputs.values())
    streamed_out = any(o.type.streamed for o in outputs.values())
    if streamed_in and outputs and all(o.type.streamed for o in outputs.values()):
        return "map"
    if not streamed_in and streamed_out:
        return "source"
    return "collect"


def node(
    id: str,
    *,
    inputs: dict[str, Input] | None = None,
    outputs: dict[str, Output] | None = None,
    params: dict[str, Param] | None = None,
    mode: Mode | None = None,
    version: int = 1,
    output_node: bool = False,
    persist: bool = False,
    fingerprint: Callable[[dict[str, Any]], str] | None = None,
    inference: bool = True,
    writes: dict[str, str] | None = None,
    names: tuple[str, ...] = (),
    reads: tuple[str, ...] = (),
    one_of: Sequence[Sequence[str]] = (),
    footprint: Footprint | None = None,
) -> Callable[[Callable[..., Any]], NodeType]:
    """Declare a node type from a function; see the module docstring.

    `version` enters the cache key: bump it when the node's results change. `output_node`
    marks nodes run by default (they write files or report). `persist` keeps results in
    the disk cache across processes. `fingerprint(params)` describes external state a
    source reads (file sizes and times) so the cache sees it change. `inference=False` is
    for nodes that train: they run with autograd on instead of under inference mode.
    `writes` names the path params a node writes to, each "folder" or "file"; `names` the
    params that choose its file names inside such a folder; `reads` the path params of
    image files it reads. Validation refuses two nodes writing one file, two nodes of a
    type writing into one folder with the same `names` values, and a folder written where
    the run reads images unless the writer's `allow_input_folder` is true (see
    `nodeflow.files.conflicts`). `one_of` lists groups of optional params of which exactly
    one must be set (resize: `size` or `scale`); validation says so. `footprint` says
    which params decide the size of the images the node makes, and validation refuses a
    batch bigger than the memory budget (`nodeflow.memory`).
    """
    inputs = inputs or {}
    outputs = outputs or {}
    params = params or {}

    def declare(fn: Callable[..., Any]) -> NodeType:
        clash = set(inputs) & set(params)
        if clash:
            raise ValueError(f"node {id!r}: {sorted(clash)} named both as input and param")
        if not (fn.__doc__ or "").strip():
            raise ValueError(f"node {id!r}: give the function a docstring; it is the node's help")
        grouped = {name for group in one_of for name in group}
        sized = {footprint.size, footprint.count, footprint.channels} if footprint else set()
        declared = set(writes or {}) | set(names) | set(reads) | grouped
        undeclared = (declared | {n for n in sized if isinstance(n, str)}) - set(params)
        if undeclared:
            raise ValueError(
                f"node {id!r}: writes/reads/one_of/footprint name {sorted(undeclared)}, not params"
            )
        signature = inspect.signature(fn)
        wanted = set(inputs) | set(params)
        missing = wanted - set(signature.parameters)
        if missing:
            raise ValueError(f"node {id!r}: the function takes no argument for {sorted(missing)}")
        return NodeType(
            id=id,
            fn=fn,
            inputs=dict(inputs),
            outputs=dict(outputs),
            params=dict(params),
            doc=inspect.cleandoc(fn.__doc__ or ""),
            mode=mode or _inferred_mode(inputs, outputs),
            version=version,
            output_node=output_node,
            persist=persist,
            fingerprint=fingerprint,
            inference=inference,
            wants_ctx="ctx" in signature.parameters,
            writes=dict(writes or {}),
            names=tuple(names),
            reads=tuple(reads),
            one_of=tuple(tuple(group) for group in one_of),
            footprint=footprint,
        )

    return declare
