"""Training configuration: presets, a YAML file, `--set key=value` overrides, one resolved dict.

Order of precedence (later wins):
    preset common sections → preset `methods.<name>` sections → the method's own defaults for
    arguments the preset does not name → `--config FILE.yaml` → command-line options → `--set`.

The resolved config is plain JSON-able data saved next to the checkpoints (`config.yaml`) and
inside them, so a run can be repeated or resumed from it alone.

Keys (dotted for `--set`): `method`, `seed`, `backbone.{name,keep_temporal,weights}`,
`data.{path,format,split,split_id,frames,stride,positives,size,workers,max_failures}`,
`augment.{crop_scale,flip_p,jitter_p,grayscale_p,blur_p}`, `train.{epochs,batch_size,optimizer,lr,
weight_decay,momentum,warmup_epochs,min_lr_ratio,clip_grad,amp}`, `method_args.<name>`.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from vdiag import __version__
from vdiag.errors import VdiagError
from vdiag.methods import METHODS, method_arguments

PRESETS = ("cpu", "paper")
SECTIONS = ("backbone", "data", "augment", "train")


def load_preset(name: str) -> dict:
    if name not in PRESETS:
        raise VdiagError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("vdiag.assets").joinpath("presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VdiagError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise VdiagError(f"{path}{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VdiagError(f"{path} must hold a mapping of settings (like the saved config.yaml), not a {type(data).__name__}")
    return data


def parse_set(assignments: list[str]) -> dict:
    """['train.lr=0.1', 'data.size=112'] → nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise VdiagError(f"--set expects key=value (e.g. train.lr=0.05), got {assignment!r}")
        key, raw = assignment.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; `override` wins; neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(
    method: str,
    preset: str | None = None,
    config_file: str | Path | None = None,
    options: dict | None = None,
    assignments: list[str] | None = None,
    seed: int = 0,
) -> dict:
    """The full training config for `method` (see the module docstring for precedence)."""
    file_config = read_config_file(config_file) if config_file else {}
    method = (options or {}).get("method") or file_config.get("method") or method
    if method not in METHODS:
        raise VdiagError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    preset = preset or file_config.get("preset") or "cpu"
    preset_data = load_preset(preset)
    config: dict = {"method": method, "preset": preset, "seed": seed}
    for section in SECTIONS:
        config[section] = copy.deepcopy(preset_data.get(section, {}))
    method_preset = preset_data.get("methods", {}).get(method, {})
    defaults = {k: v for k, v in method_arguments(method).items() if v is not None}
    config["method_args"] = merge(defaults, method_preset.get("args", {}))
    for section in SECTIONS:
        config[section] = merge(config[section], method_preset.get(section, {}))
    for layer in (file_config, options or {}, parse_set(assignments or [])):
        config = merge(config, layer)
    config["method"] = method
    config["vdiag_version"] = __version__
    validate(config)
    return config


def validate(config: dict) -> None:
    """Unknown keys and impossible values become one-line errors naming the key."""
    allowed = {"method", "preset", "seed", "vdiag_version", "method_args", *SECTIONS}
    for key in config:
        if key not in allowed:
            raise VdiagError(f"unknown config section {key!r}; known: {', '.join(sorted(allowed))}")
    reference = load_preset("cpu")
    for section in SECTIONS:
        if not isinstance(config[section], dict):
            raise VdiagError(f"config section {section!r} must be a mapping")
        known = set(reference[section]) | ({"weights"} if section == "backbone" else set())
        for key in config[section]:
            if key not in known:
                raise VdiagError(f"unknown setting {section}.{key}; known: {', '.join(sorted(known))}")
    known_args = method_arguments(config["method"])
    for key in config["method_args"]:
        if key not in known_args:
            raise VdiagError(f"method {config['method']!r} has no option method_args.{key}; its options are {', '.join(known_args)}")
    train, data = config["train"], config["data"]
    for key in ("epochs", "batch_size"):
        if not isinstance(train[key], int) or train[key] < 1:
            raise VdiagError(f"train.{key} must be a positive integer, got {train[key]!r}")
    if not isinstance(train["lr"], (int, float)) or train["lr"] <= 0:
        raise VdiagError(f"train.lr must be a positive number, got {train['lr']!r}")
    if train.get("schedule", "cosine") not in ("cosine", "step"):
        raise VdiagError(f"train.schedule must be cosine or step, got {train['schedule']!r}")
    milestones = train.get("milestones", [])
    if not isinstance(milestones, list) or not all(isinstance(m, (int, float)) and 0 < m < 1 for m in milestones):
        raise VdiagError(f"train.milestones must be a list of fractions of the run in (0, 1), got {milestones!r}")
    if train["optimizer"] not in ("sgd", "lars", "adamw"):
        raise VdiagError(f"train.optimizer must be sgd, lars or adamw, got {train['optimizer']!r}")
    minimum, maximum = METHODS[config["method"]].min_positives, METHODS[config["method"]].max_positives
    if not isinstance(data["positives"], int) or data["positives"] < minimum:
        raise VdiagError(f"method {config['method']} needs data.positives (ρ) ≥ {minimum}, got {data['positives']!r}")
    if maximum is not None and data["positives"] > maximum:
        raise VdiagError(f"method {config['method']} pairs exactly {maximum} clips per video; set --positives {maximum}")
    for key in ("frames", "stride", "size"):
        if not isinstance(data[key], int) or data[key] < 1:
            raise VdiagError(f"data.{key} must be a positive integer, got {data[key]!r}")


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
