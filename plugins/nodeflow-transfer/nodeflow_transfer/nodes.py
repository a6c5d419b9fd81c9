"""The transfer-learning nodes: backbone, features, train_classifier, classify."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nodeflow.api import (
    FLOAT,
    IMAGE,
    LATENT,
    MODEL,
    SCORES,
    STR,
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
    Scores,
    Stream,
    list_images,
    match_channels,
    node,
    read_checkpoint,
)
from nodeflow.api import Path as PathParam
from nodeflow_transfer.backbones import (
    BACKBONE_ID,
    BACKBONES,
    CLASSIFIER_ID,
    MIN_SIZE,
    backbone_name,
    build_backbone,
    weights_url,
)
from nodeflow_transfer.classes import read_class_folder, split, square
from nodeflow_transfer.training import CHECKPOINT, Settings, Trainer


def _file_state(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _weights_fingerprint(params: dict[str, Any]) -> str:
    return _file_state(Path(params["weights"])) if params.get("weights") else "none"


def _folder_fingerprint(params: dict[str, Any]) -> str:
    root = Path(params["folder"])
    if not root.is_dir():
        return "missing"
    states = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            states += [_file_state(path) for path in list_images(str(sub))]
        except ValueError:
            states.append(f"{sub}:empty")
    return "\n".join(states)


def _missing_weights(arch: str, weights: Path | None) -> str:
    what = "no `weights` file is set" if weights is None else f"there is no file {str(weights)!r}"
    url = weights_url(arch)
    return (
        f"transfer.backbone needs the pretrained {arch} weights as a local file, and "
        f"nodeflow downloads nothing; {what}. Get torchvision's ImageNet weights once, "
        f'for example with `curl -LO {url}`, and set weights = "{url.rsplit("/", 1)[-1]}" '
        "(a path relative to the graph file). Any state dict of torchvision's "
        f"{arch} works: a .pth file (read with torch.load(weights_only=True)) or .safetensors"
    )


@node(
    "backbone",
    outputs={"model": Output(MODEL, help="the pretrained feature extractor")},
    params={
        "arch": Choice(BACKBONES, "resnet18", help="which torchvision network"),
        "weights": PathParam(
            None, help="its weights: a local .pth or .safetensors file; nothing is downloaded"
        ),
    },
    fingerprint=_weights_fingerprint,
    inference=False,
)
def backbone(*, arch: str, weights: Path | None, ctx: NodeContext) -> Model:
    """Load a pretrained torchvision backbone (resnet18, resnet50, vgg16) from a local file.

    The network is built without weights and loads the file you name: torchvision's own
    ImageNet weights (resnet18-f37072fd.pth, resnet50-11ad3fa6.pth, vgg16-397923af.pth
    from download.pytorch.org/models), or any state dict of the same network, read with
    torch.load(weights_only=True) or from safetensors. nodeflow never downloads them:
    without a file this node says where to get one. The ImageNet head is dropped; the
    model gives features from four stages and normalises its input itself.
    """
    if weights is None or not Path(weights).is_file():
        raise ValueError(_missing_weights(arch, weights))
    state_dict, metadata = read_checkpoint(weights)
    found = backbone_name(state_dict)
    if found is None:
        sample = ", ".join(list(state_dict)[:4])
        raise ValueError(
            f"{str(weights)!r} does not hold torchvision {arch} weights (its first keys: {sample}); "
            f"use the file from {weights_url(arch)} or another {arch} state dict"
        )
    if found != arch:
        raise ValueError(
            f"{str(weights)!r} holds {found} weights, not {arch}; set arch = {found!r}"
        )
    model = build_backbone(state_dict, metadata)
    model.net.to(ctx.device).eval()
    return model


def _backbone_of(model: Model, node_type: str) -> torch.nn.Module:
    if model.arch == BACKBONE_ID:
        return model.net
    if model.arch == CLASSIFIER_ID:
        return model.net.backbone
    raise ValueError(
        f"{node_type} needs a model from transfer.backbone or transfer.train_classifier, "
        f"got the {model.describe()}"
    )


def _rgb(image: torch.Tensor, model: Model) -> torch.Tensor:
    if min(image.shape[-2:]) < MIN_SIZE:
        height, width = image.shape[-2:]
        raise ValueError(
            f"the backbone needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {height}x{width}; "
            "resize them first"
        )
    return match_channels(image, 3, model)


@node(
    "features",
    inputs={
        "image": Input(IMAGE, help="the images to describe"),
        "model": Input(MODEL, help="a backbone, or a classifier (its backbone is used)"),
    },
    outputs={
        "features": Output(LATENT, help="B x D (pooled) or B x D x h x w feature maps"),
        "image": Output(
            IMAGE, help="each image's pooled features over their largest, as a 1 x D gray strip"
        ),
    },
    params={
        "stage": Int(
            4, min=1, max=4, help="which stage: 1 (early, detailed) to 4 (last, semantic)"
        ),
        "pool": Bool(True, help="average over positions (B x D); off: the feature maps"),
    },
)
def features(
    image: torch.Tensor, model: Model, *, stage: int, pool: bool, ctx: NodeContext
) -> dict[str, Any]:
    """Describe images with a pretrained backbone's features from one stage.

    Stages 1 to 4 go from early, local, high-resolution features to late, semantic ones
    (for resnet18 64, 128, 256 and 512 channels at 1/4 to 1/32 of the image's side).
    `features` is the Latent: averaged over positions (B x D) with pool, else the maps.
    `image` shows the feature space to the image nodes: each image's position-averaged
    features divided by the largest of them (the features are non-negative, so values
    lie in [0, 1] with the strongest at 1; each vector's scale is removed, as the usual
    L2 normalisation does) as a 1 x D gray strip. Linked to `pca_fit` (whole images) it
    gives the principal directions of the feature space; stacked with `grid` (1 column)
    it is a picture of the feature vectors.
    """
    net = _backbone_of(model, "transfer.features")
    maps = net(_rgb(image, model), stage).float()
    pooled = maps.mean(dim=(2, 3))
    strip = (pooled / pooled.amax(dim=1, keepdim=True).clamp_min(1e-12)).clamp(0.0, 1.0)
    source = f"{model.arch}:{net.name}:stage{stage}"
    return {
        "features": Latent((pooled if pool else maps).contiguous(), source=source),
        "image": strip[:, None, None, :].contiguous(),
    }


@node(
    "train_classifier",
    inputs={"model": Input(MODEL, help="the backbone, from transfer.backbone")},
    outputs={
        "model": Output(MODEL, help="the classifier: backbone, linear head and class names"),
        "accuracy": Output(FLOAT, help="fraction of held-out images classified right"),
    },
    params={
        "folder": PathParam(help="one sub-folder of images per class; the names are the labels"),
        "size": Int(224, min=MIN_SIZE, max=1024, help="images are resized and centre-cropped"),
        "epochs": Int(10, min=1, max=10000, help="passes over the training images"),
        "batch_size": Int(32, min=1, max=1024),
        "lr": Float(1e-3, min=0, max=1, help="Adam learning rate of the head"),
        "finetune_stages": Int(
            0, min=0, max=4, help="also train the last n backbone stages (lr / 10); 0: head only"
        ),
        "holdout": Float(0.2, min=0, max=0.9, help="fraction of each class kept to measure"),
        "seed": Int(0, help="seed of the split, the head's initial weights and the order"),
    },
    fingerprint=_folder_fingerprint,
    persist=True,
    inference=False,
    output_node=True,
)
def train_classifier(
    model: Model,
    *,
    folder: Path,
    size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    finetune_stages: int,
    holdout: float,
    seed: int,
    ctx: NodeContext,
) -> dict[str, Any]:
    """Train a linear classifier on a backbone's features, from a folder of class folders.

    `folder` holds one sub-folder per class (its name is the label), each with that
    class's images. Images are resized (shorter side to `size`) and centre-cropped; the
    classifier is a linear layer on the last stage's position-averaged features, trained
    with cross-entropy and Adam. With finetune_stages = 0 (a linear probe) the backbone
    stays as it is and each image goes through it once. With n > 0 its last n stages
    train too, at a tenth of the learning rate, on randomly mirrored images; batch norms
    keep their statistics. `holdout` of each class is set aside; `accuracy` is measured
    on it (on the training images when holdout is 0). A checkpoint after every epoch in
    the node's work folder lets a cancelled run resume from its last finished epoch.
    """
    if model.arch != BACKBONE_ID:
        raise ValueError(
            f"transfer.train_classifier starts from a backbone, got the {model.describe()}; "
            "link the model of transfer.backbone"
        )
    labels, examples = read_class_folder(folder)
    generator = torch.Generator().manual_seed(seed)
    train, held = split(examples, holdout, generator)
    settings = Settings(size, epochs, batch_size, lr, finetune_stages)
    trainer = Trainer(model, labels, settings, ctx, generator)
    trainer.train(train, ctx.work_dir / CHECKPOINT)
    accuracy = trainer.accuracy(held or train)
    (ctx.work_dir / CHECKPOINT).unlink(missing_ok=True)
    info = trainer.model.info
    extra = {**info.extra, "accuracy": accuracy, "held_out": len(held)}
    classifier = Model(trainer.net.eval(), replace(info, extra=extra))
    return {"model": classifier, "accuracy": accuracy}


@node(
    "classify",
    inputs={
        "image": Input(IMAGE, help="the images to classify"),
        "model": Input(MODEL, help="a classifier from transfer.train_classifier"),
    },
    outputs={
        "scores": Output(SCORES, help="per image: the probability of its predicted class"),
        "labels": Output(STR, help="one line per image: name, predicted class, probability"),
    },
    mode="collect",
    output_node=True,
)
def classify(image: Stream, model: Model, *, ctx: NodeContext) -> dict[str, Any]:
    """Classify images with a trained classifier: a label and its probability per image.

    Images are prepared as in training (shorter side resized to the training size,
    centre crop; gray repeated to RGB). `labels` lists "name: label (probability)", one
    line per image, and is printed at the end of a run; `scores` carries the
    probabilities as Scores, batch by batch.
    """
    if model.arch != CLASSIFIER_ID:
        raise ValueError(
            f"transfer.classify needs a classifier from transfer.train_classifier, got the "
            f"{model.describe()}"
        )
    labels = model.info.extra.get("labels") or [str(i) for i in range(model.info.out_channels)]
    size = int(model.info.extra.get("size", 224))
    net = model.net.to(ctx.device).eval()
    results: list[Batch] = []
    lines: list[str] = []
    for batch in image:
        x = square(_rgb(batch.data, model), size)
        probabilities = torch.softmax(net(x).float(), dim=1)
        best, index = probabilities.max(dim=1)
        results.append(Batch(Scores(best), batch.names))
        lines += [
            f"{name}: {labels[i]} ({p:.2f})"
            for name, i, p in zip(batch.names, index.tolist(), best.tolist(), strict=True)
        ]
    return {"scores": Stream(lambda: iter(results), total=len(results)), "labels": "\n".join(lines)}
