"""`pretrain`: the training loop behind `vdiag pretrain`, for one process or many under torchrun.

    config → data (index, ρ-clip dataset, distributed sampler) → backbone + method → optimiser
    → epochs of steps → last.pt every epoch, final.pt at the end → Result

Exactness: clip sampling and augmentation are functions of (seed, epoch, video index), the sampler
order is a function of (seed, epoch), the schedules are functions of the global step, and the
checkpoint carries the method's whole state (momentum encoders, queues), the optimiser, the scaler
and the RNG. So a run resumed from any checkpoint — end of epoch, or mid-epoch after Ctrl-C —
repeats the per-step losses of an uninterrupted run on CPU.

Under torchrun, `batch_size` is the global batch (split evenly over ranks), rank 0 logs and writes,
and every rank agrees on stopping (NaN, Ctrl-C) through an all-reduce.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from vdiag import distributed as dist
from vdiag.checkpoint import load_checkpoint, save_checkpoint
from vdiag.console import console, note, progress_bar, warn
from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.sampling import ClipSpec
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.data.views import SpatialAugment, normalize
from vdiag.errors import VdiagError
from vdiag.io import atomic_path
from vdiag.methods import METHODS, build_model
from vdiag.methods.base import Method
from vdiag.results import Result
from vdiag.train.config import dump_config
from vdiag.train.optim import build_optimizer, learning_rate, set_learning_rate

StepCallback = Callable[[dict], bool]  # gets the step's log record; True asks the run to stop


@dataclass(frozen=True)
class TrainingView:
    """The training view of one clip: temporally consistent augmentation, then normalisation."""

    augment: SpatialAugment

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return normalize(self.augment(clip, generator))


class _SkipSampler(Sampler):
    """A sampler's order with the first `skip` indices dropped (resuming mid-epoch)."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


def resolve_data(config: dict) -> DatasetIndex:
    """The training split named by the config; the default synthetic dataset when `data.path` is null."""
    data = config["data"]
    path = data.get("path")
    if not path:
        path = str(default_synthetic_dataset())
    return load_index(path, data.get("format", "auto"), data.get("split", "train"), data.get("split_id", 1))


def build_training_dataset(config: dict, index: DatasetIndex, decoder: str) -> VideoClipDataset:
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
    clip = ClipSpec(num_frames=data["frames"], stride=data["stride"], extra_frames=METHODS[config["method"]].extra_frames)
    return VideoClipDataset(index, clip, "train", data["positives"], view, decoder, seed=config["seed"])


class _StopFlag:
    """Ctrl-C sets a flag checked between steps (a second Ctrl-C interrupts at once)."""

    def __init__(self):
        self.requested = False
        self.by_signal = False

    @contextmanager
    def installed(self):
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum, frame):
        if self.by_signal:
            raise KeyboardInterrupt
        self.requested = self.by_signal = True
        console.print("stopping after this step (Ctrl-C again to abort without saving)…", highlight=False)


def pretrain(
    config: dict,
    out: str | Path,
    device: str = "cpu",
    decoder: str = "auto",
    resume: bool = False,
    stop_after_epochs: int | None = None,
    on_step: StepCallback | None = None,
) -> Result:
    """Train `config['method']` and write checkpoints under `out`.

    Args:
        config: a resolved config (`vdiag.train.config.resolve_config`); ignored on resume except
            for `train.epochs`, which may be raised.
        out: the run folder (config.yaml, metrics.jsonl, last.pt, final.pt, pretrain.json).
        device: 'cpu' or 'cuda' (each torchrun rank takes its LOCAL_RANK GPU).
        resume: continue from `out/last.pt`.
        stop_after_epochs: stop (as after Ctrl-C, checkpoint saved) once this many more epochs
            are done, e.g. to fit a job's time limit; resume later.
        on_step: called with each step's record; returning True stops like Ctrl-C.
    """
    owned = not dist.is_initialized()  # a caller that joined the group (e.g. `eval finetune`) keeps it
    device = dist.setup(device)
    try:
        return _pretrain(config, Path(out), device, decoder, resume, stop_after_epochs, on_step)
    finally:
        if owned:
            dist.teardown()


def _pretrain(config, out: Path, device, decoder, resume, stop_after_epochs, on_step) -> Result:
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(out / "last.pt")
        saved = checkpoint["config"]
        if saved["method"] != config["method"]:
            raise VdiagError(f"{out} holds a {saved['method']} run, not {config['method']}; drop --method or pick another --out")
        epochs = config["train"]["epochs"]
        if epochs < saved["train"]["epochs"]:
            raise VdiagError(f"the run in {out} is set for {saved['train']['epochs']} epochs; on resume --epochs can only be raised")
        config = saved
        config["train"]["epochs"] = epochs
        if checkpoint["position"].get("finished") and checkpoint["position"]["epoch"] >= epochs:
            raise VdiagError(f"the run in {out} already finished {epochs} epochs; raise --epochs to train longer")
    elif (out / "last.pt").exists():
        raise VdiagError(f"{out} already holds a run (last.pt); pass --resume to continue it, or choose another --out")

    weights = config["backbone"].get("weights")
    if weights and not Path(weights).is_file():  # before any data is generated or read
        raise VdiagError(f"weights file {weights} does not exist")
    torch.manual_seed(config["seed"])
    index = resolve_data(config)
    dataset = build_training_dataset(config, index, decoder)
    method = build_model(config, index).to(device)
    world, rank = dist.world_size(), dist.rank()
    train = config["train"]
    if train["batch_size"] % world:
        raise VdiagError(f"--batch-size {train['batch_size']} is the global batch and must be divisible by the {world} processes")
    per_rank = train["batch_size"] // world
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config["seed"], drop_last=True)
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise VdiagError(f"{index.describe()}: fewer videos than one batch of {train['batch_size']}; lower --batch-size")
    total_steps = steps_per_epoch * train["epochs"]
    warmup_steps = round(train["warmup_epochs"] * steps_per_epoch)

    model: torch.nn.Module = method
    if world > 1:
        if device.startswith("cuda") and method.sync_batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
            method = model
        elif method.sync_batchnorm and dist.is_main():
            note("SyncBatchNorm needs GPUs; on CPU each process normalises over its own batch")
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )
    optimizer = build_optimizer(method, train["optimizer"], train["lr"], train["weight_decay"], train.get("momentum", 0.9))
    autocast, scaler = _mixed_precision(device, train.get("amp", True))

    epoch, step_in_epoch, global_step, history = 0, 0, 0, []
    if checkpoint is not None:
        method.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        position = checkpoint["position"]
        epoch, step_in_epoch, global_step = position["epoch"], position["step"], position["global_step"]
        history = list(checkpoint.get("history", []))
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.startswith("cuda") and checkpoint["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        if dist.is_main():
            note(f"resuming {out / 'last.pt'} at epoch {epoch + 1}, step {step_in_epoch + 1}")

    main = dist.is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(dump_config(config))
        _truncate_log(out / "metrics.jsonl", global_step)
    log = _MetricsLog(out, enabled=main)
    tracker = FailureTracker(len(dataset), config["data"].get("max_failures", 0.05), warn=warn if main else None)

    def save(name: str, finished: bool = False) -> Path | None:
        path = None
        if main:
            path = save_checkpoint(
                out / name,
                config=config,
                model=method.state_dict(),
                position={"epoch": epoch, "step": step_in_epoch, "global_step": global_step, "finished": finished},
                optimizer=optimizer.state_dict(),
                scaler=scaler.state_dict() if scaler is not None else None,
                rng={"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if device.startswith("cuda") else []},
                history=history,
            )
        dist.barrier()
        return path

    if main:
        note(
            f"training {config['method']} on {config['backbone']['name']} ({device}{f', {world} processes' if world > 1 else ''}): "
            f"{index.describe()}; {train['epochs']} epochs × {steps_per_epoch} steps of {train['batch_size']} videos "
            f"× ρ = {config['data']['positives']}"
        )
    stop = _StopFlag()
    started, clips_done, skipped = time.perf_counter(), 0, 0
    epochs_run = 0
    interrupted = False
    with stop.installed(), progress_bar("clips", fields=("losses",)) as progress:
        task = progress.add_task("", total=None, losses="")
        while epoch < train["epochs"]:
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            method.start_epoch(epoch)
            loader = DataLoader(
                dataset,
                batch_size=per_rank,
                sampler=_SkipSampler(sampler, step_in_epoch * per_rank),
                num_workers=config["data"].get("workers", 0),
                collate_fn=collate_clips,
                drop_last=True,
                pin_memory=device.startswith("cuda"),
            )
            clips_per_step = train["batch_size"] * config["data"]["positives"]
            progress.reset(
                task,
                total=steps_per_epoch * clips_per_step,
                completed=step_in_epoch * clips_per_step,
                description=f"epoch {epoch + 1}/{train['epochs']}",
            )
            epoch_losses: dict[str, float] = {}
            epoch_steps = 0
            for batch in loader:
                tracker.update(batch)
                if not _batch_usable(batch, per_rank, world, device):
                    skipped += 1
                    losses = None
                else:
                    lr = learning_rate(
                        global_step,
                        total_steps,
                        train["lr"],
                        warmup_steps,
                        train.get("min_lr_ratio", 0.0),
                        train.get("schedule", "cosine"),
                        train.get("milestones", ()),
                        train.get("gamma", 0.1),
                    )
                    set_learning_rate(optimizer, lr)
                    losses = _train_step(model, method, optimizer, scaler, autocast, batch, device, train.get("clip_grad"))
                    _check_finite(losses, epoch, step_in_epoch, out)
                    method.after_step((global_step + 1) / total_steps)
                step_in_epoch += 1
                global_step += 1
                if losses is not None:
                    clips_done += clips_per_step
                    epoch_steps += 1
                    for name, value in losses.items():
                        epoch_losses[name] = epoch_losses.get(name, 0.0) + value
                    record = {"epoch": epoch + 1, "step": step_in_epoch, "global_step": global_step, "lr": lr, **losses}
                    record["clips_per_s"] = clips_done / max(time.perf_counter() - started, 1e-9)
                    log.step(record)
                    progress.update(task, advance=clips_per_step, losses=_loss_text(losses))
                    if on_step is not None and on_step(record):
                        stop.requested = True
                else:
                    progress.advance(task, clips_per_step)
                if _agree(stop.requested, device):
                    interrupted = True
                    break
            if interrupted:
                break
            summary = {"epoch": epoch + 1, "global_step": global_step, **{k: v / max(epoch_steps, 1) for k, v in epoch_losses.items()}}
            summary["seconds"] = time.perf_counter() - started
            history.append(summary)
            log.epoch(summary)
            epoch, step_in_epoch = epoch + 1, 0
            epochs_run += 1
            save("last.pt")
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs and epoch < train["epochs"]:
                interrupted = True
                break

    seconds = time.perf_counter() - started
    log.close()
    if interrupted:
        path = save("last.pt")
        if main:
            note(f"stopped at epoch {epoch + 1}, step {step_in_epoch}; saved {path}. Continue with: vdiag pretrain --resume --out {out}")
        if stop.by_signal:
            raise KeyboardInterrupt
        final_path = out / "last.pt"
    else:
        save("final.pt", finished=True)
        save("last.pt", finished=True)
        final_path = out / "final.pt"

    metrics = {"epochs_done": epoch, "steps_done": global_step, "seconds": seconds, "clips_per_s": clips_done / max(seconds, 1e-9)}
    if history:
        metrics.update({f"final_{k}": v for k, v in history[-1].items() if k not in ("epoch", "global_step", "seconds")})
    metrics["failed_videos"] = tracker.failed
    metrics["skipped_steps"] = skipped
    result = Result(
        command="pretrain",
        checkpoint=str(final_path),
        data=str(index.root),
        metrics=metrics,
        config=config,
        files=[str(final_path), str(out / "config.yaml"), str(out / "metrics.jsonl")],
        details={
            "finished": not interrupted,
            "run_dir": str(out),
            "config_file": str(out / "config.yaml"),
            "metrics_log": str(out / "metrics.jsonl"),
            "history": history,
        },
    )
    if main:
        result.write(out / "pretrain.json")
    return result


def _loss_text(losses: dict[str, float]) -> str:
    """'loss 1.23' plus the parts when there are several (a single part just repeats the loss)."""
    parts = [k for k in losses if k != "loss"]
    shown = ["loss"] + (parts if len(parts) > 1 else [])
    return " ".join(f"{k} {losses[k]:.3g}" for k in shown)


def _mixed_precision(device: str, enabled: bool):
    """autocast + GradScaler on CUDA (bf16 where supported, else fp16 with a scaler); off on CPU."""
    if not (enabled and device.startswith("cuda")):
        return nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _train_step(model, method: Method, optimizer, scaler, autocast, batch: dict, device: str, clip_grad) -> dict[str, float]:
    batch = _to_device(batch, device)
    with autocast():
        outputs = model(batch)
    loss = outputs["loss"]
    values = {name: float(dist.all_reduce_sum(value.detach().float()) / dist.world_size()) for name, value in outputs.items()}
    if not math.isfinite(values["loss"]):
        return values
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
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


def _check_finite(losses: dict[str, float], epoch: int, step: int, out: Path) -> None:
    if math.isfinite(losses["loss"]):
        return
    parts = ", ".join(f"{k} {v:.4g}" for k, v in losses.items() if k != "loss")
    kept = f"kept the last good checkpoint {out / 'last.pt'}" if (out / "last.pt").exists() else "no checkpoint was written yet"
    raise VdiagError(
        f"the loss became {losses['loss']} at epoch {epoch + 1}, step {step + 1} ({parts}); training stopped and {kept}. "
        "Lower the learning rate (--set train.lr=…), set --set train.clip_grad=1.0, or check the data"
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
