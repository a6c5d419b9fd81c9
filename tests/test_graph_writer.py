"""Saving a graph file edits it in place: what the person wrote and did not change stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeflow.graph import FileChangedError, Graph, Link, NodeSpec

HAND_WRITTEN = """\
# Denoise some photos and measure it.
#   nodeflow run denoise.toml
version = 1

# the photos, small
[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee",  size = 64 }   # keep it small

# noise of sigma 25
[nodes.noisy]
type = "add_noise"   # Gaussian
params = { sigma = 25.0, seed = 1 }
inputs = { image = "photos.image" }

[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }  # PSNR against the clean photos

[ui]
theme = "dark"  # the editor's
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "denoise.toml"
    path.write_text(HAND_WRITTEN)
    return path


def test_an_edit_keeps_every_comment_and_every_untouched_byte(path: Path) -> None:
    graph = Graph.load(path)
    graph.nodes["noisy"].params["sigma"] = 10.0
    graph.save()
    expected = HAND_WRITTEN.replace("sigma = 25.0, seed = 1", "sigma = 10.0, seed = 1")
    assert path.read_text() == expected
    assert Graph.load(path).nodes["noisy"].params == {"sigma": 10.0, "seed": 1}


def test_saving_unchanged_writes_the_file_back_as_it_was(path: Path) -> None:
    Graph.load(path).save()
    assert path.read_text() == HAND_WRITTEN


def test_delete_rename_and_add(path: Path) -> None:
    graph = Graph.load(path)
    del graph.nodes["noisy"]
    graph.nodes["quality"].inputs["image"] = Link("photos", "image")
    spec = graph.nodes.pop("photos")
    spec.id = "pics"
    graph.nodes = {"pics": spec, **graph.nodes}
    graph.nodes["quality"].inputs = {
        "image": Link("pics", "image"),
        "reference": Link("pics", "image"),
    }
    graph.nodes["blur"] = NodeSpec("blur", "blur", {"sigma": 2.0}, {"image": Link("pics", "image")})
    graph.save()
    text = path.read_text()
    # the deleted node goes with its comment; the renamed one keeps its place and comment
    assert "noise of sigma 25" not in text and "[nodes.noisy]" not in text
    assert '# the photos, small\n[nodes.pics]\ntype = "sample_images"' in text
    assert "size = 64 }   # keep it small" in text
    # the changed inline table is rewritten, its end-of-line comment stays
    assert 'reference = "pics.image" }  # PSNR against the clean photos' in text
    # a new node comes after the last node, one blank line apart, before the ui table
    assert '\n\n[nodes.blur]\ntype = "blur"\nparams = { sigma = 2.0 }\n' in text
    assert text.index("[nodes.blur]") < text.index("[ui]")
    assert text.startswith("# Denoise some photos and measure it.\n#   nodeflow run")
    assert text.endswith('[ui]\ntheme = "dark"  # the editor\'s\n')
    reread = Graph.load(path)
    assert list(reread.nodes) == ["pics", "quality", "blur"]


def test_node_comments_are_read_and_saved_as_toml_comments(path: Path) -> None:
    graph = Graph.load(path)
    assert graph.nodes["photos"].comment == "the photos, small"
    assert graph.nodes["quality"].comment == ""
    graph.nodes["quality"].comment = "how close to the clean photos\nPSNR and SSIM"
    graph.nodes["photos"].comment = ""
    graph.save()
    text = path.read_text()
    assert "# how close to the clean photos\n# PSNR and SSIM\n[nodes.quality]" in text
    assert "the photos, small" not in text
    assert (
        Graph.load(path).nodes["quality"].comment == "how close to the clean photos\nPSNR and SSIM"
    )


def test_sub_tables_are_edited_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text(
        'version = 1\n\n[nodes.noisy]\ntype = "add_noise"\n\n'
        "[nodes.noisy.params]\nsigma = 25.0  # strong\nseed = 1  # fixed\n"
    )
    graph = Graph.load(path)
    graph.nodes["noisy"].params["seed"] = 2
    graph.save()
    assert path.read_text().endswith("sigma = 25.0  # strong\nseed = 2  # fixed\n")


def test_a_file_not_laid_out_one_table_per_node_keeps_its_comments(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text(
        "# one table for all\nversion = 1\n\n[nodes]\n"
        'photos = { type = "sample_images" }  # the photos\n'
        'noisy = { type = "add_noise", inputs = { image = "photos.image" } }\n'
    )
    graph = Graph.load(path)
    graph.nodes["photos"].params["size"] = 32
    graph.save()
    text = path.read_text()
    assert text.startswith("# one table for all\nversion = 1\n")
    assert "# the photos" in text
    assert Graph.load(path).nodes["photos"].params == {"size": 32}


def test_a_file_changed_on_disk_is_not_overwritten_without_asking(path: Path) -> None:
    graph = Graph.load(path)
    graph.nodes["noisy"].params["seed"] = 7
    path.write_text(HAND_WRITTEN.replace("seed = 1", "seed = 3"))
    assert graph.changed_on_disk()
    with pytest.raises(FileChangedError, match="changed on disk since it was opened"):
        graph.save()
    assert "seed = 3" in path.read_text()
    graph.save(overwrite=True)
    assert Graph.load(path).nodes["noisy"].params["seed"] == 7
    assert not graph.changed_on_disk()
    # saving elsewhere does not ask
    graph.save(path.with_name("copy.toml"))
    assert "# noise of sigma 25" in path.with_name("copy.toml").read_text()
