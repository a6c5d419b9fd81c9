"""A folder with one sub-folder of images per class: listing, splitting and loading it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nodeflow.api import list_images, read_image


@dataclass(frozen=True)
class Example:
    path: Path
    label: int


def read_class_folder(folder: str | Path) -> tuple[list[str], list[Example]]:
    """The class names (sub-folder names, sorted) and every image file with its class."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(
            f"no folder {str(folder)!r}; `folder` holds one sub-folder of images per class, "
            "e.g. classes/cat/*.jpg and classes/dog/*.jpg"
        )
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(labels) < 2:
        raise ValueError(
            f"the folder {str(folder)!r} has {len(labels)} class sub-folder(s); a classifier needs "
            "at least two, one per class, each holding that class's images"
        )
    examples = []
    for label, name in enumerate(labels):
        try:
            files = list_images(str(root / name))
        except ValueError:
            raise ValueError(f"the class folder {str(root / name)!r} holds no images") from None
        examples += [Example(path, label) for path in files]
    return labels, examples


def split(
    examples: list[Example], holdout: float, generator: torch.Generator
) -> tuple[list[Example], list[Example]]:
    """(train, held out): `holdout` of each class, at random, keeping one to train on."""
    train: list[Example] = []
    held: list[Example] = []
    for label in sorted({e.label for e in examples}):
        members = [e for e in examples if e.label == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        count = min(round(len(members) * holdout), len(members) - 1)
        if holdout > 0 and len(members) > 1:
            count = max(count, 1)
        held += [members[i] for i in order[:count]]
        train += [members[i] for i in order[count:]]
    return train, held


def load_square(path: Path, size: int) -> torch.Tensor:
    """One file as 3 x size x size: shorter side resized to `size` (antialiased), centre crop."""
    image = read_image(path)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return square(image, size)


def square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (... x H x W) with the shorter side resized to `size`, then centre-cropped."""
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(images, [size], antialias=True)
    return TF.center_crop(resized, [size, size]).clamp(0.0, 1.0)
