"""`nodeflow models` lists the checkpoints shipped in the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.models import checkpoint
from nodeflow.models.checkpoint import new_model, save_model


def test_models_lists_shipped_checkpoints(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "SHIPPED_FOLDER", tmp_path)
    model = new_model("unet", {"in_channels": 3, "out_channels": 3, "num_downs": 3, "ngf": 4},
                      registry, task="denoise",
                      extra={"sigma": 25.0, "training": {"steps": 1200, "seconds": 600.0}})  # fmt: skip
    save_model(model, tmp_path / "denoise.safetensors")
    untrained = new_model("patchgan", {"in_channels": 3}, registry, purpose="discriminator")
    save_model(untrained, tmp_path / "judge.safetensors")

    table = CliRunner().invoke(main, ["models"], env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    assert "denoise" in table.output and "unet 3->3" in table.output
    assert "removes Gaussian noise of sigma 25" in table.output
    assert "1200 steps, 10 min" in table.output
    assert "scores how real images look" in table.output

    listed = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)
    assert [(m["name"], m["arch"]) for m in listed] == [("denoise", "unet"), ("judge", "patchgan")]


def test_models_says_when_none_are_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "SHIPPED_FOLDER", tmp_path / "empty")
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    assert "no models are shipped" in result.output
