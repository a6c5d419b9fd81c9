"""nodeflow-transfer: transfer learning from pretrained torchvision backbones, as nodeflow nodes.

`transfer.backbone` loads resnet18, resnet50 or vgg16 weights from a local file (nothing is
downloaded); `transfer.features` describes images with one stage's features;
`transfer.train_classifier` trains a linear classifier (optionally fine-tuning the last
stages) on a folder with one sub-folder per class; `transfer.classify` labels images.
The `transfer.backbone` and `transfer.classifier` architectures let `load_model`,
`save_model` and the cache handle these models like any other.
"""

from collections.abc import Callable
from typing import Any

from nodeflow.api import hookimpl
from nodeflow_transfer.backbones import ARCHITECTURES
from nodeflow_transfer.nodes import backbone, classify, features, train_classifier

__version__ = "0.1.0"


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (backbone, features, train_classifier, classify):
        register(node_type)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    for architecture in ARCHITECTURES:
        register(architecture)
