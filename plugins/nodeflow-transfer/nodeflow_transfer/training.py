"""Training a linear classifier on a backbone's features, optionally fine-tuning its last stages.

With no stage to fine-tune, every image goes through the backbone once and the head is
trained on the stored pooled features (a linear probe: fast, and memory grows only by
one feature vector per image). With `finetune_stages` = k, the last k stages train with
the head at a tenth of its learning rate, on mini-batches read from the files each epoch
and mirrored at random; batch norms keep their pretrained statistics (eval mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nodeflow.api import Model, NodeContext, atomic_path
from nodeflow_transfer.backbones import Classifier, create_classifier
from nodeflow_transfer.classes import Example, load_square

BACKBONE_LR_SCALE = 0.1
CHECKPOINT = "classifier.pt"


@dataclass(frozen=True)
class Settings:
    size: int
    epochs: int
    batch_size: int
    lr: float
    finetune_stages: int


def _batches(items: list, batch_size: int) -> Iterator[list]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


class Trainer:
    """Builds the classifier from a backbone model and trains it, epoch by epoch."""

    def __init__(
        self,
        backbone: Model,
        labels: list[str],
        settings: Settings,
        ctx: NodeContext,
        generator: torch.Generator,
    ):
        self.settings = settings
        self.ctx = ctx
        self.generator = generator
        name = backbone.info.hparams["backbone"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))
            self.model = create_classifier(
                {"backbone": name, "classes": len(labels)},
                extra={
                    "labels": labels,
                    "size": settings.size,
                    "finetune_stages": settings.finetune_stages,
                },
            )
        self.net: Classifier = self.model.net
        self.net.backbone.load_state_dict(backbone.net.state_dict())
        self.net.to(ctx.device).eval()
        stages = self.net.backbone.stages()
        trainable = stages[len(stages) - settings.finetune_stages :]
        for parameter in self.net.backbone.parameters():
            parameter.requires_grad_(False)
        tuned = [p for stage in trainable for p in stage.parameters()]
        for parameter in tuned:
            parameter.requires_grad_(True)
        groups = [{"params": list(self.net.head.parameters()), "lr": settings.lr}]
        if tuned:
            groups.append({"params": tuned, "lr": settings.lr * BACKBONE_LR_SCALE})
        self.optimizer = torch.optim.Adam(groups)
        self.epoch = 0

    # -- data --------------------------------------------------------------------------------

    def _images(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """The readable examples' images and labels, on the run's device; others reported."""
        size, device = self.settings.size, self.ctx.device
        images, labels = [torch.empty(0, 3, size, size)], []
        for example in examples:
            try:
                images.append(load_square(example.path, size)[None])
            except ValueError as exc:
                self.ctx.item_error(str(example.path), str(exc))
                continue
            labels.append(example.label)
        return torch.cat(images).to(device), torch.tensor(labels, dtype=torch.long, device=device)

    def _pooled(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised pooled features of every example, read batch by batch, and labels."""
        features, labels = [], []
        with torch.no_grad():
            for chunk in _batches(examples, self.settings.batch_size):
                images, targets = self._images(chunk)
                if len(images):
                    features.append(self.net.pooled(images))
                    labels.append(targets)
                self.ctx.check_cancelled()
        if not features:
            raise ValueError("none of the class folder's images could be read")
        return torch.cat(features), torch.cat(labels)

    def _standardise(self, train: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """Set the feature statistics from the training images; their features, for a probe."""
        self.net.feature_mean.zero_()
        self.net.feature_std.fill_(1.0)
        features, targets = self._pooled(train)
        self.net.feature_mean.copy_(features.mean(0))
        spread = features.std(0, unbiased=False)
        self.net.feature_std.copy_(spread.clamp_min(spread.mean().item() * 0.1 + 1e-6))
        return (features - self.net.feature_mean) / self.net.feature_std, targets

    # -- training ------------------------------------------------------------------------------

    def _step(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        loss = F.cross_entropy(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def train(self, train: list[Example], checkpoint: Path) -> None:
        """Train for the remaining epochs, keeping a checkpoint after each one.

        A cancelled run leaves the checkpoint of its last finished epoch, so a re-run
        resumes there and ends exactly as an unbroken run would.
        """
        s = self.settings
        standardised = self._standardise(train)
        pooled = None if s.finetune_stages else standardised
        if checkpoint.is_file():
            self._resume(checkpoint)
        per_epoch = -(-len(train) // s.batch_size)
        total = s.epochs * per_epoch
        while self.epoch < s.epochs:
            order = torch.randperm(len(train), generator=self.generator).tolist()
            for index, chunk in enumerate(_batches(order, s.batch_size)):
                if pooled is not None:
                    features, targets = pooled[0][chunk], pooled[1][chunk]
                    loss = self._step(self.net.head(features), targets)
                else:
                    images, targets = self._images([train[i] for i in chunk])
                    if not len(images):
                        continue
                    flip = torch.rand(len(images), generator=self.generator) < 0.5
                    images = torch.where(
                        flip.to(images.device)[:, None, None, None], images.flip(-1), images
                    )
                    loss = self._step(self.net(images), targets)
                done = self.epoch * per_epoch + index + 1
                self.ctx.progress(done, total, loss=loss, epoch=self.epoch + 1)
            self.epoch += 1
            self._save(checkpoint)

    def accuracy(self, examples: list[Example]) -> float:
        """The fraction of `examples` the classifier gets right."""
        features, targets = self._pooled(examples)
        with torch.no_grad():
            predictions = self.net.head(features).argmax(dim=1)
        return (predictions == targets).float().mean().item()

    def _save(self, path: Path) -> None:
        state = {
            "epoch": self.epoch,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _resume(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng"])
        self.epoch = int(state["epoch"])
