"""The pix2pix U-Net generator: nested skip blocks, concatenated skips, tanh output.

Level 0 is the outermost block (input -> ngf channels), level i works at
ngf * min(2**i, 8) channels, and the innermost level is num_downs - 1, so the bottleneck
is 2**num_downs times smaller than the input (unet_256: num_downs = 8; unet_128: 7).
Every block but the outermost returns its input concatenated with its output.
Dropout (when asked) sits after the up-path of the inner blocks that stay at ngf * 8
channels, as in the reference.

The module nesting reproduces the reference implementation's state-dict keys, so its
`*_net_G.pth` files load: each block holds one `model` Sequential, the outermost
`[down conv, inner block, ReLU, up conv, Tanh]`, the middle ones
`[LeakyReLU, down conv, norm, inner block, ReLU, up conv, norm(, Dropout)]`, the
innermost `[LeakyReLU, down conv, ReLU, up conv, norm]`. Keys read
`model.model.0.weight`, `model.model.1.model.1.weight`, `model.model.1.model.3.model.1.weight`,
... For num_downs >= 5 the channel plan is the reference's; smaller num_downs extends it.
"""

from __future__ import annotations

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

ARCH_ID = "unet"
DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "num_downs": 8,
    "ngf": 64,
    "norm": "batch",
    "use_dropout": False,
}
_PREFIX = "model.model."


def level_channels(ngf: int, level: int) -> int:
    """Feature channels at a level of the U-Net (level 0 is the outermost)."""
    return ngf * min(2**level, 8)


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up; concatenates its input unless outermost."""

    def __init__(
        self,
        outer: int,
        inner: int,
        *,
        submodule: nn.Module | None = None,
        in_channels: int | None = None,
        outermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        down = nn.Conv2d(in_channels or outer, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            assert submodule is not None
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif submodule is None:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                norm_layer(norm, inner),
                submodule,
                nn.ReLU(True),
                up,
                norm_layer(norm, outer),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """A U-Net with `num_downs` stride-2 levels, built from the innermost level outwards."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"a U-Net needs num_downs >= 2, got {num_downs}")
        deepest = num_downs - 1
        block = UnetBlock(level_channels(ngf, deepest - 1), level_channels(ngf, deepest), norm=norm)
        for level in range(deepest - 1, 0, -1):
            outer, inner = level_channels(ngf, level - 1), level_channels(ngf, level)
            block = UnetBlock(
                outer,
                inner,
                submodule=block,
                norm=norm,
                use_dropout=use_dropout and outer == inner == ngf * 8,
            )
        self.model = UnetBlock(
            out_channels, ngf, submodule=block, in_channels=in_channels, outermost=True, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create(hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    """A U-Net model; `fields` set ArchInfo fields (task, value_range, extra, ...)."""
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = UnetGenerator(**hp)
    if init:
        init_weights(net)
    multiple = 2 ** hp["num_downs"]
    derived = {
        "arch": ARCH_ID,
        "purpose": "image-to-image",
        "in_channels": hp["in_channels"],
        "out_channels": hp["out_channels"],
        "hparams": hp,
        "size_multiple": multiple,
        "min_size": multiple,
        "tiling": hp["norm"] != "instance",
        "value_range": (-1.0, 1.0),
    }
    return Model(net, make_info(derived, fields))


def detect(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """The reference U-Net layout: outer down conv, nested `model.model.1.model.*` blocks."""
    down = state_dict.get(f"{_PREFIX}0.weight")
    up = state_dict.get(f"{_PREFIX}3.weight")
    inner = state_dict.get(f"{_PREFIX}1.model.1.weight")
    return (
        all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (down, up, inner))
        and down.shape[-2:] == (4, 4)
        and up.shape[-2:] == (4, 4)
        and all(key.startswith(_PREFIX) for key in state_dict)
    )


def infer_hparams(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels from the outer convs, num_downs from the nesting depth, norm from the keys.

    Dropout leaves no tensors; the reference's pix2pix default (on) is assumed, which
    matters only when the model is trained further (inference runs in eval mode).
    """
    down = state_dict[f"{_PREFIX}0.weight"]
    up = state_dict[f"{_PREFIX}3.weight"]
    num_downs, block = 1, f"{_PREFIX}1."
    while f"{block}model.1.weight" in state_dict:
        num_downs += 1
        block = f"{block}model.3."
    norm_at = f"{_PREFIX}1.model.{2 if num_downs > 2 else 4}"
    return {
        "in_channels": int(down.shape[1]),
        "out_channels": int(up.shape[1]),
        "num_downs": num_downs,
        "ngf": int(down.shape[0]),
        "norm": norm_from_keys(state_dict, norm_at, f"{_PREFIX}0"),
        "use_dropout": True,
    }


def reference_fields(hparams: dict[str, Any]) -> dict[str, Any]:
    """ArchInfo fields of a bare reference generator: [-1, 1]; 1 -> 2 channels is colorization."""
    colorize = hparams["in_channels"] == 1 and hparams["out_channels"] == 2
    return {"value_range": (-1.0, 1.0), "task": "colorize" if colorize else ""}


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """Rebuild a U-Net from a nodeflow checkpoint or a reference `*_net_G.pth` state dict."""
    return rebuild(state_dict, metadata, create, infer_hparams, reference_fields)
