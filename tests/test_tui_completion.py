"""Path params complete: shipped model names for `checkpoint`, files and folders otherwise."""

from __future__ import annotations

from pathlib import Path

from nodeflow.models.checkpoint import shipped_checkpoints
from nodeflow.tui.completion import complete_path, shipped_model_names


def test_checkpoint_offers_the_shipped_models() -> None:
    names = shipped_model_names("checkpoint")
    assert names == list(shipped_checkpoints()) and "colorize" in names
    assert shipped_model_names("folder") == []
    assert complete_path("col", Path("/nonexistent"), names) == "colorize"
    assert complete_path("colorize", Path("/nonexistent"), names) is None


def test_paths_complete_from_the_graph_folder(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.safetensors").write_bytes(b"")
    (tmp_path / "models" / ".hidden").write_bytes(b"")
    assert complete_path("mo", tmp_path, []) == "models/"
    assert complete_path("models/m", tmp_path, []) == "models/mine.safetensors"
    assert complete_path("models/", tmp_path, []) == "models/mine.safetensors"
    assert complete_path("models/.h", tmp_path, []) == "models/.hidden"
    assert complete_path("nothing/x", tmp_path, []) is None
    absolute = str(tmp_path / "models" / "mi")
    assert complete_path(absolute, Path("/"), []) == absolute + "ne.safetensors"
