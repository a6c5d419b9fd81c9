"""The Python API: `import nodeflow`, Graph.add, run, results, load/save, export-python."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nodeflow
from nodeflow.cli import main
from nodeflow.engine.events import NodeFinished

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def noisy_photos() -> tuple[nodeflow.Graph, nodeflow.NodeHandle, nodeflow.NodeHandle]:
    g = nodeflow.Graph()
    photos = g.add("sample_images", names="astronaut, camera, coffee", size=32)
    noisy = g.add("add_noise", image=photos.image, sigma=25)
    return g, photos, noisy


def test_import_nodeflow_imports_no_torch_and_no_engine() -> None:
    code = (
        "import sys, nodeflow; g = nodeflow.Graph(); "
        "print(sorted(m for m in ('torch', 'nodeflow.engine.executor') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_the_issue_example_builds_runs_and_returns_whole_values(tmp_path: Path) -> None:
    g, photos, noisy = noisy_photos()
    q = g.add("metrics", image=noisy.image, reference=photos.image)
    assert [photos.id, noisy.id, q.id] == ["sample_images", "add_noise", "metrics"]

    events = []
    result = nodeflow.run(g, device="cpu", precision="fp32", cache=False, on_event=events.append)
    assert result.ok, result.failed
    assert 15 < result[q]["psnr"] < 25  # sigma 25 on the 0-255 scale: about 20 dB
    assert result["metrics"]["psnr"] == result[q]["psnr"]
    images = result[noisy]["image"]
    clean = result[photos]["image"]
    assert images.shape == clean.shape == (3, 3, 32, 32)
    assert 0.05 < (images - clean).abs().mean() < 0.1
    assert {e.node for e in events if isinstance(e, NodeFinished)} == {photos.id, noisy.id, q.id}

    batches = list(result.stream(noisy, "image"))
    assert [b.names for b in batches] == [["astronaut", "camera", "coffee"]]
    torch.testing.assert_close(torch.cat([b.data for b in batches]), images)


def test_a_big_stream_is_iterated_batch_by_batch(tmp_path: Path) -> None:
    g = nodeflow.Graph()
    photos = g.add("sample_images", names="astronaut, camera, coffee", size=16)
    saved = g.add(
        "save_images", image=photos.image, folder=tmp_path / "photos", allow_input_folder=True
    )
    small = g.add("load_images", path=tmp_path / "photos", batch_size=2)
    result = nodeflow.run(g, cache=False, only=[saved])
    assert result.ok and saved in result and small not in result

    result = nodeflow.run(g, cache=False, only=[small])
    sizes = [len(batch.data) for batch in result.stream(small)]
    assert sizes == [2, 1]
    assert result[small]["image"].shape == (3, 3, 16, 16)


def test_outputs_are_attributes_that_complete(tmp_path: Path) -> None:
    g, photos, _ = noisy_photos()
    train = g.add("train_pix2pix", dataset=g.add("pairs", image=photos.image).dataset, steps=1)
    assert {"model", "discriminator"} <= set(dir(train))
    assert str(train.discriminator) == f"{train.id}.discriminator"
    with pytest.raises(AttributeError, match="has no output 'imag'; its outputs: image"):
        _ = photos.imag


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g, p: g.add("add_nois", image=p.image),
         "node 'add_nois' type: unknown node type 'add_nois'; did you mean 'add_noise'?"),
        (lambda g, p: g.add("add_noise", image=p.image, sigmaa=3),
         "param 'sigmaa': unknown param; did you mean 'sigma'?"),
        (lambda g, p: g.add("add_noise", imag=p.image),
         "input 'imag': unknown input; did you mean 'image'?"),
        (lambda g, p: g.add("add_noise", image=p.image, sigma=999),
         "param 'sigma': 999 is above the maximum 255"),
        (lambda g, p: g.add("add_noise"), "input 'image': missing required input (Image)"),
        (lambda g, p: g.add("add_noise", image=3),
         "input 'image': an input takes another node's output"),
        (lambda g, p: g.add("add_noise", image=p),
         "link one output of node 'sample_images': sample_images.image"),
        (lambda g, p: g.add("add_noise", id="my node", image=p.image),
         "node 'my node': a node id starts with a letter or _"),
        (lambda g, p: g.add("add_noise", id="sample_images", image=p.image),
         "already has a node of this id"),
    ],
)  # fmt: skip
def test_add_refuses_a_bad_node_with_the_validation_message(call, message: str) -> None:
    g = nodeflow.Graph()
    photos = g.add("sample_images", size=32)
    with pytest.raises(nodeflow.GraphFileError, match=re.escape(message)):
        call(g, photos)
    assert list(g.nodes) == ["sample_images"]


def test_a_missing_input_is_explained_in_python_not_in_toml() -> None:
    g = nodeflow.Graph()
    with pytest.raises(nodeflow.GraphFileError) as first:
        g.add("add_noise")
    assert "e.g. g.add('add_noise', image=other.<output>)" in str(first.value)
    photos = g.add("sample_images", id="photos", size=32)
    with pytest.raises(nodeflow.GraphFileError) as second:
        g.add("metrics", image=photos.image)
    message = str(second.value)
    assert message == (
        "node 'metrics' input 'reference': missing required input (Image); link it to "
        "another node's output, e.g. g.add('metrics', reference=g['photos'].image)"
    )
    assert "inputs = {" not in message + str(first.value)


def test_add_and_validate_word_a_problem_alike(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(
        'version = 1\n[nodes.a]\ntype = "sample_images"\nparams = { sizee = 3 }\n'
    )
    validated = CliRunner().invoke(main, ["validate", str(tmp_path / "g.toml")])
    with pytest.raises(nodeflow.GraphFileError) as refused:
        nodeflow.Graph().add("sample_images", id="a", sizee=3)
    assert str(refused.value) in validated.output


def test_ids_come_from_the_type_and_stay_unique() -> None:
    g, _, noisy = noisy_photos()
    again = g.add("add_noise", image=noisy.image)
    named = g.add("add_noise", id="third", image=again.image)
    assert (again.id, named.id) == ("add_noise_2", "third")
    assert g["third"].image == named.image


def test_load_then_save_round_trips_every_shipped_graph(tmp_path: Path) -> None:
    for path in sorted(GRAPHS.glob("*.toml")):
        loaded = nodeflow.load(path)
        copy = tmp_path / path.name
        loaded.save(copy)
        again = nodeflow.load(copy)
        assert again.to_dict() == nodeflow.load(path).to_dict(), path.name
        assert copy.read_text() == path.read_text(), path.name  # comments and layout kept


def test_a_saved_graph_runs_with_the_cli(tmp_path: Path) -> None:
    g, photos, noisy = noisy_photos()
    g.add("metrics", image=noisy.image, reference=photos.image)
    g.save(tmp_path / "graph.toml")
    ran = CliRunner().invoke(main, ["run", str(tmp_path / "graph.toml"), "--device", "cpu"])
    assert ran.exit_code == 0, ran.output
    assert "metrics.psnr = " in ran.output


def test_a_failed_node_is_reported_not_returned(tmp_path: Path) -> None:
    g = nodeflow.Graph()
    missing = g.add("load_images", path=tmp_path / "nothing")
    after = g.add("grayscale", image=missing.image)
    result = nodeflow.run(g, cache=False)
    assert not result.ok and set(result.failed) == {missing.id, after.id}
    with pytest.raises(nodeflow.NodeFailedError, match="matched no files"):
        result[missing]


def test_export_python_writes_a_script_that_builds_the_same_graph(tmp_path: Path) -> None:
    for name in ("denoise.toml", "train_edges2photo.toml", "transfer_classify.toml"):
        exported = CliRunner().invoke(main, ["export-python", str(GRAPHS / name)])
        assert exported.exit_code == 0, exported.output
        script = exported.output
        assert script.startswith("import nodeflow\n")
        building, _, _ = script.partition("result = nodeflow.run(g)")
        space: dict = {}
        exec(building, space)  # the script nodeflow just wrote, up to its run
        original = nodeflow.load(GRAPHS / name).to_dict()
        assert space["g"].to_dict()["nodes"] == original["nodes"], name


def test_an_exported_script_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g, photos, noisy = noisy_photos()
    g.add("metrics", id="quality", image=noisy.image, reference=photos.image)
    g.save(tmp_path / "graph.toml")
    out = tmp_path / "graph.py"
    made = CliRunner().invoke(main, ["export-python", str(tmp_path / "graph.toml"), "-o", str(out)])
    assert made.exit_code == 0, made.output
    runpy.run_path(str(out), run_name="__main__")
    assert capsys.readouterr().out.startswith("quality.psnr = ")


def test_an_exported_script_runs_from_any_folder_with_the_graphs_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for folder in (project / "photos", elsewhere):
        folder.mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), (200, 40, 40)).save(project / "photos" / f"{name}.png")
    (project / "graph.toml").write_text(
        "version = 1\n"
        '[nodes.photos]\ntype = "load_images"\nparams = { path = "photos" }\n'
        '[nodes.gray]\ntype = "grayscale"\ninputs = { image = "photos.image" }\n'
        '[nodes.save]\ntype = "save_images"\nparams = { folder = "out" }\n'
        'inputs = { image = "gray.image" }\n'
    )
    monkeypatch.chdir(project)  # exported from the graph's folder, by its relative name
    printed = CliRunner().invoke(main, ["export-python", "graph.toml"])
    made = CliRunner().invoke(main, ["export-python", "graph.toml", "-o", "graph.py"])
    assert printed.exit_code == made.exit_code == 0, printed.output + made.output
    assert f"nodeflow.Graph(path={str((project / 'graph.toml').resolve())!r})" in printed.output
    assert (
        "nodeflow.Graph(path=Path(__file__).parent / 'graph.toml')" in Path("graph.py").read_text()
    )
    (elsewhere / "printed.py").write_text(printed.output)

    monkeypatch.chdir(elsewhere)  # and run from another folder
    for script in (elsewhere / "printed.py", project / "graph.py"):
        runpy.run_path(str(script), run_name="__main__")
        assert sorted(p.name for p in (project / "out").iterdir()) == ["a.png", "b.png"]
        assert not (elsewhere / "out").exists()
        for saved in (project / "out").iterdir():
            saved.unlink()


def test_export_python_refuses_an_invalid_graph(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text('version = 1\n[nodes.a]\ntype = "nope"\n')
    made = CliRunner().invoke(main, ["export-python", str(tmp_path / "g.toml")])
    assert made.exit_code == 2
    assert "unknown node type 'nope'" in made.output


def test_cache_takes_a_folder_and_a_rerun_reuses_it(tmp_path: Path) -> None:
    g = nodeflow.Graph()
    photos = g.add("sample_images", names="astronaut, camera, coffee", size=16)
    fit = g.add("pca_fit", image=photos.image, components=2)
    first = nodeflow.run(g, cache=tmp_path / "store")
    assert first.ok, first.failed
    assert list((tmp_path / "store").glob("results/*.safetensors"))  # the fitted basis, on disk

    events = []
    again = nodeflow.run(g, cache=tmp_path / "store", on_event=events.append)
    assert [e.node for e in events if isinstance(e, NodeFinished) and e.cached] == [fit.id]
    torch.testing.assert_close(again[fit]["basis"].components, first[fit]["basis"].components)


def test_run_graph_text_makes_its_folder(tmp_path: Path) -> None:
    from nodeflow.testing import run_graph_text

    text = 'version = 1\n[nodes.a]\ntype = "sample_images"\nparams = { size = 8 }\n'
    result, _ = run_graph_text(text, tmp_path / "new" / "folder")
    assert result.ok and (tmp_path / "new" / "folder" / "graph.toml").is_file()
