"""A test-only plugin as an outside author writes it, from nodeflow.api alone.

It registers its own architecture (`srcnn.net`, SRCNN's three convolutions) for the
built-in `train_unet` node to train, and a node whose sockets name their types as text
(`Input("Image")`, as in ComfyUI) and whose path param arrives as a `pathlib.Path`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nodeflow.api import (
    Architecture,
    Input,
    Model,
    Output,
    check_hparams,
    hookimpl,
    init_weights,
    make_info,
    node,
    rebuild,
)
from nodeflow.api import Path as PathParam

ARCH_ID = "srcnn.net"
DEFAULTS = {"channels": 3, "width": 16}


class SRCNN(nn.Module):
    """Patch extraction (9x9), non-linear mapping (1x1), reconstruction (5x5); Dong et al."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 9, padding=4),
            nn.ReLU(),
            nn.Conv2d(width, width // 2, 1),
            nn.ReLU(),
            nn.Conv2d(width // 2, channels, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def create(hparams: dict[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = SRCNN(**hp)
    if init:
        init_weights(net, gain=0.1)
    derived = {
        "arch": ARCH_ID,
        "purpose": "image-to-image",
        "in_channels": hp["channels"],
        "out_channels": hp["channels"],
        "hparams": hp,
    }
    return Model(net, make_info(derived, fields))


def detect(state_dict: dict[str, torch.Tensor]) -> bool:
    return set(state_dict) == {f"body.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}


def infer_hparams(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    width, channels = state_dict["body.0.weight"].shape[:2]
    return {"channels": int(channels), "width": int(width)}


def build(state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Model:
    return rebuild(state_dict, metadata, create, infer_hparams, lambda hparams: {})


@node(
    "mark",
    inputs={"image": Input("Image", help="any images")},
    outputs={"image": Output("Image", help="the same images")},
    params={"log": PathParam(help="a file that gets the param's Python type name")},
)
def mark(image: torch.Tensor, *, log: Path) -> torch.Tensor:
    """Pass images through and write the type of the path param it was given to `log`."""
    log.write_text(type(log).__name__ + " " + str(log.is_absolute()))
    return image


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(mark)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    register(Architecture(ARCH_ID, detect, build, "SRCNN: three convolutions"))
