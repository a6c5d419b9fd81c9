"""cyclegan.train and cyclegan.translate in graphs: losses fall, resume, translation, the
shipped graph at a tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodeflow.engine import Cache, CancelToken, Executor, NodeProgress
from nodeflow.graph import Graph
from nodeflow.training.loop import CHECKPOINT_FILE

GRAPH = Path(__file__).resolve().parents[3] / "graphs" / "cyclegan_photo2sketch.toml"
TINY = {"ngf": 4, "n_blocks": 1, "ndf": 4, "n_layers": 2, "crop": 24}

DOMAINS = """version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee, chelsea, rocket", size = 48 }

[nodes.other]
type = "sample_images"
params = { names = "motorcycle_left, motorcycle_right, retina, hubble_deep_field", size = 48 }

[nodes.blurred]
type = "blur"
params = { sigma = 2.0 }
inputs = { image = "other.image" }
"""


def train_node(**params) -> str:
    values = ", ".join(f"{name} = {value!r}" for name, value in {**TINY, **params}.items())
    return (
        f'[nodes.train]\ntype = "cyclegan.train"\nparams = {{ {values} }}\n'
        'inputs = { a = "photos.image", b = "blurred.image" }\n'
    )


def losses(events: list, node_id: str = "train") -> list[dict[str, float]]:
    return [e.info for e in events if isinstance(e, NodeProgress) and e.node == node_id and e.info]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_losses_fall_over_thirty_steps_on_tiny_crops(run_graph) -> None:
    result, events = run_graph(DOMAINS + train_node(steps=30), targets=["train"])
    assert result.ok, result.failed
    steps = losses(events)
    assert len(steps) == 30
    assert {"loss", "gan", "cycle", "identity", "d_a", "d_b", "lr"} <= set(steps[0])
    for name in ("cycle", "identity", "d_a", "d_b", "gan"):
        first, last = mean([s[name] for s in steps[:10]]), mean([s[name] for s in steps[-10:]])
        assert last < 0.9 * first, f"{name}: {first:.3f} -> {last:.3f}"

    a_to_b = result.outputs["train"]["a_to_b"]
    assert (a_to_b.arch, a_to_b.info.value_range) == ("resnet_generator", (-1.0, 1.0))
    assert a_to_b.info.hparams["norm"] == "instance"
    assert a_to_b.info.extra["cyclegan"] == "a_to_b"
    assert a_to_b.info.extra["training"]["steps"] == 30


def test_translate_runs_either_generator_on_any_size(run_graph) -> None:
    text = (
        DOMAINS
        + train_node(steps=2)
        + """
[nodes.odd]
type = "resize"
params = { size = [30, 26] }
inputs = { image = "photos.image" }

[nodes.to_b]
type = "cyclegan.translate"
inputs = { image = "odd.image", model = "train.a_to_b" }

[nodes.back]
type = "cyclegan.translate"
inputs = { image = "to_b.image", model = "train.b_to_a" }
"""
    )
    result, _ = run_graph(text, targets=["odd", "to_b", "back", "train"])
    assert result.ok, result.failed
    odd = torch.cat(list(result.outputs["odd"]["image"].tensors()))
    to_b = torch.cat(list(result.outputs["to_b"]["image"].tensors()))
    back = torch.cat(list(result.outputs["back"]["image"].tensors()))
    assert to_b.shape == back.shape == odd.shape == (4, 3, 30, 26)

    generator = result.outputs["train"]["a_to_b"].net
    padded = torch.nn.functional.pad(odd * 2 - 1, (0, 2, 0, 2), mode="reflect")
    with torch.no_grad():
        expected = ((generator(padded) + 1) / 2).clamp(0, 1)[..., :30, :26]
    torch.testing.assert_close(to_b, expected, atol=1e-5, rtol=0)


def test_a_cancelled_run_resumes_and_ends_as_an_unbroken_run(
    tmp_path: Path, nodeflow_registry
) -> None:
    graph_text = DOMAINS + train_node(steps=8, checkpoint_every=100)
    (tmp_path / "g.toml").write_text(graph_text)

    def run(cache: Path, cancel_at: int | None = None) -> tuple:
        cancel = CancelToken()
        events: list = []

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, NodeProgress) and event.info and event.done == cancel_at:
                cancel.cancel()

        executor = Executor(nodeflow_registry, Cache(cache), device="cpu")
        graph = Graph.load(tmp_path / "g.toml")
        return executor.run(graph, targets=["train"], on_event=on_event, cancel=cancel), events

    stopped, _ = run(tmp_path / "cache", cancel_at=3)  # seen before the next step
    assert stopped.cancelled
    saved = list((tmp_path / "cache" / "work").glob(f"*/{CHECKPOINT_FILE}"))
    assert len(saved) == 1
    state = torch.load(saved[0], weights_only=True)
    assert state["position"]["step"] == 3
    assert len(state["extra"]["pool_a"]) == 3  # the image pools resume too

    resumed, events = run(tmp_path / "cache")
    assert resumed.ok, resumed.failed
    progress = [e for e in events if isinstance(e, NodeProgress) and e.info]
    assert progress[0].info == {"resumed": 3}
    assert [e.done for e in progress[1:]] == [4, 5, 6, 7, 8]
    assert not saved[0].exists()

    unbroken, _ = run(tmp_path / "fresh")
    for name in ("a_to_b", "b_to_a"):
        ours = resumed.outputs["train"][name].net.state_dict()
        theirs = unbroken.outputs["train"][name].net.state_dict()
        for key, value in theirs.items():
            torch.testing.assert_close(ours[key], value, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"crop": 26}, "crop must be a multiple of 4"),
        ({"crop": 20, "n_layers": 3}, "too small for a discriminator with n_layers = 3"),
    ],
)
def test_settings_that_cannot_work_are_refused(run_graph, params: dict, message: str) -> None:
    result, _ = run_graph(DOMAINS + train_node(steps=1, **params), targets=["train"])
    assert message in result.failed["train"]


def test_the_shipped_graph_runs_at_a_tiny_size(run_graph, tmp_path: Path) -> None:
    graph = Graph.load(GRAPH)
    for spec in graph.nodes.values():
        if spec.type == "sample_images":
            spec.params["size"] = 32
        if spec.type == "cyclegan.train":
            spec.params.update(TINY, steps=3)
    result, events = run_graph(graph.to_toml())
    assert result.ok, result.failed
    assert {p.name for p in (tmp_path / "out" / "cyclegan").iterdir()} == {
        "photo2sketch.png",
        "sketch2photo.png",
    }
    steps = losses(events)
    assert len(steps) == 3
    assert all(step["identity"] == 0.0 for step in steps)  # photos are RGB, sketches gray
    models = result.outputs["train"]
    assert (models["a_to_b"].info.in_channels, models["a_to_b"].info.out_channels) == (3, 1)
    assert (models["b_to_a"].info.in_channels, models["b_to_a"].info.out_channels) == (1, 3)
