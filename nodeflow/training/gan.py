"""Training an unconditional GAN: one discriminator step, then one generator step per batch.

The `train_gan` node hands a `GANTrainer` to `nodeflow.training.loop.fit`. Each step:

- D sees real images and the generator's images, both through the same differentiable
  augmentation (`nodeflow.training.augment`), and learns to tell them apart with the
  non-saturating logistic loss, softplus(-D(real)) + softplus(D(fake)), or the hinge
  loss, relu(1 - D(real)) + relu(1 + D(fake)). With `r1` > 0 it also pays
  r1 / 2 x E|grad D(real)|^2 (Mescheder et al. 2018), which keeps it smooth around the data.
- G makes a fresh batch and learns to make D call it real: softplus(-D(fake)) for the
  non-saturating loss, -D(fake) for the hinge loss.
- A copy of G whose weights follow G's by an exponential moving average (`ema`, as in
  ProGAN and StyleGAN) is what the trainer hands out and draws sample grids with: it
  averages out the last steps' oscillation and gives visibly cleaner samples. The
  average's decay ramps up as (1 + step) / (10 + step) until it reaches `ema`, so early
  grids show what G has learned rather than its initial weights.
- A style-based G mixes styles in training (`style_mixing`: the share of batches whose w
  switches to a second z's at a random layer), which is what makes coarse and fine
  layers hold different things and `style_mix` meaningful.

Every random draw comes from the global RNG, which `fit` seeds and saves in checkpoints,
so an interrupted run resumes to the same result as an unbroken one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.inference import from_network, to_network
from nodeflow.models.model import Model
from nodeflow.training.augment import diff_augment
from nodeflow.training.datasets import PairBatch

LOSSES = ("non_saturating", "hinge")
PREVIEW_SEED = 2024  # the fixed z the sample grids show, so grids of one run compare


def discriminator_loss(
    kind: str, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's loss on its real and fake logits, as (real part, fake part)."""
    if kind == "hinge":
        return F.relu(1 - real).mean(), F.relu(1 + fake).mean()
    return F.softplus(-real).mean(), F.softplus(fake).mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """G's loss on D's logits for its images."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def preview_latents(count: int, z_dim: int, device: torch.device) -> torch.Tensor:
    """The fixed z every sample grid of a run shows."""
    generator = torch.Generator().manual_seed(PREVIEW_SEED)
    return torch.randn(count, z_dim, generator=generator).to(device)


class StepCount(nn.Module):
    """The steps trained so far, as a buffer, so checkpoints carry it with the networks."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class GANTrainer:
    """A generator, its moving average and a discriminator, with Adam for G and D."""

    def __init__(
        self,
        generator: Model,
        discriminator: Model,
        *,
        lr: float,
        beta1: float,
        loss: str,
        policy: Sequence[str],
        r1: float,
        ema: float,
        style_mixing: float,
    ):
        if loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {loss!r}; use {' or '.join(LOSSES)}")
        self.generator, self.discriminator = generator, discriminator
        self.g, self.d = generator.net, discriminator.net
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False)
        self.loss, self.policy, self.r1 = loss, tuple(policy), r1
        self.ema, self.style_mixing = ema, style_mixing
        self.z_dim = self.g.z_dim
        self.count = StepCount()
        self.modules: dict[str, nn.Module] = {
            "generator": self.g,
            "discriminator": self.d,
            "generator_ema": self.g_ema,
            "count": self.count,
        }
        self.optimizers = {
            "generator": torch.optim.Adam(self.g.parameters(), lr=lr, betas=(float(beta1), 0.99)),
            "discriminator": torch.optim.Adam(
                self.d.parameters(), lr=lr, betas=(float(beta1), 0.99)
            ),
        }

    @property
    def averaged(self) -> Model:
        """The generator with moving-average weights: the one to use."""
        return Model(self.g_ema, self.generator.info)

    def _fake(self, count: int, device: torch.device) -> torch.Tensor:
        latent = self.g.mapping(torch.randn(count, self.z_dim, device=device))
        num_ws = getattr(self.g, "num_ws", 0)
        if num_ws > 1 and float(torch.rand(())) < self.style_mixing:
            other = self.g.mapping(torch.randn(count, self.z_dim, device=device))
            cut = int(torch.randint(1, num_ws, ()))
            latent = torch.cat([latent[:, :cut], other[:, cut:]], dim=1)
        return self.g.synthesis(latent)

    def _judge(self, images: torch.Tensor) -> torch.Tensor:
        return self.d(diff_augment(images, self.policy))

    def step(self, pair: PairBatch) -> dict[str, float]:
        real = to_network(pair.target, self.discriminator.info.value_range)
        count, device = len(real), real.device
        d_optimizer, g_optimizer = self.optimizers["discriminator"], self.optimizers["generator"]

        self.d.requires_grad_(True)
        with torch.no_grad():
            fake = self._fake(count, device)
        seen = diff_augment(real, self.policy).detach().requires_grad_(self.r1 > 0)
        real_logits = self.d(seen)
        d_real, d_fake = discriminator_loss(self.loss, real_logits, self._judge(fake))
        d_loss = d_real + d_fake
        penalty = torch.zeros((), device=device)
        if self.r1 > 0:
            (grad,) = torch.autograd.grad(real_logits.sum(), seen, create_graph=True)
            penalty = grad.square().sum(dim=(1, 2, 3)).mean()
            d_loss = d_loss + 0.5 * self.r1 * penalty
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()

        self.d.requires_grad_(False)
        g_loss = generator_loss(self.loss, self._judge(self._fake(count, device)))
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()
        self.d.requires_grad_(True)
        self._update_average()
        return {
            "loss": g_loss.item(),
            "d_loss": d_loss.item(),
            "d_real": d_real.item(),
            "d_fake": d_fake.item(),
            "r1": penalty.item(),
        }

    @torch.no_grad()
    def _update_average(self) -> None:
        self.count.steps += 1
        steps = int(self.count.steps)
        decay = min(self.ema, (1 + steps) / (10 + steps))
        for averaged, current in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - decay)
        for averaged, current in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            averaged.copy_(current)

    def predict(self, pair: PairBatch) -> torch.Tensor:
        """The averaged generator's images for the run's fixed z, one per item of `pair`."""
        z = preview_latents(len(pair), self.z_dim, pair.target.device)
        noise = torch.Generator().manual_seed(PREVIEW_SEED)
        images = self.g_ema.synthesis(self.g_ema.mapping(z), noise)
        return from_network(images.float(), self.generator.info.value_range)
