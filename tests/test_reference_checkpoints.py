"""Checkpoints of the pix2pix/CycleGAN reference implementation load and give its results.

The generator and discriminator classes below are the reference's (models/networks.py of
junyanz/pytorch-CycleGAN-and-pix2pix), restated compactly with the same module tree, so
their state dicts have exactly the layout of its `*_net_G.pth` / `*_net_D.pth` files.
Each is given random weights and batch-norm statistics, saved with torch.save, loaded by
nodeflow, and run through a graph; the outputs must match the reference network's in eval
mode (its test.py with --eval) for the same input, in [-1, 1] on its side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from nodeflow.models.checkpoint import load_model
from nodeflow.registry import Registry

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]


def reference_norm(kind: str) -> Callable[[int], nn.Module]:
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return lambda _channels: nn.Identity()


def uses_bias(norm_layer: Callable[[int], nn.Module]) -> bool:
    return isinstance(norm_layer, functools.partial) and norm_layer.func is nn.InstanceNorm2d


class ReferenceResnetBlock(nn.Module):
    def __init__(self, dim: int, norm_layer, use_dropout: bool, bias: bool):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        block += [nn.ReLU(True)] + ([nn.Dropout(0.5)] if use_dropout else [])
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ReferenceResnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm_layer, use_dropout=False, n_blocks=6):
        super().__init__()
        bias = uses_bias(norm_layer)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), norm_layer(ngf)]
        model += [nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        model += [
            ReferenceResnetBlock(ngf * 4, norm_layer, use_dropout, bias) for _ in range(n_blocks)
        ]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReferenceUnetBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm_layer=None, use_dropout=False):  # fmt: skip
        super().__init__()
        self.outermost = outermost
        bias = uses_bias(norm_layer)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            model = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            down = [downrelu, downconv, norm_layer(inner_nc)]
            up = [uprelu, upconv, norm_layer(outer_nc)]
            model = down + [submodule] + up + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class ReferenceUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm_layer, use_dropout=False):
        super().__init__()
        block = ReferenceUnetBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = ReferenceUnetBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer,
                                       use_dropout=use_dropout)  # fmt: skip
        block = ReferenceUnetBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = ReferenceUnetBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = ReferenceUnetBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = ReferenceUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                        outermost=True, norm_layer=norm_layer)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReferenceNLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers, norm_layer):
        super().__init__()
        bias = uses_bias(norm_layer)
        sequence = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            sequence += [
                nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        sequence += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReferencePixelDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, norm_layer):
        super().__init__()
        bias = uses_bias(norm_layer)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics, as a trained network has."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 - 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return net.eval()


# (reference name, network, input side, nodeflow architecture, hyperparameters read back)
GENERATORS = [
    (
        "unet_256, batch norm, dropout",
        lambda: ReferenceUnetGenerator(3, 3, 8, 4, reference_norm("batch"), use_dropout=True),
        256,
        "unet",
        {"num_downs": 8, "norm": "batch", "ngf": 4},
    ),
    (
        "unet_128, instance norm",
        lambda: ReferenceUnetGenerator(3, 3, 7, 4, reference_norm("instance")),
        128,
        "unet",
        {"num_downs": 7, "norm": "instance"},
    ),
    (
        "resnet_9blocks, instance norm",
        lambda: ReferenceResnetGenerator(3, 3, 4, reference_norm("instance"), n_blocks=9),
        40,
        "resnet_generator",
        {"n_blocks": 9, "norm": "instance"},
    ),
    (
        "resnet_6blocks, batch norm, dropout",
        lambda: ReferenceResnetGenerator(3, 3, 4, reference_norm("batch"), True, n_blocks=6),
        40,
        "resnet_generator",
        {"n_blocks": 6, "norm": "batch", "use_dropout": True},
    ),
]

DISCRIMINATORS = [
    (
        "basic, batch norm, conditional (pix2pix)",
        lambda: ReferenceNLayerDiscriminator(6, 4, 3, reference_norm("batch")),
        "patchgan",
        {"n_layers": 3, "in_channels": 6},
    ),
    (
        "n_layers 4, instance norm (CycleGAN)",
        lambda: ReferenceNLayerDiscriminator(3, 4, 4, reference_norm("instance")),
        "patchgan",
        {"n_layers": 4, "in_channels": 3, "norm": "instance"},
    ),
    (
        "pixel, batch norm",
        lambda: ReferencePixelDiscriminator(6, 4, reference_norm("batch")),
        "pixel_discriminator",
        {"in_channels": 6},
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "side", "arch", "hparams"), GENERATORS, ids=[g[0] for g in GENERATORS]
)
def test_reference_generator_checkpoints_give_the_reference_outputs(
    tensor_source: TensorSource,
    run_graph,
    tmp_path: Path,
    name: str,
    make: Callable[[], nn.Module],
    side: int,
    arch: str,
    hparams: dict,
) -> None:
    reference = randomised(make(), seed=len(name))
    torch.save(reference.state_dict(), tmp_path / "latest_net_G.pth")
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(5))
    text = "version = 1\n" + tensor_source.node("photos", images, batch_size=2)
    text += '[nodes.g]\ntype = "load_model"\nparams = { checkpoint = "latest_net_G.pth" }\n'
    text += '[nodes.fake]\ntype = "cgan_generate"\ninputs = { image = "photos.image", model = "g.model" }\n'
    result, _ = run_graph(text, targets=["fake", "g"])
    assert result.ok, result.failed
    model = result.outputs["g"]["model"]
    assert model.arch == arch
    assert {k: model.info.hparams[k] for k in hparams} == hparams
    assert model.info.value_range == (-1.0, 1.0)
    out = torch.cat([batch.data for batch in result.outputs["fake"]["image"]])

    with torch.inference_mode():
        expected = (reference(images * 2 - 1) + 1) / 2
    torch.testing.assert_close(out, expected.clamp(0, 1), atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    ("name", "make", "arch", "hparams"), DISCRIMINATORS, ids=[d[0] for d in DISCRIMINATORS]
)
def test_reference_discriminator_checkpoints_give_the_reference_logits(
    registry: Registry,
    tmp_path: Path,
    name: str,
    make: Callable[[], nn.Module],
    arch: str,
    hparams: dict,
) -> None:
    reference = randomised(make(), seed=len(name))
    torch.save(reference.state_dict(), tmp_path / "latest_net_D.pth")
    model = load_model(tmp_path / "latest_net_D.pth", registry)
    assert (model.arch, model.info.purpose) == (arch, "discriminator")
    assert {k: model.info.hparams[k] for k in hparams} == hparams
    assert model.info.conditional == (hparams["in_channels"] == 6)

    x = torch.rand(2, hparams["in_channels"], 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(model.net(x * 2 - 1), reference(x * 2 - 1), atol=1e-6, rtol=0)
