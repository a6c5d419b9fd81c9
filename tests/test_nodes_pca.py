"""PCA nodes: fitting matches scikit-learn, patches, streaming, round trips, viewing, persistence."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA

from nodeflow.engine.cache import Cache
from nodeflow.engine.events import NodeStarted
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.types import PCABasis

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]


def low_rank_images(count: int = 200, size: int = 8, rank: int = 5) -> torch.Tensor:
    """Gray images near a `rank`-dimensional subspace, plus a little noise, inside (0, 1)."""
    generator = torch.Generator().manual_seed(1)
    directions = torch.randn(rank, size * size, generator=generator) / size
    codes = torch.randn(count, rank, generator=generator) * torch.linspace(1.0, 0.2, rank)
    noise = 0.01 * torch.randn(count, size * size, generator=generator)
    data = 0.5 + 0.2 * (codes @ directions) + noise
    assert data.min() > 0 and data.max() < 1
    return data.reshape(count, 1, size, size)


def node_text(node_id: str, type_id: str, inputs: dict[str, str], **params: object) -> str:
    lines = [f"[nodes.{node_id}]", f'type = "{type_id}"']
    if params:
        values = ", ".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
        )
        lines.append(f"params = {{ {values} }}")
    if inputs:
        links = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
        lines.append(f"inputs = {{ {links} }}")
    return "\n".join(lines) + "\n"


def fit_basis(source: TensorSource, run_graph, images: torch.Tensor, batch_size: int = 256,
              name: str = "graph.toml", **params: object) -> PCABasis:  # fmt: skip
    text = "version = 1\n" + source.node("src", images, batch_size)
    text += node_text("fit", "pca_fit", {"image": "src.image"}, **params)
    result, _ = run_graph(text, name=name, targets=["fit"])
    assert result.ok, result.failed
    return result.outputs["fit"]["basis"]


def reconstruct(basis: PCABasis, samples: np.ndarray) -> np.ndarray:
    mean = basis.mean.double().numpy()
    components = basis.components.double().numpy()
    return (samples - mean) @ components.T @ components + mean


def test_fit_matches_scikit_learn(tensor_source, run_graph):
    images = low_rank_images()
    basis = fit_basis(tensor_source, run_graph, images, batch_size=32, components=8)
    samples = images.flatten(1).double().numpy()
    reference = PCA(n_components=8, svd_solver="full").fit(samples)

    assert basis.shape == (1, 8, 8)
    assert basis.components.shape == (8, 64)
    np.testing.assert_allclose(
        basis.explained_variance.numpy(), reference.explained_variance_, rtol=1e-4
    )
    np.testing.assert_allclose(basis.mean.numpy(), reference.mean_, atol=1e-6)
    ours = np.mean((reconstruct(basis, samples) - samples) ** 2)
    theirs = np.mean((reference.inverse_transform(reference.transform(samples)) - samples) ** 2)
    assert abs(ours - theirs) < 1e-4
    assert ours == pytest.approx(theirs, rel=1e-3)
    alignment = np.abs(basis.components.double().numpy() @ reference.components_.T)
    np.testing.assert_allclose(np.diag(alignment), 1.0, atol=1e-4)
    gram = basis.components @ basis.components.T
    torch.testing.assert_close(gram, torch.eye(8), atol=1e-5, rtol=0)
    rows = torch.arange(8)
    assert (basis.components[rows, basis.components.abs().argmax(dim=1)] > 0).all()


def test_fit_in_many_small_batches_equals_one_batch(tensor_source, run_graph):
    images = low_rank_images()
    streamed = fit_basis(tensor_source, run_graph, images, batch_size=7, components=6)
    whole = fit_basis(
        tensor_source, run_graph, images, batch_size=200, name="one.toml", components=6
    )
    torch.testing.assert_close(streamed.components, whole.components, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        streamed.explained_variance, whole.explained_variance, rtol=1e-5, atol=0
    )
    torch.testing.assert_close(streamed.mean, whole.mean, atol=1e-6, rtol=0)


def patches_of(images: torch.Tensor, p: int) -> np.ndarray:
    """Every non-overlapping p x p patch, image by image, row by row, as rows."""
    rows = []
    for image in images:
        for top in range(0, image.shape[-2] // p * p, p):
            for left in range(0, image.shape[-1] // p * p, p):
                rows.append(image[:, top : top + p, left : left + p].flatten())
    return torch.stack(rows).double().numpy()


def test_patch_fit_matches_scikit_learn_on_the_patches(tensor_source, run_graph):
    images = torch.rand(10, 1, 9, 10)
    basis = fit_basis(tensor_source, run_graph, images, batch_size=3, patch_size=4, components=16)
    samples = patches_of(images, 4)
    assert samples.shape == (40, 16)
    reference = PCA(n_components=16, svd_solver="full").fit(samples)
    assert basis.shape == (1, 4, 4)
    np.testing.assert_allclose(
        basis.explained_variance.numpy(), reference.explained_variance_, rtol=1e-4
    )


def test_max_samples_takes_evenly_spaced_patches(tensor_source, run_graph):
    images = torch.rand(10, 1, 8, 8)
    basis = fit_basis(
        tensor_source, run_graph, images, batch_size=3, patch_size=4, components=5, max_samples=15
    )
    samples = patches_of(images, 4)[[i * 40 // 15 for i in range(15)]]
    reference = PCA(n_components=5, svd_solver="full").fit(samples)
    np.testing.assert_allclose(
        basis.explained_variance.numpy(), reference.explained_variance_, rtol=1e-4
    )


def test_patch_count_limits_components(tensor_source, run_graph):
    text = "version = 1\n" + tensor_source.node("src", torch.rand(2, 1, 8, 10))
    text += node_text("fit", "pca_fit", {"image": "src.image"}, patch_size=4, components=9)
    result, _ = run_graph(text, targets=["fit"])
    assert not result.ok
    assert "8 samples (patches) of 16 values" in result.failed["fit"]


def test_more_components_than_images_is_an_error(tensor_source, run_graph):
    text = "version = 1\n" + tensor_source.node("src", torch.rand(3, 1, 8, 8))
    text += node_text("fit", "pca_fit", {"image": "src.image"}, components=5)
    result, _ = run_graph(text, targets=["fit"])
    assert not result.ok
    assert "3 samples (images) of 64 values each give at most 3" in result.failed["fit"]


def round_trip_graph(
    source: TensorSource, images: torch.Tensor, fit_params: dict, counts: list
) -> str:
    text = "version = 1\n" + source.node("src", images, batch_size=len(images))
    text += node_text("fit", "pca_fit", {"image": "src.image"}, **fit_params)
    text += node_text("code", "pca_project", {"image": "src.image", "basis": "fit.basis"})
    for count in counts:
        params = {"components": count} if count else {}
        links = {"latent": "code.latent", "basis": "fit.basis"}
        text += node_text(f"rec{count}", "pca_reconstruct", links, **params)
    return text


def test_round_trip_is_exact_with_all_components_and_improves_with_more(tensor_source, run_graph):
    images = low_rank_images()
    counts = [1, 2, 4, 8, 16, 32, 64]
    text = round_trip_graph(tensor_source, images, {"components": 64}, counts)
    result, _ = run_graph(text, targets=["code"] + [f"rec{n}" for n in counts])
    assert result.ok, result.failed
    latent = result.previews["code"].data
    assert latent.source == "pca" and latent.tensor.shape == (200, 64)
    errors = [(result.previews[f"rec{n}"].data - images).square().mean().item() for n in counts]
    assert errors[-1] < 1e-4
    assert all(fewer > more for fewer, more in itertools.pairwise(errors))
    assert errors[0] > 10 * errors[4]


def test_patch_round_trip_rebuilds_the_cropped_images(tensor_source, run_graph):
    images = torch.rand(10, 1, 9, 10)
    text = round_trip_graph(tensor_source, images, {"components": 16, "patch_size": 4}, [0])
    result, _ = run_graph(text, targets=["code", "rec0"])
    assert result.ok, result.failed
    assert result.previews["code"].data.tensor.shape == (10, 16, 2, 2)
    rebuilt = result.previews["rec0"].data
    assert rebuilt.shape == (10, 1, 8, 8)
    assert (rebuilt - images[..., :8, :8]).abs().max() < 1e-4


def test_project_refuses_images_of_another_size(tensor_source, run_graph):
    text = "version = 1\n" + tensor_source.node("src", low_rank_images(20))
    text += tensor_source.node("other", torch.rand(2, 1, 6, 6))
    text += node_text("fit", "pca_fit", {"image": "src.image"}, components=4)
    text += node_text("code", "pca_project", {"image": "other.image", "basis": "fit.basis"})
    result, _ = run_graph(text, targets=["code"])
    assert not result.ok
    assert "images of 6x6 do not fit a basis fitted on whole 8x8 images" in result.failed["code"]


def components_graph(source: TensorSource, **params: object) -> str:
    text = "version = 1\n" + source.node("src", low_rank_images(), batch_size=50)
    text += node_text("fit", "pca_fit", {"image": "src.image"}, components=8)
    return text + node_text("comp", "pca_components", {"basis": "fit.basis"}, **params)


def test_components_are_shown_normalized(tensor_source, run_graph):
    result, _ = run_graph(components_graph(tensor_source, count=5), targets=["fit", "comp"])
    assert result.ok, result.failed
    shown = result.previews["comp"].data
    assert shown.shape == (5, 1, 8, 8)
    torch.testing.assert_close(shown.amin(dim=(1, 2, 3)), torch.zeros(5))
    torch.testing.assert_close(shown.amax(dim=(1, 2, 3)), torch.ones(5))
    basis = result.outputs["fit"]["basis"]
    mean = next(iter(result.outputs["comp"]["mean"])).data
    torch.testing.assert_close(mean, basis.mean.reshape(1, 1, 8, 8))


def test_components_unnormalized_share_one_scale_around_gray(tensor_source, run_graph):
    text = components_graph(tensor_source, count=50, normalize=False)
    result, _ = run_graph(text, targets=["fit", "comp"])
    assert result.ok, result.failed
    shown = result.previews["comp"].data
    assert shown.shape == (8, 1, 8, 8)
    components = result.outputs["fit"]["basis"].components.reshape(8, 1, 8, 8)
    scale = 0.5 / components.abs().max()
    torch.testing.assert_close(shown, 0.5 + components * scale)


def test_fitted_basis_is_read_from_disk_by_a_new_executor(tensor_source, registry, tmp_path: Path):
    path = tmp_path / "pca.toml"
    path.write_text(components_graph(tensor_source, count=4))
    runs = []
    for _ in range(2):
        executor = Executor(registry, Cache(tmp_path / "shared-cache"), device="cpu")
        events = []
        result = executor.run(Graph.load(path), targets=["comp"], on_event=events.append)
        assert result.ok, result.failed
        started = [e.node for e in events if isinstance(e, NodeStarted)]
        runs.append((started, result.previews["comp"].data))
    assert "fit" in runs[0][0]
    assert "fit" not in runs[1][0] and "comp" in runs[1][0]
    torch.testing.assert_close(runs[1][1], runs[0][1])
    assert len(list((tmp_path / "shared-cache").glob("results/*.safetensors"))) == 1


def test_long_samples_are_fitted_exactly_by_svd(tensor_source, run_graph):
    images = torch.rand(12, 1, 65, 65)
    basis = fit_basis(tensor_source, run_graph, images, batch_size=5, components=5)
    samples = images.flatten(1).double().numpy()
    assert samples.shape[1] > 4096
    reference = PCA(n_components=5, svd_solver="full").fit(samples)
    np.testing.assert_allclose(
        basis.explained_variance.numpy(), reference.explained_variance_, rtol=1e-4
    )
    alignment = np.abs(basis.components.double().numpy() @ reference.components_.T)
    np.testing.assert_allclose(np.diag(alignment), 1.0, atol=1e-4)


def test_whole_image_fit_needs_one_shape(run_graph, tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (8, 8), 10).save(folder / "a.png")
    Image.new("L", (10, 8), 200).save(folder / "b.png")
    text = f'version = 1\n[nodes.src]\ntype = "load_images"\nparams = {{ path = "{folder.as_posix()}" }}\n'
    text += node_text("fit", "pca_fit", {"image": "src.image"}, components=1)
    result, _ = run_graph(text, targets=["fit"])
    assert not result.ok
    assert "'a' is 1x8x8 but 'b' is 1x8x10" in result.failed["fit"]
