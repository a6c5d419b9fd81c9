"""The `spandrel.community` architecture: spandrel detects and builds, nodeflow describes.

`detect` and `build` take the tensors nodeflow's weights-only reader found (no pickled
code ever runs: spandrel never opens the file). spandrel canonicalises them (unwrapping,
prefixes), finds the architecture and its hyperparameters from the tensor shapes, and
returns a descriptor; the descriptor becomes the model's `ArchInfo`: purpose, scale,
channels, size rules, tiling, and whether fp16 / bf16 are safe.

Licences: by default only spandrel's MAIN_REGISTRY is asked, whose architectures are all
permissively licensed (MIT, Apache-2.0, public domain). `NODEFLOW_SPANDREL_EXTRA_ARCHES=1`
adds spandrel_extra_arches (CodeFormer, DDColor, Restormer, SRFormer, ...), whose
licences are restrictive (mostly non-commercial), when the user has installed it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nodeflow.api import ArchInfo, Model, make_info

if TYPE_CHECKING:
    from spandrel import ArchRegistry, ModelDescriptor

ARCH_ID = "community"
QUALIFIED_ID = f"spandrel.{ARCH_ID}"
EXTRA_ARCHES_ENV = "NODEFLOW_SPANDREL_EXTRA_ARCHES"

PERMISSIVE = (
    "architecture code under a permissive licence (spandrel's main registry: MIT, "
    "Apache-2.0 or public domain); the weights' own terms are their author's"
)
RESTRICTIVE = (
    "architecture from spandrel_extra_arches, under a restrictive licence (mostly "
    "non-commercial): read it before any commercial use; the weights' own terms are "
    "their author's"
)
_TASKS = {"SR": "superres", "FaceSR": "face-superres", "Restoration": "restore"}


def extra_arches_enabled() -> bool:
    """Whether the user opted in to spandrel_extra_arches (restrictive licences)."""
    return os.environ.get(EXTRA_ARCHES_ENV, "").strip().lower() in ("1", "true", "yes")


def spandrel_registry() -> ArchRegistry:
    """spandrel's MAIN_REGISTRY, plus EXTRA_REGISTRY when the user opted in."""
    import spandrel

    if not extra_arches_enabled():
        return spandrel.MAIN_REGISTRY
    try:
        import spandrel_extra_arches
    except ImportError:
        raise ValueError(
            f"{EXTRA_ARCHES_ENV} asks for spandrel's extra architectures, but "
            "spandrel_extra_arches is not installed; their licences are restrictive (mostly "
            "non-commercial): read them, then `pip install spandrel_extra_arches`"
        ) from None
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def _canonical(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    import spandrel

    return spandrel.canonicalize_state_dict(dict(state_dict))


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether any of spandrel's architectures recognises the tensors."""
    canonical = _canonical(state_dict)
    return any(
        support.detect(canonical) for support in spandrel_registry().architectures("detection")
    )


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """The model spandrel builds from the tensors; nodeflow metadata, if any, is not needed.

    The weights alone decide the architecture and its hyperparameters, as spandrel reads
    them from the tensor shapes, so a file saved by `save_model` rebuilds the same way.
    """
    import spandrel

    if not state_dict:
        raise ValueError(
            "spandrel.community models are rebuilt from their weights; there is no untrained "
            "community model to create"
        )
    registry = spandrel_registry()
    try:
        descriptor = registry.load(_canonical(state_dict))
    except spandrel.UnsupportedModelError:
        raise ValueError("spandrel recognises none of its architectures in these weights") from None
    except Exception as exc:  # spandrel's loaders fail in many ways on damaged files.
        raise ValueError(
            f"spandrel took the weights for a known architecture but could not build it "
            f"({type(exc).__name__}: {exc}); the file may be damaged or of an unsupported variant"
        ) from None
    net = CommunityNet(descriptor)
    return Model(
        net,
        describe(descriptor, restrictive=descriptor.architecture.id not in spandrel.MAIN_REGISTRY),
    )


def describe(descriptor: ModelDescriptor, restrictive: bool) -> ArchInfo:
    """A spandrel descriptor as nodeflow's ArchInfo."""
    from spandrel import MaskedImageModelDescriptor, ModelTiling

    size = descriptor.size_requirements
    masked = isinstance(descriptor, MaskedImageModelDescriptor)
    architecture = descriptor.architecture
    derived = {
        "arch": QUALIFIED_ID,
        "purpose": "inpainting" if masked else "image-to-image",
        "in_channels": descriptor.input_channels,
        "out_channels": descriptor.output_channels,
        "hparams": {"architecture": architecture.id, "tags": list(descriptor.tags)},
        "task": "inpaint" if masked else _TASKS[descriptor.purpose],
        "scale": descriptor.scale,
        "size_multiple": size.multiple_of,
        "min_size": max(1, size.minimum),
        "tiling": descriptor.tiling is ModelTiling.SUPPORTED,
        "supports_half": descriptor.supports_half,
        "supports_bfloat16": descriptor.supports_bfloat16,
        "extra": {
            "licence": RESTRICTIVE if restrictive else PERMISSIVE,
            "spandrel": {
                "architecture": architecture.id,
                "name": architecture.name,
                "purpose": descriptor.purpose,
                "tiling": descriptor.tiling.name.lower(),
                "square": size.square,
            },
        },
    }
    return make_info(derived, {})


class CommunityNet(nn.Module):
    """A spandrel model as a plain network whose forward is spandrel's own call.

    spandrel's call adds what an architecture needs beyond the image (DnCNN's noise-level
    map, a square pad) and crops back. The network sits under `module`, as DataParallel
    puts it, so the state dict is spandrel's with the `module.` prefix that nodeflow's
    reader and spandrel both strip: a saved or cached copy rebuilds through `build`.
    """

    def __init__(self, descriptor: ModelDescriptor):
        super().__init__()
        self.module = descriptor.model
        self.descriptor = descriptor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spandrel import MaskedImageModelDescriptor

        if isinstance(self.descriptor, MaskedImageModelDescriptor):
            raise ValueError(
                f"this {self.descriptor.architecture.name} model inpaints: it needs a mask "
                "as well as the image, which no nodeflow node gives it yet"
            )
        return self.descriptor(x)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its weights; unpickling detects and builds it again."""
        return _from_weights, ({k: v.cpu() for k, v in self.state_dict().items()},)


def _from_weights(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    return build(state_dict, None).net
