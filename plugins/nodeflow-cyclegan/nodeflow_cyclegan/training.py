"""CycleGAN training: two generators, two discriminators, their losses and one optimisation step.

As in the reference implementation (Zhu et al. 2017): ResNet-blocks generators
`a_to_b` and `b_to_a`, unconditional PatchGAN discriminators `disc_a` (judges domain A)
and `disc_b` (judges domain B), instance norm throughout, the least-squares GAN loss,
cycle-consistency loss lambda x |G_ba(G_ab(a)) - a| (and the same for b), identity loss
lambda_identity x lambda x |G_ab(b) - b| (and the same for a, when both domains have the
same channel count), discriminators trained on a history pool of generated images with
half their loss, Adam (lr 2e-4, betas 0.5 and 0.999); nodeflow's `fit` keeps the
learning rate constant for the first half of the steps and lets it fall linearly to zero
over the second, and saves, resumes, samples and stops the run as for every trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.api import PairBatch, from_network, new_model, to_network

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

    @property
    def uses_identity(self) -> bool:
        """The identity loss feeds B images to G_ab, so both domains need one channel count."""
        return self.lambda_identity > 0 and self.channels_a == self.channels_b


class ImagePool:
    """The last `size` generated images; the discriminators see a mix of old and new ones.

    Each image offered is stored while the pool has room. Once full, an offered image is,
    with probability one half, swapped for a random stored one (which is returned in its
    place); otherwise it is returned as it is. Shrivastava et al. 2017, as CycleGAN uses it.
    Draws come from the global RNG, which `fit` seeds, and saves with its checkpoints.
    """

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        chosen = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif torch.rand(()).item() < 0.5:
                slot = int(torch.randint(self.size, ()))
                chosen.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state(self) -> torch.Tensor:
        return torch.stack(self.images).cpu() if self.images else torch.empty(0)

    def load(self, stored: torch.Tensor, device: torch.device) -> None:
        self.images = [image.to(device) for image in stored]


def _lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: the mean squared distance of every patch logit to 1 or 0."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def _requires_grad(nets: tuple[nn.Module, ...], flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


class CycleGAN:
    """The four networks, their two optimisers and pools: a trainer `fit` drives.

    Its batches pair A crops (input) with B crops (target), values in [0, 1].
    """

    def __init__(self, settings: Settings, device: torch.device):
        self.settings = settings
        self.device = device
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
        models = {"a_to_b": self.a_to_b, "b_to_a": self.b_to_a}
        models |= {"disc_a": self.disc_a, "disc_b": self.disc_b}
        self.modules = {name: model.net.to(device).train() for name, model in models.items()}
        generators = [*self.a_to_b.net.parameters(), *self.b_to_a.net.parameters()]
        discriminators = [*self.disc_a.net.parameters(), *self.disc_b.net.parameters()]
        self.optimizers = {
            "generators": torch.optim.Adam(generators, lr=s.lr, betas=BETAS),
            "discriminators": torch.optim.Adam(discriminators, lr=s.lr, betas=BETAS),
        }
        self.pool_a = ImagePool(s.pool_size)
        self.pool_b = ImagePool(s.pool_size)

    @property
    def min_crop(self) -> int:
        """The smallest side the discriminators can judge."""
        return self.disc_a.info.min_size

    def step(self, pair: PairBatch) -> dict[str, float]:
        """One step on a batch of A crops and B crops; returns the losses."""
        s = self.settings
        real_a, real_b = to_network(pair.input, (-1.0, 1.0)), to_network(pair.target, (-1.0, 1.0))
        g_ab, g_ba = self.modules["a_to_b"], self.modules["b_to_a"]  # DDP-wrapped under fit
        d_a, d_b = self.modules["disc_a"], self.modules["disc_b"]
        fake_b = g_ab(real_a)
        fake_a = g_ba(real_b)
        _requires_grad((d_a, d_b), False)
        gan = _lsgan(d_b(fake_b), True) + _lsgan(d_a(fake_a), True)
        cycle = s.lambda_cycle * (F.l1_loss(g_ba(fake_b), real_a) + F.l1_loss(g_ab(fake_a), real_b))
        identity = torch.zeros((), device=real_a.device)
        if s.uses_identity:
            identity = (s.lambda_identity * s.lambda_cycle) * (
                F.l1_loss(g_ab(real_b), real_b) + F.l1_loss(g_ba(real_a), real_a)
            )
        optimizer = self.optimizers["generators"]
        optimizer.zero_grad(set_to_none=True)
        (gan + cycle + identity).backward()
        optimizer.step()

        _requires_grad((d_a, d_b), True)
        history_b = self.pool_b.query(fake_b)
        history_a = self.pool_a.query(fake_a)
        loss_d_b = 0.5 * (_lsgan(d_b(real_b), True) + _lsgan(d_b(history_b), False))
        loss_d_a = 0.5 * (_lsgan(d_a(real_a), True) + _lsgan(d_a(history_a), False))
        optimizer = self.optimizers["discriminators"]
        optimizer.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        optimizer.step()
        return {
            "loss": (gan + cycle + identity).item(),
            "gan": gan.item(),
            "cycle": cycle.item(),
            "identity": identity.item(),
            "d_a": loss_d_a.item(),
            "d_b": loss_d_b.item(),
        }

    def predict(self, pair: PairBatch) -> torch.Tensor:
        """A -> B for sample grids (each row: an A crop, its translation, some B crop)."""
        return from_network(
            self.modules["a_to_b"](to_network(pair.input, (-1.0, 1.0))), (-1.0, 1.0)
        )

    def extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_a.load(state["pool_a"], self.device)
        self.pool_b.load(state["pool_b"], self.device)
