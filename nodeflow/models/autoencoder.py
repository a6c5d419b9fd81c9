"""A convolutional autoencoder with a separable encoder and decoder.

The encoder maps a C x H x W image in [0, 1] to a spatial latent of
latent_channels x H/2**depth x W/2**depth: a 3x3 stem at `base` channels, `depth`
4x4 stride-2 convolutions (doubling the width up to base * 8), and a linear 3x3
projection to the latent. The decoder mirrors it with transposed convolutions and ends
in a sigmoid. Trained on noisy inputs and clean targets, the same network is a
denoising autoencoder.

`image_size` does not change the weights: it records the side the model was trained at,
which sets `latent_shape` (what `latent_sample` draws).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nodeflow.models.checkpoint import check_hparams, init_weights, make_info, rebuild
from nodeflow.models.model import Model

ARCH_ID = "autoencoder"
DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "base": 32,
    "depth": 3,
    "latent_channels": 8,
    "norm": "batch",
    "image_size": 64,
}


def _width(base: int, level: int) -> int:
    return base * min(2**level, 8)


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"the autoencoder takes norm 'batch' or 'none', got {norm!r}")


class ConvAutoencoder(nn.Module):
    """`encoder` and `decoder` Sequentials; forward is decode(encode(x))."""

    def __init__(
        self,
        in_channels: int = 3,
        base: int = 32,
        depth: int = 3,
        latent_channels: int = 8,
        norm: str = "batch",
        image_size: int = 64,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"the autoencoder needs depth >= 1, got {depth}")
        bias = norm == "none"
        encoder: list[nn.Module] = [nn.Conv2d(in_channels, base, 3, padding=1), nn.LeakyReLU(0.2)]
        for level in range(depth):
            wider = _width(base, level + 1)
            encoder += [
                nn.Conv2d(_width(base, level), wider, 4, stride=2, padding=1, bias=bias),
                _norm(norm, wider),
                nn.LeakyReLU(0.2),
            ]
        encoder.append(nn.Conv2d(_width(base, depth), latent_channels, 3, padding=1))
        decoder: list[nn.Module] = [
            nn.Conv2d(latent_channels, _width(base, depth), 3, padding=1, bias=bias),
            _norm(norm, _width(base, depth)),
            nn.ReLU(),
        ]
        for level in range(depth, 0, -1):
            narrower = _width(base, level - 1)
            decoder += [
                nn.ConvTranspose2d(
                    _width(base, level), narrower, 4, stride=2, padding=1, bias=bias
                ),
                _norm(norm, narrower),
                nn.ReLU(),
            ]
        decoder += [nn.Conv2d(base, in_channels, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def create(hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    """An autoencoder model; `fields` set ArchInfo fields (task, extra latent stats, ...)."""
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = ConvAutoencoder(**hp)
    if init:
        init_weights(net)
    multiple = 2 ** hp["depth"]
    side = hp["image_size"] // multiple
    derived = {
        "arch": ARCH_ID,
        "purpose": "autoencoder",
        "in_channels": hp["in_channels"],
        "out_channels": hp["in_channels"],
        "hparams": hp,
        "task": "autoencode",
        "size_multiple": multiple,
        "min_size": multiple,
        "value_range": (0.0, 1.0),
        "latent_shape": (hp["latent_channels"], side, side),
    }
    return Model(net, make_info(derived, fields))


def detect(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Only `encoder.*` and `decoder.*` keys, a stem conv and stride-2 4x4 convs."""
    stem = state_dict.get("encoder.0.weight")
    return (
        isinstance(stem, torch.Tensor)
        and stem.dim() == 4
        and stem.shape[-2:] == (3, 3)
        and "decoder.0.weight" in state_dict
        and all(key.startswith(("encoder.", "decoder.")) for key in state_dict)
        and _depth(state_dict) > 0
    )


def _depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    return sum(
        1
        for key, tensor in state_dict.items()
        if key.startswith("encoder.") and key.endswith(".weight") and tensor.dim() == 4
        and tensor.shape[-2:] == (4, 4)
    )  # fmt: skip


def infer_hparams(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Widths from the stem, depth from the stride-2 convs, latent size from the projection."""
    stem = state_dict["encoder.0.weight"]
    depth = _depth(state_dict)
    latent = state_dict[f"encoder.{2 + 3 * depth}.weight"]
    return {
        "in_channels": int(stem.shape[1]),
        "base": int(stem.shape[0]),
        "depth": depth,
        "latent_channels": int(latent.shape[0]),
        "norm": "batch" if "encoder.3.weight" in state_dict else "none",
        "image_size": DEFAULTS["image_size"],
    }


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """Rebuild an autoencoder from its checkpoint (metadata, or shapes when it has none)."""
    return rebuild(state_dict, metadata, create, infer_hparams, lambda _hp: {})
