"""GANs from noise: the architectures' checkpoints, train_gan, sampling, walks, style mixing, SWD.

Tiny networks (width 4-8) on 32x32 crops of the bundled photos, a few steps each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.events import Event, NodeProgress
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.models import checkpoint as checkpoints
from nodeflow.registry import Registry
from nodeflow.types import Latent

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]

TRAIN_PHOTOS = "astronaut, coffee, chelsea, rocket, retina, immunohistochemistry"
TINY = {"z_dim": 8, "width": 8, "ndf": 8, "size": 32, "crops_per_image": 8, "batch_size": 6}
ARCHITECTURES = {
    "dcgan_generator": {"z_dim": 8, "size": 32, "ngf": 4},
    "dcgan_discriminator": {"size": 64, "ndf": 4},
    "style_generator": {"z_dim": 8, "w_dim": 6, "mapping_layers": 2, "size": 32, "width": 4,
                        "max_width": 8},
}  # fmt: skip


@pytest.fixture
def run(run_graph):
    """Run graph text (without its version line) on the CPU: (RunResult, events)."""
    return lambda text, **kwargs: run_graph("version = 1\n" + text, **kwargs)


def node_text(node_id: str, type_id: str, inputs: dict[str, str] | None = None, **params) -> str:
    lines = [f"[nodes.{node_id}]", f'type = "{type_id}"']
    if params:
        values = ", ".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in params.items()
        )
        lines.append(f"params = {{ {values} }}")
    if inputs:
        links = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
        lines.append(f"inputs = {{ {links} }}")
    return "\n".join(lines) + "\n"


def training(steps: int, **params: Any) -> str:
    return node_text("photos", "sample_images", names=TRAIN_PHOTOS, size=48) + node_text(
        "train", "train_gan", {"image": "photos.image"},
        **{**TINY, "steps": steps, "sample_every": 0, **params},
    )  # fmt: skip


def outputs(result: Any, node: str, name: str = "image") -> Any:
    """A node's whole output stream: images concatenated, or one Latent of all latents."""
    parts = [batch.data for batch in result.outputs[node][name]]
    if name == "latent":
        return Latent(torch.cat([part.tensor for part in parts]), parts[0].source)
    return torch.cat(parts)


def saved_generator(tmp_path: Path, arch: str) -> Path:
    model = checkpoints.new_model(arch, ARCHITECTURES[arch])
    with torch.no_grad():  # weights (and a w_avg) far from their quiet initial values
        for name, tensor in [*model.net.named_parameters(), *model.net.named_buffers()]:
            if not name.startswith("mapping_net.") and name.endswith(("weight", "bias", "w_avg")):
                tensor.normal_(0.0, 0.5)
    return checkpoints.save_model(model, tmp_path / f"{arch}.safetensors")


# -- architectures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_each_architecture_round_trips_through_a_checkpoint(
    arch: str, registry: Registry, tmp_path: Path
) -> None:
    model = checkpoints.new_model(arch, ARCHITECTURES[arch], registry)
    path = checkpoints.save_model(model, tmp_path / "model.safetensors")
    loaded = checkpoints.load_model(path, registry)
    assert loaded.info == model.info
    # A bare state dict (no nodeflow metadata) is recognised and sized from its shapes.
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(bare))
    guessed = checkpoints.load_model(bare, registry)
    assert guessed.arch == arch
    model.net.eval()
    for other in (loaded, guessed):
        other.net.eval()
        with torch.no_grad():
            if model.info.purpose == "generator":
                z = torch.randn(3, model.net.z_dim)
                noise = [torch.Generator().manual_seed(5) for _ in range(2)]
                expected = model.net.synthesis(model.net.mapping(z), noise[0])
                found = other.net.synthesis(other.net.mapping(z), noise[1])
            else:
                x = torch.rand(3, 3, 64, 64)
                expected, found = model.net(x), other.net(x)
        torch.testing.assert_close(found, expected)


# -- training -----------------------------------------------------------------------------------------


@pytest.mark.slow  # 50 training steps: measured 54 s on the shared 2-core machine
def test_the_discriminator_tells_photos_from_noise_after_a_few_steps(run) -> None:
    # R1 keeps the discriminator smooth around real images, so it also rejects what it
    # never saw (uniform noise); without it, 50 steps leave that to chance.
    text = (
        training(50, lr=0.0005, r1=1.0, augment="none")
        + node_text("real", "discriminator_score", {"image": "photos.image", "model": "train.discriminator"})
        + node_text("noise", "random_image", count=12, size=32, seed=1)
        + node_text("fake", "discriminator_score", {"image": "noise.image", "model": "train.discriminator"})
    )  # fmt: skip
    result, events = run(text, targets=["real", "fake"])
    assert result.ok, result.failed
    real = result.previews["real"].data.score
    noise = result.previews["fake"].data.score
    assert (real[:, None] > noise[None, :]).float().mean() >= 0.75
    assert real.mean() > noise.mean() + 0.05
    steps = [e.info for e in events if isinstance(e, NodeProgress) and "d_loss" in e.info]
    assert len(steps) == 50 and all(s["r1"] > 0 for s in steps)
    generator = result.outputs["train"]["generator"]
    assert generator.info.purpose == "generator" and generator.info.extra["training"]["steps"] == 50


def test_bad_settings_are_explained(run) -> None:
    result, _ = run(training(2, size=48), targets=["train"])
    assert "32, 64, 128" in result.failed["train"]
    result, _ = run(training(2, augment="colour,zoom"), targets=["train"])
    assert "'zoom'" in result.failed["train"]
    result, _ = run(training(2, size=64), targets=["train"])
    assert "48x48" in result.failed["train"] and "larger images" in result.failed["train"]


def _train(registry: Registry, graph: Path, cache: Path, cancel_at: int | None = None):
    token = CancelToken()
    events: list[Event] = []

    def handle(event: Event) -> None:
        events.append(event)
        if isinstance(event, NodeProgress) and event.node == "train" and event.done == cancel_at:
            token.cancel()

    executor = Executor(registry, Cache(cache), device="cpu")
    result = executor.run(Graph.load(graph), targets=["train"], on_event=handle, cancel=token)
    return result, events


def test_an_interrupted_gan_training_resumes_to_the_same_weights(
    registry: Registry, tmp_path: Path
) -> None:
    # Style mixing, augmentation, R1 and the moving average all draw or carry state.
    graph = tmp_path / "train.toml"
    graph.write_text("version = 1\n" + training(5, architecture="stylegan", r1=1.0))
    whole, _ = _train(registry, graph, tmp_path / "whole")
    cut, _ = _train(registry, graph, tmp_path / "cache", cancel_at=2)
    assert whole.ok and cut.cancelled
    resumed, events = _train(registry, graph, tmp_path / "cache")
    assert resumed.ok
    progress = [e for e in events if isinstance(e, NodeProgress) and e.node == "train"]
    assert progress[0].info.get("resumed") == 2
    for name in ("generator", "discriminator"):
        expected = whole.outputs["train"][name].net.state_dict()
        found = resumed.outputs["train"][name].net.state_dict()
        for key, value in expected.items():
            torch.testing.assert_close(found[key], value, atol=1e-5, rtol=0, msg=key)


# -- sampling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["dcgan_generator", "style_generator"])
def test_images_change_with_the_seed_and_not_otherwise(run, tmp_path: Path, arch: str) -> None:
    path = saved_generator(tmp_path, arch)
    text = node_text("model", "load_model", checkpoint=str(path))
    for node_id, seed in (("a", 0), ("again", 0), ("b", 1)):
        text += node_text(node_id, "gan_generate", {"model": "model.model"}, count=20, seed=seed)
    space = "w" if arch == "style_generator" else "z"
    for node_id, truncation in (("mean", 0.0), ("half", 0.5), ("whole", 1.0)):
        text += node_text(node_id, "gan_latents", {"model": "model.model"}, count=4, seed=2,
                          space=space, truncation=truncation)  # fmt: skip
    result, _ = run(text, targets=["a", "again", "b", "mean", "half", "whole"])
    assert result.ok, result.failed
    a, again, b = (outputs(result, n) for n in ("a", "again", "b"))
    assert a.shape == (20, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, again)
    assert (a - b).abs().flatten(1).mean(1).min() > 1e-4  # every image differs
    assert (a[:-1] - a[1:]).abs().flatten(1).mean(1).min() > 1e-4  # within a batch too
    # Truncation pulls latents towards the average one (0 for z, the mean w for w).
    mean, half, whole = (outputs(result, n, "latent").tensor for n in ("mean", "half", "whole"))
    torch.testing.assert_close(half, mean + 0.5 * (whole - mean))
    assert (mean - mean[:1]).abs().max() < 1e-6 < (whole - mean).abs().max()


def test_walks_start_and_end_at_the_seeds_images(run, tmp_path: Path) -> None:
    path = saved_generator(tmp_path, "dcgan_generator")
    text = (
        node_text("model", "load_model", checkpoint=str(path))
        + node_text("start", "gan_generate", {"model": "model.model"}, count=1, seed=3)
        + node_text("end", "gan_generate", {"model": "model.model"}, count=1, seed=4)
        + node_text("walk", "gan_interpolate", {"model": "model.model"}, seed=3, other_seed=4, steps=5)
        + node_text("z", "gan_latents", {"model": "model.model"}, count=1, seed=3)
        + node_text("z2", "gan_latents", {"model": "model.model"}, count=1, seed=4)
        + node_text("path", "latent_interpolate", {"latent": "z.latent", "other": "z2.latent"},
                    steps=5, spherical=True)
        + node_text("frames", "decode", {"latent": "path.latent", "model": "model.model"})
        + node_text("bad", "gan_interpolate", {"model": "model.model"}, space="w")
    )  # fmt: skip
    result, _ = run(text, targets=["start", "end", "walk", "frames", "bad"])
    walk = outputs(result, "walk")
    assert walk.shape == (5, 3, 32, 32)
    torch.testing.assert_close(walk[0], outputs(result, "start")[0])
    torch.testing.assert_close(walk[-1], outputs(result, "end")[0])
    torch.testing.assert_close(outputs(result, "frames"), walk)  # the same walk, node by node
    steps = (walk[1:] - walk[:-1]).abs().flatten(1).mean(1)
    assert steps.min() > 0
    assert "no w space" in result.failed["bad"]


def test_style_mixing_takes_coarse_from_one_seed_and_fine_from_the_other(
    run, tmp_path: Path
) -> None:
    path = saved_generator(tmp_path, "style_generator")
    text = node_text("model", "load_model", checkpoint=str(path))
    text += node_text("mix", "style_mix", {"model": "model.model"}, seed=0, other_seed=1, count=3)
    text += node_text("same", "style_mix", {"model": "model.model"}, seed=2, other_seed=2, count=3)
    text += node_text("w", "gan_latents", {"model": "model.model"}, count=2, space="w")
    text += node_text("w_walk", "gan_interpolate", {"model": "model.model"}, space="w", steps=3)
    result, _ = run(text, targets=["mix", "same", "w", "w_walk"])
    assert result.ok, result.failed
    mixed = outputs(result, "mix").reshape(3, 3, 3, 32, 32)
    coarse, fine = outputs(result, "mix", "coarse"), outputs(result, "mix", "fine")
    assert mixed.shape[:2] == (3, 3) and coarse.shape == fine.shape == (3, 3, 32, 32)
    # Each mix is unlike both of its sources, yet one row shares its coarse source.
    assert (mixed[0, 0] - coarse[0]).abs().mean() > 1e-4
    assert (mixed[0, 0] - fine[0]).abs().mean() > 1e-4
    same = outputs(result, "same").reshape(3, 3, 3, 32, 32)
    for i in range(3):  # mixing an image with itself gives it back
        torch.testing.assert_close(same[i, i], outputs(result, "same", "coarse")[i])
    latents = result.outputs["w"]["latent"]
    assert next(iter(latents)).data.tensor.shape == (2, 7, 6)  # 1 + 2 x 3 layers of w


def test_sampling_nodes_refuse_models_they_cannot_use(run, tmp_path: Path) -> None:
    path = saved_generator(tmp_path, "dcgan_generator")
    text = (
        node_text("model", "load_model", checkpoint=str(path))
        + node_text("ae", "load_model", checkpoint="autoencoder")
        + node_text("mix", "style_mix", {"model": "model.model"})
        + node_text("gen", "gan_generate", {"model": "ae.model"})
        + node_text("fine", "style_mix", {"model": "model.model"}, fine_from=48)
    )
    result, _ = run(text, targets=["mix", "gen"])
    assert "style-based generator" in result.failed["mix"]
    assert "generator models" in result.failed["gen"]


# -- sliced Wasserstein distance ---------------------------------------------------------------------


def test_swd_is_zero_for_identical_sets_and_grows_with_the_difference(
    tensor_source: TensorSource, run
) -> None:
    generator = torch.Generator().manual_seed(0)

    def textures() -> torch.Tensor:  # smoothed noise: images of one known spectrum
        return F.avg_pool2d(torch.rand(24, 3, 32, 32, generator=generator), 5, 1, 2)

    real, other_draw = textures(), textures()
    sets = {
        "same": real,
        "floor": other_draw,
        "shifted": (other_draw + 0.1).clamp(0, 1),
        "further": (other_draw + 0.3).clamp(0, 1),
        "sharper": torch.rand(24, 3, 32, 32, generator=generator),
    }
    text = tensor_source.node("real", real, batch_size=16)
    for name, images in sets.items():
        text += tensor_source.node(f"{name}_images", images, batch_size=16)
        text += node_text(name, "swd", {"image": f"{name}_images.image", "reference": "real.image"},
                          patches=32, directions=128, min_size=8)  # fmt: skip
    result, _ = run(text, targets=list(sets))
    assert result.ok, result.failed
    swd = {name: result.outputs[name]["swd"] for name in sets}
    assert swd["same"] == 0.0
    assert swd["floor"] < swd["shifted"] < swd["further"]
    assert swd["floor"] < swd["sharper"]
    assert result.outputs["sharper"]["finest"] > 10 * result.outputs["floor"]["finest"]
