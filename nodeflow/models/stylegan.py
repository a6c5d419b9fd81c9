"""A small style-based generator in the spirit of StyleGAN2 (Karras et al. 2019, 2020), CPU-sized.

- Mapping network: z is normalised to unit mean square (pixel norm), then
  `mapping_layers` linear layers with LeakyReLU 0.2 give w. `w_avg`, a running mean of
  w kept during training, is the centre the truncation trick pulls towards.
- Synthesis: a learned 4x4 constant, one modulated 3x3 conv at 4x4, then two per
  doubling (bilinear upsampling first) up to `size`. Each conv's weights are scaled per
  input channel by a style (an affine map of that layer's w) and demodulated (scaled
  back to unit norm per output channel), then get per-pixel noise times a learned
  strength, a bias and LeakyReLU. Each resolution adds its RGB (a modulated 1x1 conv,
  not demodulated) to the upsampled RGB of the one below (StyleGAN2's skip generator).
- Channels: `width` at the output size, doubling towards 4x4, capped at `max_width`.

The synthesis reads one w per conv layer (`num_ws` of them, B x num_ws x w_dim), so
different layers may take different w: coarse layers (4x4, 8x8) set layout and shape,
fine ones colour and texture. That is style mixing. Outputs are in [-1, 1].

Noise: `synthesis(ws, noise)` draws one per-layer noise map from the given CPU generator
and gives it to every image of the batch (the same seed gives the same images on every
device, and images that differ only in w differ only by their styles), or fresh noise per
image from the global RNG when `noise` is None (training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.checkpoint import check_hparams, make_info, rebuild
from nodeflow.models.dcgan import doublings, generator_info
from nodeflow.models.model import Model

ARCH_ID = "style_generator"
DEFAULTS: dict[str, Any] = {
    "z_dim": 128,
    "w_dim": 128,
    "mapping_layers": 4,
    "size": 64,
    "width": 32,
    "max_width": 128,
    "out_channels": 3,
}
W_AVG_BETA = 0.995
MAPPING_LR_MUL = 0.01


class EqualLinear(nn.Module):
    """A linear layer with equalized learning rate (ProGAN): weights stored as N(0, 1) / lr_mul
    and scaled at run time, so Adam moves every layer at the same relative speed, and
    `lr_mul` slows a layer down (the mapping network learns 100 times slower, as in StyleGAN).
    """

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias / lr_mul))
        self.weight_scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_scale, self.bias * self.lr_mul)


class ModulatedConv(nn.Module):
    """A conv whose weights are scaled per sample by a style, optionally demodulated."""

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, kernel: int, demod: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_channels, bias=1.0)
        self.demod = demod
        self.padding = kernel // 2
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Scale the input per channel, convolve with the shared weights, demodulate.

        The same as convolving with per-sample modulated weights (StyleGAN2's equations),
        but one ordinary conv for the whole batch (grouped per-sample convs measured 1.07
        times slower for a training step on a CPU, 64 px, width 32, batch 16).
        """
        style = self.affine(w)
        out = F.conv2d(x * style[:, :, None, None], self.weight * self.scale, padding=self.padding)
        if self.demod:
            energy = (self.weight * self.scale).square().sum(dim=(2, 3))
            out = out * torch.rsqrt(style.square() @ energy.T + 1e-8)[:, :, None, None]
        return out


class StyleLayer(nn.Module):
    """Modulated 3x3 conv, per-pixel noise times a learned strength, bias, LeakyReLU."""

    def __init__(self, w_dim: int, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ModulatedConv(w_dim, in_channels, out_channels, 3, demod=True)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise: torch.Generator | None
    ) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is None:
            pixels = torch.randn((len(x), 1, *x.shape[-2:]), device=x.device, dtype=x.dtype)
        else:
            pixels = torch.randn((1, 1, *x.shape[-2:]), generator=noise)
            pixels = pixels.to(device=x.device, dtype=x.dtype)
        x = x + self.noise_strength * pixels + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2)


class StyleGenerator(nn.Module):
    """z (B x z_dim) -> w -> images B x out_channels x size x size in [-1, 1]."""

    def __init__(
        self,
        z_dim: int = 128,
        w_dim: int = 128,
        mapping_layers: int = 4,
        size: int = 64,
        width: int = 32,
        max_width: int = 128,
        out_channels: int = 3,
    ):
        super().__init__()
        ups = doublings(size)
        self.z_dim = z_dim
        mapping: list[nn.Module] = []
        for layer in range(mapping_layers):
            width_in = z_dim if layer == 0 else w_dim
            mapping += [EqualLinear(width_in, w_dim, lr_mul=MAPPING_LR_MUL), nn.LeakyReLU(0.2)]
        self.mapping_net = nn.Sequential(*mapping)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        channels = [min(width * 2 ** (ups - level), max_width) for level in range(ups + 1)]
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.layers = nn.ModuleList([StyleLayer(w_dim, channels[0], channels[0])])
        self.to_rgb = nn.ModuleList(
            [ModulatedConv(w_dim, channels[0], out_channels, 1, demod=False)]
        )
        self.rgb_bias = nn.Parameter(torch.zeros(ups + 1, out_channels))
        for level in range(1, ups + 1):
            self.layers.append(StyleLayer(w_dim, channels[level - 1], channels[level]))
            self.layers.append(StyleLayer(w_dim, channels[level], channels[level]))
            self.to_rgb.append(ModulatedConv(w_dim, channels[level], out_channels, 1, demod=False))
        self.num_ws = len(self.layers)

    def mapping(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """z -> one w per layer (B x num_ws x w_dim), pulled towards `w_avg` by `truncation`.

        In training mode `w_avg` follows the running mean of the w it maps.
        """
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.mapping_net(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(dim=0), 1.0 - W_AVG_BETA)
        if truncation != 1.0:
            w = self.w_avg + truncation * (w - self.w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """One w per layer (B x num_ws x w_dim) -> images in [-1, 1]."""
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(
                f"the style generator reads {self.num_ws} w per image (B x {self.num_ws} x "
                f"w_dim), got a latent of shape {tuple(ws.shape)}"
            )
        x = self.const.expand(len(ws), -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise)
        rgb = self.to_rgb[0](x, ws[:, 0]) + self.rgb_bias[0][None, :, None, None]
        for level in range(1, len(self.to_rgb)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            first = 2 * level - 1
            x = self.layers[first](x, ws[:, first], noise)
            x = self.layers[first + 1](x, ws[:, first + 1], noise)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = rgb + self.to_rgb[level](x, ws[:, first + 1])
            rgb = rgb + self.rgb_bias[level][None, :, None, None]
        return torch.tanh(rgb)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


def create(hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    """A style-based generator model (its layers initialise themselves); outputs in [-1, 1]."""
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = StyleGenerator(**hp)
    derived = generator_info(ARCH_ID, hp, (hp["z_dim"],))
    derived["extra"] = {"num_ws": net.num_ws}
    return Model(net, make_info(derived, fields))


def detect(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """`mapping_net.*`, `const`, `layers.*`, `to_rgb.*` and `w_avg` keys."""
    return {"const", "w_avg", "rgb_bias"} <= set(state_dict) and "mapping_net.0.weight" in (
        state_dict
    )


def infer_hparams(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Sizes from the mapping layers, the RGB convs and the number of resolutions."""
    mapping = sorted(int(key.split(".")[1]) for key in state_dict if key.startswith("mapping_net."))
    levels = state_dict["rgb_bias"].shape[0]
    last_rgb = state_dict[f"to_rgb.{levels - 1}.weight"]
    return {
        "z_dim": int(state_dict["mapping_net.0.weight"].shape[1]),
        "w_dim": int(state_dict["w_avg"].shape[0]),
        "mapping_layers": mapping[-1] // 2 + 1,
        "size": 4 * 2 ** (levels - 1),
        "width": int(last_rgb.shape[1]),
        "max_width": int(state_dict["const"].shape[1]),
        "out_channels": int(last_rgb.shape[0]),
    }


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """Rebuild a style-based generator from its checkpoint (metadata, or shapes)."""
    return rebuild(state_dict, metadata, create, infer_hparams, lambda _hp: {})
