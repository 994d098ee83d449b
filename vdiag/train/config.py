"""Training configuration: presets, a YAML file, `--set key=value` overrides, one resolved dict.

Order of precedence (later wins):
    preset common sections → preset `methods.<name>` sections → the method's own defaults for
    arguments the preset does not name → `--config FILE.yaml` → command-line options → `--set`.

The resolved config is plain JSON-able data saved next to the checkpoints (`config.yaml`) and
inside them, so a run can be repeated or resumed from it alone. It is complete: every key below is
present, filled once here from the preset YAMLs (vdiag/assets/presets/), so that no reader
re-defaults a setting. A config stored by an older vdiag goes through `migrate_config`, which fills
the settings added since with the values of its preset.

Keys (dotted for `--set`): `method`, `preset`, `seed`, `backbone.{name,keep_temporal,weights}`,
`data.{path,video_root,format,split,split_id,frames,stride,positives,size,pad,workers,max_failures,persistent_workers,
prefetch_factor,fingerprint}`, `augment.{crop_scale,flip_p,jitter_p,grayscale_p,blur_p}`, `train.{epochs,batch_size,
optimizer,lr,weight_decay,momentum,warmup_epochs,min_lr_ratio,schedule,milestones,gamma,clip_grad,amp,
check_finite_every,accumulate,channels_last_3d,compile,activation_checkpointing,save_every_steps,save_every_minutes,
save_every_epochs,knn_every}` (the throughput and memory settings: docs/training.md),
`method_args.<name>`. Each setting's type and range: `vdiag.train.settings.SCHEMA`.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from vdiag import __version__
from vdiag.errors import VdiagError
from vdiag.methods import METHODS, method_arguments
from vdiag.train.settings import check_config, section_keys

PRESETS = ("cpu", "paper", "static-shortcut")  # static-shortcut: cpu with mild augmentation (docs/static-shortcut.md)
SECTIONS = ("backbone", "data", "augment", "train")
UNPRESET_DEFAULTS = {"backbone": {"weights": None}}  # settings no preset names; None: random initialisation


def load_preset(name: str) -> dict:
    """The preset `name` as stored in `vdiag/assets/presets/<name>.yaml`: the source of every default.

    Args:
        name: one of `PRESETS` ('cpu', 'paper', 'static-shortcut').

    Returns:
        The preset's sections (`backbone`, `data`, `augment`, `train`) and its `methods` overrides.
        A preset that says `extends: OTHER` is OTHER with its own values merged over it.

    Raises:
        VdiagError: an unknown preset name.
    """
    if name not in PRESETS:
        raise VdiagError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("vdiag.assets").joinpath("presets").joinpath(f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    base = data.pop("extends", None)
    return merge(load_preset(base), data) if base else data


def read_config_file(path: str | Path) -> dict:
    """The settings of a `--config FILE.yaml` (e.g. a run's saved config.yaml); {} for an empty file.

    Raises:
        VdiagError: the file is missing, is not valid YAML (with its line), or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise VdiagError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise VdiagError(f"{path} is not a text file (a YAML config like the saved config.yaml is expected)") from None
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
    """['train.lr=0.1', 'data.size=112'] → nested dict; values parsed as YAML scalars/lists.

    Numbers are read as users write them (`train.lr=1e-3` is 0.001, not the text YAML 1.1 makes of
    it): `check_config` converts numeric strings wherever the schema expects a number.

    Raises:
        VdiagError: an assignment without `=`.
    """
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
        if not all(parts):
            raise VdiagError(f"--set key {key.strip()!r} is not a dotted setting name (e.g. train.lr)")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise VdiagError(f"--set {'.'.join(parts[: parts.index(part) + 1])} is a setting, not a section; remove the extra part")
            node = child
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


def preset_defaults(preset: str, method: str) -> dict:
    """The sections a new run of `method` starts from: `preset`'s common sections, then its `methods.<method>` ones.

    Settings that no preset names (`backbone.weights`: None, random initialisation) are added, so
    the result holds every key of `SECTIONS` that the trainer and `build_model` read.

    Args:
        preset: one of `PRESETS`.
        method: a method name (one without a preset entry gets the common sections alone).

    Returns:
        {section: {key: value}} for each of `SECTIONS`.

    Raises:
        VdiagError: an unknown preset name.
    """
    preset_data = load_preset(preset)
    method_preset = preset_data.get("methods", {}).get(method, {})
    return {
        section: merge(merge(preset_data.get(section, {}), UNPRESET_DEFAULTS.get(section, {})), method_preset.get(section, {}))
        for section in SECTIONS
    }


def resolve_config(
    method: str,
    preset: str | None = None,
    *,
    config_file: str | Path | None = None,
    options: dict | None = None,
    assignments: list[str] | None = None,
    seed: int = 0,
    base: dict | None = None,
) -> dict:
    """The full training config for `method` (see the module docstring for precedence).

    Every setting is present in the result (the preset YAMLs are the source of defaults), so the
    trainer and the model builders index keys directly and never re-default them.

    Args:
        method: a name from `vdiag.methods.METHODS`; `options['method']` or the file's `method` win.
        preset: 'cpu' (default) or 'paper'; the file's `preset` is used when None.
        config_file: a YAML file of settings (e.g. a run's saved config.yaml).
        options: settings from command-line options, as nested dicts ({'train': {'epochs': 3}}).
        assignments: `--set key=value` strings, applied last.
        seed: the run's seed (ignored with `base`, whose seed is kept).
        base: a stored config (a run's, through `migrate_config`) to start from instead of the
            preset: what `vdiag pretrain --resume --set …` asks of the run it continues.

    Returns:
        A plain JSON-able dict: `method`, `preset`, `seed`, `backbone`, `data`, `augment`, `train`,
        `method_args`, `vdiag_version`. `data.path`, `data.video_root` and `backbone.weights` are absolute paths, so a
        run read from another folder still names the files it was trained on.

    Raises:
        VdiagError: an unknown method, preset, section or setting; an impossible value (see `validate`);
            a config file that is missing or not YAML; a `--set` without `=`.
    """
    file_config = read_config_file(config_file) if config_file else {}
    if base is not None:
        config = migrate_config(base)
        for layer in (file_config, {k: v for k, v in (options or {}).items() if k != "method"}, parse_set(assignments or [])):
            config = merge(config, layer)
        config["vdiag_version"] = __version__
        validate(config)
        return _absolute_paths(config)
    method = (options or {}).get("method") or file_config.get("method") or method
    if not isinstance(method, str) or method not in METHODS:
        raise VdiagError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    preset = preset or file_config.get("preset") or "cpu"
    if not isinstance(preset, str):
        raise VdiagError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    preset_data = load_preset(preset)
    config: dict = {"method": method, "preset": preset, "seed": seed, **preset_defaults(preset, method)}
    method_preset = preset_data.get("methods", {}).get(method, {})
    defaults = {k: v for k, v in method_arguments(method).items() if v is not None}
    config["method_args"] = merge(defaults, method_preset.get("args", {}))
    for layer in (file_config, options or {}, parse_set(assignments or [])):
        config = merge(config, layer)
    config["method"] = method
    config["vdiag_version"] = __version__
    validate(config)
    return _absolute_paths(config)


def _absolute_paths(config: dict) -> dict:
    """`data.path`, `data.video_root` and `backbone.weights` as absolute paths: a run read from another folder names its files."""
    for section, key in (("data", "path"), ("data", "video_root"), ("backbone", "weights")):
        if config[section][key]:
            config[section][key] = str(Path(config[section][key]).expanduser().resolve())
    return config


# Settings a resumed run may take from the command line: they change how it runs, not what it is
# (epochs may only be raised; a lower lr or a clip after divergence is the user's explicit choice).
CHANGEABLE_ON_RESUME = (
    "train.epochs",
    "train.lr",
    "train.clip_grad",
    "train.save_every_steps",
    "train.save_every_minutes",
    "train.knn_every",
    "train.save_every_epochs",
    "train.check_finite_every",
    "train.compile",
    "train.activation_checkpointing",
    "data.workers",
    "data.max_failures",
    "data.persistent_workers",
    "data.prefetch_factor",
)
# Written while training, not asked for: the writer's version, the data's fingerprint (checked on its
# own), and the class count `build_model` records for supervised runs from the data.
_NOT_COMPARED = ("vdiag_version", "data.fingerprint", "method_args.num_classes")


def config_differences(stored: dict, asked: dict, *, ignore: tuple[str, ...] = CHANGEABLE_ON_RESUME) -> list[tuple[str, object, object]]:
    """The settings where two configs differ, as (dotted key, stored value, asked value), in key order.

    `vdiag_version`, `data.fingerprint` and `method_args.num_classes` (written while training) are never compared; `ignore`
    names further keys [the settings a resumed run may change]. Both configs are completed with
    `migrate_config` first, so a setting added since `stored` was written is not a difference.

    Args:
        stored: the config a run was trained with (a checkpoint's).
        asked: the config the command line resolves to.
        ignore: dotted keys left out of the comparison.

    Returns:
        [(key, stored value, asked value)], empty when they agree.
    """
    a, b = _flatten(migrate_config(stored)), _flatten(migrate_config(asked))
    skipped = set(ignore) | set(_NOT_COMPARED)
    keys = list(dict.fromkeys([*a, *b]))
    return [(k, a.get(k), b.get(k)) for k in keys if k not in skipped and a.get(k) != b.get(k)]


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def migrate_config(config: dict) -> dict:
    """A config stored by an older vdiag (in a checkpoint or a config.yaml), completed with today's settings.

    Settings added since the config was written (e.g. `train.schedule`, `train.milestones`,
    `train.gamma`) get the value of the preset the config was resolved from (`config['preset']`,
    with the method's overrides): what `resolve_config` gives a new run of that preset. Stored values
    are kept, in their order, so a complete config comes back equal to the input. `method_args` are
    left alone: a method's own signature defaults apply to options a stored config lacks.

    `train.amp: true` in a config written before `train.accumulate` existed meant autocast on CUDA
    only, and becomes `auto` (a resumed CPU run stays in float32).

    Apply it wherever a stored config is read to build or continue something: the trainer does on
    resume; diagnostics reading `checkpoint['config']` should too.

    Args:
        config: a stored config (not modified).

    Returns:
        A new config holding every key of `preset_defaults` (and `preset`, `method_args`).

    Raises:
        VdiagError: a setting is missing and the config names a preset this vdiag does not know.
    """
    migrated = copy.deepcopy(config)
    migrated.setdefault("preset", "cpu")
    migrated.setdefault("method_args", {})
    train = migrated.get("train") or {}
    if train.get("amp") is True and "accumulate" not in train:
        # written before `train.amp` had `auto`: its `true` meant autocast on CUDA only, which is `auto` now
        train["amp"] = "auto"
    reference = preset_defaults("cpu", migrated["method"])
    missing = [f"{s}.{k}" for s in SECTIONS for k in reference[s] if k not in (migrated.get(s) or {})]
    if not missing:
        return migrated
    if migrated["preset"] not in PRESETS:
        raise VdiagError(
            f"this config lacks {', '.join(missing)} and names preset {migrated['preset']!r}, which this vdiag does not know; "
            f"add the settings to it or set preset to one of {', '.join(PRESETS)}"
        )
    defaults = preset_defaults(migrated["preset"], migrated["method"])
    for section in SECTIONS:
        values = migrated.setdefault(section, {})
        for key, value in defaults[section].items():
            values.setdefault(key, copy.deepcopy(value))
    return migrated


def validate(config: dict) -> None:
    """Unknown keys, wrong types and impossible values become one-line errors naming the key.

    Every setting is checked against its rule in `vdiag.train.settings.SCHEMA` (numeric strings
    such as `1e-3` become numbers, in place), method options against their signature's types; then
    the rules that join settings (ρ for the method).

    Raises:
        VdiagError: an unknown section or setting, a method option the method does not take, a value
            of the wrong type or outside its range (see `SCHEMA`), too few or too many positives,
            gradient accumulation for an objective it would change, activation checkpointing for a
            bi-level method.
    """
    _validate_keys(config)
    check_config(config, argument_types(config["method"]))
    data = config["data"]
    minimum, maximum = METHODS[config["method"]].min_positives, METHODS[config["method"]].max_positives
    if data["positives"] < minimum:
        raise VdiagError(f"method {config['method']} needs data.positives (ρ) ≥ {minimum}, got {data['positives']!r}")
    if maximum is not None and data["positives"] > maximum:
        raise VdiagError(f"method {config['method']} pairs exactly {maximum} clips per video; set --positives {maximum}")
    if config["train"].get("activation_checkpointing") and not METHODS[config["method"]].recomputable:
        raise VdiagError(
            f"train.activation_checkpointing does not work with {config['method']}: its inner passes run at other parameters "
            "than the module's, which a recomputation would use instead; set it to false (lower memory with train.amp)"
        )
    accumulate = config["train"].get("accumulate", 1)
    if accumulate > 1 and not METHODS[config["method"]].accumulates_exactly:
        raise VdiagError(
            f"train.accumulate={accumulate} would change {config['method']}'s objective (its loss compares the clips of the whole "
            "batch: negatives, batch statistics, codes); only supervised accumulates exactly. Set train.accumulate=1 and lower "
            "memory with train.activation_checkpointing=true or train.amp instead"
        )


def argument_types(method: str) -> dict[str, object]:
    """{option: annotation} of a method's keyword arguments, along its MRO (as `method_arguments`)."""
    import inspect

    from vdiag.methods.base import Method

    types: dict[str, object] = {}
    for cls in METHODS[method].__mro__:
        if "__init__" not in vars(cls) or not issubclass(cls, Method) or cls is Method:
            continue
        for p in list(inspect.signature(cls.__init__).parameters.values())[2:]:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                types.setdefault(p.name, p.annotation)
    return types


def _validate_keys(config: dict) -> None:
    allowed = {"method", "preset", "seed", "vdiag_version", "method_args", *SECTIONS}
    for key in config:
        if key not in allowed:
            raise VdiagError(f"unknown config section {key!r}; known: {', '.join(sorted(allowed))}")
    for section in (*SECTIONS, "method_args"):
        if not isinstance(config[section], dict):
            raise VdiagError(f"config section {section!r} must be a mapping of settings, got {config[section]!r}")
    for section in SECTIONS:
        known = section_keys(section)
        for key in config[section]:
            if key not in known:
                raise VdiagError(f"unknown setting {section}.{key}; known: {', '.join(sorted(known))}")
    known_args = method_arguments(config["method"])
    for key in config["method_args"]:
        if key not in known_args:
            raise VdiagError(f"method {config['method']!r} has no option method_args.{key}; its options are {', '.join(known_args)}")


def dump_config(config: dict) -> str:
    """The config as YAML, keys in their resolved order (what a run saves as config.yaml)."""
    return yaml.safe_dump(config, sort_keys=False)
