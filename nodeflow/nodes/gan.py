"""GANs from noise: train an unconditional GAN on images, sample it, walk and mix its latents.

`train_gan` cuts random crops from the images it is given (new ones every pass) and
trains a generator against a spectrally normalised discriminator with
`nodeflow.training.loop.fit` (see `nodeflow.training.gan`). The other nodes use a
generator from it or from `load_model`:

- `gan_generate`: images from random z, by seed, with the truncation trick;
- `gan_latents`: the z (or, for the style-based generator, the w) behind those images,
  for `latent_interpolate` and `decode`;
- `gan_interpolate`: a walk from one seed's image to another's, in z (spherical) or w;
- `style_mix`: coarse styles from one seed, fine styles from another.

Seeds: image i of a node's output comes from the z drawn for batch i // 16 of a
generator seeded with `seed` (as `latent_sample` draws), so the same seed gives the same
images on any device, and the style-based generator's per-pixel noise is drawn from its
own seeded generator too (one map shared by the batch): nothing but the seed (and
truncation) changes an image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from nodeflow.api import (
    IMAGE,
    LATENT,
    MODEL,
    Batch,
    Bool,
    Choice,
    Float,
    Input,
    Int,
    Latent,
    Model,
    NodeContext,
    Output,
    Str,
    Stream,
    hookimpl,
    node,
)
from nodeflow.models.checkpoint import new_model
from nodeflow.models.dcgan import DISCRIMINATOR_ID, GENERATOR_ID, doublings
from nodeflow.models.stylegan import ARCH_ID as STYLE_ID
from nodeflow.nodes.models import (
    SOURCE_BATCH,
    _generator,
    _require,
    _slerp_weights,
    noise_generator,
    synthesize,
)
from nodeflow.nodes.training import _finish, _schedule_params
from nodeflow.training.augment import parse_policy
from nodeflow.training.datasets import PairBatch, current_pass, cut, draw_windows, pair_generator
from nodeflow.training.gan import LOSSES, GANTrainer
from nodeflow.training.loop import Schedule, fit, prepare_module

ARCHITECTURES = {"dcgan": GENERATOR_ID, "stylegan": STYLE_ID}
TRUNCATION = Float(
    1.0, min=0, max=2, help="pull latents towards the average: 1 none, 0.7 safer, 0 the mean"
)
SPACES = ("z", "w")


# -- training -----------------------------------------------------------------------------------------


def crop_stream(images: Stream, size: int, per_image: int, flip: bool, seed: int) -> Stream:
    """A dataset of random size x size crops of `images` (new crops on every pass)."""

    def produce() -> Iterator[Batch]:
        for index, batch in enumerate(images):
            photos = batch.data
            height, width = photos.shape[-2:]
            if min(height, width) < size:
                raise ValueError(
                    f"train_gan cuts {size}x{size} crops, but the images starting at "
                    f"{batch.names[0]!r} are {height}x{width}; give larger images or a "
                    "smaller size"
                )
            generator = pair_generator(seed, current_pass(), index)
            windows = draw_windows(len(photos), per_image, (height, width), size, flip, generator)
            crops = cut(photos, windows, size)
            names = [f"{batch.names[w.source]}-crop{i}" for i, w in enumerate(windows)]
            yield Batch(PairBatch(crops, crops, "generate"), names)

    return Stream(produce, total=images.total)


@node(
    "train_gan",
    inputs={"image": Input(IMAGE, help="the images to learn from; random crops are cut")},
    outputs={
        "generator": Output(MODEL, help="the generator (moving-average weights)"),
        "discriminator": Output(MODEL, help="the discriminator, for discriminator_score"),
    },
    params={
        "architecture": Choice(
            tuple(ARCHITECTURES), "dcgan", help="DCGAN or style-based generator"
        ),
        "size": Int(64, min=32, max=128, help="side of the images: 32, 64 or 128"),
        "crops_per_image": Int(4, min=1, max=1024, help="random crops per image and pass"),
        "flip": Bool(True, help="flip crops horizontally at random"),
        "z_dim": Int(128, min=1, max=4096, help="size of the noise vector z (and of w)"),
        "width": Int(32, min=1, max=512, help="generator channels at full size"),
        "ndf": Int(32, min=1, max=512, help="discriminator channels of the first layer"),
        "loss": Choice(LOSSES, "non_saturating", help="non-saturating logistic or hinge"),
        "augment": Str(
            "colour,translation,cutout",
            help="DiffAugment policies for real and fake alike, comma-separated, or 'none'",
        ),
        "r1": Float(0.0, min=0, max=1000, help="R1 gradient penalty weight on reals (0: off)"),
        "ema": Float(0.999, min=0, max=1, help="moving average of the generator's weights"),
        "style_mixing": Float(
            0.9, min=0, max=1, help="stylegan: share of batches trained with two mixed z"
        ),
        "beta1": Float(0.0, min=0, max=0.999, help="Adam beta1 (beta2 is 0.99)"),
        **_schedule_params(2e-4),
    },
    mode="collect",
    persist=True,
    inference=False,
)
def train_gan(
    image: Stream,
    *,
    architecture: str,
    size: int,
    crops_per_image: int,
    flip: bool,
    z_dim: int,
    width: int,
    ndf: int,
    loss: str,
    augment: str,
    r1: float,
    ema: float,
    style_mixing: float,
    beta1: float,
    steps: int,
    epochs: int | None,
    batch_size: int,
    lr: float,
    lr_decay: bool,
    checkpoint_every: int | None,
    seed: int,
    time_budget: float | None,
    sample_every: int,
    samples: str | None,
    ctx: NodeContext,
) -> dict[str, Model]:
    """Train a GAN that turns random noise into images like the given ones.

    Each pass cuts `crops_per_image` random size x size crops from every image. The
    discriminator (spectral normalization, 4x4 stride-2 convs) sees real and generated
    crops through the same differentiable augmentation (DiffAugment: colour, translation,
    cutout), which lets a GAN learn from a few hundred images without the discriminator
    memorising them; `r1` adds a gradient penalty on real images. The generator is a
    DCGAN (z -> transposed convs) or a small style-based one (z -> w by a mapping network,
    modulated convs, per-pixel noise, style mixing in training). The `generator` output
    holds the exponential moving average of its weights (`ema`). Sample grids show, per
    row, a real crop, a sample from a fixed z, and the real crop again. Interrupted runs
    resume from the last checkpoint.
    """
    doublings(size)
    policy = parse_policy(augment)
    schedule = Schedule(
        steps, epochs, batch_size, seed, time_budget, sample_every, samples, lr_decay,
        checkpoint_every,
    )  # fmt: skip

    def build(first: PairBatch) -> GANTrainer:
        channels = first.target.shape[1]
        extra = {"gan_mode": loss, "augment": ",".join(policy), "r1": r1}
        if architecture == "dcgan":
            hparams = {"z_dim": z_dim, "size": size, "ngf": width, "out_channels": channels}
        else:
            hparams = {"z_dim": z_dim, "w_dim": z_dim, "size": size, "width": width,
                       "out_channels": channels}  # fmt: skip
        g = new_model(ARCHITECTURES[architecture], hparams, extra=extra)
        d = new_model(
            DISCRIMINATOR_ID,
            {"in_channels": channels, "size": size, "ndf": ndf},
            extra=extra,
        )
        prepare_module(g.net, ctx.device)
        prepare_module(d.net, ctx.device)
        return GANTrainer(
            g, d, lr=lr, beta1=beta1, loss=loss, policy=policy, r1=r1, ema=ema,
            style_mixing=style_mixing,
        )  # fmt: skip

    dataset = crop_stream(image, size, crops_per_image, flip, seed)
    trainer, outcome = fit(build, dataset, schedule, ctx)
    return {
        "generator": _finish(trainer.averaged, outcome, schedule),
        "discriminator": _finish(trainer.discriminator, outcome, schedule),
    }


# -- sampling -----------------------------------------------------------------------------------------


def _require_generator(model: Model, node_type: str) -> None:
    _require(model, ("generator",), node_type)


def seed_latents(model: Model, seed: int, index: int, count: int) -> torch.Tensor:
    """The z of items index*16 .. of a stream drawn with `seed` (on the CPU)."""
    return torch.randn(count, model.net.z_dim, generator=_generator(seed, index))


def _batches(count: int) -> Iterator[tuple[int, int, int]]:
    """(batch index, first item, items) of a source of `count` items."""
    for index, start in enumerate(range(0, count, SOURCE_BATCH)):
        yield index, start, min(SOURCE_BATCH, count - start)


@node(
    "gan_generate",
    inputs={"model": Input(MODEL, help="a GAN generator (train_gan, or load_model 'gan64')")},
    outputs={"image": Output(IMAGE, help="generated images")},
    params={
        "count": Int(16, min=1, max=100000, help="how many images"),
        "seed": Int(0, help="random seed; the same seed gives the same images"),
        "truncation": TRUNCATION,
    },
)
def gan_generate(
    model: Model, *, count: int, seed: int, truncation: float, ctx: NodeContext
) -> Stream:
    """Generate new images from random noise with a GAN generator.

    Truncation (Brock et al. 2019; Karras et al. 2019) trades variety for quality: the
    latent is pulled towards the average one (z towards 0 for a DCGAN, w towards the
    mean w for the style-based generator) by this factor.
    """
    _require_generator(model, "gan_generate")

    def produce() -> Iterator[Batch]:
        for index, start, size in _batches(count):
            with torch.inference_mode():  # a stream is read after the node has returned
                z = seed_latents(model, seed, index, size).to(ctx.device)
                ws = model.net.eval().mapping(z, truncation)
                images = synthesize(model, ws, noise_generator(seed, index))
            yield Batch(images, [f"gan{start + i:05d}" for i in range(size)])

    return Stream(produce, total=math.ceil(count / SOURCE_BATCH))


def _check_space(model: Model, space: str, node_type: str) -> None:
    if space == "w" and model.arch != STYLE_ID:
        raise ValueError(
            f"{node_type}: the {model.describe()} has no w space (only the style-based "
            "generator maps z to w); use space 'z'"
        )


@node(
    "gan_latents",
    inputs={"model": Input(MODEL, help="a GAN generator")},
    outputs={"latent": Output(LATENT, help="z (B x z_dim) or w (B x layers x w_dim)")},
    params={
        "count": Int(16, min=1, max=100000, help="how many latents"),
        "seed": Int(0, help="random seed; the same as gan_generate's gives its latents"),
        "space": Choice(SPACES, "z", help="z (the noise) or w (style-based generator only)"),
        "truncation": TRUNCATION,
    },
)
def gan_latents(
    model: Model, *, count: int, seed: int, space: str, truncation: float, ctx: NodeContext
) -> Stream:
    """The latents behind `gan_generate`'s images, to walk with `latent_interpolate`.

    `decode` turns them into images with the same generator. In z they are Gaussian, so
    walk them with `spherical = true`; in w (after the mapping network and truncation),
    walk in a straight line, as StyleGAN does.
    """
    _require_generator(model, "gan_latents")
    _check_space(model, space, "gan_latents")
    mapped = space == "w" or model.arch != STYLE_ID  # a DCGAN's mapping only truncates z
    if not mapped and truncation != 1.0:
        raise ValueError(
            "gan_latents: the style-based generator truncates in w, not z; use space 'w' "
            "or truncation 1"
        )

    def produce() -> Iterator[Batch]:
        for index, start, size in _batches(count):
            with torch.inference_mode():
                z = seed_latents(model, seed, index, size).to(ctx.device)
                latent = model.net.eval().mapping(z, truncation) if mapped else z
            names = [f"latent{start + i:05d}" for i in range(size)]
            yield Batch(Latent(latent.contiguous(), source=model.arch), names)

    return Stream(produce, total=math.ceil(count / SOURCE_BATCH))


@node(
    "gan_interpolate",
    inputs={"model": Input(MODEL, help="a GAN generator")},
    outputs={"image": Output(IMAGE, help="the frames of the walk, first to last")},
    params={
        "seed": Int(0, help="the start: the first image gan_generate makes with this seed"),
        "other_seed": Int(1, help="the end: the first image of this seed"),
        "steps": Int(8, min=2, max=1024, help="frames, both ends included"),
        "space": Choice(SPACES, "z", help="walk z (spherically) or w (straight; stylegan)"),
        "truncation": TRUNCATION,
    },
)
def gan_interpolate(
    model: Model,
    *,
    seed: int,
    other_seed: int,
    steps: int,
    space: str,
    truncation: float,
    ctx: NodeContext,
) -> torch.Tensor:
    """Walk the generator's latent space from one seed's image to another's.

    In z the walk follows the great circle (slerp), where Gaussian noise lives; in w (the
    style-based generator's intermediate space) it is a straight line. Every frame gets the
    same per-pixel noise, so only the latent moves. A smooth walk with no sudden jumps and
    no frames unlike both ends is a sign the generator learned a continuous manifold
    rather than memorising its training crops.
    """
    _require_generator(model, "gan_interpolate")
    _check_space(model, space, "gan_interpolate")
    net = model.net.eval()
    ends = torch.cat([seed_latents(model, s, 0, 1) for s in (seed, other_seed)]).to(ctx.device)
    t = torch.linspace(0.0, 1.0, steps, device=ctx.device)[:, None]
    if space == "z":
        weight_a, weight_b = _slerp_weights(ends[:1], ends[1:], t.T)
        path = weight_a.T * ends[:1] + weight_b.T * ends[1:]
        latents = net.mapping(path, truncation)
    else:
        ws = net.mapping(ends, truncation)
        latents = torch.lerp(ws[:1], ws[1:], t[:, :, None])
    return synthesize(model, latents, noise_generator(seed, 0))


@node(
    "style_mix",
    inputs={"model": Input(MODEL, help="a style-based generator")},
    outputs={
        "image": Output(IMAGE, help="count x count mixes, row i: coarse styles of source i"),
        "coarse": Output(IMAGE, help="the images the coarse styles come from"),
        "fine": Output(IMAGE, help="the images the fine styles come from"),
    },
    params={
        "seed": Int(0, help="seed of the images giving the coarse styles"),
        "other_seed": Int(1, help="seed of the images giving the fine styles"),
        "count": Int(4, min=1, max=16, help="images from each seed"),
        "fine_from": Int(
            32, min=8, max=1024, help="resolution from which styles come from `other_seed`"
        ),
        "truncation": TRUNCATION,
    },
)
def style_mix(
    model: Model,
    *,
    seed: int,
    other_seed: int,
    count: int,
    fine_from: int,
    truncation: float,
    ctx: NodeContext,
) -> dict[str, torch.Tensor]:
    """Mix styles: layout and shape from one image, colour and texture from another.

    The style-based generator reads one w per layer. The layers below `fine_from`
    pixels (4x4 up to half of it: coarse, layout and shapes) take the w of `seed`'s
    images, the layers at `fine_from` and above (fine: colours, texture) the w of
    `other_seed`'s. Row i of `image` keeps coarse source i; column j takes fine source j,
    so a grid with `count` columns is the classic StyleGAN mixing figure. All images get
    the same per-pixel noise.
    """
    _require_generator(model, "style_mix")
    if model.arch != STYLE_ID:
        raise ValueError(
            f"style_mix needs a style-based generator (train_gan architecture 'stylegan'), "
            f"got the {model.describe()}, which has one style for all layers"
        )
    size = model.info.hparams["size"]
    if fine_from > size or fine_from & (fine_from - 1):
        raise ValueError(
            f"style_mix: fine_from must be a power of two from 8 up to the generator's "
            f"size {size}, got {fine_from}"
        )
    net = model.net.eval()
    coarse_ws = net.mapping(seed_latents(model, seed, 0, count).to(ctx.device), truncation)
    fine_ws = net.mapping(seed_latents(model, other_seed, 0, count).to(ctx.device), truncation)
    cut = 2 * int(math.log2(fine_from // 4)) - 1
    rows = coarse_ws[:, None, :cut].expand(-1, count, -1, -1)
    columns = fine_ws[None, :, cut:].expand(count, -1, -1, -1)
    mixed = torch.cat([rows, columns], dim=2).reshape(count * count, *coarse_ws.shape[1:])

    def render(ws: torch.Tensor) -> torch.Tensor:
        return synthesize(model, ws, noise_generator(seed, 0))

    return {"image": render(mixed), "coarse": render(coarse_ws), "fine": render(fine_ws)}


GAN_NODES = (train_gan, gan_generate, gan_latents, gan_interpolate, style_mix)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in GAN_NODES:
        register(node_type)
