"""Measured quality of the shipped models on photos no model saw in training.

    .venv/bin/python benchmarks/quality.py [--models DIR] [--only SECTION ...]

Every figure comes from nodeflow graphs run through the engine API; baselines that
nodeflow has no node for (non-local means) come from scikit-image. The held-out photos are
astronaut, coffee, chelsea and camera (the training graphs use the other sample photos).
`--models DIR` measures checkpoints in DIR (e.g. graphs/out/models after `make models`)
instead of the shipped ones.

Targets (issue 3): denoising beats non-local means; x4 super-resolution at least +1 dB
over bicubic; discriminator ROC AUC at least 0.9 against degraded images; PCA equal to
scikit-learn within 1e-4. Issue 17: the GAN's samples closer to real crops (sliced
Wasserstein distance) than Gaussian samples of a PCA fit and the autoencoder's random
latents. The GAN's real crops are held out: `graphs/train_gan.toml` trains on the left
384 columns of its 512x512 photos; the crops measured here come from the right 128.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import sklearn.datasets
import torch
from skimage.restoration import denoise_nl_means
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from nodeflow.engine import Cache, Executor
from nodeflow.graph import Graph
from nodeflow.nodes.swd import swd_levels
from nodeflow.plugins import load_registry
from nodeflow.types import Stream

HELD_OUT = "astronaut,coffee,chelsea,camera"
HELD_OUT_FOLDER = Path(sklearn.datasets.__file__).parent / "images"
HELD_OUT_COLOUR = "astronaut,coffee,chelsea"
SIZE = 256
CROPS = 32  # random 64x64 crops of each held-out colour photo the discriminator judges
AUTOENCODER_GRAPH = Path(__file__).parent.parent / "graphs" / "train_autoencoder.toml"
GAN_GRAPH = Path(__file__).parent.parent / "graphs" / "train_gan.toml"
GAN_CROPS = 256  # 64x64 crops of each kind the SWD compares
PCA_COMPONENTS = 128


class Bench:
    """Runs graph text on the `auto` device and hands back the outputs."""

    def __init__(self, models: Path | None):
        self.registry = load_registry()
        self.executor = Executor(self.registry, Cache(Path(tempfile.mkdtemp())))
        self.models = models

    def checkpoint(self, name: str) -> str:
        return str(self.models / f"{name}.safetensors") if self.models else name

    def run(self, text: str, targets: list[str]) -> dict:
        result = self.executor.run(Graph.parse("version = 1\n" + text), targets=targets)
        if not result.ok:
            raise SystemExit(f"benchmark graph failed: {result.failed}")
        return result.outputs

    def images(self, text: str, node: str) -> torch.Tensor:
        """All images of a node's stream, concatenated (the held-out set is small)."""
        outputs = self.run(text, [node])
        stream = next(iter(outputs[node].values()))
        return torch.cat([batch.data for batch in stream])


def photos(names: str = HELD_OUT, gray: bool = False) -> str:
    return f"""
[nodes.photos]
type = "sample_images"
params = {{ names = "{names}", size = {SIZE}, gray = {str(gray).lower()} }}
"""


def node(node_id: str, type_id: str, inputs: dict[str, str], **params: object) -> str:
    def literal(v: object) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    param_text = ", ".join(f"{k} = {literal(v)}" for k, v in params.items())
    input_text = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
    lines = [f"[nodes.{node_id}]", f'type = "{type_id}"']
    if params:
        lines.append(f"params = {{ {param_text} }}")
    if inputs:
        lines.append(f"inputs = {{ {input_text} }}")
    return "\n".join(lines) + "\n"


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    mse = ((images.double() - reference.double()) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def colourfulness(images: torch.Tensor) -> float:
    """Hasler and Suesstrunk's colourfulness (0 for gray), mean over the images, on 0-255."""
    rgb = images.double() * 255
    if rgb.shape[1] == 1:
        return 0.0
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    std = (rg.flatten(1).std(1) ** 2 + yb.flatten(1).std(1) ** 2).sqrt()
    mean = (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2).sqrt()
    return float((std + 0.3 * mean).mean())


def held_out_photos(gray: bool = False) -> str:
    """The two photos scikit-learn ships (china, flower), cut to 424 x 640 (a multiple of 8).

    They come from another source than any training image: the restoration models train
    on scikit-image's photos and on procedural dead-leaves images.
    """
    text = node("files", "load_images", {}, path=str(HELD_OUT_FOLDER), batch_size=1)
    text += node("photos", "crop", {"image": "files.image"}, top=0, left=0, height=424, width=640)
    if gray:
        text += node("gray", "grayscale", {"image": "photos.image"})
    return text


def colour_shift(images: torch.Tensor, truth: torch.Tensor) -> str:
    """Per-channel mean error (0-255) of one image: a global colour or brightness shift."""
    shift = (images.double() - truth.double()).mean(dim=(-2, -1)) * 255
    return "/".join(f"{v:+.1f}" for v in shift.flatten().tolist())


def per_photo(bench: Bench, text: str, nodes: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """name -> node -> that photo's image, for the held-out photos."""
    outputs = bench.run(text, nodes)
    photos: dict[str, dict[str, torch.Tensor]] = {}
    for node_id in nodes:
        for batch in next(iter(outputs[node_id].values())):
            for name, image in zip(batch.names, batch.data, strict=True):
                photos.setdefault(Path(name).stem, {})[node_id] = image[None].float().cpu()
    return photos


def denoising(bench: Bench) -> list[tuple[str, str]]:
    text = held_out_photos()
    text += node("noisy", "add_noise", {"image": "photos.image"}, sigma=25.0, seed=7)
    text += node("model", "load_model", {}, checkpoint=bench.checkpoint("denoise"))
    text += node("denoised", "unet", {"image": "noisy.image", "model": "model.model"})
    rows = []
    sigma = 25 / 255  # the true noise level: the baseline gets its best setting
    for name, images in per_photo(bench, text, ["photos", "noisy", "denoised"]).items():
        clean, noisy, denoised = images["photos"], images["noisy"], images["denoised"]
        array = noisy[0].permute(1, 2, 0).numpy().astype(np.float64)
        nlm = denoise_nl_means(
            array, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
            fast_mode=True, channel_axis=-1,
        )  # fmt: skip
        nlm = torch.from_numpy(nlm).permute(2, 0, 1)[None].float()
        rows.append((
            f"denoise sigma 25, {name}: noisy / non-local means / 'denoise' (colour shift RGB)",
            f"{psnr(noisy, clean):.2f} / {psnr(nlm, clean):.2f} / {psnr(denoised, clean):.2f} dB"
            f" ({colour_shift(denoised, clean)})",
        ))  # fmt: skip
    return rows


def super_resolution(bench: Bench) -> list[tuple[str, str]]:
    text = held_out_photos()
    text += node("small", "downsample", {"image": "photos.image"}, scale=4)
    text += node("bicubic", "resize", {"image": "small.image"}, scale=4.0, mode="bicubic")
    text += node("model", "load_model", {}, checkpoint=bench.checkpoint("superres4"))
    text += node("restored", "unet", {"image": "small.image", "model": "model.model"})
    rows = []
    for name, images in per_photo(bench, text, ["photos", "bicubic", "restored"]).items():
        clean, bicubic, restored = images["photos"], images["bicubic"], images["restored"]
        gain = psnr(restored, clean) - psnr(bicubic, clean)
        rows.append((
            f"super-resolution x4, {name}: bicubic / 'superres4', gain (colour shift RGB)",
            f"{psnr(bicubic, clean):.2f} / {psnr(restored, clean):.2f} dB, {gain:+.2f} dB"
            f" ({colour_shift(restored, clean)})",
        ))  # fmt: skip
    return rows


def colorization(bench: Bench) -> list[tuple[str, str]]:
    text = held_out_photos(gray=True)
    text += node("model", "load_model", {}, checkpoint=bench.checkpoint("colorize"))
    text += node("coloured", "unet", {"image": "gray.image", "model": "model.model"})
    rows = []
    for name, images in per_photo(bench, text, ["photos", "gray", "coloured"]).items():
        truth, coloured = images["photos"], images["coloured"]
        gray = images["gray"].expand(-1, 3, -1, -1)
        rows.append((
            f"colorize, {name}: PSNR gray input / 'colorize'; colourfulness 'colorize' / truth"
            " (colour shift RGB)",
            f"{psnr(gray, truth):.2f} / {psnr(coloured, truth):.2f} dB; "
            f"{colourfulness(coloured):.1f} / {colourfulness(truth):.1f}"
            f" ({colour_shift(coloured, truth)})",
        ))  # fmt: skip
    return rows


def discriminator(bench: Bench) -> list[tuple[str, str]]:
    """AUC of the pix2pix discriminator over 64x64 crops of the held-out photos."""
    text = photos(HELD_OUT_COLOUR)
    text += node("crops", "random_crop", {"image": "photos.image"}, size=64, seed=3)
    text += node("edges", "edges", {"image": "crops.image"})
    text += node("gen", "load_model", {}, checkpoint=bench.checkpoint("edges2photo_G"))
    text += node("disc", "load_model", {}, checkpoint=bench.checkpoint("edges2photo_D"))
    text += node("fake", "cgan_generate", {"image": "edges.image", "model": "gen.model"})
    text += node("blurred", "blur", {"image": "crops.image"}, sigma=2.0)
    text += node("degraded", "add_noise", {"image": "blurred.image"}, sigma=25.0, seed=5)
    for name, source in (("real", "crops"), ("generated", "fake"), ("worse", "degraded")):
        inputs = {"image": f"{source}.image", "condition": "edges.image", "model": "disc.model"}
        text += node(f"score_{name}", "discriminator_score", inputs)
    scores = {}
    for name in ("real", "generated", "worse"):
        per_seed = []
        for seed in range(CROPS):
            graph = text.replace("seed = 3", f"seed = {seed}")
            outputs = bench.run(graph, [f"score_{name}"])
            stream = outputs[f"score_{name}"]["score"]
            per_seed += [batch.data.score for batch in stream]
        scores[name] = torch.cat(per_seed).numpy()

    def auc(negative: np.ndarray) -> float:
        labels = np.r_[np.ones(len(scores["real"])), np.zeros(len(negative))]
        return float(roc_auc_score(labels, np.r_[scores["real"], negative]))

    return [
        (
            "discriminator ROC AUC, real vs its generator's output",
            f"{auc(scores['generated']):.3f}",
        ),
        ("discriminator ROC AUC, real vs degraded (blur + noise)", f"{auc(scores['worse']):.3f}"),
    ]


def autoencoder(bench: Bench) -> list[tuple[str, str]]:
    """Reconstruction of the held-out photos through the 8 x 8 x 8 latent of 64x64 tiles.

    The baseline keeps exactly as many numbers: PCA of 8x8 colour patches with 8
    components (8 numbers per 8x8 patch, as the latent has), fitted on the autoencoder's
    own training photos, read at the same size.
    """
    learned_from = Graph.load(AUTOENCODER_GRAPH).nodes["photos"].params
    text = photos()
    text += node("training", "sample_images", {}, **learned_from)
    text += node("model", "load_model", {}, checkpoint=bench.checkpoint("autoencoder"))
    text += node("latent", "encode", {"image": "photos.image", "model": "model.model"})
    text += node("decoded", "decode", {"latent": "latent.latent", "model": "model.model"})
    text += node("basis", "pca_fit", {"image": "training.image"}, components=8, patch_size=8)
    text += node("code", "pca_project", {"image": "photos.image", "basis": "basis.basis"})
    text += node("rec", "pca_reconstruct", {"latent": "code.latent", "basis": "basis.basis"})
    clean = bench.images(text, "photos")
    return [
        ("autoencoder, same budget: PCA 8 of 8x8 patches",
         f"{psnr(bench.images(text, 'rec'), clean):.2f} dB"),
        ("autoencoder: shipped 'autoencoder' (8 x 8 x 8 latent per 64x64)",
         f"{psnr(bench.images(text, 'decoded'), clean):.2f} dB"),
    ]  # fmt: skip


def pca(bench: Bench) -> list[tuple[str, str]]:
    text = photos(HELD_OUT, gray=True).replace(f"size = {SIZE}", "size = 64")
    text += node("basis", "pca_fit", {"image": "photos.image"}, components=16, patch_size=8)
    text += node("code", "pca_project", {"image": "photos.image", "basis": "basis.basis"})
    text += node("rec", "pca_reconstruct", {"latent": "code.latent", "basis": "basis.basis"})
    images = bench.images(text, "photos")
    ours = float(((bench.images(text, "rec") - images) ** 2).mean())
    patches = torch.nn.functional.unfold(images.double(), 8, stride=8).transpose(1, 2)
    samples = patches.reshape(-1, 64).numpy()
    reference = PCA(n_components=16, svd_solver="full").fit(samples)
    # pca_reconstruct clamps its images to [0, 1]; so does the reference here.
    rebuilt = np.clip(reference.inverse_transform(reference.transform(samples)), 0, 1)
    theirs = float(((rebuilt - samples) ** 2).mean())
    return [
        ("PCA 16 of 8x8 patches: reconstruction MSE, nodeflow", f"{ours:.6f}"),
        ("PCA 16 of 8x8 patches: reconstruction MSE, scikit-learn", f"{theirs:.6f}"),
        ("PCA: difference", f"{abs(ours - theirs):.1e}"),
    ]


def _random_crops(images: torch.Tensor, count: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    height, width = images.shape[-2:]
    picks = torch.randint(len(images), (count,), generator=generator).tolist()
    tops = torch.randint(height - size + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(width - size + 1, (count,), generator=generator).tolist()
    return torch.stack(
        [
            images[i, :, t : t + size, x : x + size]
            for i, t, x in zip(picks, tops, lefts, strict=True)
        ]
    )


def _pca_gaussian_samples(training: torch.Tensor, count: int) -> torch.Tensor:
    """Images drawn from the Gaussian a PCA of the training crops fits (an exact SVD here,
    as pca_fit computes it): the mean plus, per component, N(0, its explained variance)
    times the component; clamped to [0, 1]."""
    flat = training.flatten(1).double()
    mean = flat.mean(0)
    _, singular, components = torch.linalg.svd(flat - mean, full_matrices=False)
    variance = singular[:PCA_COMPONENTS] ** 2 / (len(flat) - 1)
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(count, PCA_COMPONENTS, generator=generator, dtype=torch.float64)
    images = mean + (codes * variance.sqrt()) @ components[:PCA_COMPONENTS]
    return images.reshape(count, *training.shape[1:]).clamp(0, 1).float()


def _diversity(images: torch.Tensor) -> float:
    """Mean L2 distance (per pixel, RMS) between different images of a set."""
    flat = images.flatten(1).double()
    distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))


def _nearest(images: torch.Tensor, bank: torch.Tensor) -> float:
    """Median over `images` of the RMS distance to the nearest image of `bank`."""
    distances = torch.cdist(images.flatten(1).double(), bank.flatten(1).double())
    return float((distances.min(dim=1).values / images[0].numel() ** 0.5).median())


def gan(bench: Bench) -> list[tuple[str, str]]:
    """SWD (x 1000, mean of the 64, 32 and 16 px pyramid levels) to held-out real crops."""
    photos_params = Graph.load(GAN_GRAPH).nodes["photos"].params
    text = node("photos", "sample_images", {}, **photos_params)
    text += node("model", "load_model", {}, checkpoint=bench.checkpoint("gan64"))
    text += node("samples", "gan_generate", {"model": "model.model"}, count=GAN_CROPS, seed=0)
    text += node("ae", "load_model", {}, checkpoint=bench.checkpoint("autoencoder"))
    text += node("codes", "latent_sample", {"model": "ae.model"}, count=GAN_CROPS, seed=0)
    text += node("decoded", "decode", {"latent": "codes.latent", "model": "ae.model"})
    photos = bench.images(text, "photos")
    held_out = _random_crops(photos[..., 384:], GAN_CROPS, 64, seed=1)
    training = _random_crops(photos[..., :384], 4 * GAN_CROPS, 64, seed=2)
    candidates = {
        "real crops from the training columns (the floor)": training[:GAN_CROPS],
        "shipped 'gan64' samples": bench.images(text, "samples"),
        f"Gaussian samples of a PCA fit ({PCA_COMPONENTS} components)": _pca_gaussian_samples(
            training, GAN_CROPS
        ),
        "shipped 'autoencoder', random latents": bench.images(text, "decoded"),
    }
    rows = []
    for name, images in candidates.items():
        levels = swd_levels(Stream.of(images), Stream.of(held_out), patches=128,
                            directions=512, min_size=16, seed=0)  # fmt: skip
        per_level = " / ".join(f"{v:.0f}" for v in levels)
        rows.append((f"GAN SWD: {name}", f"{sum(levels) / len(levels):.1f} ({per_level})"))
    samples = candidates["shipped 'gan64' samples"]
    rows += [
        ("GAN diversity: mean RMS distance between samples / between real crops",
         f"{_diversity(samples):.3f} / {_diversity(held_out):.3f}"),
        ("GAN copying: median RMS distance to nearest training crop, samples / held-out crops",
         f"{_nearest(samples, training):.3f} / {_nearest(held_out, training):.3f}"),
    ]  # fmt: skip
    return rows


SECTIONS = {
    "denoise": denoising,
    "superres": super_resolution,
    "colorize": colorization,
    "discriminator": discriminator,
    "autoencoder": autoencoder,
    "pca": pca,
    "gan": gan,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="folder of checkpoints to measure")
    parser.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), help="measure these sections only"
    )
    args = parser.parse_args()
    bench = Bench(args.models.resolve() if args.models else None)
    torch.manual_seed(0)
    rows = []
    for name in args.only or SECTIONS:
        rows += SECTIONS[name](bench)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
