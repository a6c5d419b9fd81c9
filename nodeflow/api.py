"""The public, stable imports for plugin authors: everything a plugin needs, from one module.

    from nodeflow.api import IMAGE, Float, Input, Output, hookimpl, node

nodeflow's own nodes import from here too. What this module exports keeps its name and
meaning for the whole of nodeflow 0.x; anything imported from elsewhere in nodeflow is
internal and may change in any release. The stable surface:

Declaring nodes
    `node` (the decorator), `Input`, `Output`, the params `Int`, `Float`, `Bool`, `Str`,
    `Path`, `Choice`, `Size` (`Param` is what they return), `NodeType` (what `node`
    returns), `Footprint` (which params size the images a node makes, checked against
    the memory budget at validation).
Hooks
    `hookimpl`, to mark `register_nodes(register)`, `register_architectures(register)`
    and `register_types(register)` in a plugin module; `load_registry()`, the process's
    registry of every installed plugin's nodes, architectures and types.
Socket types and values
    `SocketType`; the built-in types `IMAGE`, `MASK`, `LATENT`, `SCORES`, `DATASET`,
    `MODEL`, `PCA_BASIS`, `INT`, `FLOAT`, `BOOL`, `STR`; the values `Stream`, `Batch`,
    `Latent`, `Scores`, `PCABasis`.
Running
    `NodeContext` (the `ctx` argument: device, dtype, progress, cancellation, item
    errors, work_dir) and `RunCancelled`.
Models
    `Architecture`, `Model`, `ArchInfo`; checkpoints: `load_model`, `save_model`,
    `new_model`, `read_checkpoint`; building an architecture: `rebuild`,
    `check_hparams`, `make_info`, `init_weights`, `load_weights`, `norm_layer`,
    `conv_bias`.
Inference
    `apply_model` (images in [0, 1] through an image-to-image model, padded and tiled),
    `run_network`, `to_network`, `from_network`, `prepare`, `forward`,
    `pad_to_multiple`, `match_channels` (gray <-> RGB for a model's channel count).
Files
    `read_image`, `list_images`, `atomic_path` (write a file so no half of it is ever
    seen).
Training
    `fit` (the resumable loop of the built-in trainers: batches, progress, samples,
    checkpoints, time budget), `Schedule` (how long and how to train), `Trainer` (what
    `fit` drives), `PairBatch` (one batch of training pairs); for a dataset stream of
    your own, `current_pass()` (which pass over the data a trainer is reading) and
    `pair_generator(seed, pass, batch index)` (its reproducible random numbers).

`docs/plugins.md` walks through writing, packaging and testing a plugin with these.
"""

from __future__ import annotations

from nodeflow.atomic import atomic_path
from nodeflow.engine.context import NodeContext, RunCancelled
from nodeflow.files.listing import list_images
from nodeflow.hooks import hookimpl
from nodeflow.images import read_image
from nodeflow.memory import Footprint
from nodeflow.models.checkpoint import (
    check_hparams,
    conv_bias,
    init_weights,
    load_model,
    load_weights,
    make_info,
    new_model,
    norm_layer,
    read_checkpoint,
    rebuild,
    save_model,
)
from nodeflow.models.inference import (
    apply_model,
    forward,
    from_network,
    match_channels,
    pad_to_multiple,
    prepare,
    run_network,
    to_network,
)
from nodeflow.models.model import ArchInfo, Model
from nodeflow.node import (
    Bool,
    Choice,
    Float,
    Input,
    Int,
    NodeType,
    Output,
    Param,
    Path,
    Size,
    Str,
    node,
)
from nodeflow.plugins import load_registry
from nodeflow.registry import Architecture
from nodeflow.training.datasets import PairBatch, current_pass, pair_generator
from nodeflow.training.loop import Schedule, Trainer, fit
from nodeflow.types import (
    BOOL,
    DATASET,
    FLOAT,
    IMAGE,
    INT,
    LATENT,
    MASK,
    MODEL,
    PCA_BASIS,
    SCORES,
    STR,
    Batch,
    Latent,
    PCABasis,
    Scores,
    SocketType,
    Stream,
)

__all__ = [
    "BOOL",
    "DATASET",
    "FLOAT",
    "IMAGE",
    "INT",
    "LATENT",
    "MASK",
    "MODEL",
    "PCA_BASIS",
    "SCORES",
    "STR",
    "ArchInfo",
    "Architecture",
    "Batch",
    "Bool",
    "Choice",
    "Float",
    "Footprint",
    "Input",
    "Int",
    "Latent",
    "Model",
    "NodeContext",
    "NodeType",
    "Output",
    "PCABasis",
    "PairBatch",
    "Param",
    "Path",
    "RunCancelled",
    "Schedule",
    "Scores",
    "Size",
    "SocketType",
    "Str",
    "Stream",
    "Trainer",
    "apply_model",
    "atomic_path",
    "check_hparams",
    "conv_bias",
    "current_pass",
    "fit",
    "forward",
    "from_network",
    "hookimpl",
    "init_weights",
    "list_images",
    "load_model",
    "load_registry",
    "load_weights",
    "make_info",
    "match_channels",
    "new_model",
    "node",
    "norm_layer",
    "pad_to_multiple",
    "pair_generator",
    "prepare",
    "read_checkpoint",
    "read_image",
    "rebuild",
    "run_network",
    "save_model",
    "to_network",
]
