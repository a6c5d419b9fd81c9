"""Unpaired training pairs: random crops of two image streams, side by side, per pass.

CycleGAN learns from two sets that are not paired: what it needs in a batch is some A
crops and some B crops. This stream gives them as `PairBatch`es (input: A crops, target:
B crops, task "unpaired") so `fit`, the loop every nodeflow trainer runs, drives CycleGAN
too. One pass reads both streams side by side until the longer one ends, starting the
shorter one over as often as needed; nothing is held beyond the batch being cut. Crops
and mirroring come from a generator seeded by (seed, pass, batch index), so a pass is the
same every time it is read (what resuming needs) and differs from the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import kornia
import torch
import torch.nn.functional as F

from nodeflow.api import Batch, PairBatch, Stream, current_pass, pair_generator

CHUNK = 8  # image pairs cut per dataset batch (fit re-batches them to batch_size)


def with_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """C x H x W with `channels` channels: gray repeated to RGB, RGB reduced to luma."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1)
    return kornia.color.rgb_to_grayscale(image[None])[0]


def unpaired_pairs(a: Stream, b: Stream, crop: int, seed: int) -> Stream:
    """The dataset stream of random `crop` x `crop` crops of `a` (inputs) and `b` (targets).

    The first image of each stream sets its domain's channel count; later gray or RGB
    images are converted to it. Images with a side shorter than the crop are enlarged
    (bilinear) until it fits.
    """
    channels = {name: _first(stream, name).shape[0] for name, stream in (("a", a), ("b", b))}

    def produce() -> Iterator[Batch]:
        index = 0
        chunk: list[tuple[torch.Tensor, torch.Tensor]] = []
        for pair in _side_by_side(a, b):
            chunk.append(pair)
            if len(chunk) == CHUNK:
                yield _cut(chunk, index)
                chunk, index = [], index + 1
        if chunk:
            yield _cut(chunk, index)

    def _cut(chunk: list[tuple[torch.Tensor, torch.Tensor]], index: int) -> Batch:
        generator = pair_generator(seed, current_pass(), index)
        inputs = [_crop(with_channels(x, channels["a"]), crop, generator) for x, _ in chunk]
        targets = [_crop(with_channels(y, channels["b"]), crop, generator) for _, y in chunk]
        pairs = PairBatch(torch.stack(inputs), torch.stack(targets), "unpaired")
        return Batch(pairs, [f"pair{index * CHUNK + i:06d}" for i in range(len(chunk))])

    return Stream(produce)


def _first(stream: Stream, name: str) -> torch.Tensor:
    image = next(_images(stream), None)
    if image is None:
        raise ValueError(f"input {name!r} gave no images to train on; link a stream of images")
    return image


def _side_by_side(a: Stream, b: Stream) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Items of both streams in step until both have ended once (the shorter restarts)."""
    streams = {"a": a, "b": b}
    readers = {name: _images(stream) for name, stream in streams.items()}
    ended: set[str] = set()
    while True:
        items = {}
        for name, reader in readers.items():
            item = next(reader, None)
            if item is None:
                ended.add(name)
                if len(ended) == len(streams):
                    return
                readers[name] = _images(streams[name])
                item = next(readers[name])
            items[name] = item
        yield items["a"], items["b"]


def _crop(image: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    height, width = image.shape[-2:]
    if min(height, width) < crop:
        scale = crop / min(height, width)
        size = (max(crop, round(height * scale)), max(crop, round(width * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        height, width = size
    top = int(torch.randint(height - crop + 1, (), generator=generator))
    left = int(torch.randint(width - crop + 1, (), generator=generator))
    piece = image[:, top : top + crop, left : left + crop]
    return piece.flip(-1) if torch.rand((), generator=generator) < 0.5 else piece


def _images(stream: Stream) -> Iterator[torch.Tensor]:
    for batch in stream:
        yield from batch.data
