"""Training nodes: paired datasets from image streams, and trainers that output models.

Dataset nodes (`pairs`, `aligned_pairs`, `folder_pairs`) are per-batch (`map`) nodes
turning image batches into training pairs (see `nodeflow.training.datasets`). Trainer
nodes (`train_autoencoder`, `train_unet`, `train_pix2pix`) consume a whole dataset, run
`nodeflow.training.loop.fit` and output models whose ArchInfo says what they were trained
to do, so the `unet`, `cgan_generate`, `decode` and `discriminator_score` nodes use them
without further settings. Trainers persist their models in the disk cache: a re-run of an
unchanged graph does not train again.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nodeflow.engine.context import NodeContext
from nodeflow.files.policy import output_folder
from nodeflow.models.checkpoint import NORMS, new_model
from nodeflow.models.inference import from_network, image_function, to_network, upsample
from nodeflow.models.model import Model
from nodeflow.node import Bool, Choice, Float, Input, Int, Output, Param, Str, node
from nodeflow.node import Path as PathParam
from nodeflow.plugins import hookimpl
from nodeflow.training.datasets import (
    TASKS,
    PairBatch,
    current_pass,
    cut,
    draw_windows,
    make_pairs,
    pair_generator,
    size_factor,
    split_aligned,
)
from nodeflow.training.loop import (
    Outcome,
    Schedule,
    fit,
    memory_format,
    pass_batches,
    prepare_module,
)
from nodeflow.training.losses import ColorBins, GANLoss, ab_units, reconstruction_loss
from nodeflow.training.negatives import degrade
from nodeflow.types import DATASET, IMAGE, MODEL, Stream

DATASET_OUT = {"dataset": Output(DATASET, help="(input, target) training pairs")}
SEED = Int(0, help="random seed for crops, flips, noise and masks; each pass differs")
FLIP = Bool(True, help="flip pairs horizontally at random")


def _crop_param(default: int = 64) -> Param:
    return Int(default, min=8, max=4096, help="side of the random square crops")


# -- datasets ------------------------------------------------------------------------------------------


def _too_small(images: torch.Tensor, crop: int, ctx: NodeContext, what: str = "images") -> bool:
    """Whether the batch is smaller than the crop; reported once (on the first pass)."""
    height, width = images.shape[-2:]
    if min(height, width) >= crop:
        return False
    if current_pass() == 0:
        ctx.item_error(
            f"batch {ctx.batch_index}",
            f"{len(images)} {what} of {height}x{width} are smaller than the crop of {crop}: "
            "skipped; lower `crop` or use larger images",
        )
    return True


def _empty(task: str, channels: tuple[int, int], device: torch.device) -> PairBatch:
    inputs = torch.zeros(0, channels[0], 1, 1, device=device)
    return PairBatch(inputs, torch.zeros(0, channels[1], 1, 1, device=device), task)


@node(
    "pairs",
    inputs={"image": Input(IMAGE, help="source photos; no labels needed")},
    outputs=DATASET_OUT,
    params={
        "task": Choice(TASKS, "denoise", help="what the pairs teach; see the node's help"),
        "sigma": Float(25.0, min=0, max=255, help="denoise: noise level on the 0-255 scale"),
        "scale": Int(4, min=2, max=8, help="superres: how many times smaller the input is"),
        "crop": _crop_param(),
        "crops_per_image": Int(4, min=1, max=1024, help="random crops per image and pass"),
        "zoom": Float(1.0, min=1, max=16, help="crops span up to this many crop sides, shrunk"),
        "synthetic": Float(0.0, min=0, max=1, help="share of crops that are dead-leaves images"),
        "jitter": Float(0.0, min=0, max=0.5, help="brightness, contrast, saturation change"),
        "flip": FLIP,
        "seed": SEED,
    },
)
def pairs(
    image: torch.Tensor,
    *,
    task: str,
    sigma: float,
    scale: int,
    crop: int,
    crops_per_image: int,
    zoom: float,
    synthetic: float,
    jitter: float,
    flip: bool,
    seed: int,
    ctx: NodeContext,
) -> PairBatch:
    """Make training pairs from any images, without labels: the target is the photo itself.

    Each pass over the data cuts `crops_per_image` random crop x crop squares from every
    image (flipped at random) and derives the input from each: colorize (Lab lightness ->
    ab), denoise (noisy -> clean), superres (bicubic `scale` times smaller -> full size),
    edges2photo (Canny edges -> photo), inpaint (gray rectangles -> photo), autoencode
    (photo -> itself). Images smaller than the crop are skipped and reported; colorize
    skips gray images. Crops, flips and noise are reproducible from `seed` and differ from
    one pass (epoch) to the next.

    More variety from few photos: `zoom` cuts crops from squares up to that many times
    larger, shrunk to the crop (the photos at several scales); `synthetic` makes that share
    of the crops procedural dead-leaves images (overlapping discs, some striped) in the
    photos' colours; `jitter` varies each crop's brightness, contrast and saturation.
    They do not apply to edges2photo.
    """
    if task == "superres" and crop % scale:
        raise ValueError(
            f"superres needs a crop that is a multiple of the scale {scale}, got crop {crop}"
        )
    channels = {"colorize": (1, 2), "edges2photo": (1, image.shape[1])}
    empty = _empty(task, channels.get(task, (image.shape[1],) * 2), image.device)
    if _too_small(image, crop, ctx):
        return empty
    if task == "colorize" and image.shape[1] != 3:
        if current_pass() == 0:
            ctx.item_error(
                f"batch {ctx.batch_index}", "colorize pairs need colour photos: gray ones skipped"
            )
        return empty
    generator = pair_generator(seed, current_pass(), ctx.batch_index)
    return make_pairs(
        image,
        task,
        generator,
        crop=crop,
        crops_per_image=crops_per_image,
        flip=flip,
        sigma=sigma,
        scale=scale,
        zoom=zoom,
        jitter=jitter,
        synthetic=synthetic,
    )


@node(
    "aligned_pairs",
    inputs={"image": Input(IMAGE, help="side-by-side A|B images (the pix2pix folder format)")},
    outputs=DATASET_OUT,
    params={
        "direction": Choice(("AtoB", "BtoA"), "AtoB", help="which half is the input"),
        "crop": _crop_param(),
        "flip": FLIP,
        "seed": SEED,
    },
)
def aligned_pairs(
    image: torch.Tensor, *, direction: str, crop: int, flip: bool, seed: int, ctx: NodeContext
) -> PairBatch:
    """Training pairs from side-by-side A|B images, as pix2pix datasets ship them.

    Each image is split down the middle into A (left) and B (right); AtoB makes A the
    input and B the target. One random crop per image and pass, cut at the same place in
    both halves and flipped together. Halves smaller than the crop are skipped and reported.
    """
    inputs, targets = split_aligned(image, direction)
    if _too_small(inputs, crop, ctx, "image halves"):
        return _empty("translate", (image.shape[1], image.shape[1]), image.device)
    generator = pair_generator(seed, current_pass(), ctx.batch_index)
    windows = draw_windows(len(image), 1, inputs.shape[-2:], crop, flip, generator)
    return PairBatch(cut(inputs, windows, crop), cut(targets, windows, crop), "translate")


@node(
    "folder_pairs",
    inputs={
        "image": Input(IMAGE, help="the inputs"),
        "target": Input(IMAGE, help="the targets, item by item with `image`"),
    },
    outputs=DATASET_OUT,
    params={"crop": _crop_param(), "flip": FLIP, "seed": SEED},
)
def folder_pairs(
    image: torch.Tensor,
    target: torch.Tensor,
    *,
    crop: int,
    flip: bool,
    seed: int,
    ctx: NodeContext,
) -> PairBatch:
    """Training pairs from two parallel image streams (two folders), zipped item by item.

    Both are cropped at the same place and flipped together. The target may be a whole
    number of times larger than the input (a super-resolution set of small and large
    images): then its crop is that many times larger too and the pairs' task is
    "superres" with that scale; otherwise it is "translate". `crop` counts input pixels.
    """
    if len(image) != len(target):
        raise ValueError(
            f"image and target batches hold {len(image)} and {len(target)} images; stream "
            "both folders with the same batch size and the same number of files"
        )
    factor = size_factor(image, target)
    if not factor:
        raise ValueError(
            f"target images of {tuple(target.shape[-2:])} are not the size of the input images "
            f"{tuple(image.shape[-2:])} or a whole multiple of it"
        )
    task, info = ("superres", {"scale": factor}) if factor > 1 else ("translate", {})
    if _too_small(image, crop, ctx):
        return _empty(task, (image.shape[1], target.shape[1]), image.device)
    generator = pair_generator(seed, current_pass(), ctx.batch_index)
    windows = draw_windows(len(image), 1, image.shape[-2:], crop, flip, generator)
    return PairBatch(cut(image, windows, crop), cut(target, windows, crop, factor), task, info)


# -- trainers -----------------------------------------------------------------------------------------


def _schedule_params(lr: float, steps: int = 1000) -> dict[str, Param]:
    return {
        "steps": Int(steps, min=1, max=100_000_000, help="optimizer steps (unless epochs)"),
        "epochs": Int(
            None, min=1, max=1_000_000, help="whole passes over the data; wins over steps"
        ),
        "batch_size": Int(8, min=1, max=4096, help="pairs per step"),
        "lr": Float(lr, min=0, max=10, help="Adam learning rate"),
        "lr_decay": Bool(
            True, help="keep lr for half the steps, then decay it linearly to zero (pix2pix)"
        ),
        "seed": Int(0, help="random seed for weight init and dropout"),
        "time_budget": Float(None, min=0, help="stop cleanly after this many seconds"),
        "sample_every": Int(
            100, min=0, help="write a sample grid every N steps and at the end (0: never)"
        ),
        "samples": PathParam(None, help="folder for sample grids (default: the work folder)"),
        "checkpoint_every": Int(
            None,
            min=1,
            help="also keep a resumable checkpoint every N steps (always: each "
            "minute and on a stop)",
        ),
    }


def _samples_folder(samples: str | None, ctx: NodeContext) -> str | None:
    """The samples folder under the write policy: inside the run's output root, created."""
    return None if samples is None else str(output_folder(samples, ctx.output_root))


def upsampled_input(pair: PairBatch) -> torch.Tensor:
    """The input as same-size networks read it: superres inputs enlarged back (bicubic)."""
    if pair.task == "superres":
        return upsample(pair.input, int(pair.info["scale"]))
    return pair.input


def _task_fields(first: PairBatch) -> dict[str, Any]:
    """The ArchInfo fields a same-size network trained on these pairs records about its task.

    Super-resolution models record their scale and that inputs are enlarged (bicubic)
    before the network, which is how the `unet` node then feeds them; denoisers record
    the noise level they learned.
    """
    fields: dict[str, Any] = {"task": first.task}
    if first.task == "superres":
        fields["scale"] = int(first.info["scale"])
        fields["extra"] = {"upsample_input": True}
    if first.task == "denoise":
        fields["extra"] = {"sigma": float(first.info["sigma"])}
    return fields


def _check_size(pair: PairBatch, model: Model, what: str) -> None:
    multiple = model.info.size_multiple
    height, width = upsampled_input(pair).shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"the {what} reads images whose sides are multiples of {multiple}, but the "
            f"dataset's pairs are {height}x{width}; set the dataset's crop to a multiple "
            f"of {multiple} or make the network shallower"
        )


def _adam(module: nn.Module, lr: float, beta1: float = 0.9) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(beta1, 0.999))


def _finish(model: Model, outcome: Outcome, schedule: Schedule, **extra: Any) -> Model:
    """The trained model in eval mode, its training record in ArchInfo.extra."""
    model.net.eval()
    record = {**model.info.extra, **extra, "training": outcome.record(schedule)}
    return Model(model.net, dataclasses.replace(model.info, extra=record))


class ImageTrainer:
    """One network trained with a pixel loss (L1/L2) or the colorization classification loss."""

    def __init__(self, model: Model, lr: float, loss: str, bins: ColorBins | None = None):
        self.model = model
        self.net = model.net
        self.value_range = model.info.value_range
        self.bins = bins
        self.pixel_loss = None if bins else reconstruction_loss(loss)
        self.modules = {"net": self.net}
        self.optimizers = {"net": _adam(self.net, lr)}

    def _output(self, pair: PairBatch) -> torch.Tensor:
        x = to_network(upsampled_input(pair), self.value_range)
        function = image_function(self.net, self.model.info)  # self.net: DDP-wrapped in fit
        return function(x.contiguous(memory_format=memory_format(x.device)))

    def step(self, pair: PairBatch) -> dict[str, float]:
        output = self._output(pair)
        if self.bins is not None:
            loss = self.bins.loss(self.bins.logits(output), ab_units(pair.target))
        else:
            loss = self.pixel_loss(output, to_network(pair.target, self.value_range))
        optimizer = self.optimizers["net"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    def predict(self, pair: PairBatch) -> torch.Tensor:
        output = self._output(pair)
        if self.bins is not None:
            output = self.bins.decode_to_network(output, self.value_range)
        return from_network(output.float(), self.value_range)


# -- train_autoencoder --------------------------------------------------------------------------------


def _latent_statistics(
    model: Model, dataset: Stream, batch_size: int, device: torch.device
) -> dict[str, list[float]]:
    """Mean and std per channel of the encoder's latents over one pass of the inputs."""
    total = total_sq = None
    count = 0
    for pair in pass_batches(dataset, 0, batch_size, device):
        x = to_network(upsampled_input(pair), model.info.value_range)
        latent = model.net.encode(x).double()
        sums, squares = latent.sum(dim=(0, 2, 3)), latent.square().sum(dim=(0, 2, 3))
        total = sums if total is None else total + sums
        total_sq = squares if total_sq is None else total_sq + squares
        count += latent.numel() // latent.shape[1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return {"latent_mean": mean.float().tolist(), "latent_std": std.float().tolist()}


@node(
    "train_autoencoder",
    inputs={
        "dataset": Input(
            DATASET,
            help="pairs: (x, x) for a plain autoencoder, (noisy, clean) for a denoising one",
        )
    },
    outputs={"model": Output(MODEL, help="the trained autoencoder")},
    params={
        "latent_channels": Int(8, min=1, max=1024, help="channels of the spatial latent"),
        "depth": Int(3, min=1, max=8, help="stride-2 levels: the latent is 2**depth times smaller"),
        "width": Int(32, min=1, max=1024, help="channels of the first level (doubling, up to 8x)"),
        "loss": Choice(("L2", "L1"), "L2", help="reconstruction loss"),
        **_schedule_params(1e-3),
    },
    mode="collect",
    persist=True,
    inference=False,
    writes={"samples": "folder"},
)
def train_autoencoder(
    dataset: Stream,
    *,
    latent_channels: int,
    depth: int,
    width: int,
    loss: str,
    steps: int,
    epochs: int | None,
    batch_size: int,
    lr: float,
    lr_decay: bool,
    checkpoint_every: int | None,
    seed: int,
    time_budget: float | None,
    sample_every: int,
    samples: Path | None,
    ctx: NodeContext,
) -> Model:
    """Train a convolutional autoencoder on a dataset; pairs (noisy, clean) make it denoise.

    The encoder maps crop x crop images to latent_channels x (crop / 2**depth) squared;
    the decoder maps back. After training, the mean and spread of every latent channel
    over the training inputs are recorded in the model, so `latent_sample` draws latents
    that decode to plausible images. The model's task is the dataset's ("autoencode",
    "denoise", ...), so the `unet` node runs it as image in, image out.
    """
    samples = _samples_folder(samples, ctx)
    schedule = Schedule(
        steps, epochs, batch_size, seed, time_budget, sample_every, samples, lr_decay,
        checkpoint_every,
    )  # fmt: skip

    def build(first: PairBatch) -> ImageTrainer:
        if first.input.shape[1] != first.target.shape[1]:
            raise ValueError(
                f"an autoencoder outputs as many channels as it reads, but the dataset pairs "
                f"{first.input.shape[1]}-channel inputs with {first.target.shape[1]}-channel "
                f"targets (task {first.task!r}); use train_unet for this task"
            )
        side = min(upsampled_input(first).shape[-2:])
        hparams = {
            "in_channels": first.input.shape[1],
            "base": width,
            "depth": depth,
            "latent_channels": latent_channels,
            "image_size": side,
        }
        model = new_model("autoencoder", hparams, **_task_fields(first))
        _check_size(first, model, "autoencoder")
        prepare_module(model.net, ctx.device)
        return ImageTrainer(model, lr, loss)

    trainer, outcome = fit(build, dataset, schedule, ctx)
    model = trainer.model
    model.net.eval()
    with torch.no_grad():
        stats = _latent_statistics(model, dataset, schedule.batch_size, ctx.device)
    return _finish(model, outcome, schedule, **stats)


# -- train_unet -------------------------------------------------------------------------------------------


def _colour_counts(bins: ColorBins, dataset: Stream, batch_size: int, device: torch.device):
    """How many target pixels fall in each ab bin over one pass of the dataset."""
    counts = torch.zeros(len(bins), device=device)
    for pair in pass_batches(dataset, 0, batch_size, device):
        nearest = bins.nearest(ab_units(pair.target))
        counts += torch.bincount(nearest.flatten(), minlength=len(bins)).float()
    return counts


UNET_PARAMS = {
    "num_downs": Int(
        5, min=2, max=10, help="stride-2 levels; sides must be multiples of 2**num_downs"
    ),
    "ngf": Int(16, min=1, max=512, help="channels of the outermost level"),
    "norm": Choice(NORMS, "batch", help="normalization layers; none: no norm and no biases inside"),
    "dropout": Bool(False, help="dropout 0.5 in the inner up-blocks at ngf * 8 channels"),
}


def _unet_hparams(
    first: PairBatch, out_channels: int, num_downs: int, ngf: int, norm: str, dropout: bool
) -> dict[str, Any]:
    return {
        "in_channels": first.input.shape[1],
        "out_channels": out_channels,
        "num_downs": num_downs,
        "ngf": ngf,
        "norm": norm,
        "use_dropout": dropout,
    }


def _check_residual(first: PairBatch, loss: str) -> None:
    if loss == "classification" or first.input.shape[1] != first.target.shape[1]:
        raise ValueError(
            f"residual needs targets like the inputs (same channels, a pixel loss), but the "
            f"{first.task!r} pairs map {first.input.shape[1]} channels to "
            f"{first.target.shape[1]} with loss {loss!r}; set residual = false"
        )


def _channel_hparams(arch_id: str, pair_channels: tuple[int, int]) -> dict[str, int]:
    """The channel hyperparameters an architecture takes, set to the pairs' channel counts.

    An architecture whose defaults name `in_channels` and `out_channels` gets both; one
    naming a single `channels` gets it when inputs and targets have the same count.
    """
    defaults = new_model(arch_id).info.hparams
    found = {}
    if "in_channels" in defaults:
        found["in_channels"] = pair_channels[0]
    if "out_channels" in defaults:
        found["out_channels"] = pair_channels[1]
    if "channels" in defaults and pair_channels[0] == pair_channels[1]:
        found["channels"] = pair_channels[0]
    return found


def _network(
    architecture: str, first: PairBatch, out_channels: int, fields: dict[str, Any], unet: dict
) -> Model:
    """A fresh network of `architecture` for these pairs: the U-Net from its params, or a
    registered image-to-image architecture with its default hyperparameters and the pairs'
    channel counts."""
    if architecture == "unet":
        return new_model("unet", _unet_hparams(first, out_channels, **unet), **fields)
    from nodeflow.plugins import load_registry

    known = load_registry().architectures
    if architecture not in known:
        raise ValueError(
            f"no architecture {architecture!r} is registered; the registered ones: "
            f"{', '.join(known)} (`nodeflow plugins` shows what each plugin registers)"
        )
    channels = (first.input.shape[1], out_channels)
    model = new_model(architecture, _channel_hparams(architecture, channels), **fields)
    if model.info.purpose != "image-to-image":
        raise ValueError(
            f"architecture {architecture!r} builds a {model.info.purpose}, not an "
            "image-to-image network; train_unet trains image-to-image networks"
        )
    _check_channels(model, channels, f"architecture {architecture!r}")
    return model


def _check_channels(model: Model, channels: tuple[int, int], what: str) -> None:
    have = (model.info.in_channels, model.info.out_channels)
    if have != channels:
        raise ValueError(
            f"the {what} maps {have[0]} channels to {have[1]}, but the dataset's pairs map "
            f"{channels[0]} to {channels[1]}; choose pairs or a network that agree"
        )


def _fine_tuned(model: Model, first: PairBatch, loss: str, device: torch.device) -> Model:
    """A trainable copy of `model` (the input value itself is left as it is)."""
    if model.info.purpose != "image-to-image":
        raise ValueError(f"train_unet fine-tunes image-to-image models, got the {model.describe()}")
    if loss == "classification" and "color_bins" not in model.info.extra:
        raise ValueError(
            "loss classification fine-tunes only a classification colorizer (one trained "
            "with that loss); use L1 or L2 for this model"
        )
    out_channels = model.info.out_channels if loss == "classification" else first.target.shape[1]
    _check_channels(model, (first.input.shape[1], out_channels), model.describe())
    return Model(copy.deepcopy(model.net).to(device), model.info)


@node(
    "train_unet",
    inputs={
        "dataset": Input(DATASET, help="pairs from pairs, aligned_pairs or folder_pairs"),
        "model": Input(
            MODEL,
            optional=True,
            help="a model to fine-tune instead of training a new network (it is copied)",
        ),
    },
    outputs={"model": Output(MODEL, help="the trained network")},
    params={
        "architecture": Str(
            "unet",
            help="the network to train: unet (set up by num_downs, ngf, norm, dropout) or any "
            "registered image-to-image architecture, such as a plugin's",
        ),
        **UNET_PARAMS,
        "loss": Choice(
            ("L1", "L2", "classification"), "L1", help="L1, L2, or colorization classification"
        ),
        "residual": Bool(
            False, help="predict the correction to the input (restoration: denoise, superres)"
        ),
        "rebalance": Float(
            0.5,
            min=0,
            max=1,
            help="classification loss: how much rare colours weigh, 0 like common ones, "
            "1 by inverse frequency",
        ),
        **_schedule_params(2e-4),
    },
    mode="collect",
    persist=True,
    inference=False,
    writes={"samples": "folder"},
)
def train_unet(
    dataset: Stream,
    model: Model | None,
    *,
    architecture: str,
    num_downs: int,
    ngf: int,
    norm: str,
    dropout: bool,
    loss: str,
    residual: bool,
    rebalance: float,
    steps: int,
    epochs: int | None,
    batch_size: int,
    lr: float,
    lr_decay: bool,
    checkpoint_every: int | None,
    seed: int,
    time_budget: float | None,
    sample_every: int,
    samples: Path | None,
    ctx: NodeContext,
) -> Model:
    """Train a U-Net (pix2pix's generator), or another image-to-image network, on pairs.

    `architecture` picks the network: the U-Net, or any registered image-to-image
    architecture (a plugin's), built with its default hyperparameters and the pairs'
    channel counts (its `in_channels`/`out_channels`, or `channels`). A linked `model` is
    fine-tuned instead: a copy of it trains, keeping its architecture and task settings.
    The model records the dataset's task, so the `unet` node prepares inputs the same way:
    colorize models read lightness and return RGB, superres models read the small image
    (enlarged with bicubic interpolation before the network, as in training) and return
    it `scale` times larger. Loss "classification" (colorize only) predicts a distribution
    over quantized ab bins, weighted towards rare colours by `rebalance` (colours counted
    in one pass over the data before training; 0.5 is Zhang et al.'s choice), decoded by
    the annealed mean (Zhang et al. 2016; see nodeflow.training.losses). With `residual`
    the network learns the difference between its input and the target (output = input +
    network), recorded in the model so the `unet` node applies it the same way; for
    restoration, where the input is most of the answer, this trains much faster and better. Pair sides must be multiples of 2**num_downs.
    """
    samples = _samples_folder(samples, ctx)
    schedule = Schedule(
        steps, epochs, batch_size, seed, time_budget, sample_every, samples, lr_decay,
        checkpoint_every,
    )  # fmt: skip

    def build(first: PairBatch) -> ImageTrainer:
        if model is not None:
            tuned = _fine_tuned(model, first, loss, ctx.device)
            _check_size(first, tuned, tuned.describe())
            prepare_module(tuned.net, ctx.device)
            bins = ColorBins.from_extra(tuned.info.extra, ctx.device)
            return ImageTrainer(tuned, lr, loss, bins if loss == "classification" else None)
        out_channels, bins = first.target.shape[1], None
        fields = _task_fields(first)
        if loss == "classification":
            if first.task != "colorize":
                raise ValueError(
                    f"the classification loss is for colorization pairs, got task "
                    f"{first.task!r}; use L1 or L2"
                )
            bins = ColorBins.in_gamut(ctx.device)
            counts = _colour_counts(bins, dataset, schedule.batch_size, ctx.device)
            bins.fit_weights(counts, lam=1 - rebalance)
            out_channels = len(bins)
            fields["extra"] = bins.to_extra()
        if residual:
            _check_residual(first, loss)
            fields["extra"] = {**fields.get("extra", {}), "residual": True}
        unet = {"num_downs": num_downs, "ngf": ngf, "norm": norm, "dropout": dropout}
        network = _network(architecture, first, out_channels, fields, unet)
        _check_size(first, network, "U-Net" if architecture == "unet" else architecture)
        prepare_module(network.net, ctx.device)
        return ImageTrainer(network, lr, loss, bins)

    trainer, outcome = fit(build, dataset, schedule, ctx)
    return _finish(trainer.model, outcome, schedule)


# -- train_pix2pix --------------------------------------------------------------------------------------


class Pix2PixTrainer:
    """pix2pix: a generator and a conditional PatchGAN, one D step then one G step per batch.

    D learns to call (input, target) real and (input, G(input)) fake; G learns to make D
    call its output real while staying within L1 of the target (weighted by lambda_l1).
    With `negatives`, each of D's fakes is, at even odds, a degraded target instead (see
    nodeflow.training.negatives); mixed into one batch, so batch norm cannot tell them apart.
    """

    def __init__(
        self,
        generator: Model,
        discriminator: Model,
        *,
        lr: float,
        beta1: float,
        lambda_l1: float,
        gan_loss: str,
        negatives: bool = False,
    ):
        self.generator, self.discriminator = generator, discriminator
        self.negatives = negatives
        self.g, self.d = generator.net, discriminator.net
        self.value_range = generator.info.value_range
        self.gan = GANLoss(gan_loss)
        self.lambda_l1 = lambda_l1
        self.modules = {"generator": self.g, "discriminator": self.d}
        self.optimizers = {
            "generator": _adam(self.g, lr, beta1),
            "discriminator": _adam(self.d, lr, beta1),
        }

    def _condition(self, pair: PairBatch) -> torch.Tensor:
        x = to_network(upsampled_input(pair), self.value_range)
        return x.contiguous(memory_format=memory_format(x.device))

    def _judge(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.d(torch.cat([condition, image], dim=1))

    def step(self, pair: PairBatch) -> dict[str, float]:
        condition = self._condition(pair)
        real = to_network(pair.target, self.value_range)
        fake = self.g(condition)

        d_optimizer, g_optimizer = self.optimizers["discriminator"], self.optimizers["generator"]
        self.d.requires_grad_(True)
        d_real = self.gan(self._judge(condition, real), True)
        fakes = fake.detach()
        if self.negatives:
            swap = (torch.rand(len(fakes)) < 0.5).view(-1, 1, 1, 1).to(fakes.device)
            fakes = torch.where(swap, degrade(real, self.value_range), fakes)
        d_fake = self.gan(self._judge(condition, fakes), False)
        d_loss = 0.5 * (d_real + d_fake)
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()

        self.d.requires_grad_(False)
        g_gan = self.gan(self._judge(condition, fake), True)
        g_l1 = torch.nn.functional.l1_loss(fake, real)
        g_loss = g_gan + self.lambda_l1 * g_l1
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()
        self.d.requires_grad_(True)
        return {
            "loss": g_loss.item(),
            "g_gan": g_gan.item(),
            "g_l1": g_l1.item(),
            "d_real": d_real.item(),
            "d_fake": d_fake.item(),
        }

    def predict(self, pair: PairBatch) -> torch.Tensor:
        return from_network(self.g(self._condition(pair)).float(), self.value_range)


@node(
    "train_pix2pix",
    inputs={"dataset": Input(DATASET, help="pairs from pairs, aligned_pairs or folder_pairs")},
    outputs={
        "model": Output(MODEL, help="the trained generator"),
        "discriminator": Output(MODEL, help="the trained conditional PatchGAN"),
    },
    params={
        "generator": Choice(("unet", "resnet"), "unet", help="U-Net or ResNet-blocks generator"),
        **UNET_PARAMS,
        "n_blocks": Int(6, min=0, max=64, help="resnet generator: residual blocks"),
        "ndf": Int(16, min=1, max=512, help="discriminator channels of the first layer"),
        "n_layers": Int(3, min=1, max=6, help="PatchGAN stride-2 layers (3: 70x70 patches)"),
        "lambda_l1": Float(
            100.0, min=0, max=100000, help="weight of the L1 loss against the GAN loss"
        ),
        "gan_loss": Choice(
            ("vanilla", "lsgan"), "vanilla", help="vanilla (BCE) or least-squares GAN loss"
        ),
        "beta1": Float(0.5, min=0, max=0.999, help="Adam beta1"),
        "negatives": Bool(
            False, help="also show D blurred and noisy targets as fakes (a better realness scorer)"
        ),
        **_schedule_params(2e-4),
    },
    mode="collect",
    persist=True,
    inference=False,
    writes={"samples": "folder"},
)
def train_pix2pix(
    dataset: Stream,
    *,
    generator: str,
    num_downs: int,
    ngf: int,
    norm: str,
    dropout: bool,
    n_blocks: int,
    ndf: int,
    n_layers: int,
    lambda_l1: float,
    gan_loss: str,
    beta1: float,
    negatives: bool,
    steps: int,
    epochs: int | None,
    batch_size: int,
    lr: float,
    lr_decay: bool,
    checkpoint_every: int | None,
    seed: int,
    time_budget: float | None,
    sample_every: int,
    samples: Path | None,
    ctx: NodeContext,
) -> dict[str, Model]:
    """Train a pix2pix conditional GAN: a generator and a PatchGAN discriminator.

    Each step updates the discriminator once (real pairs against generated ones, the
    input and the output concatenated, input first) and then the generator once (fool the
    discriminator, plus lambda_l1 x L1 to the target), with Adam (lr, beta1 0.5) as in the
    pix2pix paper. The generator comes out as `model` (use it with `cgan_generate` or
    `unet`), the discriminator as `discriminator` (use it with `discriminator_score`).

    A discriminator only learns to tell real images from its generator's, so it scores
    anything unlike both (a blurred or noisy photo) at random. With `negatives`, half of
    its fakes are the targets blurred, noised or both at random strengths (negative data
    augmentation, Sinha et al. 2021): it learns that those are not real either, which
    makes it a realness scorer worth using on new images.
    """
    samples = _samples_folder(samples, ctx)
    schedule = Schedule(
        steps, epochs, batch_size, seed, time_budget, sample_every, samples, lr_decay,
        checkpoint_every,
    )  # fmt: skip

    def build(first: PairBatch) -> Pix2PixTrainer:
        in_channels, out_channels = first.input.shape[1], first.target.shape[1]
        fields = _task_fields(first)
        if generator == "unet":
            hparams = _unet_hparams(first, out_channels, num_downs, ngf, norm, dropout)
            g = new_model("unet", hparams, **fields)
        else:
            hparams = {
                "in_channels": in_channels,
                "out_channels": out_channels,
                "ngf": ngf,
                "n_blocks": n_blocks,
                "norm": norm,
                "use_dropout": dropout,
            }
            g = new_model("resnet_generator", hparams, **fields)
        _check_size(first, g, "generator")
        d = new_model(
            "patchgan",
            {"in_channels": in_channels + out_channels, "ndf": ndf, "n_layers": n_layers,
             "norm": norm},
            task=first.task,
            conditional=True,
            extra={"gan_mode": gan_loss, "condition_channels": in_channels,
                   "negatives": negatives},
        )  # fmt: skip
        side = min(upsampled_input(first).shape[-2:])
        if side < d.info.min_size:
            raise ValueError(
                f"a PatchGAN with n_layers {n_layers} needs pairs of at least "
                f"{d.info.min_size}x{d.info.min_size}, got {side}; raise the crop or lower n_layers"
            )
        prepare_module(g.net, ctx.device)
        prepare_module(d.net, ctx.device)
        return Pix2PixTrainer(
            g, d, lr=lr, beta1=beta1, lambda_l1=lambda_l1, gan_loss=gan_loss, negatives=negatives
        )

    trainer, outcome = fit(build, dataset, schedule, ctx)
    return {
        "model": _finish(trainer.generator, outcome, schedule),
        "discriminator": _finish(trainer.discriminator, outcome, schedule),
    }


TRAINING_NODES = (
    pairs,
    aligned_pairs,
    folder_pairs,
    train_autoencoder,
    train_unet,
    train_pix2pix,
)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in TRAINING_NODES:
        register(node_type)
