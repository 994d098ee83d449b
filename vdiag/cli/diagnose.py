"""`vdiag probe …` and `vdiag eval …`: diagnostics on frozen features of any checkpoint."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from vdiag.catalog import CONCEPT_FEATURES
from vdiag.cli.common import BackboneType, emit, json_option, resolve_device, video_root_option
from vdiag.data.formats import FORMATS

CEILING_MARK = "†"  # the report card's mark for an interval of width 0

COMMON_EPILOG = """
Any checkpoint: a vdiag checkpoint (its data is the default), or a torchvision / pytorchvideo
state dict with --backbone NAME. Features are cached (keyed by the checkpoint's content, the data,
the view and the sampling), so a second diagnostic on the same checkpoint does not recompute them.
Under torchrun every process extracts a share of the videos. A dataset without train/test folders or
a split column is split by video (split seed 0, 30% of each class's videos held out for testing; recorded in
the result); a collapsed model or non-finite weights are refused in one line."""


class PerCheckpoint(click.ParamType):
    """`--frames 16` (every checkpoint) or `--frames 8,16,-` (one per checkpoint, in order; `-` keeps
    that checkpoint's own value): a tuple of ints or None."""

    name = "n[,n…]"

    def convert(self, value, param, ctx):
        """A tuple with one entry (for all) or one per checkpoint; each an int ≥ `minimum` or None for `-`."""
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        minimum = 8 if param is not None and param.name == "size" else 1
        values = []
        for part in parts:
            if part == "-":
                values.append(None)
            elif part.isdigit() and int(part) >= minimum:
                values.append(int(part))
            else:
                self.fail(
                    f"{value!r}: give whole numbers ≥ {minimum}, one for all checkpoints or one per checkpoint (- keeps its own)",
                    param,
                    ctx,
                )
        return tuple(values)


def split_checkpoint(argument: str) -> tuple[str, str | None]:
    """`PATH=NAME` → (PATH, NAME): a checkpoint with its own backbone; a path that exists, or one
    without `=`, has none (a vdiag checkpoint, a Hugging Face folder, or `--backbone`'s).

    Raises:
        VdiagError: NAME is not a backbone name or `package.module:builder`.
    """
    from vdiag.catalog import BACKBONE_NAMES
    from vdiag.errors import VdiagError
    from vdiag.train.settings import is_builder_name

    if "=" not in argument or Path(argument).exists():
        return argument, None
    path, name = argument.rsplit("=", 1)
    if name not in BACKBONE_NAMES and not is_builder_name(name):
        raise VdiagError(
            f"{argument}: {name!r} is not a backbone; write PATH=NAME, NAME one of {', '.join(BACKBONE_NAMES)} or package.module:builder"
        )
    return path, name


def per_checkpoint(values: tuple | None, index: int, count: int, flag: str):
    """The value of option `flag` for checkpoint `index` of `count`: one value serves all, else one each.

    Raises:
        VdiagError: a list whose length is neither 1 nor `count`.
    """
    from vdiag.errors import VdiagError

    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) != count:
        raise VdiagError(f"{flag} has {len(values)} values for {count} checkpoints; give one for all or one per checkpoint, in order")
    return values[index]


def diagnostic_options(function=None, *, data_format_flag: str = "--format", many: bool = False):
    """The options every probe / eval / viz command shares (viz names the dataset layout
    `--data-format`, since its `--format` is the figure's; `many` takes several checkpoints, each
    `PATH` or `PATH=BACKBONE`, with `--frames` / `--stride` / `--size` one for all or one per checkpoint)."""
    if function is None:
        return lambda f: diagnostic_options(f, data_format_flag=data_format_flag, many=many)
    each = " One for all checkpoints, or one per checkpoint in order (8,16,-; - keeps its own)." if many else ""
    number = PerCheckpoint() if many else click.IntRange(1)
    options = [
        click.argument("checkpoints", nargs=-1, required=True, type=click.Path())
        if many
        else click.argument("checkpoint", type=click.Path()),
        click.option(
            "--backbone",
            type=BackboneType(),
            help="Architecture of a non-vdiag state dict: a name (see docs/backbones.md) or package.module:builder. "
            "Not needed for a vdiag checkpoint or a Hugging Face model folder."
            + (" Applies to every checkpoint given without its own PATH=NAME." if many else ""),
        ),
        click.option("--layer", help="Probe this module under the backbone body instead of the last stage (e.g. layer3, stages.2)."),
        click.option(
            "--data", "data_path", type=click.Path(), help="Dataset folder or CSV [the checkpoint's; else the synthetic dataset]."
        ),
        video_root_option,
        click.option(data_format_flag, "data_format", type=click.Choice(FORMATS), help="Dataset layout [auto]."),
        click.option("--split-id", type=click.IntRange(1, 3), help="UCF-101 / HMDB-51 split [1]."),
        click.option("--clips", type=click.IntRange(1), default=10, show_default=True, help="Uniformly spread clips per video, averaged."),
        click.option("--frames", type=number, help="Frames per clip [as trained; the architecture's published clips]." + each),
        click.option("--stride", type=number, help="Frame stride [as trained; the architecture's published clips]." + each),
        click.option(
            "--size",
            type=PerCheckpoint() if many else click.IntRange(8),
            help="Crop side in pixels [as trained; the architecture's published clips]." + each,
        ),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Clips per forward pass."),
        click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Decoding processes."),
        click.option("--no-cache", is_flag=True, help="Recompute features and do not store them."),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16"]),
            default="auto",
            show_default=True,
            help="Feature extraction: auto = bf16 autocast on CUDA, float32 elsewhere; bf16 = autocast on any device. "
            "Features are stored as float32 either way.",
        ),
        click.option("--out", type=click.Path(file_okay=False), help="Output folder [<checkpoint folder>/diagnostics/<checkpoint name>]."),
        json_option,
        click.pass_obj,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def run_diagnostic(name: str, *, keep_temporal: bool | None = None, many: bool = False, needs_data: bool = True, precheck=None, table=None):
    """Turn `body(extractor, data, out, device, **options) -> Result` into a command.

    The command loads the model (`load_extractor`, with its temporal strides removed when
    `keep_temporal`), resolves the data, runs the body, writes `<out>/<name>.json` and renders the
    result.

    Args:
        name: the result file's name.
        keep_temporal: load the backbone with (True) or as recorded (None) temporal strides.
        many: the body gets a list of extractors (one per checkpoint; the data of the first).
        needs_data: without it (figures of one video) the body's data is None.
        precheck: `precheck(extractor)` refuses unsuitable models before any data is read.
        table: `table(result)` replaces the default metrics table.

    Returns:
        The decorator.
    """

    def decorator(body):
        @functools.wraps(body)
        def command(
            settings,
            *,
            backbone,
            layer,
            data_path,
            video_root,
            data_format,
            split_id,
            clips,
            frames,
            stride,
            size,
            batch_size,
            workers,
            no_cache,
            precision,
            out,
            as_json,
            checkpoint=None,
            checkpoints=(),
            **extra,
        ):
            from vdiag import distributed as dist
            from vdiag.diagnostics.data import resolve_data
            from vdiag.diagnostics.features import load_extractor
            from vdiag.diagnostics.probe import probe_backend

            pairs = [split_checkpoint(p) for p in checkpoints] if many else [(checkpoint, None)]
            paths, count = [path for path, _ in pairs], len(pairs)
            sampling = {"frames": frames, "stride": stride, "size": size}
            if not many:
                sampling = {key: (value,) for key, value in sampling.items()}
            device = dist.setup(resolve_device(settings.device))
            try:
                extractors = [
                    load_extractor(
                        path,
                        backbone=own or backbone,
                        layer=layer,
                        keep_temporal=keep_temporal,
                        device=device,
                        clips=clips,
                        **{key: per_checkpoint(values, index, count, f"--{key}") for key, values in sampling.items()},
                        batch_size=batch_size,
                        workers=workers,
                        decoder=settings.decoder,
                        seed=settings.seed,
                        cache=not no_cache,
                        precision=precision,
                    )
                    for index, (path, own) in enumerate(pairs)
                ]
                for extractor in extractors if precheck else ():
                    precheck(extractor)
                data = None
                if needs_data:
                    data = resolve_data(extractors[0].model, data_path, format=data_format, split_id=split_id, video_root=video_root)
                folder = Path(out) if out else Path(paths[0]).parent / "diagnostics" / Path(paths[0]).stem
                backend = extra.pop("probe_backend", None)
                with probe_backend(backend or "auto", device=device) as used:
                    result = body(extractors if many else extractors[0], data, folder, device, **extra)
                if backend is not None:  # commands that fit probes record the backend the fits used
                    result.config["probe_backend"] = "+".join(sorted(set(used))) or backend
                result.checkpoint = ", ".join(str(p) for p in paths)
                if dist.is_main():
                    written = result.write(folder / f"{name}.json")
                    flags = [f"{CEILING_MARK} {name}: {flag}" for name, flag in result.details.get("flags", {}).items()]
                    footer = [*flags, f"wrote {written}", *[f"      {f}" for f in [*result.files, *result.figures] if f != str(written)]]
                    emit(result, as_json, table(result) if table and not as_json else None, footer=footer)
            finally:
                dist.teardown()

        return command

    return decorator


@click.group(
    "probe",
    epilog="""\b
Examples:
  vdiag probe static-bias runs/simclr-tiny/final.pt
  vdiag probe shuffle runs/simclr-tiny/final.pt --perturbation reverse
  vdiag probe factors runs/simclr-tiny/final.pt --json""",
)
def probe():
    """Linear probes that ask what a model decides from: appearance or motion."""


@click.group(
    "eval",
    epilog="""\b
Examples:
  vdiag eval linear runs/simclr-tiny/final.pt
  vdiag eval retrieval r3d18.pth --backbone r3d_18 --data data/ucf101
  vdiag eval finetune runs/simclr-tiny/final.pt --epochs 20""",
)
def evaluate():
    """Standard evaluations of a pretrained backbone: linear, fine-tune, retrieval, clustering."""


_PROBE_BACKEND = click.option(
    "--probe-backend",
    type=click.Choice(["auto", "sklearn", "torch"]),
    default="auto",
    show_default=True,
    help="The linear probe: scikit-learn, or the same probe in torch (L-BFGS on the --device, for "
    "Kinetics-scale features); auto = torch above 50M training samples × dimensions (docs/diagnostics/linear.md).",
)

_TARGET = click.option(
    "--target",
    default="label",
    show_default=True,
    help="What to classify: the dataset label or a synthetic factor (bg_color, fg_trajectory, …).",
)


@probe.command(
    "static-bias",
    epilog="""\b
Examples:
  vdiag probe static-bias runs/simclr-tiny/final.pt
  vdiag probe static-bias r3d18.pth --backbone r3d_18 --data data/ucf101 --frames 16 --size 112
  vdiag probe static-bias final.pt --target bg_color --json
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_TARGET
@_PROBE_BACKEND
@run_diagnostic("static-bias")
def static_bias_command(extractor, data, out, device, target):
    """Does the model still classify when every frame is the same? (BOLD-DI §3.2, Fig. 2b)

    A linear probe trained on real clips is tested on real, static (first frame repeated) and
    frame-difference clips: acc_real, acc_static, static_ratio (near 1 = appearance),
    acc_dynamic, contrasted_acc; and the embedding similarity to static / shuffled / reversed
    versions (sim_*, 1 = blind to time).
    """
    from vdiag.diagnostics.static_bias import static_bias

    return static_bias(extractor, data, target=target)


@probe.command(
    "shuffle",
    epilog="""\b
Examples:
  vdiag probe shuffle runs/simclr-tiny/final.pt
  vdiag probe shuffle runs/simclr-tiny/final.pt --perturbation reverse   # arrow of time
  vdiag probe shuffle r3d18.pth --backbone r3d_18 --data data/ucf101
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@click.option(
    "--perturbation",
    type=click.Choice(["shuffle", "reverse", "freeze"]),
    default="shuffle",
    show_default=True,
    help="What the negative clips are.",
)
@_PROBE_BACKEND
@run_diagnostic("shuffle")
def shuffle_command(extractor, data, out, device, perturbation):
    """Can a linear probe tell true frame order from shuffled? (BOLD-DI §3.2, Fig. 2c)

    acc on held-out videos; chance is 0.5. Near 0.5 means the features ignore frame order.
    """
    from vdiag.diagnostics.shuffle import shuffle_probe

    return shuffle_probe(extractor, data, perturbation=perturbation)


@probe.command(
    "factors",
    epilog="""\b
Examples:
  vdiag probe factors runs/simclr-tiny/final.pt
  vdiag probe factors final.pt --data ~/synth-big --layer stages.2
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_PROBE_BACKEND
@run_diagnostic("factors")
def factors_command(extractor, data, out, device):
    """Which generative factors of the synthetic data are linearly decodable? (BOD-VCL's claim, Fig. 5 data)

    acc_<factor> per factor (probe fit on val, tested on test), static_score and dynamic_score:
    mean chance-normalised accuracy of the static and of the dynamic factors (0 = chance, 1 = perfect).
    """
    from vdiag.diagnostics.factors import factor_probe

    return factor_probe(extractor, data)


@evaluate.command(
    "linear",
    epilog="""\b
Examples:
  vdiag eval linear runs/simclr-tiny/final.pt
  vdiag eval linear r3d18.pth --backbone r3d_18 --data data/hmdb51 --split-id 2
  vdiag eval linear runs/concepts-tiny/final.pt --feature F_v_dynamic   # concepts Table 3
  vdiag --device cuda eval linear r50.pth --backbone slow_r50 --data data/k400 --probe-backend torch
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_TARGET
@click.option(
    "--feature",
    type=click.Choice(["embedding", *CONCEPT_FEATURES]),
    default="embedding",
    show_default=True,
    help="What to probe: the pooled embedding, or (concepts checkpoints) a Table 3 feature: "
    "v, codes q_v (static / dynamic), top-10% local features F_v (static / dynamic).",
)
@_PROBE_BACKEND
@run_diagnostic("linear")
def linear_command(extractor, data, out, device, target, feature):
    """Linear evaluation: a probe on frozen features, 10-clip test averaging (top1, top5; DCLR §4.1)."""
    from vdiag.diagnostics.recognition import linear_eval

    return linear_eval(extractor, data, target=target, feature=feature)


@evaluate.command(
    "finetune",
    epilog="""\b
Examples:
  vdiag eval finetune runs/simclr-tiny/final.pt                 # 10 epochs, scaled down
  vdiag eval finetune final.pt --data data/ucf101 --epochs 100 --train-batch 128 --lr 0.2   # ViDiDi B.5
  vdiag eval finetune final.pt --resume                         # continue an interrupted run
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_TARGET
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Fine-tuning epochs (the paper: 100).")
@click.option("--train-batch", type=click.IntRange(1), default=32, show_default=True, help="Videos per training step (the paper: 128).")
@click.option(
    "--lr",
    type=click.FloatRange(0, min_open=True),
    default=0.05,
    show_default=True,
    help="SGD learning rate, ×0.1 at 60% and 80% (the paper: 0.2).",
)
@click.option("--dropout", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Dropout before the new linear head.")
@click.option("--resume", is_flag=True, help="Continue the fine-tuning run in <out>/finetune.")
@run_diagnostic("finetune")
def finetune_command(extractor, data, out, device, target, epochs, train_batch, lr, dropout, resume):
    """End-to-end fine-tuning with a new linear head (ViDiDi App. B.5), then the 10-clip test.

    Writes the fine-tuned checkpoint to <out>/finetune/final.pt.
    """
    from vdiag.diagnostics.recognition import FinetuneSettings, finetune

    settings = FinetuneSettings(epochs=epochs, batch_size=train_batch, lr=lr, dropout=dropout)
    return finetune(extractor, data, out / "finetune", settings=settings, target=target, device=device, resume=resume)


@evaluate.command(
    "retrieval",
    epilog="""\b
Examples:
  vdiag eval retrieval runs/vididi-simclr-tiny/final.pt
  vdiag eval retrieval r3d18.pth --backbone r3d_18 --data data/ucf101
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_TARGET
@run_diagnostic("retrieval")
def retrieval_command(extractor, data, out, device, target):
    """Nearest-neighbour retrieval: test videos query the train set (R@1, 5, 10, 20, 50; ViDiDi App. B.4)."""
    from vdiag.diagnostics.retrieval import retrieval

    return retrieval(extractor, data, target=target)


@evaluate.command(
    "cluster",
    epilog="""\b
Examples:
  vdiag eval cluster runs/vididi-simclr-tiny/final.pt
  vdiag eval cluster final.pt --data data/ucf101 --split train
"""
    + COMMON_EPILOG,
)
@diagnostic_options
@_TARGET
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="Which videos to cluster.")
@run_diagnostic("cluster")
def cluster_command(extractor, data, out, device, target, split):
    """Silhouette score by class for the top-k best-retrieved classes (ViDiDi Table 7).

    Saves embeddings.npz (embeddings, labels, class names) for t-SNE.
    """
    from vdiag.diagnostics.cluster import cluster

    return cluster(extractor, data, out, split=split, target=target)
