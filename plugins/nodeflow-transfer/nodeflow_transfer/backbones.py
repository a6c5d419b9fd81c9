"""Pretrained torchvision backbones read from local files, and the classifier built on one.

Nothing is downloaded: networks are built with `weights=None` and their weights loaded
from a file the user names (torchvision's own ImageNet `.pth` files, read with
`torch.load(weights_only=True)`, or safetensors). Each backbone is cut into four stages
of falling resolution: for a ResNet the stem with layer1, then layer2, layer3 and layer4;
for VGG16 its conv blocks 1-2, 3, 4 and 5. Networks take images in [0, 1] and apply the
ImageNet normalisation themselves.

Two architectures are registered, so models save, load and persist like any other:
`transfer.backbone` (keys `body.*`, or a bare torchvision state dict, ImageNet head
ignored) and `transfer.classifier` (`backbone.body.*` and a linear `head`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nodeflow.api import Architecture, Model, check_hparams, make_info, rebuild

BACKBONE_ID = "transfer.backbone"
CLASSIFIER_ID = "transfer.classifier"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIZE = 32

BACKBONES = ("resnet18", "resnet50", "vgg16")
WIDTHS = {
    "resnet18": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "vgg16": (128, 256, 512, 512),
}
_IMAGENET_WEIGHTS = {
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"),
    "vgg16": ("VGG16_Weights", "IMAGENET1K_V1"),
}
_HEADS = {"resnet18": "fc", "resnet50": "fc", "vgg16": "classifier"}
_VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_VGG16_CUTS = (0, 10, 17, 24, 31)
_RESNET_BLOCKS = {"resnet18": ([2, 2, 2, 2], False), "resnet50": ([3, 4, 6, 3], True)}


def weights_url(name: str) -> str:
    """Where torchvision publishes the ImageNet weights of `name` (not fetched by nodeflow)."""
    import torchvision

    weights, version = _IMAGENET_WEIGHTS[name]
    return getattr(getattr(torchvision.models, weights), version).url


class Backbone(nn.Module):
    """A torchvision network without its ImageNet head, run stage by stage.

    `forward(images, stage)` takes images in [0, 1] and returns the feature maps after
    `stage` (1 to 4).
    """

    def __init__(self, name: str):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; use one of {', '.join(BACKBONES)}")
        import torchvision  # here, not at import: loading the plugin stays fast

        self.name = name
        self.body = getattr(torchvision.models, name)(weights=None)
        setattr(self.body, _HEADS[name], nn.Identity())
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def stages(self) -> list[nn.Module]:
        body = self.body
        if self.name.startswith("resnet"):
            stem = nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool, body.layer1)
            return [stem, body.layer2, body.layer3, body.layer4]
        features = body.features
        return [features[start:stop] for start, stop in itertools.pairwise(_VGG16_CUTS)]

    def forward(self, images: torch.Tensor, stage: int = 4) -> torch.Tensor:
        x = (images - self.mean) / self.std
        for module in self.stages()[:stage]:
            x = module(x)
        return x


class Classifier(nn.Module):
    """A backbone's last-stage features, averaged over positions, standardised, then one
    linear layer. `feature_mean` and `feature_std` are the training features' statistics,
    so the head trains well whatever the backbone's feature scale."""

    def __init__(self, name: str, classes: int):
        super().__init__()
        width = WIDTHS[name][-1]
        self.backbone = Backbone(name)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.head = nn.Linear(width, classes)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> standardised position-averaged last-stage features."""
        features = self.backbone(images).mean(dim=(2, 3))
        return (features - self.feature_mean) / self.feature_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> class logits."""
        return self.head(self.pooled(images))


# -- recognising state dicts -------------------------------------------------------------------


def _torchvision_name(state_dict: Mapping[str, Any]) -> str | None:
    """Which supported torchvision network a (head-optional) state dict is, if any."""
    keys = set(state_dict)
    if "conv1.weight" in keys and "layer4.0.conv1.weight" in keys:
        blocks = [
            len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.")}) for i in (1, 2, 3, 4)
        ]
        bottleneck = "layer1.0.conv3.weight" in keys
        for name, layout in _RESNET_BLOCKS.items():
            if (blocks, bottleneck) == layout:
                return name
        return None
    convs = sorted(
        int(key.split(".")[1])
        for key in keys
        if key.startswith("features.") and key.endswith(".weight")
    )
    return "vgg16" if convs == _VGG16_CONVS else None


def _strip(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _body_weights(state_dict: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`body.`-prefixed backbone weights from a bare torchvision or a nodeflow state dict."""
    if any(key.startswith("body.") for key in state_dict):
        return dict(state_dict)
    head = _HEADS[name] + "."
    return {f"body.{k}": v for k, v in state_dict.items() if not k.startswith(head)}


def backbone_name(state_dict: Mapping[str, Any]) -> str | None:
    """The backbone in a bare torchvision state dict or a nodeflow backbone's, if supported."""
    body = _strip(state_dict, "body.")
    return _torchvision_name(body or state_dict)


def detect_backbone(state_dict: Mapping[str, Any]) -> bool:
    """torchvision resnet18/resnet50/vgg16 weights, with or without their ImageNet head."""
    return backbone_name(state_dict) is not None


def detect_classifier(state_dict: Mapping[str, Any]) -> bool:
    """A backbone under `backbone.body.` and a linear `head`."""
    head = state_dict.get("head.weight")
    body = _strip(state_dict, "backbone.body.")
    return (
        isinstance(head, torch.Tensor) and head.dim() == 2 and _torchvision_name(body) is not None
    )


# -- building ---------------------------------------------------------------------------------------


def create_backbone(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A backbone model (torchvision's own initialisation when no weights follow)."""
    hp = check_hparams(BACKBONE_ID, hparams or {}, {"backbone": "resnet18"})
    net = Backbone(hp["backbone"])
    derived = {
        "arch": BACKBONE_ID,
        "purpose": "features",
        "in_channels": 3,
        "out_channels": WIDTHS[hp["backbone"]][-1],
        "hparams": hp,
        "min_size": MIN_SIZE,
        "tiling": False,
    }
    return Model(net, make_info(derived, fields))


def create_classifier(
    hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any
) -> Model:
    """A classifier model: a backbone and a linear head over `classes` classes."""
    hp = check_hparams(CLASSIFIER_ID, hparams or {}, {"backbone": "resnet18", "classes": 2})
    net = Classifier(hp["backbone"], hp["classes"])
    derived = {
        "arch": CLASSIFIER_ID,
        "purpose": "classifier",
        "in_channels": 3,
        "out_channels": hp["classes"],
        "hparams": hp,
        "min_size": MIN_SIZE,
        "tiling": False,
    }
    return Model(net, make_info(derived, fields))


def build_backbone(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a backbone from a nodeflow checkpoint or a bare torchvision state dict."""
    name = backbone_name(state_dict) if state_dict else None
    weights = _body_weights(state_dict, name) if name else dict(state_dict)
    return rebuild(
        weights, metadata, create_backbone, lambda _sd: {"backbone": name}, lambda _hp: {}
    )


def build_classifier(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> Model:
    """Rebuild a classifier from a nodeflow checkpoint or a bare state dict of its layout."""

    def infer(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        name = _torchvision_name(_strip(weights, "backbone.body."))
        return {"backbone": name, "classes": int(weights["head.weight"].shape[0])}

    return rebuild(state_dict, metadata, create_classifier, infer, lambda _hp: {})


ARCHITECTURES = (
    Architecture(
        BACKBONE_ID,
        detect_backbone,
        build_backbone,
        "torchvision resnet18 / resnet50 / vgg16 feature extractor, ImageNet head removed",
    ),
    Architecture(
        CLASSIFIER_ID,
        detect_classifier,
        build_classifier,
        "a transfer backbone with a linear classifier on its pooled last-stage features",
    ),
)
