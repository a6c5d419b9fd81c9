"""Model nodes: load and save checkpoints, encode and decode, walk and sample latent space,
translate images with U-Nets and GAN generators, score images with a discriminator.

Models travel whole on `Model` links; images stream. Every network runs on the run's
device, in eval mode, under inference mode (the executor enters it), on images of any size:
`nodeflow.models.inference` pads, tiles and converts value ranges from the model's ArchInfo.
Gray images given to a model that wants RGB are repeated over three channels, and RGB
images given to a gray model are reduced to luma.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nodeflow.api import (
    IMAGE,
    LATENT,
    MODEL,
    SCORES,
    Batch,
    Bool,
    Float,
    Footprint,
    Input,
    Int,
    Latent,
    Model,
    NodeContext,
    Output,
    Scores,
    Size,
    Stream,
    apply_model,
    forward,
    from_network,
    hookimpl,
    match_channels,
    node,
    prepare,
    run_network,
    to_network,
)
from nodeflow.api import Path as PathParam
from nodeflow.files.policy import check_replaceable, output_file
from nodeflow.models import checkpoint as checkpoints
from nodeflow.models.inference import lab_to_network, network_to_rgb, require_finite, upsample
from nodeflow.training.losses import ColorBins

SOURCE_BATCH = 16
"""Items per batch of the random sources (latent_sample, random_image)."""

TILE_PARAMS = {
    "tile": Int(
        512, min=64, help="images with more than tile x tile pixels run in overlapping tiles"
    ),
    "overlap": Int(32, min=0, help="pixels shared by neighbouring tiles, cross-faded"),
}


# -- helpers -------------------------------------------------------------------------------------


def _generator(seed: int, batch_index: int) -> torch.Generator:
    """A CPU generator for one batch, seeded from (seed, batch index), the same on every device."""
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _require(model: Model, purposes: tuple[str, ...], node_type: str) -> None:
    if model.info.purpose not in purposes:
        raise ValueError(
            f"{node_type} takes {' or '.join(purposes)} models, got the {model.describe()} "
            f"(a {model.info.purpose})"
        )


def _require_autoencoder(model: Model, node_type: str) -> None:
    if not (hasattr(model.net, "encode") and hasattr(model.net, "decode")):
        raise ValueError(
            f"{node_type} needs an autoencoder (a model with an encoder and a decoder), got "
            f"the {model.describe()}"
        )


def _size_text(images: torch.Tensor) -> str:
    height, width = images.shape[-2:]
    return f"{height}x{width}"


# -- loading and saving -----------------------------------------------------------------------------


def resolve_checkpoint(value: str | Path) -> Path:
    """The file `checkpoint` names: the path itself, else a shipped model of that name."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = checkpoints.shipped_checkpoints()
    if not path.suffix and path.name in shipped:
        return shipped[path.name]
    names = ", ".join(shipped) or "none yet"
    raise ValueError(
        f"no checkpoint file {str(path)!r} (relative paths start at the graph file's folder) "
        f"and no shipped model named {path.name!r}; shipped models: {names}"
    )


def _checkpoint_fingerprint(params: dict[str, Any]) -> str:
    try:
        path = resolve_checkpoint(params["checkpoint"])
        stat = path.stat()
    except (ValueError, OSError):
        return "missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(
    "load_model",
    outputs={"model": Output(MODEL, help="the network and its description")},
    params={
        "checkpoint": PathParam(
            help="a .safetensors or .pth file (relative to the graph file), or the name of a "
            "shipped model such as 'colorize'"
        )
    },
    fingerprint=_checkpoint_fingerprint,
    inference=False,
)
def load_model(*, checkpoint: Path, ctx: NodeContext) -> Model:
    """Load a model checkpoint; its architecture is read from the file.

    A nodeflow .safetensors file names its architecture and hyperparameters in its
    metadata. Other files (.safetensors without that metadata, .pth/.pt read only with
    torch.load(weights_only=True)) are recognised by their tensor names and shapes: this
    loads the pix2pix/CycleGAN reference implementation's `*_net_G.pth` (unet_256,
    unet_128, resnet_9blocks, resnet_6blocks; batch or instance norm) and `*_net_D.pth`
    (basic and n_layers PatchGAN, pixel) as they are, reading [-1, 1] like the reference.
    With the nodeflow-spandrel plugin, community restoration and upscaling files (ESRGAN,
    Real-ESRGAN, SwinIR, SCUNet, ...) load too, for `apply_model` to run. A wrapped state
    dict is unwrapped (`params_ema` first) and a `module.` prefix dropped. A name without
    a suffix that is not a file loads the shipped model of that name.
    """
    model = checkpoints.load_model(resolve_checkpoint(checkpoint))
    model.net.to(ctx.device).eval()
    return model


@node(
    "save_model",
    inputs={"model": Input(MODEL, help="the model to write")},
    params={"path": PathParam(help="the .safetensors file to write (suffix added if missing)")},
    output_node=True,
    writes={"path": "file"},
)
def save_model(model: Model, *, path: Path, ctx: NodeContext) -> None:
    """Write a model to a safetensors checkpoint that `load_model` rebuilds alone.

    The file holds the weights and, in its metadata, the architecture id, hyperparameters,
    task and value range. It is written atomically: a cancelled run leaves no partial file.
    """
    target = output_file(path, ".safetensors", ctx.output_root)
    check_replaceable(target)
    ctx.wrote(checkpoints.save_model(model, target))


# -- latent space ---------------------------------------------------------------------------------


@node(
    "encode",
    inputs={"image": Input(IMAGE), "model": Input(MODEL, help="an autoencoder")},
    outputs={"latent": Output(LATENT, help="latent codes, B x C x h x w")},
)
def encode(image: torch.Tensor, model: Model) -> Latent:
    """Encode images to latent codes with an autoencoder's encoder.

    Sides must be multiples of the model's size multiple (2 to the power of its depth);
    the latent is that many times smaller.
    """
    _require_autoencoder(model, "encode")
    info = model.info
    multiple = info.size_multiple
    if image.shape[-2] % multiple or image.shape[-1] % multiple:
        raise ValueError(
            f"the {model.describe()} encodes images whose sides are multiples of {multiple}, "
            f"got {_size_text(image)}; resize or crop them first"
        )
    x = to_network(match_channels(image, info.in_channels, model), info.value_range)
    net = prepare(model, image.device)
    return Latent(net.encode(x).float().contiguous(), source=model.arch)


def noise_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator a style-based GAN generator's per-pixel noise comes from."""
    digest = hashlib.sha256(f"noise:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def synthesize(model: Model, latent: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """A GAN generator's images in [0, 1] from z (B x z_dim) or w (B x layers x w_dim)."""
    net = model.net.eval()
    latent = latent.to(next(net.parameters()).device)
    if latent.dim() == 2:
        latent = net.mapping(latent)
    return from_network(net.synthesis(latent, noise).float(), model.info.value_range)


@node(
    "decode",
    inputs={
        "latent": Input(LATENT),
        "model": Input(MODEL, help="the autoencoder, or the GAN generator"),
    },
    outputs={"image": Output(IMAGE)},
)
def decode(latent: Latent, model: Model) -> torch.Tensor:
    """Decode latent codes back to images with an autoencoder's decoder or a GAN generator.

    A GAN generator (from `train_gan`) reads z, or w for the style-based one, as
    `gan_latents` makes them; every image gets the same per-pixel noise (drawn with seed
    0), so a latent always decodes to the same image.
    """
    if model.info.purpose == "generator":
        _check_source(latent, model)
        return synthesize(model, latent.tensor, noise_generator(0, 0)).contiguous()
    _require_autoencoder(model, "decode")
    info = model.info
    _check_source(latent, model)
    expected = info.latent_shape[:1]
    if expected and latent.tensor.shape[1] != expected[0]:
        raise ValueError(
            f"the latent has {latent.tensor.shape[1]} channels but the {model.describe()} "
            f"decodes {expected[0]}: was it made by another model?"
        )
    net = prepare(model, latent.tensor.device)
    decoded = net.decode(latent.tensor).float()
    require_finite(decoded)
    return from_network(decoded, info.value_range).contiguous()


def _check_source(latent: Latent, model: Model) -> None:
    if latent.source != model.arch:
        raise ValueError(
            f"this latent comes from {latent.source!r}; decode turns latents of the "
            f"{model.describe()} into images, so encode (or sample) them with it"
        )


def _slerp_weights(
    a: torch.Tensor, b: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair and step, the weights of a and b on the great circle between them."""
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    cosine = F.cosine_similarity(flat_a, flat_b, dim=1, eps=1e-12).clamp(-1.0, 1.0)
    omega = torch.acos(cosine)[:, None]
    sine = torch.sin(omega)
    straight = sine < 1e-6
    safe = torch.where(straight, torch.ones_like(sine), sine)
    weight_a = torch.where(straight, 1 - t, torch.sin((1 - t) * omega) / safe)
    weight_b = torch.where(straight, t, torch.sin(t * omega) / safe)
    return weight_a, weight_b


@node(
    "latent_interpolate",
    inputs={
        "latent": Input(LATENT, help="start points"),
        "other": Input(LATENT, help="end points, paired item by item with `latent`"),
    },
    outputs={"latent": Output(LATENT, help="for each pair, `steps` latents from start to end")},
    params={
        "steps": Int(8, min=2, max=1024, help="latents per pair, both ends included"),
        "spherical": Bool(False, help="walk the great circle (slerp) instead of a straight line"),
    },
)
def latent_interpolate(latent: Latent, other: Latent, *, steps: int, spherical: bool) -> Latent:
    """Walk from each latent to its partner in `steps` evenly spaced points.

    Item i of `latent` pairs with item i of `other` (a single latent pairs with every one);
    the output holds, pair after pair, the start, the points between, and the end. With
    spherical the walk follows the great circle between the two (slerp), which keeps the
    norm of Gaussian-like latents from sagging midway; otherwise it is a straight line.
    """
    a, b = latent.tensor, other.tensor
    if latent.source != other.source:
        raise ValueError(
            f"latent comes from {latent.source!r} but other from {other.source!r}; "
            "interpolate between latents of one model"
        )
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"latent is {tuple(a.shape[1:])} per item but other is {tuple(b.shape[1:])}; "
            "encode both at the same image size"
        )
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(
            f"latent has {len(a)} items per batch but other has {len(b)}; give them the same "
            "batch size, or one single latent"
        )
    count = max(len(a), len(b))
    a, b = a.expand(count, *a.shape[1:]), b.expand(count, *b.shape[1:])
    t = torch.linspace(0.0, 1.0, steps, device=a.device, dtype=a.dtype)[None, :]
    if spherical:
        weight_a, weight_b = _slerp_weights(a, b, t)
    else:
        weight_a, weight_b = (1 - t).expand(count, -1), t.expand(count, -1)
    shape = (count, steps) + (1,) * (a.dim() - 1)
    path = weight_a.reshape(shape) * a[:, None] + weight_b.reshape(shape) * b[:, None]
    return Latent(path.reshape(count * steps, *a.shape[1:]).contiguous(), source=latent.source)


def _latent_stat(value: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A stored latent statistic as a tensor that broadcasts over one latent."""
    stat = torch.as_tensor(value, dtype=torch.float32, device=device)
    if stat.dim() == 1 and len(stat) == shape[0]:
        return stat.reshape(-1, *([1] * (len(shape) - 1)))
    return stat


@node(
    "latent_sample",
    inputs={"model": Input(MODEL, help="the autoencoder whose latent space to sample")},
    outputs={"latent": Output(LATENT, help="random latents, ready for decode")},
    params={
        "count": Int(16, min=1, max=100000, help="how many latents"),
        "seed": Int(0, help="random seed; the same seed gives the same latents"),
        "temperature": Float(1.0, min=0, max=10, help="scales the spread around the mean"),
    },
)
def latent_sample(
    model: Model, *, count: int, seed: int, temperature: float, ctx: NodeContext
) -> Stream:
    """Draw random latents of a model's latent shape, to decode into new images.

    Each latent is mean + temperature x std x N(0, 1). A plain autoencoder's latents are
    not Gaussian around zero, so when the model records the statistics of its training
    latents (extra "latent_mean" and "latent_std": one number, or one per channel) they
    set the mean and spread; otherwise it is a standard normal. Temperature below 1 stays
    near the mean (blander images), above 1 strays further.
    """
    shape = model.info.latent_shape
    if not shape:
        raise ValueError(
            f"the {model.describe()} records no latent shape, so there is nothing to sample; "
            "use an autoencoder"
        )
    extra = model.info.extra
    mean = _latent_stat(extra.get("latent_mean", 0.0), shape, ctx.device)
    std = _latent_stat(extra.get("latent_std", 1.0), shape, ctx.device)

    def produce() -> Iterator[Batch]:
        for index, start in enumerate(range(0, count, SOURCE_BATCH)):
            size = min(SOURCE_BATCH, count - start)
            noise = torch.randn((size, *shape), generator=_generator(seed, index))
            codes = mean + std * temperature * noise.to(ctx.device)
            names = [f"sample{start + i:05d}" for i in range(size)]
            yield Batch(Latent(codes, source=model.arch), names)

    return Stream(produce, total=math.ceil(count / SOURCE_BATCH))


@node(
    "random_image",
    outputs={"image": Output(IMAGE, help="uniform noise images")},
    params={
        "count": Int(16, min=1, max=100000, help="how many images"),
        "size": Size(64, max=8192, help="side, or [height, width]"),
        "channels": Int(3, min=1, max=3, help="1 (gray) or 3 (RGB)"),
        "seed": Int(0, help="random seed; the same seed gives the same images"),
    },
    footprint=Footprint("size", count="count", batch=SOURCE_BATCH, channels="channels"),
)
def random_image(
    *, count: int, size: int | list[int], channels: int, seed: int, ctx: NodeContext
) -> Stream:
    """Images of independent uniform noise: what a random point of image space looks like.

    Almost none of image space looks like a photo; set next to decoded random latents,
    this shows what an autoencoder's latent space buys.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    height, width = (size, size) if isinstance(size, int) else size

    def produce() -> Iterator[Batch]:
        for index, start in enumerate(range(0, count, SOURCE_BATCH)):
            n = min(SOURCE_BATCH, count - start)
            noise = torch.rand((n, channels, height, width), generator=_generator(seed, index))
            yield Batch(noise.to(ctx.device), [f"noise{start + i:05d}" for i in range(n)])

    return Stream(produce, total=math.ceil(count / SOURCE_BATCH))


# -- image to image ----------------------------------------------------------------------------------


def _decoding(
    net: Callable[[torch.Tensor], torch.Tensor],
    bins: ColorBins,
    value_range: tuple[float, float],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`net` followed by annealed-mean decoding of its ab-bin logits, in the network's range."""
    return lambda x: bins.decode_to_network(net(x), value_range)


def _colorize(
    image: torch.Tensor, model: Model, tile: int, overlap: int, ctx: NodeContext
) -> torch.Tensor:
    info = model.info
    bins = ColorBins.from_extra(info.extra, image.device)
    predicts = 2 if bins is None else len(bins)
    if (info.in_channels, info.out_channels) != (1, predicts):
        raise ValueError(
            "a colorization model reads lightness (1 channel) and predicts ab (2 channels, or "
            f"one per ab bin for a classification model); the {model.describe()} does not"
        )
    rgb = match_channels(image, 3, model)
    lightness, _ = lab_to_network(rgb, info.value_range)
    net = prepare(model, image.device)
    if bins is not None:
        net = _decoding(net, bins, info.value_range)
    ab = run_network(
        net,
        lightness,
        multiple=info.size_multiple,
        min_size=info.min_size,
        tiling=info.tiling,
        tile=tile,
        overlap=overlap,
        check=ctx.check_cancelled,
    )
    return network_to_rgb(lightness, ab, info.value_range)


def translate(
    image: torch.Tensor,
    model: Model,
    *,
    tile: int,
    overlap: int,
    ctx: NodeContext,
    purposes: tuple[str, ...],
) -> torch.Tensor:
    """Run an image-to-image model on a batch in [0, 1], prepared as its task asks."""
    _require(model, purposes, ctx.type_id)
    info = model.info
    if info.task == "colorize":
        return _colorize(image, model, tile, overlap, ctx)
    if info.task == "superres" and info.extra.get("upsample_input"):
        image = upsample(image, info.scale)
    x = match_channels(image, info.in_channels, model)
    return apply_model(model, x, tile=tile, overlap=overlap, check=ctx.check_cancelled)


@node(
    "apply_model",
    inputs={
        "image": Input(IMAGE),
        "model": Input(
            MODEL,
            help="an image-to-image model: nodeflow's, or a community one (ESRGAN, SwinIR, ...)",
        ),
    },
    outputs={"image": Output(IMAGE)},
    params=dict(TILE_PARAMS),
)
def apply_model_node(
    image: torch.Tensor, model: Model, *, tile: int, overlap: int, ctx: NodeContext
) -> torch.Tensor:
    """Run any image-to-image model on images: upscalers, denoisers, restorers, translators.

    Works with nodeflow's own models and with community checkpoints loaded through the
    nodeflow-spandrel plugin (ESRGAN, Real-ESRGAN Compact, SwinIR, SCUNet, DnCNN, ...).
    The model's description decides the rest: images are padded to its size multiple and
    cropped back (`scale` times larger for an upscaler); images over tile x tile pixels
    run in overlapping tiles when the model allows it, and the tile shrinks on an
    out-of-memory error. A model recorded as a colorizer gets the Lab lightness and gives
    RGB; a super-resolution model trained on bicubic enlargements gets one. Gray images are
    repeated to RGB, or RGB reduced to luma, when the model wants the other. A precision
    the model does not support (`--precision fp16` for most transformer models) is refused,
    and NaN or infinite outputs are an error, never a black image.
    """
    return translate(
        image,
        model,
        tile=tile,
        overlap=overlap,
        ctx=ctx,
        purposes=("image-to-image", "autoencoder"),
    )


@node(
    "unet",
    inputs={
        "image": Input(IMAGE),
        "model": Input(MODEL, help="an image-to-image model (U-Net, generator, autoencoder)"),
    },
    outputs={"image": Output(IMAGE)},
    params=dict(TILE_PARAMS),
)
def unet(
    image: torch.Tensor, model: Model, *, tile: int, overlap: int, ctx: NodeContext
) -> torch.Tensor:
    """Translate images with an image-to-image model: the first name of `apply_model`.

    It does exactly what `apply_model` does and stays so that graphs written for it keep
    working. The model's recorded task decides what goes in and out. "colorize": any gray
    or colour image; its Lab lightness goes in, the predicted ab comes out, and the result
    is RGB with the input's lightness. "superres": the small image goes in (bicubic-enlarged
    first when the model was trained that way) and comes out `scale` times larger.
    Anything else ("denoise", "edges2photo", ...): image in, image out. Gray images are
    repeated to RGB, or RGB reduced to luma, when the model wants the other. Any size
    works (padded to the model's size multiple and cropped back); images over tile x tile
    pixels run in overlapping tiles when the model allows it (not instance-norm models,
    whose normalization depends on the whole image).
    """
    return apply_model_node.fn(image, model, tile=tile, overlap=overlap, ctx=ctx)


@node(
    "cgan_generate",
    inputs={
        "image": Input(IMAGE, help="the input side, e.g. edges or a photo of domain A"),
        "model": Input(MODEL, help="a pix2pix or CycleGAN generator"),
    },
    outputs={"image": Output(IMAGE)},
    params=dict(TILE_PARAMS),
)
def cgan_generate(
    image: torch.Tensor, model: Model, *, tile: int, overlap: int, ctx: NodeContext
) -> torch.Tensor:
    """Generate images with a conditional GAN's generator (pix2pix or CycleGAN).

    Reference checkpoints read and write [-1, 1]; the conversion from and to [0, 1] is
    handled, as are any size (padded and cropped back) and gray/RGB conversion. Instance
    norm generators see each image whole; others tile images over tile x tile pixels. A
    generator with a recorded task (colorize, superres) is prepared as the unet node does.
    """
    return translate(
        image, model, tile=tile, overlap=overlap, ctx=ctx, purposes=("image-to-image",)
    )


# -- discriminators ----------------------------------------------------------------------------------


def _discriminator_input(
    image: torch.Tensor, condition: torch.Tensor | None, model: Model, node_id: str
) -> torch.Tensor:
    info = model.info
    if not info.conditional:
        if condition is not None:
            raise ValueError(
                f"node {node_id!r}: the {model.describe()} is an unconditional discriminator; "
                "leave `condition` unlinked"
            )
        return match_channels(image, info.in_channels, model)
    if condition is None:
        raise ValueError(
            f"node {node_id!r}: the {model.describe()} is a conditional discriminator; link the "
            "images it judges the output against (e.g. the edges) to `condition`"
        )
    if condition.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"node {node_id!r}: condition is {_size_text(condition)} but image is "
            f"{_size_text(image)}; they must have the same size"
        )
    if len(condition) != len(image) and len(condition) != 1:
        raise ValueError(
            f"node {node_id!r}: condition has {len(condition)} images per batch but image has "
            f"{len(image)}; stream both with the same batch size"
        )
    total = info.in_channels
    given = condition.shape[1]
    condition_channels = int(
        info.extra.get("condition_channels", given if total - given in (1, 3) else total // 2)
    )
    if {condition_channels, total - condition_channels} - {1, 3}:
        raise ValueError(
            f"node {node_id!r}: cannot split the {total} input channels of "
            f"{model.describe()} into a condition and an image of 1 or 3 channels each"
        )
    condition = match_channels(condition, condition_channels, model)
    image = match_channels(image, total - condition_channels, model)
    return torch.cat([condition.expand(len(image), -1, -1, -1), image], dim=1)


@node(
    "discriminator_score",
    inputs={
        "image": Input(IMAGE, help="the images to judge"),
        "condition": Input(
            IMAGE, optional=True, help="for a conditional discriminator: the input side"
        ),
        "model": Input(MODEL, help="a PatchGAN, pixel or GAN (train_gan) discriminator"),
    },
    outputs={
        "score": Output(SCORES, help="per image: the mean 'real' probability of its patches"),
        "heatmap": Output(IMAGE, help="the per-patch probability, stretched to the image size"),
    },
)
def discriminator_score(
    image: torch.Tensor, condition: torch.Tensor | None, model: Model, *, ctx: NodeContext
) -> dict[str, Any]:
    """Score how real images look to a discriminator, per image and per patch.

    Each logit of the discriminator's map judges one patch (70x70 for the basic PatchGAN,
    one pixel for the pixel discriminator; a `train_gan` discriminator judges an image of
    its training size whole, and windows of that size in larger ones); its sigmoid is the
    patch's probability of being real (for a hinge-loss discriminator, a monotone reading
    of its score rather than a probability). The score is the mean over the map; the heatmap is the map enlarged (bilinear)
    to the image size, in [0, 1]. A model trained with the least-squares GAN loss (extra
    "gan_mode" = "lsgan") has its outputs clamped to [0, 1] instead of the sigmoid. A
    conditional discriminator (pix2pix) needs `condition`, the image the output was made
    from; it sees the two concatenated, condition first.
    """
    _require(model, ("discriminator",), "discriminator_score")
    info = model.info
    if min(image.shape[-2:]) < info.min_size:
        raise ValueError(
            f"the {model.describe()} needs images of at least {info.min_size}x{info.min_size}, "
            f"got {_size_text(image)}; resize them first"
        )
    x = to_network(_discriminator_input(image, condition, model, ctx.node_id), info.value_range)
    logits = forward(prepare(model, image.device), x).float()
    require_finite(logits)
    if info.extra.get("gan_mode") == "lsgan":
        patches = logits.clamp(0.0, 1.0)
    else:
        patches = torch.sigmoid(logits)
    patches = patches.contiguous()
    heatmap = F.interpolate(patches, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return {
        "score": Scores(patches.mean(dim=(1, 2, 3)), patches),
        "heatmap": heatmap.clamp(0.0, 1.0),
    }


MODEL_NODES = (
    load_model,
    save_model,
    encode,
    decode,
    latent_interpolate,
    latent_sample,
    random_image,
    apply_model_node,
    unet,
    cgan_generate,
    discriminator_score,
)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in MODEL_NODES:
        register(node_type)
