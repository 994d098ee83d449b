"""`vdiag pretrain`."""

from __future__ import annotations

from pathlib import Path

import click

from vdiag.catalog import METHOD_NAMES
from vdiag.cli.common import BackboneType, emit, json_option, metrics_table, resolve_device, video_root_option
from vdiag.data.formats import FORMATS
from vdiag.errors import VdiagError


def _default_out(method: str, backbone: str) -> Path:
    """runs/<method>-<backbone>, or -2, -3, … when that already holds a run."""
    base = Path("runs") / f"{method}-{backbone}"
    candidate, number = base, 1
    while (candidate / "last.pt").exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


@click.command(
    "pretrain",
    epilog="""\b
Examples:
  vdiag pretrain --method simclr                      # tiny backbone, synthetic data, ~4 min on 2 cores
  vdiag pretrain --method byol --positives 4 --epochs 20
  vdiag pretrain --method supervised --target bg_color   # a model that must learn appearance
  vdiag pretrain --method dclr                        # static frame + frame difference, motion search
  vdiag pretrain --method bolddi-simclr --set method_args.inner_steps=5   # bi-level Koopman (BOLD-DI)
  vdiag pretrain --method vididi-vicreg --set method_args.schedule=reverse   # a ViDiDi ablation
  vdiag pretrain --method moco --data data/ucf101 --backbone r3d_18 --set data.size=112
  vdiag pretrain --method simclr --preset paper --data k400/train.csv --out runs/k400-simclr
  vdiag pretrain --method simclr --data k400/annotations/train.csv --video-root k400/train   # Kinetics as distributed
  vdiag pretrain --resume --out runs/simclr-tiny --epochs 10   # continue, and train longer
  vdiag pretrain --method simclr --out runs/s --resume auto --save-every-minutes 10   # a preemptible job: same command each time
  torchrun --nproc_per_node 8 -m vdiag pretrain --method swav --preset paper --data k400/train.csv""",
)
@click.option("--method", type=click.Choice(METHOD_NAMES), help="The objective (required unless --resume or --config names it).")
@click.option(
    "--backbone",
    type=BackboneType(),
    help="Backbone: a name (docs/backbones.md) or package.module:builder [preset: tiny for cpu, slow_r50 for paper].",
)
@click.option(
    "--data", "data_path", type=click.Path(), help="Dataset folder or CSV [default: the synthetic dataset, generated on first use]."
)
@video_root_option
@click.option("--format", "data_format", type=click.Choice(FORMATS), help="Dataset layout [auto].")
@click.option("--epochs", type=click.IntRange(1), help="Epochs [preset]; with --resume, may be raised to train longer.")
@click.option("--batch-size", type=click.IntRange(1), help="Videos per step over all processes [preset].")
@click.option("--positives", type=click.IntRange(1), help="ρ, clips per video (BOLD-DI Eq. 1–2) [2].")
@click.option("--target", help="supervised only: 'label' or a synthetic factor (bg_color, fg_shape, …) [label].")
@click.option("--weights", type=click.Path(dir_okay=False), help="Start the backbone from a local checkpoint (any common layout).")
@click.option("--keep-temporal", is_flag=True, default=None, help="Remove temporal strides: one feature per input frame.")
@click.option(
    "--preset",
    type=click.Choice(["cpu", "paper", "static-shortcut"]),  # vdiag.train.config.PRESETS (not imported: --help stays torch-free)
    help="Hyper-parameters: cpu (small, fast), static-shortcut (cpu with mild augmentation, for that benchmark) "
    "or paper (as the papers state) [cpu].",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings (e.g. a saved config.yaml).")
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override any setting, e.g. --set train.lr=0.05 (repeatable)."
)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder [runs/<method>-<backbone>].")
@click.option(
    "--resume",
    type=click.Choice(["yes", "auto"]),
    is_flag=False,
    flag_value="yes",
    default=None,
    help="Continue the run in --out from its last.pt; `--resume auto` starts it when --out holds none "
    "(one command for a job that may be requeued).",
)
@click.option("--save-every-steps", type=click.IntRange(1), help="Also save last.pt every N steps [only at epoch ends].")
@click.option("--save-every-minutes", type=click.FloatRange(0, min_open=True), help="Also save last.pt every M minutes.")
@click.option("--save-every", "save_every_epochs", type=click.IntRange(1), help="Also keep epoch_NNNN.pt every N epochs [last.pt only].")
@click.option("--stop-after", type=click.IntRange(1), help="Stop after this many epochs now (checkpoint saved); resume later.")
@click.option("--workers", type=click.IntRange(0), help="Data-loading processes per training process [preset].")
@click.option("--max-failures", type=click.FloatRange(0, 1), help="Share of unreadable videos tolerated before stopping [0.05].")
@json_option
@click.pass_obj
def pretrain(
    settings,
    method,
    backbone,
    data_path,
    video_root,
    data_format,
    epochs,
    batch_size,
    positives,
    target,
    weights,
    keep_temporal,
    preset,
    config_file,
    assignments,
    out,
    resume,
    save_every_steps,
    save_every_minutes,
    save_every_epochs,
    stop_after,
    workers,
    max_failures,
    as_json,
):
    """Pretrain a video model with a self-supervised (or supervised) objective.

    Writes to the run folder: config.yaml (the resolved settings), metrics.jsonl (one line per
    step and per epoch), last.pt after every epoch, final.pt at the end, pretrain.json. Ctrl-C
    saves last.pt and stops (exit 130); SIGTERM or SIGUSR1 (preemption) saves and exits with 75;
    --resume continues exactly where it stopped, refusing settings that differ from the run's
    (except epochs, lr, clip_grad, workers, max_failures, save_every_*). Under torchrun the same
    command trains with DistributedDataParallel (--batch-size stays the global batch).

    \f
    Raises:
        VdiagError: --resume without --out; no --method (nor a --config naming one); --target with
            a method other than supervised.
    """
    from vdiag.train.config import resolve_config
    from vdiag.train.trainer import pretrain as run_pretrain

    if resume is not None and not out:
        raise VdiagError("--resume needs --out, the run folder to continue (e.g. runs/simclr-tiny)")
    options: dict = {"backbone": {}, "data": {}, "train": {}, "method_args": {}}
    if method:
        options["method"] = method
    _put(options["backbone"], name=backbone, keep_temporal=keep_temporal, weights=weights)
    _put(options["data"], path=data_path, video_root=video_root, format=data_format, positives=positives, workers=workers)
    _put(options["data"], max_failures=max_failures)
    _put(options["train"], epochs=epochs, batch_size=batch_size)
    _put(options["train"], save_every_steps=save_every_steps, save_every_minutes=save_every_minutes, save_every_epochs=save_every_epochs)
    if target:
        if (method or "") != "supervised" and resume is None:
            raise VdiagError("--target applies to --method supervised only")
        options["method_args"]["target"] = target
    if resume == "yes":  # the run's own settings, with what this command changes (the trainer refuses what cannot change)
        stored = _stored_config(Path(out))
        if preset:
            options["preset"] = preset
        config = resolve_config(stored["method"], config_file=config_file, options=options, assignments=list(assignments), base=stored)
        config["method"] = method or stored["method"]
    else:  # a new run, or with --resume auto the whole command a requeued job repeats
        if not method and not config_file:
            raise VdiagError("choose an objective with --method (" + ", ".join(METHOD_NAMES) + ")")
        config = resolve_config(method, preset, config_file=config_file, options=options, assignments=list(assignments), seed=settings.seed)
        out = out or _default_out(config["method"], config["backbone"]["name"])
    result = run_pretrain(
        config,
        out,
        device=resolve_device(settings.device),
        decoder=settings.decoder,
        resume={None: False, "yes": True, "auto": "auto"}[resume],
        stop_after_epochs=stop_after,
    )
    footer = [
        f"checkpoint: {result.checkpoint}",
        f"resolved config: {result.details['config_file']}   step log: {result.details['metrics_log']}",
    ]
    if not result.details.get("finished"):
        footer.append(f"stopped early; continue with: vdiag pretrain --resume --out {out}")
    emit(result, as_json, metrics_table(result, title=f"pretrain {config['method']} ({config['backbone']['name']})"), footer=footer)


def _stored_config(out: Path) -> dict:
    """The config of the run in `out` (its last.pt), completed with settings added since.

    Raises:
        VdiagError: `out` holds no last.pt (or an unreadable one).
    """
    from vdiag.checkpoint import load_checkpoint
    from vdiag.train.config import migrate_config

    if not (out / "last.pt").is_file():
        raise VdiagError(f"{out} holds no last.pt to continue; check --out, or use --resume auto to start the run when there is none")
    return migrate_config(load_checkpoint(out / "last.pt")["config"])


def _put(section: dict, **values) -> None:
    section.update({k: v for k, v in values.items() if v is not None})
