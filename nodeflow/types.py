"""Socket types: what may travel along a link, and the values that carry them.

A socket type is data, not a class hierarchy: a name, whether its values stream in
mini-batches, and optionally how to store a value in the on-disk cache. Validation
compares names; plugins add types through the `register_types` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SocketType:
    """A kind of value on a link.

    `streamed` types travel as a `Stream` of `Batch`es, so a folder of any size flows
    through with flat memory. `to_tensors`/`from_tensors` let a value persist in the disk
    cache; a type without them is cached in memory only.
    """

    name: str
    doc: str
    streamed: bool = False
    to_tensors: Callable[[Any], tuple[dict[str, torch.Tensor], dict[str, str]]] | None = None
    from_tensors: Callable[[dict[str, torch.Tensor], dict[str, str]], Any] | None = None

    def __str__(self) -> str:
        return self.name


@dataclass
class Batch:
    """One mini-batch of a stream: the data and one name per item (for file names)."""

    data: Any
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


class Stream:
    """A lazy, re-iterable sequence of `Batch`es.

    Iterating twice runs the producer twice: nothing is held in memory between
    consumers, which is what keeps memory flat however large a folder is. `total` is the
    number of batches when known (for progress). A `single` stream is one whole value (one
    image, a contact sheet); zipped with a longer stream it is repeated for every batch.
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[Batch]],
        total: int | None = None,
        single: bool = False,
    ):
        self._produce = produce
        self.total = total
        self.single = single

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._produce())

    @classmethod
    def of(cls, data: Any, names: list[str] | None = None) -> Stream:
        """A stream of one batch, for values computed whole (a contact sheet, a basis image)."""
        size = len(data) if hasattr(data, "__len__") else 1
        batch = Batch(data, names or [f"{i:05d}" for i in range(size)])
        return cls(lambda: iter([batch]), total=1, single=True)

    def tensors(self) -> Iterator[Any]:
        """The batches' data alone, for collecting nodes that do not need names."""
        for batch in self:
            yield batch.data


@dataclass
class Latent:
    """Latent codes (B x D or B x C x h x w) and which model produced them."""

    tensor: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.tensor)


@dataclass
class PCABasis:
    """A fitted PCA: mean, components (k x D, rows orthonormal), explained variance.

    `shape` is the C x H x W of one flattened sample; `patches` says whether samples were
    patches cut from larger images (projection then works patch by patch) or whole images.
    """

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor
    shape: tuple[int, int, int]
    patches: bool = False

    @property
    def patch_size(self) -> int:
        return self.shape[-1]


@dataclass
class Scores:
    """Per-image scores, and the per-patch map where the scorer has one."""

    score: torch.Tensor
    patch_map: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.score)


def _basis_to_tensors(basis: PCABasis) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {
        "mean": basis.mean,
        "components": basis.components,
        "explained_variance": basis.explained_variance,
    }
    return tensors, {"shape": ",".join(map(str, basis.shape)), "patches": str(basis.patches)}


def _basis_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> PCABasis:
    c, h, w = (int(v) for v in meta["shape"].split(","))
    return PCABasis(
        tensors["mean"], tensors["components"], tensors["explained_variance"], (c, h, w)
    )


def _image_to_tensors(stream: Stream) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    batches = list(stream)
    tensors = {f"b{i}": batch.data.contiguous() for i, batch in enumerate(batches)}
    names = ["\x1f".join(batch.names) for batch in batches]
    return tensors, {"names": "\x1e".join(names)}


def _image_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Stream:
    names = [group.split("\x1f") for group in meta["names"].split("\x1e")]
    batches = [Batch(tensors[f"b{i}"], names[i]) for i in range(len(names))]
    return Stream(lambda: iter(batches), total=len(batches), single=len(batches) == 1)


def _scalar(kind: Callable[[str], Any]) -> dict[str, Any]:
    return {
        "to_tensors": lambda value: ({}, {"value": str(value)}),
        "from_tensors": lambda _tensors, meta: kind(meta["value"]),
    }


IMAGE = SocketType(
    "Image",
    "float32 B x C x H x W in [0, 1], C = 1 (gray) or 3 (RGB), streamed in mini-batches",
    streamed=True,
    to_tensors=_image_to_tensors,
    from_tensors=_image_from_tensors,
)
MASK = SocketType("Mask", "float32 B x 1 x H x W in [0, 1], streamed", streamed=True)
PIXEL_TYPES = frozenset({IMAGE.name, MASK.name})
"""Socket types whose values are B x C x H x W pixel batches."""
LATENT = SocketType("Latent", "latent codes with the model that produced them", streamed=True)
SCORES = SocketType("Scores", "per-image scores and optional per-patch maps", streamed=True)
DATASET = SocketType("Dataset", "a lazy source of (input, target) training pairs", streamed=True)


def _model_to_tensors(model: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from nodeflow.models.checkpoint import model_to_tensors

    return model_to_tensors(model)


def _model_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Any:
    from nodeflow.models.checkpoint import model_from_tensors

    return model_from_tensors(tensors, meta)


MODEL = SocketType(
    "Model",
    "a network and its architecture info",
    to_tensors=_model_to_tensors,
    from_tensors=_model_from_tensors,
)
PCA_BASIS = SocketType(
    "PCABasis",
    "mean, components and explained variance of a fitted PCA",
    to_tensors=_basis_to_tensors,
    from_tensors=_basis_from_tensors,
)
INT = SocketType("Int", "an integer", **_scalar(int))
FLOAT = SocketType("Float", "a floating-point number", **_scalar(float))
BOOL = SocketType("Bool", "true or false", **_scalar(lambda s: s == "True"))
STR = SocketType("Str", "text", **_scalar(str))

BUILTIN_TYPES: tuple[SocketType, ...] = (
    IMAGE,
    MASK,
    LATENT,
    SCORES,
    DATASET,
    MODEL,
    PCA_BASIS,
    INT,
    FLOAT,
    BOOL,
    STR,
)
