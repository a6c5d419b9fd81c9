"""Architectures and checkpoints: round trips, detection, the reference pix2pix/CycleGAN
state-dict layout, weight init, padding and tiled inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nodeflow.engine.cache import Cache
from nodeflow.models.checkpoint import load_model, new_model, save_model
from nodeflow.models.inference import run_network
from nodeflow.models.model import Model
from nodeflow.models.patchgan import PatchDiscriminator
from nodeflow.models.resnet import ResnetGenerator
from nodeflow.models.unet import UnetGenerator
from nodeflow.node import Output, node
from nodeflow.registry import Registry
from nodeflow.types import MODEL

# (architecture, hyperparameters, input side)
CASES = [
    ("autoencoder", {"base": 4, "depth": 2, "latent_channels": 3}, 16),
    ("autoencoder", {"in_channels": 1, "base": 6, "depth": 3, "norm": "none"}, 32),
    ("unet", {"num_downs": 5, "ngf": 4}, 32),
    ("unet", {"num_downs": 7, "ngf": 4, "norm": "instance"}, 128),
    ("unet", {"num_downs": 8, "ngf": 4, "use_dropout": True}, 256),
    ("unet", {"in_channels": 1, "out_channels": 2, "num_downs": 3, "ngf": 8}, 16),
    ("unet", {"num_downs": 6, "ngf": 4, "norm": "none"}, 64),
    ("resnet_generator", {"ngf": 4, "n_blocks": 6, "norm": "batch"}, 32),
    ("resnet_generator", {"ngf": 4, "n_blocks": 9}, 32),
    ("resnet_generator", {"ngf": 4, "n_blocks": 2, "use_dropout": True, "in_channels": 1}, 32),
    ("patchgan", {"ndf": 4, "n_layers": 3}, 64),
    ("patchgan", {"ndf": 4, "n_layers": 1, "in_channels": 3, "norm": "instance"}, 32),
    ("patchgan", {"ndf": 4, "n_layers": 4, "in_channels": 4}, 64),
    ("pixel_discriminator", {"ndf": 4}, 16),
    ("pixel_discriminator", {"ndf": 4, "in_channels": 3, "norm": "instance"}, 16),
]


def trained_looking(model: Model) -> Model:
    """Give batch norms non-trivial running statistics, so eval-mode outputs test them."""
    generator = torch.Generator().manual_seed(3)
    for module in model.net.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    model.net.eval()
    return model


def sample_input(model: Model, side: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand(2, model.info.in_channels, side, side, generator=generator) * 2 - 1


def outputs(model: Model, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.net.eval()(x)


def claims(registry: Registry, state_dict: dict[str, torch.Tensor]) -> list[str]:
    return [arch.id for arch in registry.architectures.values() if arch.detect(state_dict)]


@pytest.mark.parametrize(("arch", "hparams", "side"), CASES)
def test_save_detect_load_gives_identical_outputs(
    registry: Registry, tmp_path: Path, arch: str, hparams: dict, side: int
) -> None:
    model = trained_looking(new_model(arch, hparams, registry, task="test", extra={"k": 1}))
    path = save_model(model, tmp_path / "model")
    assert path.name == "model.safetensors"

    tensors = load_file(str(path))
    assert claims(registry, tensors) == [arch]

    loaded = load_model(path, registry)
    assert loaded.info == model.info
    assert not loaded.net.training
    x = sample_input(model, side)
    assert torch.equal(outputs(loaded, x), outputs(model, x))

    bare = tmp_path / "bare.safetensors"
    save_file(tensors, str(bare))
    from_shapes = load_model(bare, registry)
    assert from_shapes.arch == arch
    expected = {k: v for k, v in model.info.hparams.items() if k not in ("use_dropout",)}
    if arch == "autoencoder":
        expected.pop("image_size")
    assert {k: from_shapes.info.hparams[k] for k in expected} == expected
    assert torch.equal(outputs(from_shapes, x), outputs(model, x))


def test_reference_pth_state_dicts_load_with_their_value_range(
    registry: Registry, tmp_path: Path
) -> None:
    """A bare `*_net_G.pth` loads through torch.load(weights_only) and reads [-1, 1]."""
    net = UnetGenerator(in_channels=3, out_channels=3, num_downs=5, ngf=4, norm="instance")
    path = tmp_path / "latest_net_G.pth"
    torch.save(net.state_dict(), path)
    model = load_model(path, registry)
    assert (model.arch, model.info.value_range, model.info.task) == ("unet", (-1.0, 1.0), "")
    assert model.info.hparams["norm"] == "instance"
    assert not model.info.tiling

    colorizer = UnetGenerator(in_channels=1, out_channels=2, num_downs=5, ngf=4)
    torch.save({"state_dict": colorizer.state_dict()}, tmp_path / "color_net_G.pth")
    assert load_model(tmp_path / "color_net_G.pth", registry).info.task == "colorize"

    discriminator = PatchDiscriminator(in_channels=6, ndf=4, n_layers=3)
    wrapped = {f"module.{k}": v for k, v in discriminator.state_dict().items()}
    torch.save(wrapped, tmp_path / "latest_net_D.pth")
    loaded = load_model(tmp_path / "latest_net_D.pth", registry)
    assert (loaded.arch, loaded.info.conditional, loaded.info.purpose) == (
        "patchgan",
        True,
        "discriminator",
    )


def test_reference_key_layout() -> None:
    """The state-dict keys the reference implementation writes, spelled out."""
    patchgan = PatchDiscriminator(in_channels=6, ndf=4, n_layers=3, norm="batch")
    stats = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(patchgan.state_dict()) == [
        "model.0.weight",
        "model.0.bias",
        "model.2.weight",
        *(f"model.3.{s}" for s in stats),
        "model.5.weight",
        *(f"model.6.{s}" for s in stats),
        "model.8.weight",
        *(f"model.9.{s}" for s in stats),
        "model.11.weight",
        "model.11.bias",
    ]

    resnet = ResnetGenerator(ngf=4, n_blocks=6, norm="instance").state_dict()
    blocks = [f"model.{i}.conv_block.{j}.{p}" for i in range(10, 16) for j in (1, 5)
              for p in ("weight", "bias")]  # fmt: skip
    assert list(resnet) == [
        *(f"model.{i}.{p}" for i in (1, 4, 7) for p in ("weight", "bias")),
        *blocks,
        *(f"model.{i}.{p}" for i in (16, 19, 23) for p in ("weight", "bias")),
    ]
    nine = ResnetGenerator(ngf=4, n_blocks=9, norm="batch").state_dict()
    assert nine["model.26.weight"].shape == (3, 4, 7, 7)
    assert nine["model.19.weight"].shape == (16, 8, 3, 3)
    assert "model.18.conv_block.6.running_var" in nine

    unet = UnetGenerator(num_downs=8, ngf=4, norm="batch").state_dict()
    innermost = "model.model.1" + ".model.3" * 6
    assert unet["model.model.0.weight"].shape == (4, 3, 4, 4)
    assert "model.model.0.bias" not in unet
    assert unet["model.model.3.weight"].shape == (8, 3, 4, 4)
    assert unet["model.model.1.model.3.model.1.weight"].shape == (16, 8, 4, 4)
    assert unet[f"{innermost}.model.1.weight"].shape == (32, 32, 4, 4)
    assert unet[f"{innermost}.model.3.weight"].shape == (32, 32, 4, 4)
    assert f"{innermost}.model.4.running_mean" in unet
    assert f"{innermost}.model.3.model.1.weight" not in unet


def test_parameter_counts_match_the_reference_networks() -> None:
    """unet_256, resnet_9blocks and the basic PatchGAN at full width, as the reference prints."""
    with torch.device("meta"):
        counts = [
            sum(p.numel() for p in net.parameters())
            for net in (
                UnetGenerator(num_downs=8, ngf=64, norm="batch"),
                ResnetGenerator(ngf=64, n_blocks=9, norm="instance"),
                PatchDiscriminator(in_channels=6, ndf=64, n_layers=3, norm="batch"),
            )
        ]
    assert counts == [54_413_955, 11_378_179, 2_768_705]


def test_detection_tells_apart_depth_blocks_and_norms(registry: Registry) -> None:
    arch = registry.architectures
    for num_downs in (7, 8):
        state = UnetGenerator(num_downs=num_downs, ngf=2).state_dict()
        assert arch["unet"].build(state, {}).info.hparams["num_downs"] == num_downs
    for n_blocks in (6, 9):
        for norm in ("batch", "instance"):
            state = ResnetGenerator(ngf=2, n_blocks=n_blocks, norm=norm).state_dict()
            assert claims(registry, state) == ["resnet_generator"]
            hparams = arch["resnet_generator"].build(state, {}).info.hparams
            assert (hparams["n_blocks"], hparams["norm"]) == (n_blocks, norm)
    for norm in ("batch", "instance", "none"):
        state = UnetGenerator(num_downs=5, ngf=2, norm=norm).state_dict()
        assert arch["unet"].build(state, {}).info.hparams["norm"] == norm


def test_older_reference_checkpoints_load(registry: Registry, tmp_path: Path) -> None:
    """Instance norms saved with running stats, and batch norms from before
    num_batches_tracked, load as the reference loads them."""
    state = ResnetGenerator(ngf=4, n_blocks=2, norm="instance").state_dict()
    state["model.2.running_mean"] = torch.zeros(4)
    state["model.2.running_var"] = torch.ones(4)
    torch.save(state, tmp_path / "old_instance.pth")
    assert load_model(tmp_path / "old_instance.pth", registry).info.hparams["norm"] == "instance"

    state = PatchDiscriminator(in_channels=3, ndf=4).state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old_batch.pth")
    assert load_model(tmp_path / "old_batch.pth", registry).arch == "patchgan"


def test_loading_errors_say_what_is_wrong(registry: Registry, tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"tried autoencoder, unet, .*first keys: fc.weight"):
        load_model(tmp_path / "other.pth", registry)

    torch.save(nn.Conv2d(1, 1, 1), tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_model(tmp_path / "pickled.pth", registry)

    model = new_model("unet", {"num_downs": 5, "ngf": 4}, registry)
    tensors = dict(model.net.state_dict())
    tensors["model.model.3.bias"] = torch.zeros(5)
    torch.save(tensors, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"wrong shape model\.model\.3\.bias \(file 5, model 3\)"):
        load_model(tmp_path / "bad.pth", registry)

    with pytest.raises(ValueError, match="no architecture 'vae' is registered"):
        new_model("vae", {}, registry)
    with pytest.raises(ValueError, match="has no hyperparameter 'width'"):
        new_model("unet", {"width": 3}, registry)
    with pytest.raises(ValueError, match=r"name the file m\.safetensors"):
        save_model(model, tmp_path / "m.pth")


def test_fresh_weights_follow_the_reference_init(registry: Registry) -> None:
    model = new_model("unet", {"num_downs": 6, "ngf": 16}, registry)
    assert model.net.training
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias is None or not m.bias.any() for m in convs)
    norms = [m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d)]
    gains = torch.cat([m.weight for m in norms])
    assert gains.mean().item() == pytest.approx(1.0, abs=0.01)
    assert not torch.cat([m.bias for m in norms]).any()


def test_patchgan_sees_70x70_patches_and_gives_a_30x30_map(registry: Registry) -> None:
    model = new_model("patchgan", {"ndf": 4, "n_layers": 3, "in_channels": 3}, registry)
    net = model.net.eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.abs_()
    image = torch.rand(1, 3, 256, 256, requires_grad=True)
    logits = net(image)
    assert logits.shape == (1, 1, 30, 30)
    logits[0, 0, 15, 15].backward()
    rows = image.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    cols = image.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    assert (rows.max() - rows.min() + 1).item() == 70
    assert (cols.max() - cols.min() + 1).item() == 70
    assert model.info.min_size == 24


def local_net() -> nn.Module:
    """Three 3x3 convs: each output pixel sees 3 pixels around it."""
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1),
    ).eval()  # fmt: skip


def test_tiling_equals_a_whole_run_when_the_receptive_field_fits_the_overlap() -> None:
    net = local_net()
    x = torch.rand(2, 3, 100, 90)
    with torch.inference_mode():
        whole = run_network(net, x, tile=512)
        tiled = run_network(net, x, tile=32, overlap=16)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_tiling_a_downsampling_generator_keeps_its_grid(registry: Registry) -> None:
    """A batch-norm ResNet generator with no blocks sees 15 pixels each way (7x7 stem and
    head, two stride-2 convs and two stride-2 transposed convs); with an overlap of 64 the
    dropped quarter (16 pixels) covers that, so the tiles agree with the whole run."""
    model = trained_looking(
        new_model("resnet_generator", {"ngf": 4, "n_blocks": 0, "norm": "batch"}, registry)
    )
    x = torch.rand(1, 3, 200, 170) * 2 - 1
    with torch.inference_mode():
        whole = run_network(model.net, x, multiple=4, tile=1024)
        tiled = run_network(model.net, x, multiple=4, tile=128, overlap=64)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


class RunsOutOfMemory(nn.Module):
    """Wraps a net and fails like a GPU would on inputs of more than `limit` pixels."""

    def __init__(self, net: nn.Module, limit: int):
        super().__init__()
        self.net = net
        self.limit = limit
        self.sides: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sides.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_halves_the_tile_and_retries() -> None:
    net = local_net()
    flaky = RunsOutOfMemory(net, limit=40 * 40)
    x = torch.rand(1, 3, 120, 120)
    with torch.inference_mode():
        result = run_network(flaky, x, tile=512, overlap=16)
        expected = net(x)
    assert flaky.sides[0] == (120, 120)
    assert max(h * w for h, w in flaky.sides[-4:]) <= 40 * 40
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)

    with pytest.raises(ValueError, match="cannot be tiled"):
        run_network(RunsOutOfMemory(net, limit=10), x, tiling=False)


def test_padding_handles_sizes_that_are_not_multiples(registry: Registry) -> None:
    model = new_model("unet", {"num_downs": 5, "ngf": 4}, registry)
    net = model.net.eval()
    with torch.inference_mode():
        out = run_network(net, torch.rand(1, 3, 37, 45), multiple=32, min_size=32)
        small = run_network(net, torch.rand(1, 3, 5, 7), multiple=32, min_size=32)
    assert out.shape == (1, 3, 37, 45)
    assert small.shape == (1, 3, 5, 7)


@node("make_model", outputs={"model": Output(MODEL)}, persist=True)
def make_model() -> Model:
    """A test node whose model output persists in the disk cache."""
    return trained_looking(new_model("unet", {"num_downs": 5, "ngf": 4}))


def test_models_persist_in_the_disk_cache(registry: Registry, tmp_path: Path) -> None:
    model = make_model.fn()
    Cache(tmp_path / "cache").put("key", make_model, {"model": model})
    restored = Cache(tmp_path / "cache").get("key", make_model, torch.device("cpu"))
    assert restored is not None
    again = restored["model"]
    assert again.info == model.info
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(outputs(again, x), outputs(model, x))
