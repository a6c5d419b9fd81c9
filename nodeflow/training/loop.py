"""The training loop every trainer node runs: batches, progress, samples, checkpoints, resume.

A trainer is a small object holding its networks (`modules`), their optimizers and two
methods: `step(pair)` trains on one batch and returns its losses; `predict(pair)` returns
the outputs shown in sample grids; state beyond networks and optimizers (a GAN's image
pool) comes from an optional `extra_state()` and goes back through
`load_extra_state(state)`. `fit` does the rest, for nodeflow's trainers and plugins' alike:

- Batches: the dataset stream is re-batched to `batch_size` pairs (a batch ends early
  where the pair shape changes and at the end of a pass). Pass (epoch) `e` is read with
  `reading_pass(e)`, so its random crops differ from other passes' yet are reproducible.
- Length: `steps` optimizer steps, or `epochs` whole passes when that is given.
- Randomness: the global RNG is forked for the run and seeded with `seed` (weight init,
  dropout), so a trainer leaves the process's RNG as it found it; pulls from the dataset
  run on a forked RNG of their own, so whatever upstream nodes draw never disturbs it.
- Progress: `ctx.progress(step, total, loss=..., <other losses>, epoch=...)` after every
  step (with the learning rate as "lr"); info["sample"] carries the path of a sample grid in the event of the step that
  wrote it, info["resumed"] the step a run resumed from, info["stopped"] why it stopped
  early.
- Samples: every `sample_every` steps and at the end, a PNG grid (per row: input, output,
  target of one of the first pairs of the data) is written atomically to the `samples`
  folder, or to `<work dir>/samples` when none is given.
- Checkpoints: every `CHECKPOINT_SECONDS` (and every `checkpoint_every` steps when the
  schedule says) and when the run is cancelled, the networks,
  optimizers, RNG states and position (step, pass, pairs done in the pass) are saved to
  `<work dir>/training.pt`, readable with `torch.load(weights_only=True)`. A run of the
  same node with the same params and inputs finds it and continues from that step; the
  result equals an uninterrupted run's. The file is removed once training ends.
- Learning rate: with `lr_decay`, pix2pix's schedule: the optimizers' initial rate for
  the first half of the planned steps, then a linear decay to zero over the second half
  (set before every step from the step number, so a resumed run follows it exactly).
- Several processes (`nodeflow run --nproc N`, torch DDP): every process reads batches of
  N x `batch_size` pairs and trains on its slice of each with DistributedDataParallel
  networks, so the run steps as one process with N times the batch; the losses reported
  are the whole batch's. Only rank 0 writes checkpoints and samples; a resumed run hands
  rank 0's checkpoint to the others (`training/distributed.py`).
- Time budget: the run stops cleanly before the first step that would start after
  `time_budget` seconds, and says so in its progress and in the model's training record.

Networks and batches are channels-last (except on MPS). Measured on a 2-core CPU for
training steps of the small networks: neutral for the U-Net (0.92-0.99x), 1.02-1.24x
faster for the autoencoder and 1.04-1.12x for pix2pix (generator and PatchGAN).
`torch.compile` is not used: compiling a small U-Net's training step took 14-44 s and the
compiled step was no faster (64 px, batch 8), a cost short CPU runs never earn back.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from nodeflow.atomic import atomic_path
from nodeflow.engine.context import NodeContext, RunCancelled
from nodeflow.files.encode import write_image
from nodeflow.images import contact_sheet
from nodeflow.training import distributed
from nodeflow.training.datasets import PairBatch, as_pairs, pair_images, reading_pass
from nodeflow.types import Stream

CHECKPOINT_FILE = "training.pt"
FP16_TRAINING = (
    "training does not run in fp16: it needs a gradient scaler around every step, which "
    "this loop does not use; train with --precision fp32 (or bf16 on hardware with bf16 "
    "units), then run the trained model in fp16"
)
CHECKPOINT_SECONDS = 60.0
SAMPLE_ITEMS = 4
RECENT_STEPS = 20
FORMAT = 2


class Trainer(Protocol):
    """What `fit` needs from a trainer."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def step(self, pair: PairBatch) -> dict[str, float]:
        """Train on one batch; return its losses, the main one under "loss"."""

    def predict(self, pair: PairBatch) -> torch.Tensor:
        """Outputs for a batch in the targets' form, for sample grids (no grad, eval mode)."""


def _extra_state(trainer: Trainer) -> dict[str, Any]:
    """State a trainer keeps beside its modules and optimizers (a GAN's pool of generated
    images): what its optional `extra_state()` returns, saved in checkpoints and handed
    back to its `load_extra_state(state)` on resume."""
    method = getattr(trainer, "extra_state", None)
    return method() if method else {}


T = TypeVar("T", bound=Trainer)


@dataclass(frozen=True)
class Schedule:
    """How long and how to train: the params every trainer node shares."""

    steps: int
    epochs: int | None = None
    batch_size: int = 8
    seed: int = 0
    time_budget: float | None = None
    sample_every: int = 0
    samples: str | None = None
    lr_decay: bool = False
    checkpoint_every: int | None = None  # steps; a checkpoint is also saved every minute


@dataclass
class Position:
    """How far training has come: steps done, the pass, and pairs done in that pass."""

    step: int = 0
    epoch: int = 0
    offset: int = 0
    epoch_start: int = 0
    steps_per_epoch: int = 0
    seconds: float = 0.0


@dataclass
class Outcome:
    """What a training run did; `record()` goes into the model's ArchInfo.extra["training"]."""

    position: Position
    planned: int | None
    losses: dict[str, float] = field(default_factory=dict)
    stopped: str = ""

    def record(self, schedule: Schedule) -> dict[str, Any]:
        return {
            "steps": self.position.step,
            "planned_steps": self.planned,
            "epochs": round(self._epochs(), 3),
            "batch_size": schedule.batch_size,
            "seed": schedule.seed,
            "lr_decay": schedule.lr_decay,
            "seconds": round(self.position.seconds, 2),
            "losses": {name: round(value, 6) for name, value in self.losses.items()},
            "stopped": self.stopped,
        }

    def _epochs(self) -> float:
        per_epoch = self.position.steps_per_epoch
        if not per_epoch:
            return float(self.position.epoch)
        return self.position.epoch + (self.position.step - self.position.epoch_start) / per_epoch


# -- devices, memory format, RNG ---------------------------------------------------------------------


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last except on MPS, where it is not reliably supported."""
    return torch.contiguous_format if device.type == "mps" else torch.channels_last


def to_device(pair: PairBatch, device: torch.device) -> PairBatch:
    """A batch on `device`, channels-last, in fresh tensors autograd may use."""
    layout = memory_format(device)
    return PairBatch(
        pair.input.to(device).clone(memory_format=layout),
        pair.target.to(device).clone(memory_format=layout),
        pair.task,
        pair.info,
    )


def prepare_module(module: nn.Module, device: torch.device) -> nn.Module:
    """A network on `device`, channels-last, in train mode."""
    return module.to(device=device, memory_format=memory_format(device)).train()


def _rng_devices(device: torch.device) -> list[int]:
    return [] if device.type == "cpu" else [device.index or 0]


def forked_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The global RNG (CPU and `device`) restored on leaving the block."""
    return torch.random.fork_rng(devices=_rng_devices(device), device_type=device.type)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


# -- reading the data ---------------------------------------------------------------------------------


def pass_batches(
    dataset: Stream, epoch: int, batch_size: int, device: torch.device, skip: int = 0
) -> Iterator[PairBatch]:
    """Pass `epoch` over the dataset in batches of `batch_size` pairs, after `skip` pairs.

    A batch ends early where the pair shapes change and at the end of the pass, so the
    batches after `skip` (a batch boundary) are the ones an unbroken pass gives.
    """
    iterator = iter(dataset)
    parts: list[PairBatch] = []
    held = seen = 0
    while True:
        with forked_rng(device), reading_pass(epoch):
            batch = next(iterator, None)
        if batch is None:
            break
        pair = as_pairs(batch.data)
        if seen < skip:
            seen += len(pair)
            if seen <= skip:
                continue
            pair = pair[len(pair) - (seen - skip) :]
        if not len(pair):
            continue
        if parts and pair.shapes != parts[0].shapes:
            yield to_device(PairBatch.cat(parts), device)
            parts, held = [], 0
        parts.append(pair)
        held += len(pair)
        while held >= batch_size:
            merged = PairBatch.cat(parts)
            yield to_device(merged[:batch_size], device)
            rest = merged[batch_size:]
            parts, held = ([rest], len(rest)) if len(rest) else ([], 0)
    if held:
        yield to_device(PairBatch.cat(parts), device)


@contextlib.contextmanager
def evaluating(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Eval mode and no grad inside the block; each module's mode is restored after."""
    modules = list(modules)
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


# -- the loop ---------------------------------------------------------------------------------------------


def fit(
    build: Callable[[PairBatch], T], dataset: Stream, schedule: Schedule, ctx: NodeContext
) -> tuple[T, Outcome]:
    """Build a trainer from the first batch, then train it as `schedule` says.

    `build` gets the first batch of pass 0 (on the device) to size the networks from; it
    runs with the global RNG seeded from `schedule.seed`, so weight init is reproducible.
    A fresh run trains on that same pass, so its pairs are made once, not twice.
    """
    if ctx.dtype == torch.float16:
        raise ValueError(FP16_TRAINING)
    started = time.perf_counter()
    device = ctx.device
    ctx.manual_progress = True  # progress is counted in steps, not in dataset batches
    rest = pass_batches(dataset, 0, schedule.batch_size * distributed.world_size(), device)
    with forked_rng(device), contextlib.closing(rest):
        batch = next(rest, None)
        if batch is None:
            raise ValueError(
                "the dataset gave no training pairs: are the source images at least as "
                "large as the crop?"
            )
        torch.manual_seed(schedule.seed)
        session = _Session(build(batch), dataset, schedule, ctx, batch, started)
        try:
            resumed = session.resume()
        except _StartOver:
            torch.manual_seed(schedule.seed)
            session = _Session(build(batch), dataset, schedule, ctx, batch, started)
            resumed = False
        session.run(resumed, None if resumed else _chained(batch, rest))
    return session.trainer, session.outcome


def _chained(first: PairBatch, rest: Iterator[PairBatch]) -> Iterator[PairBatch]:
    yield first
    yield from rest


class _Session:
    """One run of `fit`: position, timing, samples and checkpoints around the trainer's steps."""

    def __init__(
        self,
        trainer: Trainer,
        dataset: Stream,
        schedule: Schedule,
        ctx: NodeContext,
        first: PairBatch,
        started: float,
    ):
        if distributed.active():
            distributed.wrap(trainer, ctx.device)
        self.trainer = trainer
        self.dataset = dataset
        self.schedule = schedule
        self.ctx = ctx
        self.preview = first[:SAMPLE_ITEMS]
        self.position = Position()
        self.recent: deque[dict[str, float]] = deque(maxlen=RECENT_STEPS)
        self.started = started
        self.seconds_before = 0.0
        self.last_save = time.perf_counter()
        self.outcome = Outcome(self.position, self._total())
        self.main = distributed.is_main()
        work_dir = ctx.work_dir if self.main else Path()  # only rank 0 holds the work folder
        self.checkpoint = work_dir / CHECKPOINT_FILE
        self.samples = Path(schedule.samples) if schedule.samples else work_dir / "samples"
        self.last_sample = -1

    # -- length ------------------------------------------------------------------------------

    def _total(self) -> int | None:
        epochs = self.schedule.epochs
        if epochs is None:
            return self.schedule.steps
        per_epoch = self.position.steps_per_epoch
        return per_epoch * epochs if per_epoch else None

    def _finished(self) -> bool:
        epochs = self.schedule.epochs
        if epochs is None:
            return self.position.step >= self.schedule.steps
        return self.position.epoch >= epochs

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _out_of_time(self) -> bool:
        budget = self.schedule.time_budget
        if budget is None or self._elapsed() < budget:
            return False
        total = self._total()
        of = f" of {total}" if total else ""
        self.outcome.stopped = (
            f"time budget of {budget:g} s used up after step {self.position.step}{of}"
        )
        return True

    # -- running -----------------------------------------------------------------------------

    def run(self, resumed: bool, first_pass: Iterator[PairBatch] | None) -> None:
        """Train to the end; `first_pass`, when given, is pass 0 as fit already began it."""
        first_info = {"resumed": self.position.step} if resumed else {}
        self.ctx.progress(self.position.step, self._total(), **first_info)
        self.seconds_before = self.position.seconds
        try:
            while not self._finished() and not self._stopping():
                self._run_epoch(first_pass)
                first_pass = None
        except RunCancelled:
            self._save()
            raise
        except RuntimeError:
            if not (distributed.active() and self.ctx.cancel.cancelled):
                raise
            # under DDP a process that stopped first breaks the others' collectives: what
            # they hold is the state after their last whole step, saved like any stop
            self._save()
            raise RunCancelled("the run was cancelled") from None
        self._update_seconds()
        self.outcome.planned = self._total()
        self.outcome.losses = self._recent_losses()
        if self.outcome.stopped:
            self.ctx.progress(self.position.step, self._total(), stopped=self.outcome.stopped)
        if self.schedule.sample_every and self.last_sample != self.position.step and self.main:
            self.ctx.progress(self.position.step, self._total(), sample=self._write_sample())
        self._save()  # the finished state, kept until the engine has stored the result
        if self.main:
            self.ctx.on_result_stored(self._remove_checkpoint)

    def _remove_checkpoint(self) -> None:
        self.checkpoint.unlink(missing_ok=True)

    def _run_epoch(self, batches: Iterator[PairBatch] | None) -> None:
        """Train on the rest of the current pass, or until finished or out of time.

        `batches` is that pass when the caller has already begun it.
        """
        pos, schedule = self.position, self.schedule
        if batches is None:
            batches = pass_batches(
                self.dataset,
                pos.epoch,
                schedule.batch_size * distributed.world_size(),
                self.ctx.device,
                skip=pos.offset,
            )
        with contextlib.closing(batches):
            for pair in batches:
                if self._stopping():
                    return
                self._check_channels(pair)
                lr = self._set_learning_rates()
                part = distributed.shard(pair) if distributed.active() else pair
                pos.offset += len(pair)
                if part is None:  # too few pairs to give every process one: all skip it
                    continue
                losses = self.trainer.step(part)
                pos.step += 1
                if distributed.active():  # the whole batch's losses
                    losses = distributed.mean_losses(losses, self.ctx.device)
                self.recent.append(losses)
                info: dict[str, Any] = {**losses, "epoch": pos.epoch + 1, "lr": lr}
                if schedule.sample_every and pos.step % schedule.sample_every == 0 and self.main:
                    info["sample"] = self._write_sample()
                self.ctx.progress(pos.step, self._total(), **info)
                if self._finished():
                    return
                every = schedule.checkpoint_every
                if time.perf_counter() - self.last_save > CHECKPOINT_SECONDS or (
                    every and pos.step % every == 0
                ):
                    self._save()
        if pos.offset == 0:
            raise ValueError(
                f"pass {pos.epoch + 1} over the dataset gave no training pairs; a dataset "
                "must give the same pairs on every pass"
            )
        pos.steps_per_epoch = pos.steps_per_epoch or pos.step - pos.epoch_start
        pos.epoch += 1
        pos.offset = 0
        pos.epoch_start = pos.step

    def _stopping(self) -> bool:
        """True when out of time; RunCancelled when cancelled. Under DDP the processes
        agree (any one cancelled or out of time stops them all at the same step)."""
        out_of_time = self._out_of_time()
        cancelled = self.ctx.cancel.cancelled
        if distributed.active():
            cancelled, out_of_time = distributed.any_of(
                cancelled, out_of_time, device=self.ctx.device
            )
            if out_of_time and not self.outcome.stopped:
                self.outcome.stopped = (
                    f"time budget used up on another process after step {self.position.step}"
                )
        if cancelled:
            raise RunCancelled("the run was cancelled")
        return out_of_time

    def _set_learning_rates(self) -> float:
        """Apply the decay for the coming step; return the (first) learning rate in use."""
        total = self._total()
        groups = [
            g for optimizer in self.trainer.optimizers.values() for g in optimizer.param_groups
        ]
        if self.schedule.lr_decay and total:
            factor = min(1.0, 2 * (total - self.position.step) / total)
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
        return groups[0]["lr"]

    def _check_channels(self, pair: PairBatch) -> None:
        have = (pair.input.shape[1], pair.target.shape[1])
        want = (self.preview.input.shape[1], self.preview.target.shape[1])
        if have != want:
            raise ValueError(
                f"the dataset mixes pairs of {want[0]}->{want[1]} and {have[0]}->{have[1]} "
                "channels (gray and colour images?); convert the images to one kind "
                "(grayscale, or gray to RGB) before making pairs"
            )

    def _recent_losses(self) -> dict[str, float]:
        if not self.recent:
            return {}
        names = self.recent[-1].keys()
        return {
            name: sum(losses[name] for losses in self.recent) / len(self.recent) for name in names
        }

    def _update_seconds(self) -> None:
        self.position.seconds = self.seconds_before + self._elapsed()

    # -- samples -------------------------------------------------------------------------------

    def _write_sample(self) -> str:
        with evaluating(self.trainer.modules.values()):
            output = self.trainer.predict(self.preview)
        rows = pair_images(self.preview, output)
        tiles = torch.stack([image for item in zip(*rows, strict=True) for image in item])
        grid = contact_sheet(tiles.cpu(), columns=3, padding=2)
        pixels = (grid * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        path = self.samples / f"{self.ctx.node_id}-step{self.position.step:06d}.png"
        write_image(path, pixels, "png", self.ctx.graph_json)
        self.last_sample = self.position.step
        return str(path)

    # -- checkpoints ---------------------------------------------------------------------------

    def _save(self) -> None:
        self._update_seconds()
        if not self.main:
            return
        state = {
            "format": FORMAT,
            "position": asdict(self.position),
            "modules": {name: m.state_dict() for name, m in self.trainer.modules.items()},
            "optimizers": {name: o.state_dict() for name, o in self.trainer.optimizers.items()},
            "rng": _rng_state(self.ctx.device),
            "extra": _extra_state(self.trainer),
        }
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)
        self.last_save = time.perf_counter()

    def resume(self) -> bool:
        """Continue from the work folder's checkpoint, if there is one; True when resumed.

        Under DDP rank 0 reads it and hands it to the others.
        """
        state = None
        try:
            if self.main and self.checkpoint.is_file():
                state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:
            state = exc
        if distributed.active():
            state = distributed.from_main(state)
        if state is None:
            return False
        try:
            if isinstance(state, Exception):
                raise state
            if state.get("format") != FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')!r}")
            for name, module in self.trainer.modules.items():
                module.load_state_dict(state["modules"][name])
            for name, optimizer in self.trainer.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
            _set_rng_state(state["rng"], self.ctx.device)
            if state["extra"]:
                self.trainer.load_extra_state(state["extra"])
            self.position.__dict__.update(state["position"])
        except Exception as exc:  # a checkpoint from another version or a damaged file
            if not self.main:
                raise _StartOver from None
            self.checkpoint.unlink(missing_ok=True)
            self.ctx.item_error(
                str(self.checkpoint),
                f"cannot resume from this checkpoint ({type(exc).__name__}: {exc}); "
                "training starts over",
            )
            raise _StartOver from None
        return True


class _StartOver(Exception):
    """A checkpoint could not be used; training must begin again from fresh networks."""
