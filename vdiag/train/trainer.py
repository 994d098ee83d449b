"""`pretrain`: the training loop behind `vdiag pretrain`, for one process or many under torchrun.

    config → data (index, ρ-clip dataset, distributed sampler) → backbone + method → optimiser
    → epochs of steps → last.pt every epoch, final.pt at the end → Result

Read top-down, `pretrain` is the whole run in six calls:

    _resume_point   the resume rules: fresh folder, or last.pt's config (migrated) and position
    _setup          data, model (DDP under torchrun), sampler, optimiser: the `_Run` every step shares
    _restore        model / optimiser / scaler / RNG state of the resumed checkpoint
    _open_outputs   config.yaml, metrics.jsonl cut back to the resumed step, failure tracker
    _train          epochs → `_train_epoch` (as DINO's `train_one_epoch`) → `_step` per batch
    _finish         the last checkpoints and the Result

Settings are read from the config by index: `resolve_config` fills every default once from the
presets, and a stored config goes through `migrate_config` on resume.

Exactness: clip sampling and augmentation are functions of (seed, epoch, video index), the sampler
order is a function of (seed, epoch), the schedules are functions of the global step, and the
checkpoint carries the method's whole state (momentum encoders, queues), the optimiser, the scaler
and the RNG. So a run resumed from any checkpoint — end of epoch, or mid-epoch after Ctrl-C —
repeats the per-step losses of an uninterrupted run on CPU.

Under torchrun, `batch_size` is the global batch (split evenly over ranks), rank 0 logs and writes,
and every rank agrees on stopping (NaN, Ctrl-C) through an all-reduce.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import statistics
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from vdiag import distributed as dist
from vdiag.checkpoint import dataset_fingerprint, load_checkpoint, non_finite_tensors, save_checkpoint
from vdiag.console import console, note, progress_bar, warn
from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.data.views import SpatialAugment, normalize
from vdiag.errors import Preempted, VdiagError
from vdiag.io import LOCK_NAME, atomic_path, folder_lock, remove_stale_temporaries
from vdiag.methods import METHODS, build_model
from vdiag.methods.base import Method
from vdiag.models.backbones import VideoBackbone
from vdiag.results import Result
from vdiag.train.config import CHANGEABLE_ON_RESUME, config_differences, dump_config, migrate_config
from vdiag.train.monitor import knn_monitor
from vdiag.train.optim import build_optimizer, learning_rate, set_learning_rate

SHORT_VIDEO_POLICY = {"clamp": "pad", "loop": "loop"}  # `data.pad` → the sampler's short-video policy (data/sampling.py)
StepCallback = Callable[[dict], bool]  # gets the step's log record; True asks the run to stop


@dataclass(frozen=True)
class TrainingView:
    """The training view of one clip: temporally consistent augmentation, then normalisation."""

    augment: SpatialAugment

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return normalize(self.augment(clip, generator))


class _EpochSampler(Sampler):
    """The distributed sampler's order for the current epoch, first `skip` indices dropped (resuming
    mid-epoch), as (epoch, index) pairs: one DataLoader, whose workers persist across epochs, serves
    every epoch, and each item carries the epoch its clips and augmentation are drawn for."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler, self.epoch, self.skip = sampler, 0, 0

    def start(self, epoch: int, skip: int) -> None:
        """The next iteration yields epoch `epoch`'s order from position `skip`."""
        self.sampler.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        return ((self.epoch, index) for index in islice(iter(self.sampler), self.skip, None))

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


class _EpochItems(torch.utils.data.Dataset):
    """The training dataset indexed by (epoch, video index): sets the epoch in whichever process reads
    the item, so persistent loader workers draw each epoch's clips (seed 000 §3.1: a function of
    (seed, epoch, video index))."""

    def __init__(self, dataset: VideoClipDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def resolve_data(config: dict) -> DatasetIndex:
    """The training split named by the config; the default synthetic dataset when `data.path` is null.

    Args:
        config: a resolved config (`data.{path,video_root,format,split,split_id}` are read).

    Returns:
        The split's index (videos, labels, and for synthetic data the factor values).

    Raises:
        VdiagError: the data cannot be read (see `vdiag.data.formats.load_index`).
    """
    data = config["data"]
    path = data["path"] or str(default_synthetic_dataset())
    return load_index(path, data["format"], data["split"], data["split_id"], video_root=data["video_root"])


def build_training_dataset(config: dict, index: DatasetIndex, decoder: str) -> VideoClipDataset:
    """ρ augmented clips per video, as the config's `data` and `augment` sections describe (seed 000 §3.1).

    Args:
        config: a resolved config.
        index: the training split (`resolve_data`).
        decoder: 'auto', 'decord' or 'pyav'.

    Returns:
        A dataset whose items hold `clips` of shape (ρ, C, T + extra_frames, H, W), H = W =
        `data.size`, sampled and augmented as a function of (seed, epoch, video index).
    """
    data, augment = config["data"], config["augment"]
    view = TrainingView(
        SpatialAugment(
            size=data["size"],
            crop_scale=tuple(augment["crop_scale"]),
            flip_p=augment["flip_p"],
            jitter_p=augment["jitter_p"],
            grayscale_p=augment["grayscale_p"],
            blur_p=augment["blur_p"],
        )
    )
    clip = ClipSpec(
        num_frames=data["frames"],
        stride=data["stride"],
        extra_frames=METHODS[config["method"]].extra_frames,
        short_video=SHORT_VIDEO_POLICY[data["pad"]],
    )
    return VideoClipDataset(index, clip, "train", data["positives"], view, decoder, seed=config["seed"])


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")  # Ctrl-C; preemption (SLURM, Kubernetes, torchrun); SLURM's --signal


class _StopFlag:
    """Ctrl-C, SIGTERM and SIGUSR1 set a flag checked between steps: the run saves at the next step
    boundary. A second Ctrl-C interrupts at once; a second SIGTERM changes nothing (the save is coming).

    Loader worker processes inherit the handlers (fork) and receive the terminal's or the
    scheduler's signal too: there the handlers do nothing, so the message prints once.
    """

    def __init__(self):
        self.requested = False
        self.signal: str | None = None  # the first stop signal received
        self.pid = os.getpid()

    @property
    def by_signal(self) -> bool:
        return self.signal is not None

    @contextmanager
    def installed(self):
        previous = {}
        try:
            for name in STOP_SIGNALS:
                if hasattr(signal, name):
                    previous[name] = signal.signal(getattr(signal, name), self._handle)
        except ValueError:  # not the main thread
            pass
        try:
            yield self
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)

    def _handle(self, signum, frame):
        if os.getpid() != self.pid:  # a loader worker: the main process saves and stops
            return
        name = signal.Signals(signum).name
        if self.signal == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        if self.signal is not None:
            return
        self.requested, self.signal = True, name
        if dist.is_main():
            hint = " (Ctrl-C again to abort without saving)" if name == "SIGINT" else ""
            console.print(f"{name}: saving and stopping after this step{hint}…", highlight=False, markup=False)


def pretrain(
    config: dict,
    out: str | Path,
    *,
    device: str = "cpu",
    decoder: str = "auto",
    resume: bool | str = False,
    stop_after_epochs: int | None = None,
    on_step: StepCallback | None = None,
) -> Result:
    """Train `config['method']` and write checkpoints under `out`.

    Args:
        config: a resolved config (`vdiag.train.config.resolve_config`); ignored on resume except
            for `train.epochs`, which may be raised.
        out: the run folder (config.yaml, metrics.jsonl, last.pt, final.pt, pretrain.json).
        device: 'cpu' or 'cuda' (each torchrun rank takes its LOCAL_RANK GPU).
        decoder: 'auto', 'decord' or 'pyav'.
        resume: True: continue from `out/last.pt`; "auto": continue when `out/last.pt` exists, else
            start a new run (a requeued job runs the same command). A resumed run refuses a
            `config` that differs from the stored one except in `CHANGEABLE_ON_RESUME`.
        stop_after_epochs: stop (as after Ctrl-C, checkpoint saved) once this many more epochs
            are done, e.g. to fit a job's time limit; resume later.
        on_step: called with each step's record; returning True stops like Ctrl-C.

    Returns:
        The run's `Result`: `checkpoint` (final.pt, or last.pt when stopped early), metrics
        (`epochs_done`, `steps_done`, `seconds`, `clips_per_s`, `final_<loss>` per-step means of
        the last epoch, `failed_videos`, `skipped_steps`), the config, and `details.finished`.

    Raises:
        VdiagError: `out` already holds a run (without `resume`) or holds another method's run; a
            resumed run's epochs lowered or already done; a missing weights file; a batch size the
            processes cannot split or larger than the data; a loss that became NaN or infinite.
        KeyboardInterrupt: after Ctrl-C, once last.pt is saved.
        Preempted: after SIGTERM or SIGUSR1, once last.pt is saved (`vdiag` exits with code 75).
    """
    owned = not dist.is_initialized()  # a caller that joined the group (e.g. `eval finetune`) keeps it
    device = dist.setup(device)
    out = Path(out)
    try:
        if resume == "auto":
            resume = (out / "last.pt").is_file()
            if not resume and dist.is_main():
                note(f"{out} holds no checkpoint: starting a new run")
        config, position, checkpoint = _resume_point(out, config, resume)
        with _claimed(out, fresh=checkpoint is None):
            run = _setup(config, out, device, decoder, on_step, checkpoint)
            if checkpoint is not None:
                _restore(run, checkpoint, position)
            _open_outputs(run, position)
            stop = _train(run, position, stop_after_epochs)
            return _finish(run, position, stop)
    finally:
        if owned:
            dist.teardown()


_RUN_FILES = ("config.yaml", "metrics.jsonl", "tensorboard", "pretrain.json")


@contextmanager
def _claimed(out: Path, fresh: bool):
    """The run folder for this process (rank 0): created, writable, locked, stale temporaries removed;
    a new run that fails before its first checkpoint leaves nothing behind."""
    if not dist.is_main():
        yield
        return
    existed = out.exists()
    before = {p.name for p in out.iterdir()} if out.is_dir() else set()
    with folder_lock(out):
        removed = remove_stale_temporaries(out)
        if removed:
            note(f"removed {removed} temporary file(s) left in {out} by an interrupted write")
        try:
            yield
        except BaseException:
            if fresh and not (out / "last.pt").exists():
                _remove_stub(out, existed, before)
            raise


def _remove_stub(out: Path, existed: bool, before: set[str]) -> None:
    """What a new run wrote before failing without a checkpoint: the folder it created, or the files it
    added to a folder that existed (never one that was there before)."""
    if not existed and all(p.name in (*_RUN_FILES, LOCK_NAME) for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in set(_RUN_FILES) - before:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


@dataclass
class Position:
    """Where a run stands: `epoch` epochs and `step` steps of epoch `epoch` done (0-based epoch),
    `global_step` steps in all, the per-epoch summaries so far, and the loss sums of the epoch's
    trained steps so far (`sums` over `counted` steps), so a mid-epoch resume averages the whole epoch."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    counted: int = 0

    def stored(self, finished: bool = False) -> dict:
        """The checkpoint's `position` entry."""
        keys = {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "finished": finished}
        return keys | {"sums": dict(self.sums), "counted": self.counted}


def _resume_point(out: Path, config: dict, resume: bool) -> tuple[dict, Position, dict | None]:
    """The resume rules, in one place: (config to train, position, checkpoint to restore or None).

    A new run refuses a folder that holds one. A resumed run takes the config stored in last.pt
    (completed by `migrate_config`); `config` may differ from it only in `CHANGEABLE_ON_RESUME`
    (epochs only raised; a changed lr or clip is said), so a command that asks for another method or
    other settings is refused rather than silently ignored. A run that already did its epochs is refused.
    """
    if not resume:
        if (out / "last.pt").exists():
            raise VdiagError(f"{out} already holds a run (last.pt); pass --resume to continue it, or choose another --out")
        return copy.deepcopy(config), Position(), None
    checkpoint = load_checkpoint(out / "last.pt")
    saved = migrate_config(checkpoint["config"])
    if saved["method"] != config["method"]:
        raise VdiagError(f"{out} holds a {saved['method']} run, not {config['method']}; drop --method or pick another --out")
    differences = config_differences(saved, config)
    if differences:
        shown = "; ".join(f"{key} {old!r} → {new!r}" for key, old, new in differences[:4])
        more = f" (and {len(differences) - 4} more)" if len(differences) > 4 else ""
        changeable = ", ".join(k for k in CHANGEABLE_ON_RESUME)
        raise VdiagError(
            f"the run in {out} was made with other settings than this command asks: {shown}{more}; only {changeable} "
            "can change when resuming — use the run's settings, or choose another --out for a new run"
        )
    epochs = config["train"]["epochs"]
    if epochs < saved["train"]["epochs"]:
        raise VdiagError(f"the run in {out} is set for {saved['train']['epochs']} epochs; on resume --epochs can only be raised")
    changed = [(key, old, new) for key, old, new in config_differences(saved, config, ignore=()) if key in CHANGEABLE_ON_RESUME]
    for key, _, new in changed:
        section, name = key.split(".")
        saved[section][name] = new
    if dist.is_main():
        for key, old, new in changed:
            if key in ("train.lr", "train.clip_grad"):
                note(f"resuming with {key} {new} (the run had {old}); from here the run differs from an uninterrupted one")
    stored = checkpoint["position"]
    if stored.get("finished") and stored["epoch"] >= epochs:
        raise VdiagError(f"the run in {out} already finished {epochs} epochs; raise --epochs to train longer")
    position = Position(
        stored["epoch"],
        stored["step"],
        stored["global_step"],
        list(checkpoint.get("history", [])),
        dict(stored.get("sums", {})),
        int(stored.get("counted", 0)),
    )
    return saved, position, checkpoint


@dataclass
class _Run:
    """What the steps of one run share: the config, data, model, optimiser, outputs and counters."""

    config: dict
    out: Path
    device: str
    index: DatasetIndex
    dataset: VideoClipDataset
    method: Method  # the module whose state is saved
    model: torch.nn.Module  # what the step calls: the method, or its DDP wrapper
    sampler: DistributedSampler
    optimizer: torch.optim.Optimizer
    autocast: Callable
    scaler: torch.amp.GradScaler | None
    per_rank: int
    steps_per_epoch: int
    on_step: StepCallback | None
    main: bool = field(default_factory=dist.is_main)
    world: int = field(default_factory=dist.world_size)
    log: _MetricsLog | None = None
    tracker: FailureTracker | None = None
    started: float = 0.0
    clips_done: int = 0
    skipped: int = 0
    recent_losses: deque = field(default_factory=lambda: deque(maxlen=SPIKE_WINDOW))
    spikes: int = 0
    last_save: float = 0.0
    loader: DataLoader | None = None  # built on the first epoch, kept (persistent workers)
    epoch_sampler: _EpochSampler | None = None
    pending: list = field(default_factory=list)  # steps whose losses are still on the device (train.check_finite_every)

    @property
    def train(self) -> dict:
        return self.config["train"]

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.train["epochs"]

    @property
    def warmup_steps(self) -> int:
        return round(self.train["warmup_epochs"] * self.steps_per_epoch)

    @property
    def clips_per_step(self) -> int:
        return self.train["batch_size"] * self.config["data"]["positives"]


def _setup(config: dict, out: Path, device: str, decoder: str, on_step: StepCallback | None, checkpoint: dict | None = None) -> _Run:
    """Data, model (DDP-wrapped under torchrun), sampler and optimiser, in the order that fixes the RNG draws.

    The training split's fingerprint is recorded in a new run's config (`data.fingerprint`); a
    resumed run refuses a split that changed since."""
    weights = config["backbone"]["weights"]
    if weights and not Path(weights).is_file():  # before any data is generated or read
        raise VdiagError(f"weights file {weights} does not exist")
    torch.manual_seed(config["seed"])
    index = resolve_data(config)
    fingerprint = dataset_fingerprint(index.records, index.root)
    recorded = config["data"]["fingerprint"]
    if checkpoint is not None and recorded and recorded != fingerprint:
        raise VdiagError(
            f"the training data changed since this run started ({index.describe()}; fingerprint {fingerprint}, "
            f"the run recorded {recorded}); resume with the same data, or start a new run"
        )
    config["data"]["fingerprint"] = fingerprint
    dataset = build_training_dataset(config, index, decoder)
    method = build_model(config, index).to(device)
    world, train = dist.world_size(), config["train"]
    if train["batch_size"] % world:
        raise VdiagError(f"--batch-size {train['batch_size']} is the global batch and must be divisible by the {world} processes")
    per_rank = train["batch_size"] // world
    sampler = DistributedSampler(dataset, num_replicas=world, rank=dist.rank(), shuffle=True, seed=config["seed"], drop_last=True)
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise VdiagError(f"{index.describe()}: fewer videos than one batch of {train['batch_size']}; lower --batch-size")
    _apply_backbone_options(method, train)
    model, method = _distribute(method, device, world)
    optimizer = build_optimizer(method, train["optimizer"], train["lr"], weight_decay=train["weight_decay"], momentum=train["momentum"])
    autocast, scaler = _mixed_precision(device, train["amp"])
    return _Run(
        config=config,
        out=out,
        device=device,
        index=index,
        dataset=dataset,
        method=method,
        model=model,
        sampler=sampler,
        optimizer=optimizer,
        autocast=autocast,
        scaler=scaler,
        per_rank=per_rank,
        steps_per_epoch=steps_per_epoch,
        on_step=on_step,
    )


def _apply_backbone_options(method: Method, train: dict) -> None:
    """`train.channels_last_3d` (every backbone of the method: online, momentum, slow), and
    `train.activation_checkpointing` and `train.compile` (the trained backbone only; copies run without
    gradient and keep nothing to recompute).

    Raises:
        VdiagError: an option the backbone does not support (a token model in channels-last; a body
            without known blocks for checkpointing).
    """
    if train["channels_last_3d"]:
        for module in method.modules():
            if isinstance(module, VideoBackbone):
                module.set_channels_last_3d(True)
    if train["activation_checkpointing"]:
        method.backbone.set_activation_checkpointing(True)
    if train["compile"]:
        method.backbone.body.compile()


def _distribute(method: Method, device: str, world: int) -> tuple[torch.nn.Module, Method]:
    """(model to call, method to save): DDP around the method under torchrun, SyncBN on GPUs."""
    if world == 1:
        return method, method
    if device.startswith("cuda") and method.sync_batchnorm:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    elif method.sync_batchnorm and dist.is_main():
        note("SyncBatchNorm needs GPUs; on CPU each process normalises over its own batch")
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    model = torch.nn.parallel.DistributedDataParallel(method, device_ids=device_ids)
    return model, method


def _restore(run: _Run, checkpoint: dict, position: Position) -> None:
    """Model, optimiser, scaler and RNG state of a resumed checkpoint (after everything is built)."""
    run.method.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scaler is not None and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if run.device.startswith("cuda") and checkpoint["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    if run.main:
        note(f"resuming {run.out / 'last.pt'} at epoch {position.epoch + 1}, step {position.step + 1}")


def _open_outputs(run: _Run, position: Position) -> None:
    """config.yaml, the step log (cut back to the resumed step) and the failure tracker; the opening note."""
    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(run.out / "config.yaml") as tmp:
            tmp.write_text(dump_config(run.config))
        _truncate_log(run.out / "metrics.jsonl", position.global_step)
    run.log = _MetricsLog(run.out, enabled=run.main)
    run.tracker = FailureTracker(
        len(run.dataset), run.config["data"]["max_failures"], warn=warn if run.main else None, missing=len(run.index.missing)
    )
    if run.main:
        config, train = run.config, run.train
        processes = f", {run.world} processes" if run.world > 1 else ""
        note(
            f"training {config['method']} on {config['backbone']['name']} ({run.device}{processes}): "
            f"{run.index.describe()}; {train['epochs']} epochs × {run.steps_per_epoch} steps of {train['batch_size']} videos "
            f"× ρ = {config['data']['positives']}"
        )


def _save(run: _Run, position: Position, name: str, finished: bool = False) -> Path | None:
    """A checkpoint of everything a resumed run needs (rank 0 writes; every rank waits).

    Every tensor of the model (parameters and buffers) and the optimiser is checked first: a
    non-finite state is never written, so last.pt is always the last finite position."""
    model, optimizer = run.method.state_dict(), run.optimizer.state_dict()
    bad = non_finite_tensors(model, optimizer["state"])
    if _agree(bool(bad), run.device):
        where = f"{len(bad)} tensors, e.g. {', '.join(bad[:3])}" if bad else "on another process"
        raise VdiagError(
            f"the model's state became NaN or infinite ({where}) {_where(position)} while the loss was still finite; "
            f"training stopped and {_kept(run)}. {_lower_lr_advice(run)}"
        )
    _warn_if_huge(run, model, position)
    path = None
    if run.main:
        path = save_checkpoint(
            run.out / name,
            config=run.config,
            model=model,
            position=position.stored(finished),
            optimizer=optimizer,
            scaler=run.scaler.state_dict() if run.scaler is not None else None,
            rng={"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if run.device.startswith("cuda") else []},
            history=position.history,
        )
    run.last_save = time.perf_counter()
    dist.barrier()
    return path


HUGE_WEIGHT = 1e10  # a finite weight this large means the run is diverging (reported, not stopped)
SPIKE_FACTOR, SPIKE_WINDOW, SPIKE_MIN_STEPS, SPIKE_WARNINGS = 10.0, 100, 10, 5


def _warn_if_huge(run: _Run, model: dict, position: Position) -> None:
    largest = max((float(v.abs().max()) for v in model.values() if v.is_floating_point() and v.numel()), default=0.0)
    if largest > HUGE_WEIGHT and run.main:
        warn(f"the model holds values up to {largest:.3g} at epoch {position.epoch + 1}: the run is diverging. {_lower_lr_advice(run)}")


def _where(position: Position) -> str:
    if position.step == 0 and position.epoch > 0:
        return f"by the end of epoch {position.epoch}"
    return f"by epoch {position.epoch + 1}, step {position.step}"


def _kept(run: _Run) -> str:
    last = run.out / "last.pt"
    return f"kept the last good checkpoint {last} (every tensor finite)" if last.exists() else "no checkpoint was written yet"


def _lower_lr_advice(run: _Run) -> str:
    """The exact command to continue (or restart) with a learning rate ten times lower."""
    lower = format(float(format(run.train["lr"] / 10, ".3g")), "g")  # 0.0002, 1000: as typed back with --set
    clip = "" if run.train["clip_grad"] else " --set train.clip_grad=1.0"
    if (run.out / "last.pt").exists():
        return f"Resume with a lower learning rate: vdiag pretrain --resume --out {run.out} --set train.lr={lower}{clip}"
    return f"Start again with a lower learning rate: add --set train.lr={lower}{clip} to the command (or check the data)"


def _train(run: _Run, position: Position, stop_after_epochs: int | None) -> _StopFlag | None:
    """Epochs until the last, a stop request or `stop_after_epochs`: None when done, else the stop
    (its `signal` is SIGINT / SIGTERM / SIGUSR1, or None for `on_step` and `stop_after_epochs`)."""
    stop = _StopFlag()
    run.started = run.last_save = time.perf_counter()
    epochs_run = 0
    with stop.installed(), progress_bar("clips", fields=("losses",)) as progress:
        task = progress.add_task("", total=None, losses="")
        while position.epoch < run.train["epochs"]:
            means = _train_epoch(run, position, stop, progress, task)
            if means is None:
                return stop
            summary = {"epoch": position.epoch + 1, "global_step": position.global_step, **means}
            summary["seconds"] = time.perf_counter() - run.started
            summary.update(
                knn_monitor(run.method, run.config, run.device, epoch=position.epoch + 1, step=position.global_step, log=run.log)
            )
            position.history.append(summary)
            run.log.epoch(summary)
            position.epoch, position.step = position.epoch + 1, 0
            position.sums, position.counted = {}, 0
            epochs_run += 1
            _save(run, position, "last.pt")
            _keep_epoch_checkpoint(run, position)
            if stop.requested and position.epoch < run.train["epochs"]:  # asked during the epoch's last step: saved just now
                return stop
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs and position.epoch < run.train["epochs"]:
                return stop
    return None


def _keep_epoch_checkpoint(run: _Run, position: Position) -> None:
    """`epoch_NNNN.pt`, a copy of the just-saved last.pt, every `train.save_every_epochs` epochs (`--save-every`)."""
    every = run.train["save_every_epochs"]
    if not every or position.epoch % every or not run.main:
        return
    with atomic_path(run.out / f"epoch_{position.epoch:04d}.pt") as tmp:
        shutil.copyfile(run.out / "last.pt", tmp)


def _loader(run: _Run, position: Position) -> DataLoader:
    """The run's one DataLoader, positioned at `position` (epoch, step): built once, so with
    `data.persistent_workers` the worker processes (and their decoders) live for the whole run;
    `data.prefetch_factor` batches per worker are loaded ahead; pinned memory on CUDA for
    non-blocking copies."""
    data = run.config["data"]
    if run.loader is None:
        run.epoch_sampler = _EpochSampler(run.sampler)
        workers = data["workers"]
        run.loader = DataLoader(
            _EpochItems(run.dataset),
            batch_size=run.per_rank,
            sampler=run.epoch_sampler,
            num_workers=workers,
            collate_fn=collate_clips,
            drop_last=True,
            pin_memory=run.device.startswith("cuda"),
            persistent_workers=workers > 0 and data["persistent_workers"],
            prefetch_factor=data["prefetch_factor"] if workers > 0 else None,
        )
    run.epoch_sampler.start(position.epoch, position.step * run.per_rank)
    run.dataset.set_epoch(position.epoch)
    return run.loader


def _train_epoch(run: _Run, position: Position, stop: _StopFlag, progress, task) -> dict[str, float] | None:
    """The rest of epoch `position.epoch` (as DINO's `train_one_epoch`): its per-step mean losses,
    or None when a stop was requested (on any rank) before it ended.

    The losses stay on the device and are read back (one sync) every `train.check_finite_every`
    steps, at the epoch's end, before any save and before stopping; `_flush` then checks them, logs
    them and adds them to the epoch's sums, in step order."""
    loader = _loader(run, position)
    run.method.start_epoch(position.epoch)
    progress.reset(
        task,
        total=run.steps_per_epoch * run.clips_per_step,
        completed=position.step * run.clips_per_step,
        description=f"epoch {position.epoch + 1}/{run.train['epochs']}",
    )
    every = run.train["check_finite_every"]
    for batch in loader:
        losses, lr = _step(run, position, batch)
        position.step += 1
        position.global_step += 1
        if losses is None:
            run.skipped += 1
            progress.advance(task, run.clips_per_step)
        else:
            run.pending.append((Position(position.epoch, position.step, position.global_step), lr, losses))
        if len(run.pending) >= every and _flush(run, position, progress, task):
            stop.requested = True
        if _agree(stop.requested, run.device):
            stop.requested = True  # on every rank, whichever asked
            _flush(run, position, progress, task)
            if position.step < run.steps_per_epoch:
                return None
            break  # the epoch's last step: end it normally, then stop
        if position.step < run.steps_per_epoch and _save_due(run, position):
            if _flush(run, position, progress, task):
                stop.requested = True
            _save(run, position, "last.pt")
    if _flush(run, position, progress, task):
        stop.requested = True
    return {name: value / max(position.counted, 1) for name, value in position.sums.items()}


def _flush(run: _Run, position: Position, progress, task) -> bool:
    """Read the pending steps' losses back (one host sync), stop at the first non-finite one, and log
    and sum the others in step order: True if `on_step` asked to stop.

    Raises:
        VdiagError: a pending step's loss is NaN or infinite (naming that step).
    """
    if not run.pending:
        return False
    pending, run.pending = run.pending, []
    names = [list(losses) for _, _, losses in pending]
    values = torch.stack([value for _, _, losses in pending for value in losses.values()]).tolist()
    stop, cursor = False, 0
    for (at, lr, _), keys in zip(pending, names):
        losses = dict(zip(keys, values[cursor : cursor + len(keys)]))
        cursor += len(keys)
        _check_finite(run, losses, at)
        position.counted += 1
        for name, value in losses.items():
            position.sums[name] = position.sums.get(name, 0.0) + value
        _watch_spikes(run, at, losses["loss"])
        stop = _log_step(run, at, losses, lr, progress, task) or stop
    return stop


def _save_due(run: _Run, position: Position) -> bool:
    """Whether a periodic mid-epoch last.pt is due (`train.save_every_steps` / `save_every_minutes`), on every rank alike."""
    every_steps, every_minutes = run.train["save_every_steps"], run.train["save_every_minutes"]
    due = bool(every_steps) and position.global_step % every_steps == 0
    if every_minutes and not due:
        due = _agree(time.perf_counter() - run.last_save >= 60 * every_minutes, run.device)
    return due


def _watch_spikes(run: _Run, position: Position, loss: float) -> None:
    """Warn when a step's loss exceeds `SPIKE_FACTOR` × the median of the last `SPIKE_WINDOW` steps."""
    recent = run.recent_losses
    if len(recent) >= SPIKE_MIN_STEPS:
        median = statistics.median(recent)
        if median > 0 and loss > SPIKE_FACTOR * median:
            run.spikes += 1
            if run.main and run.spikes <= SPIKE_WARNINGS:
                more = " (further spikes are counted in loss_spikes)" if run.spikes == SPIKE_WARNINGS else ""
                warn(
                    f"loss spike at epoch {position.epoch + 1}, step {position.step}: {loss:.4g} is "
                    f"{loss / median:.0f}× the running median {median:.4g}{more}"
                )
    recent.append(loss)


def _step(run: _Run, position: Position, batch: dict) -> tuple[dict[str, torch.Tensor] | None, float | None]:
    """One optimiser step at `position.global_step`: (losses as 0-dim float32 tensors on the device, learning
    rate); (None, None) for a skipped batch. With `train.check_finite_every` 1 the loss is read back here
    and a non-finite one stops the run before the optimiser steps."""
    run.tracker.update(batch)
    if not _batch_usable(batch, run.per_rank, run.world, run.device):
        return None, None
    train = run.train
    lr = learning_rate(
        position.global_step,
        run.total_steps,
        train["lr"],
        warmup_steps=run.warmup_steps,
        min_lr_ratio=train["min_lr_ratio"],
        schedule=train["schedule"],
        milestones=train["milestones"],
        gamma=train["gamma"],
    )
    set_learning_rate(run.optimizer, lr)
    every = train["check_finite_every"]
    losses = _train_step(
        run.model,
        run.method,
        run.optimizer,
        run.scaler,
        run.autocast,
        batch,
        run.device,
        train["clip_grad"],
        train["accumulate"],
        every == 1,
    )
    if every == 1:
        _check_finite(run, {name: float(value) for name, value in losses.items()}, Position(position.epoch, position.step + 1))
    run.method.after_step((position.global_step + 1) / run.total_steps)
    return losses, lr


def _log_step(run: _Run, position: Position, losses: dict[str, float], lr: float, progress, task) -> bool:
    """The step's record to metrics.jsonl, TensorBoard and the progress bar; True if `on_step` asks to stop."""
    run.clips_done += run.clips_per_step
    record = {"epoch": position.epoch + 1, "step": position.step, "global_step": position.global_step, "lr": lr, **losses}
    record["clips_per_s"] = run.clips_done / max(time.perf_counter() - run.started, 1e-9)
    run.log.step(record)
    progress.update(task, advance=run.clips_per_step, losses=_loss_text(losses))
    return run.on_step is not None and bool(run.on_step(record))


def _finish(run: _Run, position: Position, stop: _StopFlag | None) -> Result:
    """The last checkpoints (final.pt and a finished last.pt, or last.pt when stopped) and the Result.

    Ctrl-C ends in KeyboardInterrupt and SIGTERM / SIGUSR1 in `Preempted`, once last.pt is saved."""
    seconds = time.perf_counter() - run.started
    run.log.close()
    out = run.out
    interrupted = stop is not None
    if interrupted:
        path = _save(run, position, "last.pt") if position.step else out / "last.pt"  # at an epoch end it is saved
        where = f"stopped at epoch {position.epoch + 1}, step {position.step}; saved {path}"
        if stop.signal in ("SIGTERM", "SIGUSR1"):
            raise Preempted(f"{stop.signal}: {where}. Continue with: vdiag pretrain --resume auto --out {out} (exit code 75)")
        if run.main:
            note(f"{where}. Continue with: vdiag pretrain --resume --out {out}")
        if stop.signal == "SIGINT":
            raise KeyboardInterrupt
        final_path = out / "last.pt"
    else:
        _save(run, position, "final.pt", finished=True)
        _save(run, position, "last.pt", finished=True)
        final_path = out / "final.pt"
    history = position.history
    metrics = {"epochs_done": position.epoch, "steps_done": position.global_step, "seconds": seconds}
    metrics["clips_per_s"] = run.clips_done / max(seconds, 1e-9)
    if history:
        metrics.update({f"final_{k}": v for k, v in history[-1].items() if k not in ("epoch", "global_step", "seconds")})
    metrics.update(run.tracker.summary())  # missing and failed videos, padded clips, decoder switches, frame-count mismatches
    metrics["skipped_steps"] = run.skipped
    metrics["loss_spikes"] = run.spikes
    result = Result(
        command="pretrain",
        checkpoint=str(final_path),
        data=str(run.index.root),
        metrics=metrics,
        config=run.config,
        files=[str(final_path), str(out / "config.yaml"), str(out / "metrics.jsonl")],
        details={
            "finished": not interrupted,
            "run_dir": str(out),
            "config_file": str(out / "config.yaml"),
            "metrics_log": str(out / "metrics.jsonl"),
            "history": history,
            # what bit-for-bit reproduction also needs: float reductions differ with the number of
            # intra-op threads (measured: DCLR seed 1 on the static-shortcut benchmark reads the
            # trajectory at 0.610 with 1 thread, 0.690 with 2; docs/training.md, Reproducibility)
            "environment": {"torch": torch.__version__, "device": str(run.device), "intra_op_threads": torch.get_num_threads()},
        },
    )
    if run.main:
        result.write(out / "pretrain.json")
    return result


def _loss_text(losses: dict[str, float]) -> str:
    """'loss 1.23' plus the parts when there are several (a single part just repeats the loss)."""
    parts = [k for k in losses if k != "loss"]
    shown = ["loss"] + (parts if len(parts) > 1 else [])
    return " ".join(f"{k} {losses[k]:.3g}" for k in shown)


def _mixed_precision(device: str, amp: bool | str):
    """(autocast context factory, GradScaler or None) for `train.amp`.

    'auto': autocast on CUDA (bf16 where supported, else fp16 with a scaler), off on CPU; true: the
    same on CUDA and bf16 autocast on CPU; false: off. The numerically sensitive parts of every
    method run in float32 whatever this says (`vdiag.losses.precision`).
    """
    if amp is False or (amp == "auto" and not device.startswith("cuda")):
        return nullcontext, None
    if not device.startswith("cuda"):
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def micro_batches(batch: dict, count: int) -> list[tuple[dict, float]]:
    """`batch` split along its videos into `count` near-equal parts, each with its share of the videos.

    Tensors (and dicts of tensors) whose first dimension is the batch's video count are split; other
    entries are kept whole. A mean loss over the batch is the share-weighted sum of the parts' means.

    Args:
        batch: a collated batch (`clips` (n, ρ, C, T, H, W), labels, factors, …).
        count: parts (`train.accumulate`); at most n non-empty parts are returned.

    Returns:
        [(part, n_part / n)].
    """
    n = batch["clips"].shape[0]
    if count <= 1:
        return [(batch, 1.0)]
    bounds = torch.linspace(0, n, min(count, n) + 1).round().long().tolist()

    def part(value, start, stop):
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n:
            return value[start:stop]
        if isinstance(value, dict):
            return {k: part(v, start, stop) for k, v in value.items()}
        if isinstance(value, list) and len(value) == n:
            return value[start:stop]
        return value

    return [({**{k: part(v, a, b) for k, v in batch.items()}, "size": b - a}, (b - a) / n) for a, b in zip(bounds, bounds[1:])]


def _train_step(
    model, method: Method, optimizer, scaler, autocast, batch: dict, device: str, clip_grad, accumulate: int = 1, check: bool = True
) -> dict[str, torch.Tensor]:
    """Forward and backward over `accumulate` micro-batches, then one optimiser step: the losses as 0-dim
    float32 device tensors, averaged over micro-batches and ranks. With `check`, a non-finite loss is
    read back here and the optimiser does not step (the caller stops the run)."""
    batch = _to_device(batch, device)
    optimizer.zero_grad(set_to_none=True)
    parts = micro_batches(batch, accumulate)
    totals: dict[str, torch.Tensor] = {}
    for index, (part, share) in enumerate(parts):
        with autocast():
            outputs = model(part)
        for name, value in outputs.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() * share
        if len(parts) == 1 and check and not math.isfinite(float(dist.all_reduce_sum(totals["loss"].clone()))):
            return {name: dist.all_reduce_sum(value) / dist.world_size() for name, value in totals.items()}  # no backward, no step
        loss = outputs["loss"] * share if share != 1.0 else outputs["loss"]
        # DDP averages the gradients once, after the last micro-batch
        synced = model.no_sync() if index < len(parts) - 1 and hasattr(model, "no_sync") else nullcontext()
        with synced:
            (scaler.scale(loss) if scaler is not None else loss).backward()
    values = {name: dist.all_reduce_sum(value) / dist.world_size() for name, value in totals.items()}
    if check and not math.isfinite(float(values["loss"])):
        return values
    if scaler is not None:
        scaler.unscale_(optimizer)
    method.before_optimizer_step()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(method.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return values


def _to_device(batch: dict, device: str) -> dict:
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {k: move(v) for k, v in batch.items()}


def _batch_usable(batch: dict, per_rank: int, world: int, device: str) -> bool:
    """One process trains on any batch of ≥ 2 videos; under DDP every rank needs a full batch
    (gathers need equal sizes), so a step with an unreadable video anywhere is skipped everywhere."""
    if world == 1:
        return batch.get("size", 0) >= 2
    full = torch.tensor(float(batch.get("size", 0) == per_rank), device=device)
    return bool(dist.all_reduce_sum(full) == world)


def _agree(flag: bool, device: str) -> bool:
    """Whether any rank asked to stop (so all stop at the same step)."""
    if dist.world_size() == 1:
        return flag
    return bool(dist.all_reduce_sum(torch.tensor(float(flag), device=device)) > 0)


def _check_finite(run: _Run, losses: dict[str, float], at: Position) -> None:
    """Stop on a NaN or infinite loss of the step `at` (its 1-based `step` within epoch `at.epoch`)."""
    if math.isfinite(losses["loss"]):
        return
    parts = ", ".join(f"{k} {v:.4g}" for k, v in losses.items() if k != "loss")
    raise VdiagError(
        f"the loss became {losses['loss']} at epoch {at.epoch + 1}, step {at.step} ({parts}); "
        f"training stopped and {_kept(run)}. {_lower_lr_advice(run)}"
    )


class _MetricsLog:
    """metrics.jsonl (one JSON object per step and per epoch) and TensorBoard when it is installed."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.file = open(out / "metrics.jsonl", "a") if enabled else None
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                pass

    def step(self, record: dict) -> None:
        self._write({"type": "step", **record})
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("epoch", "step", "global_step"):
                    self.tensorboard.add_scalar(f"train/{key}", value, record["global_step"])

    def epoch(self, summary: dict) -> None:
        self._write({"type": "epoch", **summary})

    def _write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _truncate_log(path: Path, global_step: int) -> None:
    """Drop log lines past the checkpoint being resumed from, so the log reads as one run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("global_step", 0) <= global_step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
