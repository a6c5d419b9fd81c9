"""The `Model` value: a network plus what callers need to use it without knowing its code.

Like a spandrel descriptor, `ArchInfo` says what goes in and comes out (channels, scale,
value range), the size rules (multiple of, minimum) and whether tiling is safe, so the
inference nodes pad, tile and convert from the description alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

# The built-in purposes are "autoencoder", "image-to-image" and "discriminator"; plugins
# add their own (the transfer plugin's "features" and "classifier").
Purpose = str


@dataclass(frozen=True)
class ArchInfo:
    """What a loaded network is and how to feed it.

    `arch` is the registered architecture id; `hparams` rebuild the network with it.
    `task` names what the weights were trained to do ("colorize", "denoise", "superres",
    "edges2photo", "autoencode", ...) and decides how the `unet` node prepares inputs.
    `value_range` is the range the network reads and writes: (0, 1) or (-1, 1).
    `supports_half` / `supports_bfloat16` say whether the network gives sound results
    under fp16 / bf16 autocast (`--precision`); where it does not, running it at that
    precision is refused with a message rather than risking NaNs or garbage.
    """

    arch: str
    purpose: Purpose
    in_channels: int
    out_channels: int
    hparams: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    scale: int = 1
    size_multiple: int = 1
    min_size: int = 1
    tiling: bool = True
    value_range: tuple[float, float] = (0.0, 1.0)
    latent_shape: tuple[int, ...] = ()
    conditional: bool = False
    supports_half: bool = True
    supports_bfloat16: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "purpose": self.purpose,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "hparams": self.hparams,
            "task": self.task,
            "scale": self.scale,
            "size_multiple": self.size_multiple,
            "min_size": self.min_size,
            "tiling": self.tiling,
            "value_range": list(self.value_range),
            "latent_shape": list(self.latent_shape),
            "conditional": self.conditional,
            "supports_half": self.supports_half,
            "supports_bfloat16": self.supports_bfloat16,
            "extra": self.extra,
        }

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> ArchInfo:
        return cls(
            arch=data["arch"],
            purpose=data["purpose"],
            in_channels=int(data["in_channels"]),
            out_channels=int(data["out_channels"]),
            hparams=dict(data.get("hparams", {})),
            task=data.get("task", ""),
            scale=int(data.get("scale", 1)),
            size_multiple=int(data.get("size_multiple", 1)),
            min_size=int(data.get("min_size", 1)),
            tiling=bool(data.get("tiling", True)),
            value_range=tuple(data.get("value_range", (0.0, 1.0))),
            latent_shape=tuple(data.get("latent_shape", ())),
            conditional=bool(data.get("conditional", False)),
            supports_half=bool(data.get("supports_half", True)),
            supports_bfloat16=bool(data.get("supports_bfloat16", True)),
            extra=dict(data.get("extra", {})),
        )


@dataclass
class Model:
    """A network and its description; the value that travels on `Model` links."""

    net: nn.Module
    info: ArchInfo

    @property
    def arch(self) -> str:
        return self.info.arch

    def describe(self) -> str:
        task = f" {self.info.task}" if self.info.task else ""
        return (
            f"{self.info.arch}{task} model ({self.info.in_channels}->{self.info.out_channels} ch)"
        )
