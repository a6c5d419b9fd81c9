"""The ResNet-blocks generator of CycleGAN and fast style transfer.

A 7x7 stem, two stride-2 convolutions, `n_blocks` residual blocks at ngf * 4 channels,
two stride-2 transposed convolutions and a 7x7 tanh head, with reflection padding
throughout; images must have sides that are multiples of 4.

One flat `model` Sequential reproduces the reference implementation's state-dict keys:
`model.1` is the stem conv, `model.4` and `model.7` the down convs, `model.10` onwards the
blocks (`model.10.conv_block.1.weight`, `model.10.conv_block.5.weight`; 6 with dropout),
then the up convs at `model.{10+n}` and `model.{13+n}` and the head at `model.{17+n}`
(`model.26.weight` for resnet_9blocks, `model.23.weight` for resnet_6blocks).
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
from nodeflow.models.unet import reference_fields

ARCH_ID = "resnet_generator"
DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "ngf": 64,
    "n_blocks": 9,
    "norm": "instance",
    "use_dropout": False,
}
_FIRST_BLOCK = 10
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.")


class ResnetBlock(nn.Module):
    """x + (pad, conv 3x3, norm, ReLU, [dropout], pad, conv 3x3, norm)(x)."""

    def __init__(self, channels: int, norm: str, use_dropout: bool):
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Stem, two downsamplings, residual blocks, two upsamplings, tanh head."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
    ):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be 0 or more, got {n_blocks}")
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create(hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    """A ResNet-blocks generator model; `fields` set ArchInfo fields (task, value_range, ...)."""
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = ResnetGenerator(**hp)
    if init:
        init_weights(net)
    derived = {
        "arch": ARCH_ID,
        "purpose": "image-to-image",
        "in_channels": hp["in_channels"],
        "out_channels": hp["out_channels"],
        "hparams": hp,
        "size_multiple": 4,
        "min_size": 4,
        "tiling": hp["norm"] != "instance",
        "value_range": (-1.0, 1.0),
    }
    return Model(net, make_info(derived, fields))


def _block_indices(state_dict: Mapping[str, torch.Tensor]) -> list[int]:
    found = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    return sorted(found)


def detect(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """The reference layout: a 7x7 stem conv at `model.1`, blocks from `model.10`, a 7x7 head."""
    stem = state_dict.get("model.1.weight")
    if not isinstance(stem, torch.Tensor) or stem.dim() != 4 or stem.shape[-2:] != (7, 7):
        return False
    blocks = _block_indices(state_dict)
    if blocks != list(range(_FIRST_BLOCK, _FIRST_BLOCK + len(blocks))):
        return False
    head = state_dict.get(f"model.{17 + len(blocks)}.weight")
    return isinstance(head, torch.Tensor) and head.dim() == 4 and head.shape[-2:] == (7, 7)


def infer_hparams(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels from the stem and head, n_blocks by counting, dropout from the block layout."""
    stem = state_dict["model.1.weight"]
    n_blocks = len(_block_indices(state_dict))
    head = state_dict[f"model.{17 + n_blocks}.weight"]
    return {
        "in_channels": int(stem.shape[1]),
        "out_channels": int(head.shape[0]),
        "ngf": int(stem.shape[0]),
        "n_blocks": n_blocks,
        "norm": norm_from_keys(state_dict, "model.2", "model.1"),
        "use_dropout": _has_dropout(state_dict, n_blocks),
    }


def _has_dropout(state_dict: Mapping[str, torch.Tensor], n_blocks: int) -> bool:
    """Dropout shifts a block's second conv from position 5 to 6."""
    if n_blocks == 0:
        return False
    second = state_dict.get(f"model.{_FIRST_BLOCK}.conv_block.6.weight")
    return isinstance(second, torch.Tensor) and second.dim() == 4


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """Rebuild the generator from a nodeflow checkpoint or a reference `*_net_G.pth` state dict."""
    return rebuild(state_dict, metadata, create, infer_hparams, reference_fields)
