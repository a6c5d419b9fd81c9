"""Checkpoint I/O: save and load models, build fresh ones, and what architectures share.

A nodeflow checkpoint is a safetensors file whose metadata key "nodeflow" holds the JSON
of the model's `ArchInfo`, so the file alone rebuilds its model. A `.pth`/`.pt` file (a
bare state dict, as the pix2pix/CycleGAN reference implementation saves its
`*_net_G.pth` / `*_net_D.pth`) is read only with `torch.load(weights_only=True)` and its
architecture found by asking each registered architecture's `detect` in turn.

Architectures build through `rebuild`: with nodeflow metadata the hyperparameters come
from it; without, from the tensor shapes. An architecture's `build` given an *empty* state
dict and metadata naming hyperparameters returns a freshly initialised network: that is
how `new_model` creates untrained models for trainers, for any registered architecture
that follows the convention (all built-in ones do).

The helpers architectures share live here too: reference-style norm layers, the
N(0, 0.02) weight init, and strict state-dict loading with errors people can act on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from nodeflow.atomic import atomic_path
from nodeflow.models.file_kind import SAFETENSORS, TORCH_LEGACY, TORCH_ZIP, file_kind
from nodeflow.models.model import ArchInfo, Model
from nodeflow.registry import default_registry

if TYPE_CHECKING:
    from nodeflow.registry import Architecture, Registry

METADATA_KEY = "nodeflow"
NORMS = ("batch", "instance", "none")
SHIPPED_FOLDER = Path(__file__).resolve().parent.parent / "checkpoints"
_STRUCTURAL = ("arch", "purpose", "in_channels", "out_channels", "hparams")
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
# Where state dicts are found inside wrapping dicts, and the key prefixes stripped from them:
# spandrel's order (an EMA copy of the weights, the better one, before the raw ones), then
# the reference implementation's.
_WRAPPER_KEYS = (
    "model_state_dict",
    "state_dict",
    "params_ema",
    "params-ema",
    "params",
    "model",
    "net",
    "netG",
    "netD",
)
_PREFIXES = ("module.", "netG.")
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


# -- shared by the architectures ---------------------------------------------------------------


def norm_layer(kind: str, channels: int) -> nn.Module:
    """A norm layer as the reference builds it: batch (affine, running stats), instance
    (no affine weights, no running stats) or none (an identity holding no tensors)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Whether convolutions followed by this norm carry a bias (the reference's rule)."""
    return norm == "instance"


def norm_from_keys(state_dict: Mapping[str, Any], norm_key: str, conv_key: str) -> str:
    """Which norm a reference-layout state dict used, from one norm and one conv position.

    Batch norm leaves affine weights at the norm position; instance norm (affine-free)
    leaves nothing there but gives the preceding convolution a bias; no norm leaves neither.
    """
    if f"{norm_key}.weight" in state_dict:
        return "batch"
    return "instance" if f"{conv_key}.bias" in state_dict else "none"


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """The reference recipe: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.InstanceNorm2d) and module.affine:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)


def check_hparams(arch: str, hparams: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """`defaults` updated by `hparams`; unknown names are an error listing the known ones."""
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ValueError(
            f"architecture {arch!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(defaults)}"
        )
    merged = {**defaults, **hparams}
    norm = merged.get("norm")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"{arch}: unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    return merged


def make_info(derived: Mapping[str, Any], fields: Mapping[str, Any]) -> ArchInfo:
    """An ArchInfo from what the architecture derives and what the caller adds.

    The structural fields (arch, purpose, channels, hparams) always come from `derived`;
    the others (task, scale, value range, size rules, latent shape, extra, ...) default to
    `derived` and may be overridden by `fields`.
    """
    merged = {**derived, **{k: v for k, v in fields.items() if k not in _STRUCTURAL}}
    unknown = sorted(set(merged) - set(ArchInfo.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown model info field(s) {', '.join(unknown)}")
    merged["value_range"] = tuple(float(v) for v in merged.get("value_range", (0.0, 1.0)))
    merged["latent_shape"] = tuple(int(v) for v in merged.get("latent_shape", ()))
    return ArchInfo(**merged)


def spec_from_metadata(metadata: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The nodeflow description stored in a checkpoint's metadata, or None for a bare file."""
    if not metadata or METADATA_KEY not in metadata:
        return None
    try:
        spec = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the checkpoint's nodeflow metadata is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or "arch" not in spec:
        raise ValueError("the checkpoint's nodeflow metadata does not name an architecture")
    return spec


def rebuild(
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None,
    create: Callable[..., Model],
    infer_hparams: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]],
    bare_fields: Callable[[dict[str, Any]], dict[str, Any]],
) -> Model:
    """The body of every built-in `build`: hparams from metadata or shapes, then weights.

    `create(hparams, init=..., **fields)` makes the network; `infer_hparams` reads
    hyperparameters from tensor shapes; `bare_fields(hparams)` gives the ArchInfo fields
    a bare (reference) checkpoint gets. An empty state dict gives a freshly initialised model.
    """
    spec = spec_from_metadata(metadata)
    if spec is not None:
        hparams = dict(spec.get("hparams", {}))
        fields = {k: v for k, v in spec.items() if k not in _STRUCTURAL}
    else:
        if not state_dict:
            raise ValueError("nothing to build from: no tensors and no nodeflow metadata")
        hparams = infer_hparams(state_dict)
        fields = bare_fields(hparams)
    if state_dict:
        check_fit(lambda: create(hparams, init=False, **fields), state_dict, spec is not None)
    model = create(hparams, init=not state_dict, **fields)
    if state_dict:
        load_weights(model, state_dict)
    return model


def check_fit(
    make: Callable[[], Model], state_dict: Mapping[str, torch.Tensor], from_metadata: bool
) -> None:
    """Refuse tensors that do not fit the network `make` builds, before it allocates anything.

    The network is built on the meta device (shapes, no memory), so metadata that claims
    a network far larger than the file's tensors (ngf 1024, num_downs 8: 55 GB) is refused
    by comparing shapes, not by trying to allocate it.
    """
    try:
        with torch.device("meta"):
            skeleton = make()
    except (NotImplementedError, RuntimeError):
        return  # a network that needs real tensors to build; load_weights checks it after
    problems = weight_problems(skeleton.net.state_dict(), state_dict)
    if problems:
        said = "the checkpoint's metadata describes" if from_metadata else "the tensors look like"
        raise ValueError(
            f"{said} architecture {skeleton.arch!r} with hyperparameters "
            f"{skeleton.info.hparams}, but the weights do not fit it: {problems}"
        )


def load_weights(model: Model, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load `state_dict` into `model.net` strictly; a mismatch says exactly what differs.

    Two differences of older reference checkpoints are forgiven, as the reference itself
    does: running statistics stored for affine-free instance norms (dropped) and batch
    norms saved before `num_batches_tracked` existed (filled with the fresh counter).
    """
    expected = model.net.state_dict()
    problems = weight_problems(expected, state_dict)
    if problems:
        raise ValueError(
            f"the weights do not fit architecture {model.arch!r} with hyperparameters "
            f"{model.info.hparams}: {problems}"
        )
    model.net.load_state_dict(_forgiven(expected, state_dict), strict=True)


def weight_problems(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
) -> str:
    """What keeps `state_dict` from loading into a network with `expected` tensors; "" if none."""
    weights = _forgiven(expected, state_dict)
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [
        f"{k} (file {_shape(weights[k])}, model {_shape(expected[k])})"
        for k in expected
        if k in weights and weights[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shape {_some(wrong_shape)}")
    return "; ".join(problems)


def _forgiven(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state_dict` without stray norm statistics, with missing batch counters filled in."""
    weights = {
        key: value
        for key, value in state_dict.items()
        if key in expected or not key.endswith(_NORM_STATS)
    }
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = value
    return weights


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def _some(items: list[str], limit: int = 4) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# -- reading files -------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and metadata of a .safetensors, .pth or .pt file.

    Nothing in the file can run code: safetensors holds only tensors, and .pth files are
    read with `torch.load(weights_only=True)`. A state dict wrapped in a dict (under
    `params_ema`, `state_dict`, ...) is unwrapped and a `module.` prefix on every key
    stripped, the way spandrel does. A file that is something else (an image, a web page)
    is reported as what it is.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no checkpoint file at {str(file)!r}")
    suffix = file.suffix.lower()
    if suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(file)
    elif suffix in TORCH_SUFFIXES:
        state_dict, metadata = _read_torch_file(file), {}
    else:
        raise ValueError(
            f"{str(file)!r} is not a checkpoint nodeflow reads{_really(file)}: use a "
            ".safetensors file, or a .pth/.pt file holding a state dict"
        )
    return _strip_prefixes(state_dict), metadata


def _really(file: Path) -> str:
    """ ", it is a PNG image" and the like, or "" when the file's kind is not recognised."""
    try:
        kind = file_kind(file)
    except OSError:
        return ""
    return f"; it is {kind}" if kind else ""


def _read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(file), device="cpu"), metadata
    except (SafetensorError, OSError) as exc:
        kind = file_kind(file)
        if kind in (TORCH_ZIP, TORCH_LEGACY):
            hint = f"it is {kind}, not safetensors: name it {file.stem}.pth"
        elif kind is not None and kind != SAFETENSORS:
            hint = f"it is {kind}, not a checkpoint"
        else:
            hint = f"the file is damaged or incomplete ({exc})"
        raise ValueError(f"cannot read the safetensors file {str(file)!r}: {hint}") from None


def _read_torch_file(file: Path) -> dict[str, torch.Tensor]:
    kind = file_kind(file)
    if kind == SAFETENSORS:
        raise ValueError(
            f"{str(file)!r} is {kind}, not a PyTorch checkpoint: name it {file.stem}.safetensors"
        )
    if kind not in (None, TORCH_ZIP, TORCH_LEGACY):
        raise ValueError(f"{str(file)!r} is {kind}, not a checkpoint")
    try:
        content = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals and corrupt files come as many kinds.
        raise ValueError(
            f"cannot read {str(file)!r} as plain weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); nodeflow reads .pth files only "
            "with torch.load(weights_only=True), so files that pickle whole objects are refused"
        ) from None
    state_dict = _unwrap(content)
    if state_dict is None:
        raise ValueError(
            f"{str(file)!r} holds no state dict (a mapping of names to tensors); "
            f"found {type(content).__name__}"
        )
    return state_dict


def _unwrap(content: Any) -> dict[str, torch.Tensor] | None:
    """A state dict: `content` itself, or found under a usual key or a dict's only key."""
    if not isinstance(content, Mapping):
        return None
    tensors = {k: v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(content):
        return dict(tensors)
    inner_keys = [key for key in _WRAPPER_KEYS if key in content]
    if len(content) == 1:
        inner_keys.append(next(iter(content)))
    for key in inner_keys:
        inner = content[key]
        if isinstance(inner, Mapping) and inner:
            found = _unwrap(inner)
            if found is not None:
                return found
    return None


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without a prefix every key shares (`module.` from DataParallel, `netG.`)."""
    for prefix in _PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


# -- finding the architecture ---------------------------------------------------------------------


def _registry(registry: Registry | None) -> Registry:
    return registry if registry is not None else default_registry()


def architecture(arch_id: str, registry: Registry | None = None) -> Architecture:
    """The registered architecture `arch_id`; an error names the ones that are registered."""
    known = _registry(registry).architectures
    if arch_id not in known:
        raise ValueError(
            f"no architecture {arch_id!r} is registered (is its plugin installed?); "
            f"registered: {', '.join(known) or 'none'}"
        )
    return known[arch_id]


def detect_architecture(
    state_dict: Mapping[str, torch.Tensor], registry: Registry | None = None, what: str = ""
) -> Architecture:
    """The first registered architecture whose `detect` claims these tensors.

    Fallback architectures (catch-all detectors such as the spandrel plugin's) are asked
    only after every other one has declined.
    """
    known = _registry(registry).architectures
    ordered = sorted(known.values(), key=lambda arch: arch.fallback)
    failures = []
    for arch in ordered:
        try:
            if arch.detect(dict(state_dict)):
                return arch
        except Exception as exc:  # a detect that trips over foreign keys does not claim them
            failures.append(f"{arch.id} could not check ({type(exc).__name__}: {exc})")
    keys = list(state_dict)
    sample = ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
    notes = [f"{arch.id}, asked last, covers {arch.doc}" for arch in ordered if arch.fallback]
    if not notes:
        notes.append(
            "community files (ESRGAN, SwinIR, SCUNet, ...) load once the nodeflow-spandrel "
            "plugin is installed (docs/checkpoints.md)"
        )
    raise ValueError(
        f"no registered architecture recognises {what or 'these weights'}; tried "
        f"{', '.join(arch.id for arch in ordered) or 'none'}; its first keys: "
        f"{sample or 'none'}; " + "; ".join(failures + notes)
    )


def build_from(
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, str],
    registry: Registry | None = None,
    what: str = "",
) -> Model:
    """A model from tensors and metadata: the architecture the metadata names, else detected."""
    if not state_dict:
        raise ValueError(f"{what or 'the checkpoint'} holds no tensors")
    spec = spec_from_metadata(metadata)
    if spec is not None:
        arch = architecture(spec["arch"], registry)
    else:
        arch = detect_architecture(state_dict, registry, what)
    return arch.build(state_dict, metadata)


# -- the public surface ---------------------------------------------------------------------------


def load_model(path: str | os.PathLike[str], registry: Registry | None = None) -> Model:
    """Load a checkpoint (.safetensors with or without nodeflow metadata, .pth, .pt).

    The model comes back on the CPU, in eval mode. `registry` defaults to the process's.
    """
    state_dict, metadata = read_checkpoint(path)
    try:
        model = build_from(state_dict, metadata, registry, what=f"the file {str(path)!r}")
    except ValueError as exc:
        message = str(exc)
        if str(path) not in message:
            message = f"{str(path)!r}: {message}"
        raise ValueError(message) from None
    model.net.eval()
    return model


def save_model(model: Model, path: str | os.PathLike[str]) -> Path:
    """Write `model` as safetensors with its ArchInfo in the metadata, atomically.

    A path without a suffix gets `.safetensors`; another suffix is an error (nodeflow
    writes only safetensors). Returns the path written.
    """
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(".safetensors")
    if target.suffix.lower() != ".safetensors":
        raise ValueError(
            f"nodeflow saves models as safetensors; name the file {target.stem}.safetensors "
            f"instead of {target.name}"
        )
    tensors, metadata = model_to_tensors(model)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return target


def model_to_tensors(model: Model) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's weights (contiguous, on the CPU) and metadata, for files and the cache."""
    tensors = {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in model.net.state_dict().items()
    }
    return tensors, {METADATA_KEY: json.dumps(model.info.to_metadata())}


def model_from_tensors(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str], registry: Registry | None = None
) -> Model:
    """The inverse of `model_to_tensors`; the model is put where the tensors are, in eval mode."""
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    model = build_from(tensors, metadata, registry, what="a cached model")
    model.net.to(device).eval()
    return model


def new_model(
    arch_id: str,
    hparams: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    **info_fields: Any,
) -> Model:
    """A freshly initialised (untrained) model of a registered architecture, in train mode.

    `hparams` are the architecture's hyperparameters (defaults fill the rest);
    `info_fields` set ArchInfo fields the architecture cannot know: task, value_range,
    scale, conditional, extra (JSON-serialisable: it is saved in the checkpoint), ...
    For example
    `new_model("unet", {"in_channels": 1, "out_channels": 2, "ngf": 16}, task="colorize")`.
    """
    arch = architecture(arch_id, registry)
    spec = {"arch": arch_id, "hparams": dict(hparams or {}), **info_fields}
    model = arch.build({}, {METADATA_KEY: json.dumps(spec)})
    model.net.train()
    return model


def shipped_checkpoints() -> dict[str, Path]:
    """The checkpoints shipped inside the package, by name (the file stem)."""
    if not SHIPPED_FOLDER.is_dir():
        return {}
    return {path.stem: path for path in sorted(SHIPPED_FOLDER.glob("*.safetensors"))}
