"""Training losses: L1 and L2, the GAN losses, and colorization as classification over ab bins.

Colorization as classification (Zhang, Isola and Efros, "Colorful Image Colorization",
2016): the ab plane is cut into a grid of 10 x 10 bins and only the bins sRGB colours
reach are kept (`gamut_bins`: 261 bins, found from a 64-level RGB grid; the paper's
count of 313 comes from a looser in-gamut test). The network predicts a distribution over
these bins for every pixel. Its target is the pixel's true ab spread over the 5 nearest
bins with Gaussian weights (sigma 5); the loss is cross-entropy, each pixel weighted by
how rare its colour is in the training data, so that desaturated sky and ground do not
drown every other colour: weights ((1 - lambda) * p + lambda / Q)^-1 with p the bin
frequencies smoothed by a Gaussian (sigma 5), lambda = 0.5, scaled so their expectation
under p is 1. A prediction becomes one ab by the annealed mean: the distribution is
raised to the power 1 / T, renormalised and averaged. The paper sharpens it with
T = 0.38, between the mean (washed out) and the mode (patchy); nodeflow decodes with
T = 1, the plain mean, which scored a higher PSNR on each of three photos no colorizer
here trained on (astronaut, coffee, chelsea: 19.82 / 16.67 / 23.16 dB against
19.38 / 15.40 / 20.21) at a little less colour (colourfulness 42.8 against 46.4).

The U-Net ends in tanh, so its outputs are multiplied by `LOGIT_SCALE` to make logits
able to express confident distributions. A model trained this way records what decoding
needs in ArchInfo.extra: "color_bins" (the bin centres, Lab units), "temperature" and
"logit_scale"; `ColorBins.from_extra` and `ColorBins.decode` turn its output back into ab.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.inference import AB_SCALE, to_network

GRID = 10.0
NEIGHBOURS = 5
SIGMA = 5.0
REBALANCE_LAMBDA = 0.5
TEMPERATURE = 1.0
LOGIT_SCALE = 10.0
_GAMUT_LEVELS = 64


def reconstruction_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pixel loss named "L1" (mean absolute error) or "L2" (mean squared error)."""
    losses = {"L1": F.l1_loss, "L2": F.mse_loss}
    if name not in losses:
        raise ValueError(f"unknown pixel loss {name!r}; use L1 or L2")
    return losses[name]


class GANLoss(nn.Module):
    """The adversarial loss on a discriminator's logits: "vanilla" or "lsgan".

    vanilla is binary cross-entropy on the logits (the original GAN); lsgan is the mean
    squared distance of the raw outputs to 1 (real) or 0 (fake), as in least-squares GANs.
    """

    def __init__(self, mode: str):
        super().__init__()
        if mode not in ("vanilla", "lsgan"):
            raise ValueError(f"unknown GAN loss {mode!r}; use vanilla or lsgan")
        self.mode = mode

    def forward(self, prediction: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.full_like(prediction, 1.0 if real else 0.0)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(prediction, target)
        return F.mse_loss(prediction, target)


# -- colorization as classification -----------------------------------------------------------------


@functools.cache
def gamut_bins() -> tuple[tuple[float, float], ...]:
    """Centres (a, b) of the 10 x 10 ab bins that some sRGB colour falls in, sorted."""
    levels = torch.linspace(0.0, 1.0, _GAMUT_LEVELS)
    red, green, blue = torch.meshgrid(levels, levels, levels, indexing="ij")
    rgb = torch.stack([red, green, blue]).reshape(1, 3, _GAMUT_LEVELS, -1)
    ab = kornia.color.rgb_to_lab(rgb)[0, 1:].reshape(2, -1).T
    cells = torch.unique(torch.round(ab / GRID), dim=0) * GRID
    return tuple((float(a), float(b)) for a, b in cells.tolist())


class ColorBins:
    """Quantized ab space: soft-encode targets, weight rare colours, decode predictions."""

    def __init__(
        self,
        centres: torch.Tensor,
        temperature: float = TEMPERATURE,
        logit_scale: float = LOGIT_SCALE,
    ):
        self.centres = centres.float()
        self.temperature = temperature
        self.logit_scale = logit_scale
        self.weights = torch.ones(len(centres), device=centres.device)

    @classmethod
    def in_gamut(cls, device: torch.device) -> ColorBins:
        return cls(torch.tensor(gamut_bins(), device=device))

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], device: torch.device) -> ColorBins | None:
        """The bins a classification colorizer recorded in ArchInfo.extra, or None."""
        if "color_bins" not in extra:
            return None
        centres = torch.tensor(extra["color_bins"], dtype=torch.float32, device=device)
        return cls(
            centres,
            float(extra.get("temperature", TEMPERATURE)),
            float(extra.get("logit_scale", LOGIT_SCALE)),
        )

    def to_extra(self) -> dict[str, Any]:
        return {
            "color_bins": self.centres.cpu().tolist(),
            "temperature": self.temperature,
            "logit_scale": self.logit_scale,
        }

    def __len__(self) -> int:
        return len(self.centres)

    def _distances(self, ab: torch.Tensor) -> torch.Tensor:
        """B x 2 x H x W ab (Lab units) -> (B*H*W) x Q squared distances to the centres."""
        points = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
        return torch.cdist(points, self.centres).square()

    def nearest(self, ab: torch.Tensor) -> torch.Tensor:
        """The index of each pixel's nearest bin, B x H x W."""
        batch, _, height, width = ab.shape
        return self._distances(ab).argmin(dim=1).reshape(batch, height, width)

    def fit_weights(self, counts: torch.Tensor, lam: float = REBALANCE_LAMBDA) -> None:
        """Set the rebalancing weights from how often each bin occurs in the training data."""
        counts = counts.to(self.centres.device).float()
        if counts.sum() <= 0:
            raise ValueError("no colour statistics: the dataset gave no pixels")
        prob = counts / counts.sum()
        kernel = torch.exp(-torch.cdist(self.centres, self.centres).square() / (2 * SIGMA**2))
        smoothed = kernel @ prob / kernel.sum(dim=1)
        smoothed = smoothed / smoothed.sum()
        weights = 1.0 / ((1 - lam) * smoothed + lam / len(self))
        self.weights = weights / (smoothed * weights).sum()

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Rebalanced cross-entropy of B x Q x H x W logits against soft-encoded true ab."""
        distances = self._distances(ab)
        near, index = distances.topk(NEIGHBOURS, dim=1, largest=False)
        soft = torch.softmax(-near / (2 * SIGMA**2), dim=1)
        log_prob = torch.log_softmax(logits.float(), dim=1)
        log_prob = log_prob.permute(0, 2, 3, 1).reshape(-1, len(self))
        cross_entropy = -(soft * log_prob.gather(1, index)).sum(dim=1)
        pixel_weight = self.weights[index[:, 0]]
        return (pixel_weight * cross_entropy).mean()

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        """The network's tanh output as logits."""
        return output.float() * self.logit_scale

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """The annealed-mean ab (Lab units, B x 2 x H x W) of the network's output."""
        probs = torch.softmax(self.logits(output) / self.temperature, dim=1)
        return torch.einsum("bqhw,qc->bchw", probs, self.centres)

    def decode_to_network(
        self, output: torch.Tensor, value_range: tuple[float, float]
    ) -> torch.Tensor:
        """The annealed-mean ab scaled as regression colorizers output it (`lab_to_network`)."""
        ab = ((self.decode(output) / AB_SCALE).clamp(-1.0, 1.0) + 1.0) / 2.0
        return to_network(ab, value_range)


def ab_units(ab01: torch.Tensor) -> torch.Tensor:
    """ab scaled into [0, 1] (as colorize pairs hold it) -> Lab units."""
    return (ab01 * 2.0 - 1.0) * AB_SCALE
