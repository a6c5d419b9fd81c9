"""The `cyclegan.train` and `cyclegan.translate` nodes."""

from __future__ import annotations

from dataclasses import replace

import torch

from nodeflow.api import (
    IMAGE,
    MODEL,
    Float,
    Input,
    Int,
    Model,
    NodeContext,
    Output,
    Schedule,
    Stream,
    apply_model,
    fit,
    match_channels,
    node,
)
from nodeflow.api import Path as PathParam
from nodeflow.files.policy import output_folder
from nodeflow_cyclegan.data import unpaired_pairs
from nodeflow_cyclegan.training import CycleGAN, Settings


@node(
    "train",
    inputs={
        "a": Input(IMAGE, help="images of domain A, e.g. photos"),
        "b": Input(IMAGE, help="images of domain B, unpaired with A, e.g. paintings"),
    },
    outputs={
        "a_to_b": Output(MODEL, help="the generator that turns A images into B images"),
        "b_to_a": Output(MODEL, help="the generator that turns B images into A images"),
    },
    params={
        "steps": Int(10000, min=1, max=10_000_000, help="training steps, one batch of each"),
        "batch_size": Int(1, min=1, max=256, help="crops of each domain per step"),
        "crop": Int(256, min=16, max=2048, help="side of the random square crops, a multiple of 4"),
        "ngf": Int(64, min=1, max=512, help="generator width (64 in the reference)"),
        "n_blocks": Int(9, min=0, max=64, help="residual blocks per generator (9 or 6)"),
        "ndf": Int(64, min=1, max=512, help="discriminator width (64 in the reference)"),
        "n_layers": Int(3, min=1, max=6, help="discriminator depth (3: 70x70 patches)"),
        "lr": Float(2e-4, min=0, max=1, help="Adam learning rate; falls to 0 over the 2nd half"),
        "lambda_cycle": Float(10.0, min=0, max=1000, help="weight of the cycle losses"),
        "lambda_identity": Float(
            0.5, min=0, max=10, help="weight of the identity losses, times lambda_cycle"
        ),
        "pool_size": Int(50, min=0, max=10000, help="generated images kept for the critics"),
        "seed": Int(0, help="seed of the initial weights, crops and pool"),
        "time_budget": Float(0.0, min=0, help="stop after this many seconds (0: no limit)"),
        "checkpoint_every": Int(200, min=1, help="steps between resumable checkpoints"),
        "sample_every": Int(
            0, min=0, help="write a sample grid every N steps and at the end (0: never)"
        ),
        "samples": PathParam(None, help="folder for sample grids (default: the work folder)"),
    },
    mode="collect",
    persist=True,
    inference=False,
    writes={"samples": "folder"},
)
def train(
    a: Stream,
    b: Stream,
    *,
    steps: int,
    batch_size: int,
    crop: int,
    ngf: int,
    n_blocks: int,
    ndf: int,
    n_layers: int,
    lr: float,
    lambda_cycle: float,
    lambda_identity: float,
    pool_size: int,
    seed: int,
    time_budget: float,
    checkpoint_every: int,
    sample_every: int,
    samples: str | None,
    ctx: NodeContext,
) -> dict[str, Model]:
    """Train a CycleGAN on two unpaired image streams: generators A -> B and B -> A.

    Two ResNet-blocks generators and two PatchGAN discriminators learn from random
    `crop` x `crop` crops (randomly mirrored) of the two streams, with no pairing between
    them: the least-squares GAN loss makes each generator's output look like the other
    domain, the cycle-consistency loss (A -> B -> A gives back A, weighted by
    lambda_cycle) keeps the content, and the identity loss (a B image given to the A -> B
    generator stays as it is, weighted by lambda_identity x lambda_cycle; only when both
    domains have the same channel count) keeps colours. Discriminators train on a
    history pool of generated images. Adam at lr with betas (0.5, 0.999); the rate falls
    linearly to zero over the second half of the steps. The defaults are the reference's
    (Zhu et al. 2017); a CPU wants far smaller ngf, n_blocks, ndf and crop.

    It trains in nodeflow's own loop, as the built-in trainers do: progress reports the
    losses (gan, cycle, identity, d_a, d_b; loss is their generator sum); a resumable
    checkpoint is kept every checkpoint_every steps, every minute and on a stop, so a
    re-run with the same inputs and params resumes there; time_budget stops early and
    returns the models trained so far; sample_every writes grids (an A crop, its
    translation, a B crop). The models read and write [-1, 1]; `cyclegan.translate`,
    `cgan_generate` and `unet` handle that, and `save_model` writes them.
    """
    if crop % 4:
        raise ValueError(
            f"crop must be a multiple of 4 (the generators halve it twice), got {crop}"
        )
    minimum = 3 * 2**n_layers
    if crop < minimum:
        raise ValueError(
            f"a {crop}x{crop} crop is too small for a discriminator with n_layers = {n_layers}, "
            f"which needs at least {minimum}; raise crop or lower n_layers"
        )
    schedule = Schedule(
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        time_budget=time_budget or None,
        sample_every=sample_every,
        samples=None if samples is None else str(output_folder(samples, ctx.output_root)),
        lr_decay=True,
        checkpoint_every=checkpoint_every,
    )

    def build(first) -> CycleGAN:
        settings = Settings(
            channels_a=first.input.shape[1],
            channels_b=first.target.shape[1],
            ngf=ngf,
            n_blocks=n_blocks,
            ndf=ndf,
            n_layers=n_layers,
            lr=lr,
            lambda_cycle=lambda_cycle,
            lambda_identity=lambda_identity,
            pool_size=pool_size,
        )
        return CycleGAN(settings, ctx.device)

    cyclegan, outcome = fit(build, unpaired_pairs(a, b, crop, seed), schedule, ctx)
    record = {"training": outcome.record(schedule)}
    return {
        "a_to_b": _finished(cyclegan.a_to_b, record),
        "b_to_a": _finished(cyclegan.b_to_a, record),
    }


def _finished(model: Model, record: dict) -> Model:
    model.net.eval()
    return Model(model.net, replace(model.info, extra={**model.info.extra, **record}))


@node(
    "translate",
    inputs={
        "image": Input(IMAGE, help="images of the generator's source domain"),
        "model": Input(MODEL, help="a generator from cyclegan.train (a_to_b or b_to_a)"),
    },
    outputs={"image": Output(IMAGE, help="the images in the other domain")},
    params={
        "tile": Int(512, min=64, help="larger images run in tiles when the model allows it"),
        "overlap": Int(32, min=0, help="pixels shared by neighbouring tiles"),
    },
)
def translate(
    image: torch.Tensor, model: Model, *, tile: int, overlap: int, ctx: NodeContext
) -> torch.Tensor:
    """Translate images to the other domain with a CycleGAN generator, either direction.

    Link `a_to_b` to turn A images into B images, `b_to_a` for the way back. Any size
    works: images are padded to a multiple of 4 and cropped back, and mapped from [0, 1]
    to the generator's [-1, 1] and back. Gray images are repeated to RGB (or RGB reduced
    to luma) when the generator wants the other. A reference CycleGAN `*_net_G_A.pth`
    loaded with `load_model` works too.
    """
    if model.info.purpose != "image-to-image":
        raise ValueError(
            f"cyclegan.translate needs a generator, got the {model.describe()} "
            f"(a {model.info.purpose}); link a_to_b or b_to_a of cyclegan.train"
        )
    x = match_channels(image, model.info.in_channels, model)
    return apply_model(model, x, tile=tile, overlap=overlap, check=ctx.check_cancelled)
