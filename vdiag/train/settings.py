"""Every training setting's type, range and one-line error: the schema, in one table.

`SCHEMA` maps each dotted key (`train.lr`, `augment.crop_scale`, …) to a `Setting`: its kind, its
bounds or choices, whether null is allowed, and a few words of help. `check_setting` turns a value
as a user wrote it (a YAML scalar from `--set` or a `--config` file) into the checked value, or
raises one `VdiagError` line naming the key, what it must be, and what was given.

Numbers parse as users write them: YAML 1.1 reads `1e-3` as the text "1e-3" (it wants `1.0e-3`), so
a numeric string is read as a number wherever a number is expected; `--set seed=abc` or
`train.lr=fast` stays an error.

Method options (`method_args.*`) take their types from the method's signature (`float`, `int`,
`bool`, `str`, `float | None`); their ranges are the method's to check (`build_method`).

Why an in-house table and not pydantic: the settings are ~35 scalars in four sections whose defaults
live in the preset YAMLs, and the method options are discovered from signatures at run time; a table
keeps every rule on one line each, adds no dependency, and lets the tests generate a wrong-type and an
out-of-range value for every key from the same table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vdiag.catalog import BACKBONE_NAMES
from vdiag.data.formats import FORMATS, SPLITS
from vdiag.errors import VdiagError

_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


@dataclass(frozen=True)
class Setting:
    """One setting's rule: `kind` ('int', 'float', 'bool', 'bool_or_auto', 'choice', 'text', 'fractions', 'scale_range'),
    the closed or open bounds of a number, the choices of a 'choice', whether null is allowed, and help.

    `low_open` / `high_open` make a bound strict (lr > 0 rather than lr ≥ 0); `or_builder` lets a
    'choice' also be a `package.module:builder` (a user's backbone, docs/backbones.md).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    or_builder: bool = False
    nullable: bool = False
    help: str = ""

    def describe(self) -> str:
        """What a valid value looks like, for error messages ('a number > 0', 'one of sgd, lars, adamw')."""
        if self.kind == "choice":
            text = "one of " + ", ".join(self.choices) + (", or package.module:builder" if self.or_builder else "")
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "bool_or_auto":
            text = "true, false or auto"
        elif self.kind == "text":
            text = "a path or name (text)"
        elif self.kind == "fractions":
            text = "a list of fractions of the run in (0, 1), e.g. [0.6, 0.8]"
        elif self.kind == "scale_range":
            text = "[low, high] with 0 < low ≤ high ≤ 1, e.g. [0.3, 1.0]"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '≥'} {_fmt(self.low)}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '≤'} {_fmt(self.high)}")
            text = f"{noun} {' and '.join(bounds)}".strip()
        return text + (" (or null)" if self.nullable else "")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _int(low=None, high=None, **kw) -> Setting:
    return Setting("int", low, high, **kw)


def _float(low=None, high=None, **kw) -> Setting:
    return Setting("float", low, high, **kw)


def is_builder_name(value) -> bool:
    """`package.module:builder`: dotted identifiers, a colon, an identifier."""
    module, _, builder = str(value).partition(":")
    return isinstance(value, str) and builder.isidentifier() and all(part.isidentifier() for part in module.split("."))


def _choice(*choices: str, **kw) -> Setting:
    return Setting("choice", choices=tuple(choices), **kw)


_PROBABILITY = {"low": 0, "high": 1}

SCHEMA: dict[str, Setting] = {
    "seed": _int(0, help="seed of every random draw of the run"),
    "backbone.name": _choice(*BACKBONE_NAMES, or_builder=True, help="the video backbone"),
    "backbone.keep_temporal": Setting("bool", help="remove temporal strides: one feature per input frame"),
    "backbone.weights": Setting("text", nullable=True, help="a local file to start the backbone from; null: random"),
    "data.path": Setting("text", nullable=True, help="dataset folder or CSV; null: the default synthetic dataset"),
    "data.video_root": Setting(
        "text", nullable=True, help="folder holding the videos of an annotation-file layout (--video-root); null: found beside them"
    ),
    "data.format": _choice(*FORMATS, help="dataset layout"),
    "data.split": _choice(*SPLITS, help="the split trained on"),
    "data.split_id": _int(1, 3, help="UCF-101 / HMDB-51 split number"),
    "data.frames": _int(1, help="L, frames per clip"),
    "data.stride": _int(1, help="δ, frames between sampled frames"),
    "data.positives": _int(1, help="ρ, clips per video"),
    "data.size": _int(8, help="crop side in pixels"),
    "data.pad": _choice("clamp", "loop", help="short videos: clamp repeats the last frame, loop wraps to the start"),
    "data.workers": _int(0, help="data-loading processes per training process"),
    "data.max_failures": _float(**_PROBABILITY, help="share of unreadable videos tolerated"),
    "data.persistent_workers": Setting("bool", help="keep the loader's worker processes between epochs (with data.workers > 0)"),
    "data.prefetch_factor": _int(1, help="batches each worker loads ahead (with data.workers > 0)"),
    "data.fingerprint": Setting("text", nullable=True, help="written by the trainer: the training split's fingerprint"),
    "augment.crop_scale": Setting("scale_range", help="area fraction range of the random resized crop"),
    "augment.flip_p": _float(**_PROBABILITY, help="probability of a horizontal flip"),
    "augment.jitter_p": _float(**_PROBABILITY, help="probability of colour jitter"),
    "augment.grayscale_p": _float(**_PROBABILITY, help="probability of grey scale"),
    "augment.blur_p": _float(**_PROBABILITY, help="probability of Gaussian blur"),
    "train.epochs": _int(1, help="epochs"),
    "train.batch_size": _int(1, help="videos per step, over all processes"),
    "train.optimizer": _choice("sgd", "lars", "adamw", help="optimiser"),
    "train.lr": _float(0, low_open=True, help="peak learning rate"),
    "train.weight_decay": _float(0, help="weight decay"),
    "train.momentum": _float(0, 1, high_open=True, help="SGD / LARS momentum (AdamW β1)"),
    "train.warmup_epochs": _float(0, help="linear warm-up, in epochs (fractions allowed)"),
    "train.min_lr_ratio": _float(**_PROBABILITY, help="final learning rate over the peak (cosine)"),
    "train.schedule": _choice("cosine", "step", help="learning-rate schedule"),
    "train.milestones": Setting("fractions", help="step schedule: where the rate drops, as fractions of the run"),
    "train.gamma": _float(0, 1, low_open=True, help="step schedule: factor at each milestone"),
    "train.clip_grad": _float(0, low_open=True, nullable=True, help="max gradient norm; null: no clipping"),
    "train.amp": Setting("bool_or_auto", help="mixed precision: auto = on CUDA only; true = bf16 autocast on CPU too; false = off"),
    "train.check_finite_every": _int(1, help="read the losses back (NaN check, log) every N steps; 1 syncs every step"),
    "train.accumulate": _int(1, help="micro-batches per step (gradient accumulation; exact for supervised only)"),
    "train.channels_last_3d": Setting("bool", help="channels-last (NDHWC) memory format for 3-D CNN backbones"),
    "train.compile": Setting("bool", help="torch.compile the backbone (first steps slower while it compiles)"),
    "train.activation_checkpointing": Setting("bool", help="recompute the backbone's block activations in backward (less memory)"),
    "train.save_every_epochs": _int(1, nullable=True, help="also keep epoch_NNNN.pt every this many epochs; null: last.pt only"),
    "train.save_every_steps": _int(1, nullable=True, help="also save last.pt every this many steps; null: at epoch ends only"),
    "train.save_every_minutes": _float(0, low_open=True, nullable=True, help="also save last.pt every this many minutes"),
    "train.knn_every": _int(0, help="kNN top-1 accuracy on the validation split every this many epochs; 0: off"),
}


def parse_number(value):
    """A numeric string as users write it ('1e-3', ' 2 ') → int or float; anything else unchanged.

    YAML 1.1 (PyYAML) reads `1e-3` and `1E5` as text; this reads them as the numbers they are.
    """
    if isinstance(value, str) and _NUMBER.match(value):
        number = float(value)
        text = value.strip().lstrip("+-")
        if re.fullmatch(r"\d+", text):
            return int(value)
        return number
    return value


def check_setting(key: str, value, *, setting: Setting | None = None):
    """`value` checked against the rule of `key` (numeric strings read as numbers).

    Args:
        key: a dotted key of `SCHEMA` (`train.lr`), or any key when `setting` is given.
        value: the value as parsed from YAML.
        setting: the rule to apply [`SCHEMA[key]`].

    Returns:
        The value to store: ints for 'int', floats for 'float' (an int given for a float stays an
        int), a list of floats for ranges.

    Raises:
        VdiagError: the value has the wrong type or lies outside the range, naming the key.
    """
    rule = setting or SCHEMA[key]
    if value is None:
        if rule.nullable:
            return None
        _refuse(key, rule, value)
    value = parse_number(value)
    if rule.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _refuse(key, rule, value)
        if rule.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    _refuse(key, rule, value)
                value = int(value)
        elif not math.isfinite(value):
            _refuse(key, rule, value)
        if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
            _refuse(key, rule, value)
        if rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high)):
            _refuse(key, rule, value)
        return value
    if rule.kind == "bool_or_auto":
        if not isinstance(value, bool) and value != "auto":
            _refuse(key, rule, value)
        return value
    if rule.kind == "bool":
        if not isinstance(value, bool):
            _refuse(key, rule, value)
        return value
    if rule.kind == "choice":
        if value not in rule.choices and not (rule.or_builder and is_builder_name(value)):
            _refuse(key, rule, value)
        return value
    if rule.kind == "text":
        if not isinstance(value, str) or not value.strip():
            _refuse(key, rule, value)
        return value
    if rule.kind == "fractions":
        if not isinstance(value, list):
            _refuse(key, rule, value)
        items = [parse_number(v) for v in value]
        if not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m < 1 for m in items):
            _refuse(key, rule, value)
        return items
    if rule.kind == "scale_range":
        if not isinstance(value, list) or len(value) != 2:
            _refuse(key, rule, value)
        low, high = (parse_number(v) for v in value)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not (0 < low <= high <= 1):
            _refuse(key, rule, value)
        return [float(low), float(high)]
    raise AssertionError(f"unknown setting kind {rule.kind}")


def _refuse(key: str, rule: Setting, value) -> None:
    shown = repr(value) if not isinstance(value, str) else f"'{value}'"
    raise VdiagError(f"{key} must be {rule.describe()}, got {shown}; fix it in --set {key}=… or the --config file")


_ANNOTATIONS = {
    "float": _float(),
    "int": _int(),
    "bool": Setting("bool"),
    "str": Setting("text"),
    "float | None": _float(nullable=True),
    "int | None": _int(nullable=True),
    "str | None": Setting("text", nullable=True),
}


def argument_setting(annotation) -> Setting | None:
    """The rule for a method option from its signature's annotation ('float', 'int | None', …); None: unchecked."""
    if isinstance(annotation, type):
        annotation = annotation.__name__
    return _ANNOTATIONS.get(str(annotation))


def check_config(config: dict, argument_types: dict[str, object]) -> dict:
    """Every setting of a config checked against `SCHEMA`, method options against their annotations.

    Args:
        config: a resolved config (modified in place: numeric strings become numbers).
        argument_types: {option: annotation} of the config's method.

    Returns:
        `config`.

    Raises:
        VdiagError: the first setting with a wrong type or an out-of-range value, naming it.
    """
    config["seed"] = check_setting("seed", config["seed"])
    for key, rule in SCHEMA.items():
        if "." not in key:
            continue
        section, name = key.split(".", 1)
        if name in config[section]:
            config[section][name] = check_setting(key, config[section][name], setting=rule)
    for name, value in config["method_args"].items():
        rule = argument_setting(argument_types.get(name))
        if rule is not None:
            config["method_args"][name] = check_setting(f"method_args.{name}", value, setting=rule)
    return config


def section_keys(section: str) -> set[str]:
    """The setting names of one section (`SCHEMA` keys under `section.`)."""
    return {key.split(".", 1)[1] for key in SCHEMA if key.startswith(section + ".")}
