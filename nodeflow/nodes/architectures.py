"""Registers the built-in model architectures: autoencoder, U-Net, ResNet generator,
discriminators, and the unconditional GANs (DCGAN generator and discriminator, style-based
generator).

Each is an id, a `detect(state_dict)` that recognises its key layout and shapes, and a
`build(state_dict, metadata)` that rebuilds it from nodeflow metadata or, for a bare
state dict such as the pix2pix/CycleGAN reference's `*_net_G.pth` / `*_net_D.pth`, from
the tensor shapes. `build` with an empty state dict makes a freshly initialised model;
`nodeflow.models.checkpoint.new_model` relies on that.
"""

from collections.abc import Callable
from typing import Any

from nodeflow.api import Architecture, hookimpl
from nodeflow.models import autoencoder, dcgan, patchgan, resnet, stylegan, unet

ARCHITECTURES = (
    Architecture(
        autoencoder.ARCH_ID,
        autoencoder.detect,
        autoencoder.build,
        "convolutional autoencoder with a spatial latent (encode/decode); also a denoiser",
    ),
    Architecture(
        unet.ARCH_ID,
        unet.detect,
        unet.build,
        "pix2pix U-Net generator (unet_256, unet_128, any num_downs), tanh output",
    ),
    Architecture(
        resnet.ARCH_ID,
        resnet.detect,
        resnet.build,
        "CycleGAN ResNet-blocks generator (resnet_9blocks, resnet_6blocks, any n_blocks)",
    ),
    Architecture(
        patchgan.PATCHGAN_ID,
        patchgan.detect_patchgan,
        patchgan.build_patchgan,
        "PatchGAN discriminator (basic = n_layers 3, 70x70 patches), conditional or not",
    ),
    Architecture(
        patchgan.PIXEL_ID,
        patchgan.detect_pixel,
        patchgan.build_pixel,
        "1x1 pixel discriminator, conditional or not",
    ),
    Architecture(
        dcgan.GENERATOR_ID,
        dcgan.detect_generator,
        dcgan.build_generator,
        "DCGAN generator: noise z to 32-128 px images",
    ),
    Architecture(
        dcgan.DISCRIMINATOR_ID,
        dcgan.detect_discriminator,
        dcgan.build_discriminator,
        "DCGAN discriminator with spectral normalization, unconditional",
    ),
    Architecture(
        stylegan.ARCH_ID,
        stylegan.detect,
        stylegan.build,
        "style-based generator (mapping z -> w, modulated convs, noise), 32-128 px",
    ),
)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    for arch in ARCHITECTURES:
        register(arch)
