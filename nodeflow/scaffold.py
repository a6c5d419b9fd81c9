"""`nodeflow plugin new NAME`: write a ready plugin distribution to start from.

The distribution installs as it is (`pip install -e nodeflow-NAME`) and passes its own
tests: a pyproject with the entry point in group `nodeflow`, a package with one node
(`NAME.invert`) and one architecture (`NAME.tiny`, a small residual conv net with
detect and build), tests that call the node, run both through graphs and train the
architecture with `train_unet`, and a README.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A nodeflow plugin: the $name.invert node and the $name.tiny architecture."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["nodeflow>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The entry point makes nodeflow find the plugin: its name is the plugin's name and the
# prefix of its ids ($name.invert), its value the module holding the hooks.
[project.entry-points.nodeflow]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 100
"""

MODULE = '''\
"""$dist: a nodeflow plugin with a node, `$name.invert`, and an architecture, `$name.tiny`.

nodeflow imports this module through the entry point in pyproject.toml and calls the
hooks marked with @hookimpl. Ids are registered under the plugin's name: "invert"
becomes `$name.invert`. Import only from nodeflow.api: it is the stable surface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from nodeflow.api import (
    IMAGE,
    Architecture,
    Float,
    Input,
    Model,
    Output,
    check_hparams,
    hookimpl,
    init_weights,
    make_info,
    node,
    rebuild,
)
from torch import nn

# -- a node ---------------------------------------------------------------------------


@node(
    "invert",
    inputs={"image": Input(IMAGE, help="the images to invert")},
    outputs={"image": Output(IMAGE, help="their negatives")},
    params={"amount": Float(1.0, min=0, max=1, help="0 keeps the image, 1 is the negative")},
)
def invert(image: torch.Tensor, *, amount: float) -> torch.Tensor:
    """Turn images into their negatives, fully or part of the way.

    Each value v becomes v + amount x (1 - 2v): amount 1 gives the photographic negative
    1 - v, amount 0.5 a flat mid-gray.
    """
    return image + amount * (1 - 2 * image)


# -- an architecture -----------------------------------------------------------------------

ARCH_ID = "$name.tiny"
DEFAULTS: dict[str, Any] = {"channels": 3, "width": 16}
_KEYS = {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}


class TinyNet(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))): a small residual image-to-image network."""

    def __init__(self, channels: int = 3, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def create(hparams: Mapping[str, Any] | None = None, *, init: bool = True, **fields: Any) -> Model:
    """A TinyNet model; `fields` set ArchInfo fields such as task or extra."""
    hp = check_hparams(ARCH_ID, hparams or {}, DEFAULTS)
    net = TinyNet(**hp)
    if init:
        init_weights(net)
    derived = {
        "arch": ARCH_ID,
        "purpose": "image-to-image",
        "in_channels": hp["channels"],
        "out_channels": hp["channels"],
        "hparams": hp,
    }
    return Model(net, make_info(derived, fields))


def detect(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Exactly TinyNet's four tensors, with 3x3 kernels."""
    return set(state_dict) == _KEYS and state_dict["body.0.weight"].shape[-2:] == (3, 3)


def infer_hparams(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels and width, read from the first convolution's shape."""
    width, channels = state_dict["body.0.weight"].shape[:2]
    return {"channels": int(channels), "width": int(width)}


def build(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> Model:
    """Rebuild from a nodeflow checkpoint, a bare state dict, or nothing (fresh weights)."""
    return rebuild(state_dict, metadata, create, infer_hparams, lambda _hparams: {})


# -- the hooks -----------------------------------------------------------------------------


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(invert)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    register(Architecture(ARCH_ID, detect, build, "a small residual conv net (3x3, ReLU, 3x3)"))
'''

CONFTEST = """\
\"\"\"nodeflow's pytest fixtures for plugin tests: `run_graph(text)` and `nodeflow_registry`.\"\"\"

pytest_plugins = ["nodeflow.testing"]
"""

TEST = '''\
"""The plugin loads, its node runs in a graph, and its architecture saves, loads and runs."""

from __future__ import annotations

from pathlib import Path

import torch
from nodeflow.api import load_model, new_model, save_model

NEGATIVE = """version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut, camera", size = 32 }

[nodes.negative]
type = "$name.invert"
inputs = { image = "photos.image" }
"""

TINY = """version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut, camera", size = 32 }

[nodes.tiny]
type = "load_model"
params = { checkpoint = "tiny.safetensors" }

[nodes.out]
type = "unet"
inputs = { image = "photos.image", model = "tiny.model" }
"""


TRAIN = """version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee", size = 32 }

[nodes.pairs]
type = "pairs"
params = { task = "denoise", crop = 16 }
inputs = { image = "photos.image" }

[nodes.train]
type = "train_unet"
params = { architecture = "$name.tiny", steps = 20, lr = 0.003, sample_every = 0 }
inputs = { dataset = "pairs.dataset" }
"""


def images(result, node_id: str) -> torch.Tensor:
    return torch.cat([batch.data for batch in result.outputs[node_id]["image"]])


def test_the_plugin_loads(nodeflow_registry) -> None:
    record = nodeflow_registry.plugins["$name"]
    assert record.errors == []
    assert "$name.invert" in record.nodes
    assert "$name.tiny" in record.architectures


def test_invert_gives_the_negative(run_graph) -> None:
    result, _ = run_graph(NEGATIVE, targets=["photos", "negative"])
    assert result.ok, result.failed
    original, negative = images(result, "photos"), images(result, "negative")
    torch.testing.assert_close(negative, 1 - original)


def test_invert_is_callable_like_its_function() -> None:
    from $package import invert

    image = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(invert(image, amount=1.0), 1 - image)


def test_train_unet_trains_the_tiny_architecture(run_graph) -> None:
    result, events = run_graph(TRAIN)
    assert result.ok, result.failed
    assert result.outputs["train"]["model"].info.arch == "$name.tiny"
    losses = [e.info["loss"] for e in events if "loss" in getattr(e, "info", {})]
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns


def test_tiny_models_save_load_and_run_in_a_graph(run_graph, tmp_path: Path) -> None:
    model = new_model("$name.tiny", {"width": 8})
    with torch.no_grad():
        model.net.body[2].weight.normal_(0, 0.1)
    save_model(model, tmp_path / "tiny.safetensors")
    torch.save(model.net.state_dict(), tmp_path / "bare.pth")
    assert load_model(tmp_path / "bare.pth").info.hparams == {"channels": 3, "width": 8}

    result, _ = run_graph(TINY, targets=["photos", "out"])
    assert result.ok, result.failed
    with torch.no_grad():
        expected = model.net.eval()(images(result, "photos")).clamp(0, 1)
    torch.testing.assert_close(images(result, "out"), expected, atol=1e-5, rtol=0)
'''

README = """\
# $dist

A nodeflow plugin. It adds:

- the node `$name.invert` (images -> their negatives, param `amount`);
- the architecture `$name.tiny` (a small residual conv net): `load_model` recognises its
  checkpoints, `new_model("$name.tiny")` makes a fresh one, `unet` runs it, and
  `train_unet` trains it (`architecture = "$name.tiny"`).

```sh
pip install -e .                 # into the environment nodeflow is installed in
nodeflow plugins                 # $name: ok, 1 nodes, 1 architectures
nodeflow nodes $name.invert      # its inputs, params and help
pytest                           # the plugin's tests
```

Use it in a graph:

```toml
version = 1

[nodes.photos]
type = "sample_images"

[nodes.negative]
type = "$name.invert"
inputs = { image = "photos.image" }

[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "negative.image" }
```

The code is in `$package/__init__.py`; nodeflow's `docs/plugins.md` explains every part.
"""


def check_name(name: str) -> None:
    """Refuse names that cannot be a plugin name, an id prefix and part of a module name."""
    if not NAME_PATTERN.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"{name!r} cannot name a plugin: use lowercase letters, digits and underscores, "
            "starting with a letter (it prefixes the plugin's ids, as in `name.invert`)"
        )


def new_plugin(name: str, folder: Path | None = None) -> Path:
    """Write the plugin distribution `nodeflow-NAME` into `folder` and return the folder.

    `folder` defaults to ./nodeflow-NAME; it must not exist yet, or be empty.
    """
    check_name(name)
    dist = f"nodeflow-{name.replace('_', '-')}"
    package = f"nodeflow_{name}"
    target = Path(folder) if folder is not None else Path.cwd() / dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{str(target)!r} already exists and is not empty; choose another --dir")
    values = {"name": name, "dist": dist, "package": package}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": MODULE,
        "tests/conftest.py": CONFTEST,
        f"tests/test_{name}.py": TEST,
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return target
