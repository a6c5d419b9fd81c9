"""DCGAN-style unconditional generator and spectrally normalised discriminator, 32-128 px.

Generator (Radford et al. 2016): z -> a linear projection to width x 4 x 4, batch norm,
ReLU; then one 4x4 stride-2 transposed conv (batch norm, ReLU) per doubling up to
`size`, halving the width down to `ngf` at the last one; a 3x3 conv to RGB and tanh.
Its outputs are in [-1, 1].

Discriminator: one 4x4 stride-2 conv per halving from `size` down to 4x4 (widths
`ndf`, doubling, capped at ndf * 8; LeakyReLU 0.2; no norm layers), then a 4x4 valid
conv to one logit. Every conv carries spectral normalization (Miyato et al. 2018), which
keeps the discriminator Lipschitz and lets it train on few images without blowing up.
The logit map is 1x1 at `size`; larger images give a map of overlapping size x size
patches, which is how `discriminator_score` reads it. Its weights start as N(0, 1):
spectral normalization makes their scale irrelevant to what the network computes, and at
unit scale Adam's learning rate is the relative size of a step, as with the style-based
generator's equalized learning rate, so one `lr` suits both networks.

The generator exposes the interface every nodeflow GAN generator has (see
`nodeflow.models.stylegan` for the style-based one): `z_dim`, `mapping(z, truncation)`
to the latent the synthesis reads (here z itself, pulled towards 0 by `truncation`), and
`synthesis(latent, noise)` (here no noise inputs: `noise` is ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from nodeflow.models.checkpoint import check_hparams, init_weights, make_info, rebuild
from nodeflow.models.model import Model

GENERATOR_ID = "dcgan_generator"
DISCRIMINATOR_ID = "dcgan_discriminator"
SIZES = (32, 64, 128)
GENERATOR_DEFAULTS: dict[str, Any] = {"z_dim": 128, "size": 64, "ngf": 32, "out_channels": 3}
DISCRIMINATOR_DEFAULTS: dict[str, Any] = {"in_channels": 3, "size": 64, "ndf": 32}


def doublings(size: int) -> int:
    """How many times a 4x4 map doubles to reach `size` (a power of two, 32 to 128)."""
    if size not in SIZES:
        raise ValueError(f"GAN image sizes are {', '.join(map(str, SIZES))}; got {size}")
    return int(math.log2(size // 4))


def _width(base: int, level: int) -> int:
    return base * min(2**level, 8)


class DCGANGenerator(nn.Module):
    """z (B x z_dim) -> images B x out_channels x size x size in [-1, 1]."""

    def __init__(self, z_dim: int = 128, size: int = 64, ngf: int = 32, out_channels: int = 3):
        super().__init__()
        ups = doublings(size)
        self.z_dim = z_dim
        top = _width(ngf, ups)
        self.start = (top, 4, 4)
        self.project = nn.Sequential(nn.Linear(z_dim, top * 16, bias=False))
        layers: list[nn.Module] = [nn.BatchNorm2d(top), nn.ReLU()]
        for level in range(ups, 0, -1):
            narrower = _width(ngf, level - 1)
            layers += [
                nn.ConvTranspose2d(_width(ngf, level), narrower, 4, 2, 1, bias=False),
                nn.BatchNorm2d(narrower),
                nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(ngf, out_channels, 3, padding=1)

    def mapping(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """The latent the synthesis reads: z scaled towards the mean (0) by `truncation`."""
        return z * truncation

    def synthesis(self, latent: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        x = self.project(latent).view(len(latent), *self.start)
        return torch.tanh(self.to_rgb(self.blocks(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


class DCGANDiscriminator(nn.Module):
    """Images B x C x H x W in [-1, 1] -> logits B x 1 x (H/size*...) (1x1 at `size`)."""

    def __init__(self, in_channels: int = 3, size: int = 64, ndf: int = 32):
        super().__init__()
        downs = doublings(size)
        layers: list[nn.Module] = []
        width = in_channels
        for level in range(downs):
            wider = _width(ndf, level)
            layers += [spectral_norm(nn.Conv2d(width, wider, 4, 2, 1)), nn.LeakyReLU(0.2)]
            width = wider
        layers.append(spectral_norm(nn.Conv2d(width, 1, 4, 1, 0)))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create_generator(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A DCGAN generator model; outputs in [-1, 1]."""
    hp = check_hparams(GENERATOR_ID, hparams or {}, GENERATOR_DEFAULTS)
    net = DCGANGenerator(**hp)
    if init:
        init_weights(net)
    derived = generator_info(GENERATOR_ID, hp, (hp["z_dim"],))
    return Model(net, make_info(derived, fields))


def generator_info(arch: str, hp: dict[str, Any], latent_shape: tuple[int, ...]) -> dict:
    """The ArchInfo fields every GAN generator derives from its hyperparameters."""
    return {
        "arch": arch,
        "purpose": "generator",
        "in_channels": 0,
        "out_channels": hp["out_channels"],
        "hparams": hp,
        "task": "generate",
        "min_size": hp["size"],
        "tiling": False,
        "value_range": (-1.0, 1.0),
        "latent_shape": latent_shape,
    }


def create_discriminator(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A spectrally normalised DCGAN discriminator model; reads [-1, 1]."""
    hp = check_hparams(DISCRIMINATOR_ID, hparams or {}, DISCRIMINATOR_DEFAULTS)
    net = DCGANDiscriminator(**hp)
    if init:
        init_weights(net, gain=1.0)
    derived = {
        "arch": DISCRIMINATOR_ID,
        "purpose": "discriminator",
        "in_channels": hp["in_channels"],
        "out_channels": 1,
        "hparams": hp,
        "min_size": hp["size"],
        "tiling": False,
        "value_range": (-1.0, 1.0),
    }
    return Model(net, make_info(derived, fields))


# -- recognising bare state dicts ------------------------------------------------------------------


def _conv_weights(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[torch.Tensor]:
    return [
        tensor
        for key, tensor in state_dict.items()
        if key.startswith(prefix) and key.endswith("weight") and tensor.dim() == 4
    ]


def detect_generator(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """`project.0.weight`, `blocks.*` and `to_rgb.*` keys only."""
    return (
        "project.0.weight" in state_dict
        and "to_rgb.weight" in state_dict
        and all(key.startswith(("project.", "blocks.", "to_rgb.")) for key in state_dict)
    )


def infer_generator(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """z size from the projection, widths from the RGB conv, size from the upsamplings."""
    rgb = state_dict["to_rgb.weight"]
    ups = len(_conv_weights(state_dict, "blocks."))
    return {
        "z_dim": int(state_dict["project.0.weight"].shape[1]),
        "size": 4 * 2**ups,
        "ngf": int(rgb.shape[1]),
        "out_channels": int(rgb.shape[0]),
    }


def _sn_convs(state_dict: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """The spectrally normalised conv weights of `model.N` layers, in layer order."""
    suffix = ".parametrizations.weight.original"
    found = {
        int(key[len("model.") : -len(suffix)]): tensor
        for key, tensor in state_dict.items()
        if key.startswith("model.") and key.endswith(suffix) and key.count(".") == 4
    }
    return [found[index] for index in sorted(found)]


def detect_discriminator(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Spectrally normalised `model.N` convs only, the last one to a single logit."""
    convs = _sn_convs(state_dict)
    return (
        len(convs) >= 2
        and all(key.startswith("model.") for key in state_dict)
        and convs[-1].shape[0] == 1
        and convs[-1].shape[-2:] == (4, 4)
    )


def infer_discriminator(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Input channels and width from the first conv, size from the number of convs."""
    convs = _sn_convs(state_dict)
    return {"in_channels": int(convs[0].shape[1]), "size": 4 * 2 ** (len(convs) - 1),
            "ndf": int(convs[0].shape[0])}  # fmt: skip


def build_generator(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a DCGAN generator from its checkpoint (metadata, or shapes without it)."""
    return rebuild(state_dict, metadata, create_generator, infer_generator, lambda _hp: {})


def build_discriminator(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a DCGAN discriminator from its checkpoint (metadata, or shapes without it)."""
    return rebuild(state_dict, metadata, create_discriminator, infer_discriminator, lambda _hp: {})
