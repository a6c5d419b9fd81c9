"""PCA of images: fit a basis from a stream of images or patches, project, reconstruct, view.

A sample is either one whole image (all images must then share one shape) or one
non-overlapping p x p patch. Samples are flattened channel-major (C x h x w), the layout
`PCABasis` stores: `mean` (D,), `components` (k x D, orthonormal rows), `explained_variance`
(k,), `shape` (C, h, w).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from nodeflow.api import (
    IMAGE,
    LATENT,
    PCA_BASIS,
    Batch,
    Bool,
    Input,
    Int,
    Latent,
    NodeContext,
    Output,
    PCABasis,
    Stream,
    hookimpl,
    node,
)

SCATTER_LIMIT = 4096
"""Samples longer than this are kept and decomposed by SVD instead of a D x D scatter matrix."""


def _work_device(device: torch.device) -> torch.device:
    """Where float64 sums live: the run's device, except MPS, which has no float64."""
    return torch.device("cpu") if device.type == "mps" else device


def _patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """B x C x H x W -> B x D x L: the non-overlapping patches, the image cropped to fit."""
    height = images.shape[-2] // patch_size * patch_size
    width = images.shape[-1] // patch_size * patch_size
    return F.unfold(images[..., :height, :width], kernel_size=patch_size, stride=patch_size)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


class _Sampler:
    """Turns image batches into rows of samples (whole images or patches), checking shapes."""

    def __init__(self, patch_size: int | None, ctx: NodeContext):
        self.patch_size = patch_size
        self.ctx = ctx
        self.shape: tuple[int, int, int] | None = None
        self.first_name = ""

    @property
    def dim(self) -> int:
        assert self.shape is not None
        c, h, w = self.shape
        return c * h * w

    def count(self, batch: Batch) -> int:
        """How many samples `batch` gives; checks it against the first batch's shape."""
        images = batch.data
        channels, height, width = images.shape[1:]
        p = self.patch_size
        if p is not None and (height < p or width < p):
            for name in batch.names:
                self.ctx.item_error(name, f"{height}x{width} is smaller than patch_size {p}")
            return 0
        shape = (channels, height, width) if p is None else (channels, p, p)
        if self.shape is None:
            self.shape, self.first_name = shape, batch.names[0]
        elif p is None and shape != self.shape:
            raise ValueError(
                f"a whole-image PCA needs images of one shape: {self.first_name!r} is "
                f"{_shape_text(self.shape)} but {batch.names[0]!r} is {_shape_text(shape)}; "
                "resize them first, or set patch_size"
            )
        elif channels != self.shape[0]:
            raise ValueError(
                f"every image needs the same channel count: {self.first_name!r} has "
                f"{self.shape[0]} but {batch.names[0]!r} has {channels}; convert them first"
            )
        if p is None:
            return len(images)
        return len(images) * (height // p) * (width // p)

    def rows(self, batch: Batch) -> torch.Tensor:
        """The batch's samples as rows, N x D."""
        if self.patch_size is None:
            return batch.data.flatten(1)
        return _patches(batch.data, self.patch_size).transpose(1, 2).reshape(-1, self.dim)


class _Scatter:
    """Sum and scatter matrix of the samples in float64: flat memory for any sample count.

    Sums are taken around the first batch's mean (covariance does not depend on the shift),
    which keeps the subtraction at the end from cancelling digits.
    """

    def __init__(self, dim: int, device: torch.device):
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.total.device, torch.float64)
        if self.shift is None:
            self.shift = rows.mean(0)
        centered = rows - self.shift
        self.total += centered.sum(0)
        self.scatter.addmm_(centered.T, centered)
        self.count += len(rows)

    def solve(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self.shift is not None
        n = self.count
        offset = self.total / n
        covariance = (self.scatter - n * torch.outer(offset, offset)) / (n - 1)
        values, vectors = torch.linalg.eigh(covariance)
        variance = values.flip(0)[:k].clamp_min(0)
        return self.shift + offset, vectors.flip(1)[:, :k].T, variance


class _Kept:
    """The samples themselves (float32), for samples too long for a D x D scatter matrix."""

    def __init__(self, dim: int, device: torch.device):
        self.count = 0
        self.device = device
        self.chunks: list[torch.Tensor] = []

    def add(self, rows: torch.Tensor) -> None:
        self.chunks.append(rows.to(self.device, torch.float32))
        self.count += len(rows)

    def solve(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data = torch.cat(self.chunks).to(torch.float64)
        self.chunks.clear()
        mean = data.mean(0)
        data -= mean
        _, singular, vh = torch.linalg.svd(data, full_matrices=False)
        return mean, vh[:k], singular[:k] ** 2 / (self.count - 1)


def _accumulator(dim: int, device: torch.device) -> _Scatter | _Kept:
    return _Scatter(dim, device) if dim <= SCATTER_LIMIT else _Kept(dim, device)


def _even_picks(
    start: int, count: int, total: int, wanted: int, device: torch.device
) -> torch.Tensor:
    """Which of samples start..start+count-1 belong to `wanted` evenly spaced of `total`.

    The chosen global indices are floor(i * total / wanted) for i in 0..wanted-1.
    """
    first = -(-start * wanted // total)
    stop = -(-(start + count) * wanted // total)
    steps = torch.arange(first, stop, device=device)
    return steps * total // wanted - start


def _orient(components: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its largest-magnitude entry is positive (a fixed sign)."""
    largest = components.abs().argmax(dim=1, keepdim=True)
    signs = components.gather(1, largest).sign()
    return components * torch.where(signs == 0, 1.0, signs)


@node(
    "pca_fit",
    inputs={"image": Input(IMAGE, help="the images to fit, streamed")},
    outputs={"basis": Output(PCA_BASIS, help="mean, components and explained variance")},
    params={
        "components": Int(16, min=1, max=4096, help="how many principal components to keep"),
        "patch_size": Int(
            None,
            min=2,
            max=256,
            help="fit on every non-overlapping patch of this size; unset: on whole images",
        ),
        "max_samples": Int(
            200000, min=1, help="most samples used; beyond it, evenly spaced ones are taken"
        ),
    },
    mode="collect",
    persist=True,
)
def pca_fit(
    image: Stream,
    *,
    components: int,
    patch_size: int | None,
    max_samples: int,
    ctx: NodeContext,
) -> PCABasis:
    """Fit a PCA basis to a stream of images, or to their patches.

    Without patch_size each whole image is one sample and all images must share one shape.
    With it, every non-overlapping patch_size x patch_size patch is a sample (images are
    cropped to a multiple of it; images smaller than one patch are reported and skipped).

    When a sample has at most 4096 values, the stream is read batch by batch into a running
    sum and a D x D scatter matrix in float64, then decomposed with an eigendecomposition:
    exact PCA (the same as scikit-learn's full-SVD PCA) in flat memory however many images
    flow in. Longer samples (large whole images, big patches) are kept in memory and
    decomposed with an exact SVD instead, so memory grows with the number of samples there.

    When there are more than max_samples samples, the stream is read a second time and
    max_samples evenly spaced ones are used (deterministic). Explained variance divides by
    n - 1 like scikit-learn; each component's largest-magnitude entry is positive.
    """
    work = _work_device(ctx.device)
    sampler = _Sampler(patch_size, ctx)
    ctx.progress(0, image.total)
    accumulator: _Scatter | _Kept | None = None
    seen = 0
    for index, batch in enumerate(image):
        count = sampler.count(batch)
        if count and seen + count <= max_samples:
            accumulator = accumulator or _accumulator(sampler.dim, work)
            accumulator.add(sampler.rows(batch))
        elif count:
            accumulator = None
        seen += count
        ctx.progress(index + 1, image.total, samples=seen)
    if sampler.shape is None:
        raise ValueError("pca_fit received no usable images")
    used = min(seen, max_samples)
    _check_size(components, used, sampler.dim, patch_size)

    if accumulator is None:
        accumulator = _accumulator(sampler.dim, work)
        start = 0
        for index, batch in enumerate(image):
            count = sampler.count(batch)
            if count:
                picks = _even_picks(start, count, seen, max_samples, work)
                accumulator.add(sampler.rows(batch).to(work)[picks])
            start += count
            ctx.progress(index + 1, image.total, samples=accumulator.count, subset_pass=True)
        _check_size(components, accumulator.count, sampler.dim, patch_size)

    mean, vectors, variance = accumulator.solve(components)
    return PCABasis(
        mean.to(ctx.device, torch.float32),
        _orient(vectors).to(ctx.device, torch.float32),
        variance.to(ctx.device, torch.float32),
        sampler.shape,
        patches=patch_size is not None,
    )


def _check_size(components: int, samples: int, dim: int, patch_size: int | None) -> None:
    what = "patches" if patch_size is not None else "images"
    if samples < 2:
        raise ValueError(
            f"PCA needs at least 2 samples, got {samples} ({what}); give it more images"
        )
    if components > min(samples, dim):
        raise ValueError(
            f"components = {components} is more than the data allows: {samples} samples "
            f"({what}) of {dim} values each give at most {min(samples, dim)}; "
            "lower components or give it more data"
        )


def _layout(basis: PCABasis, images: torch.Tensor) -> str:
    """'patches' for a basis fitted on patches, else 'whole' (images of the sample size)."""
    c, h, w = basis.shape
    channels, height, width = images.shape[1:]
    if channels != c:
        raise ValueError(
            f"the basis was fitted on {c}-channel samples but the images have {channels} "
            "channels; convert them first"
        )
    if basis.patches:
        if height >= h and width >= w:
            return "patches"
        raise ValueError(f"images of {height}x{width} are smaller than the basis's {h}x{w} patches")
    if (height, width) == (h, w):
        return "whole"
    raise ValueError(
        f"images of {height}x{width} do not fit a basis fitted on whole {h}x{w} images: "
        f"resize them to {h}x{w}, or fit the basis with patch_size"
    )


def _component_count(requested: int | None, available: int, what: str) -> int:
    if requested is None:
        return available
    if requested > available:
        raise ValueError(f"components = {requested}, but the {what} has only {available}")
    return requested


@node(
    "pca_project",
    inputs={
        "image": Input(IMAGE, help="images to encode"),
        "basis": Input(PCA_BASIS, help="a basis from pca_fit"),
    },
    outputs={"latent": Output(LATENT, help="the PCA codes")},
    params={
        "components": Int(None, min=1, max=4096, help="use the first n components; unset: all")
    },
    mode="map",
)
def pca_project(image: torch.Tensor, basis: PCABasis, *, components: int | None) -> Latent:
    """Encode images as PCA codes.

    Images the size of the basis's samples give one code per image (B x k). Larger images
    are cropped to a multiple of the basis's (square) sample size and cut into
    non-overlapping patches, one code per patch: B x k x H/p x W/p.
    """
    k = _component_count(components, len(basis.components), "basis")
    vectors = basis.components[:k]
    if _layout(basis, image) == "whole":
        codes = (image.flatten(1) - basis.mean) @ vectors.T
        return Latent(codes, source="pca")
    p = basis.patch_size
    columns = _patches(image, p) - basis.mean[:, None]
    codes = vectors @ columns
    grid = (image.shape[-2] // p, image.shape[-1] // p)
    return Latent(codes.reshape(len(image), k, *grid), source="pca")


@node(
    "pca_reconstruct",
    inputs={
        "latent": Input(LATENT, help="codes from pca_project"),
        "basis": Input(PCA_BASIS, help="the basis the codes were made with"),
    },
    outputs={"image": Output(IMAGE, help="the reconstructed images, clamped to [0, 1]")},
    params={
        "components": Int(None, min=1, max=4096, help="use only the first n components; unset: all")
    },
    mode="map",
)
def pca_reconstruct(latent: Latent, basis: PCABasis, *, components: int | None) -> torch.Tensor:
    """Decode PCA codes back to images, the inverse of pca_project.

    Per-image codes (B x k) give images of the basis's sample shape; per-patch codes
    (B x k x h x w) give images of h x w patches. With components set, only the first n
    components are used (the rest count as zero), which shows how much each adds.
    """
    if latent.source != "pca":
        raise ValueError(
            f"this latent comes from {latent.source!r}; pca_reconstruct decodes latents "
            "made by pca_project"
        )
    codes = latent.tensor
    available = codes.shape[1]
    if available > len(basis.components):
        raise ValueError(
            f"the latent has {available} components but the basis only "
            f"{len(basis.components)}: was it made with another basis?"
        )
    k = _component_count(components, available, "latent")
    codes, vectors = codes[:, :k], basis.components[:k]
    if codes.dim() == 2:
        images = (codes @ vectors + basis.mean).reshape(len(codes), *basis.shape)
    elif codes.dim() == 4:
        p = basis.patch_size
        columns = vectors.T @ codes.flatten(2) + basis.mean[:, None]
        size = (codes.shape[-2] * p, codes.shape[-1] * p)
        images = F.fold(columns, output_size=size, kernel_size=p, stride=p)
    else:
        raise ValueError(f"expected PCA codes of B x k or B x k x h x w, got {tuple(codes.shape)}")
    return images.clamp(0, 1)


@node(
    "pca_components",
    inputs={"basis": Input(PCA_BASIS, help="a basis from pca_fit")},
    outputs={
        "image": Output(IMAGE, help="the first components as images, one batch"),
        "mean": Output(IMAGE, help="the mean sample as an image"),
    },
    params={
        "count": Int(16, min=1, max=4096, help="how many components to show (at most all)"),
        "normalize": Bool(
            True, help="stretch each component to [0, 1]; false: 0.5 + one shared scale"
        ),
    },
    mode="source",
)
def pca_components(basis: PCABasis, *, count: int, normalize: bool) -> dict[str, Stream]:
    """Show a PCA basis: its first components ("eigen-images") and its mean image.

    With normalize each component is min-max stretched to [0, 1] on its own. Without it,
    zero is mid-gray and all components share one scale (the largest magnitude maps to 0
    or 1), so their strengths compare. A count above the basis's size shows all components.
    """
    count = min(count, len(basis.components))
    vectors = basis.components[:count].reshape(count, *basis.shape)
    if normalize:
        low = vectors.amin(dim=(1, 2, 3), keepdim=True)
        span = vectors.amax(dim=(1, 2, 3), keepdim=True) - low
        images = torch.where(span > 0, (vectors - low) / span.clamp_min(1e-12), 0.5)
    else:
        scale = 0.5 / vectors.abs().max().clamp_min(1e-12)
        images = (0.5 + vectors * scale).clamp(0, 1)
    mean = basis.mean.reshape(1, *basis.shape).clamp(0, 1)
    names = [f"component{i:03d}" for i in range(count)]
    return {"image": Stream.of(images, names), "mean": Stream.of(mean, ["mean"])}


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (pca_fit, pca_project, pca_reconstruct, pca_components):
        register(node_type)
