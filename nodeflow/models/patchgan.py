"""Discriminators: the PatchGAN (a map of real/fake logits, one per overlapping patch) and
the 1x1 pixel discriminator.

PatchGAN: a 4x4 stride-2 conv, `n_layers - 1` more stride-2 convs doubling the width
(capped at ndf * 8), one stride-1 conv, and a stride-1 conv to one channel. With
n_layers = 3 each logit sees a 70x70 patch and a 256x256 input gives a 30x30 map.
The pixel discriminator judges each pixel alone with 1x1 convolutions.

A conditional discriminator sees the input image and the output image concatenated
(condition first), as pix2pix trains it; an unconditional one (CycleGAN) sees only the
output. The reference implementation's keys are reproduced: `model.0.weight`,
`model.2.weight`, `model.3.*` (first norm), ..., `model.{3n+2}.weight` (the last conv;
`model.11` for n_layers = 3), and `net.0`, `net.2`, `net.3`, `net.5` for the pixel one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nodeflow.models.checkpoint import (
    check_hparams,
    conv_bias,
    init_weights,
    make_info,
    norm_from_keys,
    norm_layer,
    rebuild,
)
from nodeflow.models.model import Model

PATCHGAN_ID = "patchgan"
PIXEL_ID = "pixel_discriminator"
PATCHGAN_DEFAULTS: dict[str, Any] = {"in_channels": 6, "ndf": 64, "n_layers": 3, "norm": "batch"}
PIXEL_DEFAULTS: dict[str, Any] = {"in_channels": 6, "ndf": 64, "norm": "batch"}
_INDEXED_WEIGHT = re.compile(r"^model\.(\d+)\.weight$")


class PatchDiscriminator(nn.Module):
    """The N-layer PatchGAN: B x C x H x W -> B x 1 x h x w logits."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"a PatchGAN needs n_layers >= 1, got {n_layers}")
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        width = ndf
        for n in range(1, n_layers + 1):
            wider = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(width, wider, 4, stride=stride, padding=1, bias=bias),
                norm_layer(norm, wider),
                nn.LeakyReLU(0.2, True),
            ]
            width = wider
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """A 1x1-conv discriminator: one logit per pixel."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def is_conditional(in_channels: int) -> bool:
    """Images have 1 or 3 channels, so any other input width is a condition plus an image."""
    return in_channels not in (1, 3)


def _derived(arch: str, hp: dict[str, Any], min_size: int) -> dict[str, Any]:
    return {
        "arch": arch,
        "purpose": "discriminator",
        "in_channels": hp["in_channels"],
        "out_channels": 1,
        "hparams": hp,
        "min_size": min_size,
        "tiling": False,
        "value_range": (-1.0, 1.0),
        "conditional": is_conditional(hp["in_channels"]),
    }


def create_patchgan(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A PatchGAN model; pass conditional=True/False in `fields` when in_channels is ambiguous."""
    hp = check_hparams(PATCHGAN_ID, hparams or {}, PATCHGAN_DEFAULTS)
    net = PatchDiscriminator(**hp)
    if init:
        init_weights(net)
    # Each stride-2 conv floors the side to half; the two stride-1 4x4 convs take 1 each.
    min_size = 3 * 2 ** (hp["n_layers"])
    return Model(net, make_info(_derived(PATCHGAN_ID, hp, min_size), fields))


def create_pixel(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A pixel discriminator model."""
    hp = check_hparams(PIXEL_ID, hparams or {}, PIXEL_DEFAULTS)
    net = PixelDiscriminator(**hp)
    if init:
        init_weights(net)
    return Model(net, make_info(_derived(PIXEL_ID, hp, 1), fields))


def _last_index(state_dict: Mapping[str, torch.Tensor]) -> int:
    indices = [int(m.group(1)) for key in state_dict if (m := _INDEXED_WEIGHT.match(key))]
    return max(indices, default=-1)


def detect_patchgan(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """`model.N` 4x4 convs only, ending in a one-channel conv at `model.{3n+2}`."""
    first = state_dict.get("model.0.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or first.shape[-2:] != (4, 4):
        return False
    if not all(key.startswith("model.") and ".conv_block." not in key for key in state_dict):
        return False
    last = _last_index(state_dict)
    final = state_dict.get(f"model.{last}.weight")
    return (last - 2) % 3 == 0 and last >= 5 and final is not None and final.shape[0] == 1


def infer_patchgan(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Width and input channels from the first conv, n_layers from the last conv's index."""
    first = state_dict["model.0.weight"]
    return {
        "in_channels": int(first.shape[1]),
        "ndf": int(first.shape[0]),
        "n_layers": (_last_index(state_dict) - 2) // 3,
        "norm": norm_from_keys(state_dict, "model.3", "model.2"),
    }


def detect_pixel(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """`net.0`, `net.2`, `net.5` 1x1 convs, the last to one channel."""
    convs = [state_dict.get(f"net.{i}.weight") for i in (0, 2, 5)]
    return (
        all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[-2:] == (1, 1) for t in convs)
        and convs[2].shape[0] == 1
        and all(key.startswith("net.") for key in state_dict)
    )


def infer_pixel(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Width and input channels from the first conv, norm from the keys."""
    first = state_dict["net.0.weight"]
    return {
        "in_channels": int(first.shape[1]),
        "ndf": int(first.shape[0]),
        "norm": norm_from_keys(state_dict, "net.3", "net.2"),
    }


def reference_fields(hparams: dict[str, Any]) -> dict[str, Any]:
    """A bare reference discriminator reads [-1, 1]."""
    return {"value_range": (-1.0, 1.0)}


def build_patchgan(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a PatchGAN from a nodeflow checkpoint or a reference `*_net_D.pth` state dict."""
    return rebuild(state_dict, metadata, create_patchgan, infer_patchgan, reference_fields)


def build_pixel(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a pixel discriminator from a nodeflow checkpoint or a reference state dict."""
    return rebuild(state_dict, metadata, create_pixel, infer_pixel, reference_fields)
