"""The transfer nodes with randomly initialised backbone weights saved to a file (nothing is
downloaded): loading, features, PCA of the feature space, a classifier that beats chance,
fine-tuning, and the shipped graphs at a small size."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from nodeflow.api import load_model, save_model
from nodeflow.engine import Cache, CancelToken, Executor, NodeProgress
from nodeflow.graph import Graph

GRAPHS = Path(__file__).resolve().parents[3] / "graphs"
WEIGHTS = "resnet18-f37072fd.pth"


@pytest.fixture(scope="session")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision resnet18 state dict (ImageNet head included) with random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / WEIGHTS
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 12 images each: 64 x 64 crops of the colour sample photos, and noise."""
    from nodeflow.api import read_image
    from nodeflow.nodes.io import COLOUR_SAMPLES, sample_photos

    root = tmp_path_factory.mktemp("data") / "classes"
    photos = [read_image(path) for name, path in sample_photos().items() if name in COLOUR_SAMPLES]
    generator = torch.Generator().manual_seed(0)
    for label in ("noise", "photo"):
        (root / label).mkdir(parents=True)
    for index in range(24):
        image = photos[index % len(photos)]
        top, left = (
            int(torch.randint(side - 64, (), generator=generator)) for side in image.shape[1:]
        )
        crop = image[:, top : top + 64, left : left + 64]
        label = "photo" if index % 2 else "noise"
        if label == "noise":
            crop = torch.rand(crop.shape, generator=generator)
        pixels = (crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(np.ascontiguousarray(pixels)).save(root / label / f"{index:02d}.png")
    return root


def backbone_node(weights: Path | str | None, arch: str = "resnet18") -> str:
    params = f'arch = "{arch}"' + (f', weights = "{Path(weights).as_posix()}"' if weights else "")
    return f'[nodes.backbone]\ntype = "transfer.backbone"\nparams = {{ {params} }}\n'


PHOTOS = """
[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee, camera", size = 64 }
"""


def everything(stream) -> torch.Tensor:
    return torch.cat(list(stream.tensors()))


def test_without_weights_it_says_where_to_get_them_and_downloads_nothing(
    run_graph, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_download(*_args, **_kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for weights in (None, "models/missing.pth"):
        result, _ = run_graph("version = 1\n" + backbone_node(weights), targets=["backbone"])
        message = result.failed["backbone"]
        assert "nodeflow downloads nothing" in message
        assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
        assert 'set weights = "resnet18-f37072fd.pth"' in message
    assert "there is no file" in message and "missing.pth" in message
    assert not (tmp_path / "torch_home").exists()


def test_a_file_of_another_network_is_refused_by_name(run_graph, resnet18_file: Path) -> None:
    result, _ = run_graph(
        "version = 1\n" + backbone_node(resnet18_file, arch="resnet50"), targets=["backbone"]
    )
    assert (
        "holds resnet18 weights, not resnet50; set arch = 'resnet18'" in result.failed["backbone"]
    )


def test_features_are_torchvisions_own_stage_outputs(run_graph, resnet18_file: Path) -> None:
    text = "version = 1\n" + backbone_node(resnet18_file) + PHOTOS
    for stage in (1, 4):
        text += f"""
[nodes.stage{stage}]
type = "transfer.features"
params = {{ stage = {stage}, pool = false }}
inputs = {{ image = "photos.image", model = "backbone.model" }}
"""
    result, _ = run_graph(text, targets=["photos", "stage1", "stage4"])
    assert result.ok, result.failed
    photos = everything(result.outputs["photos"]["image"])
    maps = {
        s: torch.cat([b.tensor for b in result.outputs[f"stage{s}"]["features"].tensors()])
        for s in (1, 4)
    }
    assert maps[1].shape == (3, 64, 16, 16) and maps[4].shape == (3, 512, 2, 2)

    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(torch.load(resnet18_file, weights_only=True))
    reference.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1((photos - mean) / std))))
        layer1 = reference.layer1(x)
        layer4 = reference.layer4(reference.layer3(reference.layer2(layer1)))
    torch.testing.assert_close(maps[1], layer1, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(maps[4], layer4, atol=1e-4, rtol=1e-4)


def test_feature_strips_feed_pca_fit(run_graph, resnet18_file: Path) -> None:
    text = (
        "version = 1\n"
        + backbone_node(resnet18_file)
        + PHOTOS
        + """
[nodes.features]
type = "transfer.features"
inputs = { image = "photos.image", model = "backbone.model" }

[nodes.basis]
type = "pca_fit"
params = { components = 2 }
inputs = { image = "features.image" }
"""
    )
    result, _ = run_graph(text, targets=["features", "basis"])
    assert result.ok, result.failed
    pooled = torch.cat([b.tensor for b in result.outputs["features"]["features"].tensors()])
    strips = everything(result.outputs["features"]["image"])
    assert pooled.shape == (3, 512) and strips.shape == (3, 1, 1, 512)
    torch.testing.assert_close(strips[:, 0, 0], pooled / pooled.amax(dim=1, keepdim=True))
    assert strips.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0, 1.0]
    basis = result.outputs["basis"]["basis"]
    assert basis.shape == (1, 1, 512) and basis.components.shape == (2, 512)
    torch.testing.assert_close(basis.mean, strips.flatten(1).mean(0))


def classifier_graph(weights: Path, folder: Path, finetune_stages: int = 0, epochs: int = 8) -> str:
    text = (
        "version = 1\n"
        + backbone_node(weights)
        + f"""
[nodes.train]
type = "transfer.train_classifier"
params = {{ folder = "{folder.as_posix()}", size = 64, epochs = {epochs}, batch_size = 8, holdout = 0.34, finetune_stages = {finetune_stages} }}
inputs = {{ model = "backbone.model" }}
"""
    )
    for label in ("noise", "photo"):
        text += f"""
[nodes.{label}s]
type = "load_images"
params = {{ path = "{(folder / label).as_posix()}" }}

[nodes.classify_{label}s]
type = "transfer.classify"
inputs = {{ image = "{label}s.image", model = "train.model" }}
"""
    return text


def test_a_linear_classifier_beats_chance_and_labels_images(
    run_graph, resnet18_file: Path, class_folder: Path, tmp_path: Path
) -> None:
    result, events = run_graph(classifier_graph(resnet18_file, class_folder))
    assert result.ok, result.failed
    accuracy = result.outputs["train"]["accuracy"]
    assert accuracy > 0.5  # chance for two balanced classes; 8 images held out
    losses = [e.info["loss"] for e in events if isinstance(e, NodeProgress) and "loss" in e.info]
    assert len(losses) == 8 * 2  # 16 training images in batches of 8
    assert sum(losses[-2:]) < 0.5 * sum(losses[:2])

    classifier = result.outputs["train"]["model"]
    assert classifier.arch == "transfer.classifier"
    assert classifier.info.extra["labels"] == ["noise", "photo"]
    assert classifier.info.extra["held_out"] == 8
    for label in ("noise", "photo"):
        outputs = result.outputs[f"classify_{label}s"]
        lines = outputs["labels"].splitlines()
        names = sorted(path.stem for path in (class_folder / label).iterdir())
        assert [line.split(": ")[0] for line in lines] == names
        right = sum(line.split(": ")[1].startswith(f"{label} (") for line in lines)
        assert right >= 10, "\n".join(lines)  # the training images, mostly seen in training
        scores = torch.cat([batch.score for batch in outputs["scores"].tensors()])
        assert scores.shape == (12,) and bool((scores >= 0.5).all() and (scores <= 1).all())

    save_model(classifier, tmp_path / "classifier.safetensors")
    loaded = load_model(tmp_path / "classifier.safetensors")
    assert loaded.info == classifier.info
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), classifier.net(x))


def test_fine_tuning_trains_only_the_last_stages(
    run_graph, resnet18_file: Path, class_folder: Path
) -> None:
    text = classifier_graph(resnet18_file, class_folder, finetune_stages=1, epochs=3)
    result, _ = run_graph(text, targets=["backbone", "train"])
    assert result.ok, result.failed
    before = result.outputs["backbone"]["model"].net.body.state_dict()
    after = result.outputs["train"]["model"].net.backbone.body.state_dict()
    assert torch.equal(before["layer3.1.conv2.weight"], after["layer3.1.conv2.weight"])
    assert torch.equal(before["layer4.1.bn2.running_var"], after["layer4.1.bn2.running_var"])
    assert not torch.equal(before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"])
    assert result.outputs["train"]["accuracy"] > 0.5


def test_a_cancelled_training_resumes_from_its_last_epoch(
    resnet18_file: Path, class_folder: Path, tmp_path: Path, nodeflow_registry
) -> None:
    (tmp_path / "g.toml").write_text(classifier_graph(resnet18_file, class_folder, epochs=3))

    def train(cache: Path, cancel_at: int | None = None) -> tuple:
        cancel, events = CancelToken(), []

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, NodeProgress) and event.done == cancel_at:
                cancel.cancel()

        executor = Executor(nodeflow_registry, Cache(cache), device="cpu")
        graph = Graph.load(tmp_path / "g.toml")
        return executor.run(graph, targets=["train"], on_event=on_event, cancel=cancel), events

    stopped, _ = train(tmp_path / "cache", cancel_at=3)  # epoch 2's first batch
    assert stopped.cancelled
    resumed, events = train(tmp_path / "cache")
    assert resumed.ok, resumed.failed
    steps = [e.done for e in events if isinstance(e, NodeProgress) and "loss" in e.info]
    assert steps == [3, 4, 5, 6]  # two batches an epoch: epoch 1 was kept, epoch 2 redone
    assert not list((tmp_path / "cache" / "work").glob("*/classifier.pt"))
    unbroken, _ = train(tmp_path / "fresh")
    ours = resumed.outputs["train"]["model"].net.state_dict()
    for key, value in unbroken.outputs["train"]["model"].net.state_dict().items():
        torch.testing.assert_close(ours[key], value, atol=0, rtol=0)


def test_torchvision_layouts_are_detected(nodeflow_registry) -> None:
    architectures = nodeflow_registry.architectures
    with torch.device("meta"):
        networks = {
            name: getattr(torchvision.models, name)(weights=None)
            for name in ("resnet18", "resnet50", "vgg16", "resnet34")
        }
    for name, network in networks.items():
        state_dict = network.state_dict()
        claims = [a.id for a in architectures.values() if a.detect(state_dict)]
        assert claims == ([] if name == "resnet34" else ["transfer.backbone"]), name


@pytest.mark.parametrize("name", ["transfer_classify", "transfer_features_pca"])
def test_the_shipped_graphs_run_at_a_small_size(
    run_graph, resnet18_file: Path, class_folder: Path, tmp_path: Path, name: str
) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(resnet18_file, tmp_path / "models" / WEIGHTS)
    shutil.copytree(class_folder, tmp_path / "data" / "classes")
    graph = Graph.load(GRAPHS / f"{name}.toml")
    for spec in graph.nodes.values():
        if spec.type == "sample_images":
            spec.params["size"] = 64
        if spec.type == "transfer.train_classifier":
            spec.params.update(size=64, epochs=2)
    result, _ = run_graph(graph.to_toml())
    assert result.ok, result.failed
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")}
    expected = {
        "transfer_classify": {"transfer/classifier.safetensors"},
        "transfer_features_pca": {"transfer/features.png"},
    }
    assert written == expected[name]
