"""The checkpoints shipped inside the package: present, small, loadable by name, and useful.

Each behaviour check runs the shipped model through a graph on a photo it never saw in
training (the training graphs leave astronaut, coffee, chelsea and camera out), small
enough to take about a second. benchmarks/quality.py measures them properly.
"""

from __future__ import annotations

import pytest

from nodeflow.models.checkpoint import shipped_checkpoints

SHIPPED = {
    "colorize": ("unet", "colorize"),
    "denoise": ("unet", "denoise"),
    "superres4": ("unet", "superres"),
    "edges2photo_G": ("unet", "edges2photo"),
    "edges2photo_D": ("patchgan", "edges2photo"),
    "autoencoder": ("autoencoder", "autoencode"),
    "gan64": ("style_generator", "generate"),
    "gan64_D": ("dcgan_discriminator", ""),
}
# Trained for fewer steps than the rest: the GAN's CPU share ran out (docs/models.md).
FEWER_STEPS = {"gan64": 900, "gan64_D": 900}


def photo(node_id: str = "photo", names: str = "astronaut, coffee", size: int = 128) -> str:
    return f"""
[nodes.{node_id}]
type = "sample_images"
params = {{ names = "{names}", size = {size} }}
"""


def node(node_id: str, type_id: str, inputs: str = "", params: str = "") -> str:
    text = f'\n[nodes.{node_id}]\ntype = "{type_id}"\n'
    text += f"params = {{ {params} }}\n" if params else ""
    return text + (f"inputs = {{ {inputs} }}\n" if inputs else "")


def load(name: str) -> str:
    return node(name, "load_model", params=f'checkpoint = "{name}"')


def outputs(run_graph, text: str, targets: list[str]) -> dict:
    result, _events = run_graph("version = 1\n" + text, targets=targets)
    assert result.ok, result.failed
    return result.outputs


def psnr_against_photo(run_graph, text: str, images: list[str], also: tuple[str, ...] = ()):
    """PSNR of each named image node against the photo, and the outputs of `also`."""
    for name in images:
        text += node(
            f"{name}_psnr", "metrics", f'image = "{name}.image", reference = "photo.image"'
        )
    found = outputs(run_graph, text, [f"{name}_psnr" for name in images] + list(also))
    return {name: found[f"{name}_psnr"]["psnr"] for name in images}, found


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_is_small_and_loads_by_name(name: str, run_graph) -> None:
    path = shipped_checkpoints()[name]
    assert path.stat().st_size < 10_000_000
    model = outputs(run_graph, load(name), [name])[name]["model"]
    assert (model.info.arch, model.info.task) == SHIPPED[name]
    assert model.info.extra["training"]["steps"] > FEWER_STEPS.get(name, 1000)


def test_shipped_denoise_beats_blurring_the_noise_away(run_graph) -> None:
    text = photo() + load("denoise")
    text += node("noisy", "add_noise", 'image = "photo.image"', "sigma = 25.0, seed = 1")
    text += node("blurred", "blur", 'image = "noisy.image"', "sigma = 1.0")
    text += node("clean", "unet", 'image = "noisy.image", model = "denoise.model"')
    psnr, _ = psnr_against_photo(run_graph, text, ["blurred", "clean"])
    assert psnr["clean"] > psnr["blurred"] + 1.0


def test_shipped_superres4_beats_bicubic(run_graph) -> None:
    text = photo(size=256) + load("superres4")
    text += node("small", "downsample", 'image = "photo.image"', "scale = 4")
    text += node("bicubic", "resize", 'image = "small.image"', 'scale = 4.0, mode = "bicubic"')
    text += node("big", "unet", 'image = "small.image", model = "superres4.model"')
    psnr, _ = psnr_against_photo(run_graph, text, ["bicubic", "big"])
    assert psnr["big"] > psnr["bicubic"] + 0.5


def test_shipped_colorize_adds_colour_closer_to_the_truth_than_gray(run_graph) -> None:
    text = photo() + load("colorize")
    text += node("gray", "grayscale", 'image = "photo.image"')
    text += node("coloured", "unet", 'image = "gray.image", model = "colorize.model"')
    # gray as RGB: blend repeats a gray image over the channels of the colour one
    text += node("gray_rgb", "blend", 'image = "gray.image", other = "photo.image"', "alpha = 0.0")
    psnr, found = psnr_against_photo(run_graph, text, ["gray_rgb", "coloured"], ("coloured",))
    coloured = next(iter(found["coloured"]["image"])).data
    chroma = (coloured - coloured.mean(dim=1, keepdim=True)).abs().mean()
    assert chroma > 0.02  # not gray
    assert psnr["coloured"] > psnr["gray_rgb"]


def test_shipped_discriminator_prefers_photos_to_degraded_photos_and_noise(run_graph) -> None:
    text = photo() + load("edges2photo_D")
    text += node("edges", "edges", 'image = "photo.image"')
    text += node("noise", "random_image", params="count = 2, size = 128")
    text += node("blurred", "blur", 'image = "photo.image"', "sigma = 2.0")
    text += node("degraded", "add_noise", 'image = "blurred.image"', "sigma = 25.0, seed = 1")
    kinds = ("photo", "degraded", "noise")
    for kind in kinds:
        inputs = f'image = "{kind}.image", condition = "edges.image", model = "edges2photo_D.model"'
        text += node(f"judge_{kind}", "discriminator_score", inputs)
        text += node(f"{kind}_score", "score_summary", f'score = "judge_{kind}.score"')
    found = outputs(run_graph, text, [f"{kind}_score" for kind in kinds])
    assert found["photo_score"]["min"] > found["degraded_score"]["max"]
    assert found["photo_score"]["min"] > found["noise_score"]["max"]


def test_shipped_autoencoder_reconstructs_better_than_its_latent_size_suggests(
    run_graph,
) -> None:
    text = photo() + load("autoencoder")
    text += node("latent", "encode", 'image = "photo.image", model = "autoencoder.model"')
    text += node("back", "decode", 'latent = "latent.latent", model = "autoencoder.model"')
    text += node("small", "resize", 'image = "photo.image"', "size = 32")
    text += node("blocky", "resize", 'image = "small.image"', 'size = 128, mode = "bilinear"')
    psnr, _ = psnr_against_photo(run_graph, text, ["back", "blocky"])
    # 8 x 8 x 8 numbers per 64 x 64 tile is what a 4x smaller RGB image holds (512 vs 768).
    assert psnr["back"] > psnr["blocky"]
