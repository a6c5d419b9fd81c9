"""Random training crops from an image stream, with a bounded number of images in memory."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import kornia
import torch
import torch.nn.functional as F

from nodeflow.api import Stream, to_network


def with_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """C x H x W with `channels` channels: gray repeated to RGB, RGB reduced to luma."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1)
    return kornia.color.rgb_to_grayscale(image[None])[0]


class CropSampler:
    """Random square crops, randomly mirrored, of the images of one stream.

    Up to `buffer` images are held in memory. A stream that fits is read once and kept; a
    longer one is read round and round, each crop drawn swapping one held image for the
    next one read, so every image keeps coming back while memory stays bounded. The first
    image sets the domain's channel count; later gray or RGB images are converted to it.
    Images with a side shorter than the crop are enlarged (bilinear) until it fits.
    """

    def __init__(
        self, stream: Stream, crop: int, buffer: int, generator: torch.Generator, domain: str
    ):
        self.crop = crop
        self.generator = generator
        first_pass = _images(stream)
        self.held = [self._fit(image) for image in itertools.islice(first_pass, buffer)]
        if not self.held:
            raise ValueError(
                f"input {domain!r} gave no images to train on; link a stream of images"
            )
        self.channels = self.held[0].shape[0]
        self.held = [with_channels(image, self.channels) for image in self.held]
        after = next(first_pass, None)
        self.whole = after is None
        self._more = itertools.chain([after], first_pass, _forever(stream))

    def _fit(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if min(height, width) >= self.crop:
            return image
        scale = self.crop / min(height, width)
        size = (max(self.crop, round(height * scale)), max(self.crop, round(width * scale)))
        return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]

    def _index(self, size: int) -> int:
        return int(torch.randint(size, (), generator=self.generator))

    def draw(self, count: int) -> torch.Tensor:
        """`count` crops, count x C x crop x crop in [-1, 1], where the images are."""
        crops = []
        for _ in range(count):
            if not self.whole:
                image = with_channels(self._fit(next(self._more)), self.channels)
                self.held[self._index(len(self.held))] = image
            image = self.held[self._index(len(self.held))]
            height, width = image.shape[-2:]
            top = self._index(height - self.crop + 1)
            left = self._index(width - self.crop + 1)
            crop = image[:, top : top + self.crop, left : left + self.crop]
            if torch.rand((), generator=self.generator).item() < 0.5:
                crop = crop.flip(-1)
            crops.append(crop)
        return to_network(torch.stack(crops), (-1.0, 1.0))


def _images(stream: Stream) -> Iterator[torch.Tensor]:
    for batch in stream:
        yield from batch.data


def _forever(stream: Stream) -> Iterator[torch.Tensor]:
    while True:
        yield from _images(stream)
