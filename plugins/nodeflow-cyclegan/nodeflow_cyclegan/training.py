"""CycleGAN training: two generators, two discriminators, their losses and one optimisation step.

As in the reference implementation (Zhu et al. 2017): ResNet-blocks generators
`a_to_b` and `b_to_a`, unconditional PatchGAN discriminators `disc_a` (judges domain A)
and `disc_b` (judges domain B), instance norm throughout, the least-squares GAN loss,
cycle-consistency loss lambda x |G_ba(G_ab(a)) - a| (and the same for b), identity loss
lambda_identity x lambda x |G_ab(b) - b| (and the same for a, when both domains have the
same channel count), discriminators trained on a history pool of generated images with
half their loss, Adam (lr 2e-4, betas 0.5 and 0.999), the learning rate constant for the
first half of the steps and falling linearly to zero over the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.api import Model, new_model

BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the networks and the losses."""

    channels_a: int
    channels_b: int
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    n_layers: int = 3
    lr: float = 2e-4
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    steps: int = 1

    @property
    def uses_identity(self) -> bool:
        """The identity loss feeds B images to G_ab, so both domains need one channel count."""
        return self.lambda_identity > 0 and self.channels_a == self.channels_b


class ImagePool:
    """The last `size` generated images; the discriminators see a mix of old and new ones.

    Each image offered is stored while the pool has room. Once full, an offered image is,
    with probability one half, swapped for a random stored one (which is returned in its
    place); otherwise it is returned as it is. Shrivastava et al. 2017, as CycleGAN uses it.
    """

    def __init__(self, size: int, generator: torch.Generator):
        self.size = size
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        chosen = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                slot = int(torch.randint(self.size, (), generator=self.generator))
                chosen.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state_dict(self) -> dict[str, Any]:
        stored = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stored}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [image.to(device) for image in state["images"]]


def _lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: the mean squared distance of every patch logit to 1 or 0."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def _requires_grad(nets: tuple[nn.Module, ...], flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


class CycleGAN:
    """The four networks, their two optimisers and pools, and `step`, one training step."""

    def __init__(self, settings: Settings, device: torch.device, generator: torch.Generator):
        self.settings = settings
        s = settings
        generator_hparams = {"ngf": s.ngf, "n_blocks": s.n_blocks, "norm": "instance"}
        self.a_to_b = new_model(
            "resnet_generator",
            {"in_channels": s.channels_a, "out_channels": s.channels_b, **generator_hparams},
            extra={"cyclegan": "a_to_b"},
        )
        self.b_to_a = new_model(
            "resnet_generator",
            {"in_channels": s.channels_b, "out_channels": s.channels_a, **generator_hparams},
            extra={"cyclegan": "b_to_a"},
        )
        disc_hparams = {"ndf": s.ndf, "n_layers": s.n_layers, "norm": "instance"}
        self.disc_a = new_model(
            "patchgan", {"in_channels": s.channels_a, **disc_hparams}, conditional=False
        )
        self.disc_b = new_model(
            "patchgan", {"in_channels": s.channels_b, **disc_hparams}, conditional=False
        )
        for model in self.models.values():
            model.net.to(device).train()
        self.g_ab, self.g_ba = self.a_to_b.net, self.b_to_a.net
        self.d_a, self.d_b = self.disc_a.net, self.disc_b.net
        generators = [*self.g_ab.parameters(), *self.g_ba.parameters()]
        discriminators = [*self.d_a.parameters(), *self.d_b.parameters()]
        self.opt_g = torch.optim.Adam(generators, lr=s.lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(discriminators, lr=s.lr, betas=BETAS)
        self.pool_a = ImagePool(s.pool_size, generator)
        self.pool_b = ImagePool(s.pool_size, generator)
        self.step_count = 0

    @property
    def models(self) -> dict[str, Model]:
        return {
            "a_to_b": self.a_to_b,
            "b_to_a": self.b_to_a,
            "disc_a": self.disc_a,
            "disc_b": self.disc_b,
        }

    @property
    def min_crop(self) -> int:
        """The smallest side the discriminators can judge."""
        return self.disc_a.info.min_size

    def learning_rate(self, step: int) -> float:
        """Constant for the first half of the steps, then linearly down to zero."""
        total = self.settings.steps
        constant = total // 2
        if step < constant:
            return self.settings.lr
        return self.settings.lr * (total - step) / max(total - constant, 1)

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One step on a batch from each domain (values in [-1, 1]); returns the losses."""
        s = self.settings
        for optimiser in (self.opt_g, self.opt_d):
            for group in optimiser.param_groups:
                group["lr"] = self.learning_rate(self.step_count)

        fake_b = self.g_ab(real_a)
        fake_a = self.g_ba(real_b)
        _requires_grad((self.d_a, self.d_b), False)
        gan = _lsgan(self.d_b(fake_b), True) + _lsgan(self.d_a(fake_a), True)
        cycle = s.lambda_cycle * (
            F.l1_loss(self.g_ba(fake_b), real_a) + F.l1_loss(self.g_ab(fake_a), real_b)
        )
        identity = torch.zeros((), device=real_a.device)
        if s.uses_identity:
            identity = (s.lambda_identity * s.lambda_cycle) * (
                F.l1_loss(self.g_ab(real_b), real_b) + F.l1_loss(self.g_ba(real_a), real_a)
            )
        self.opt_g.zero_grad(set_to_none=True)
        (gan + cycle + identity).backward()
        self.opt_g.step()

        _requires_grad((self.d_a, self.d_b), True)
        history_b = self.pool_b.query(fake_b)
        history_a = self.pool_a.query(fake_a)
        loss_d_b = 0.5 * (_lsgan(self.d_b(real_b), True) + _lsgan(self.d_b(history_b), False))
        loss_d_a = 0.5 * (_lsgan(self.d_a(real_a), True) + _lsgan(self.d_a(history_a), False))
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self.opt_d.step()
        self.step_count += 1
        return {
            "gan": gan.item(),
            "cycle": cycle.item(),
            "identity": identity.item(),
            "d_a": loss_d_a.item(),
            "d_b": loss_d_b.item(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimisers, pools and the step count."""
        return {
            "step": self.step_count,
            "nets": {name: model.net.state_dict() for name, model in self.models.items()},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pool_a": self.pool_a.state_dict(),
            "pool_b": self.pool_b.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        for name, model in self.models.items():
            model.net.load_state_dict(state["nets"][name])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pool_a.load_state_dict(state["pool_a"], device)
        self.pool_b.load_state_dict(state["pool_b"], device)
        self.step_count = int(state["step"])
