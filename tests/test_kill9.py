"""kill -9 at several moments of `nodeflow run`: nothing half-written is left where a user
looks, and the next run finishes, resuming a training from its last checkpoint."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import start_run
from safetensors.torch import load_file

GRAPH = textwrap.dedent(
    """
    version = 1
    [nodes.photos]
    type = "sample_images"
    params = { names = "astronaut, coffee", size = 32 }
    [nodes.copies]
    type = "save_images"
    params = { folder = "out/photos" }
    inputs = { image = "photos.image" }
    [nodes.pairs]
    type = "pairs"
    params = { task = "denoise", crop = 16, crops_per_image = 2 }
    inputs = { image = "photos.image" }
    [nodes.train]
    type = "train_unet"
    params = { steps = 80, num_downs = 2, ngf = 4, batch_size = 2, checkpoint_every = 10, sample_every = 0 }
    inputs = { dataset = "pairs.dataset" }
    [nodes.save]
    type = "save_model"
    params = { path = "out/model.safetensors" }
    inputs = { model = "train.model" }
    """
)

Moment = Callable[[dict], bool]
MOMENTS: dict[str, Moment] = {
    "as the run starts": lambda event: event["event"] == "RunStarted",
    "in training, after a checkpoint": lambda event: (
        event["event"] == "NodeProgress" and event["node"] == "train" and event["done"] >= 25
    ),
    "as training ends (the cache and the model being written)": lambda event: (
        event["event"] == "NodeFinished" and event["node"] == "train"
    ),
}


def _run(folder: Path, until: Moment | None = None) -> tuple[int, list[dict]]:
    """Run the graph; with `until`, kill -9 it at the first event that matches."""
    process = start_run(folder / "graph.toml", folder / "cache")
    assert process.stdout is not None
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if until is not None and until(events[-1]):
            process.send_signal(signal.SIGKILL)
            break
    return process.wait(timeout=120), events


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_kill_9_leaves_no_half_files_and_the_next_run_finishes(tmp_path: Path, moment: str) -> None:
    (tmp_path / "graph.toml").write_text(GRAPH)
    _code, before = _run(tmp_path, until=MOMENTS[moment])
    trained = max(
        (e["done"] for e in before if e.get("node") == "train" and "done" in e), default=0
    )

    out = tmp_path / "out"
    half_written = [p for p in out.rglob("*") if p.name.startswith(".")] if out.is_dir() else []
    assert half_written == []

    code, after = _run(tmp_path)
    assert code == 0
    model = load_file(out / "model.safetensors")
    assert model and all(tensor.isfinite().all() for tensor in model.values())
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["astronaut.png", "coffee.png"]
    resumed = [e["info"]["resumed"] for e in after if "resumed" in e.get("info", {})]
    trained_again = any(e.get("node") == "train" and e.get("done") for e in after)
    if trained >= 20 and trained_again:  # a checkpoint was kept: the next run went on from it
        assert resumed and resumed[0] >= 20
    # (a run killed after its model reached the cache trains nothing the next time)
