"""Every setting has a type, a range and a one-line error (vdiag/train/settings.py), generated from the schema."""

import pytest
import yaml

from vdiag.errors import VdiagError
from vdiag.methods import METHODS
from vdiag.train.config import argument_types, resolve_config
from vdiag.train.settings import SCHEMA, Setting, argument_setting, check_setting, parse_number


def _bad_values(rule: Setting) -> dict[str, object]:
    """A value of the wrong type and one outside the range, for any rule."""
    if rule.kind in ("int", "float"):
        wrong = "fast"
        if rule.low is not None:
            outside = rule.low if rule.low_open else rule.low - 1
        else:
            outside = rule.high + 1
        return {"type": wrong, "range": outside}
    if rule.kind in ("bool", "bool_or_auto"):
        return {"type": "maybe", "range": 2}
    if rule.kind == "choice":
        return {"type": [1], "range": "nonsense"}
    if rule.kind == "text":
        return {"type": [1], "range": " "}
    if rule.kind == "fractions":
        return {"type": "soon", "range": [0.5, 1.5]}
    if rule.kind == "scale_range":
        return {"type": "wide", "range": [2, 1]}
    raise AssertionError(rule.kind)


CASES = [(key, what, value) for key, rule in SCHEMA.items() for what, value in _bad_values(rule).items()]


@pytest.mark.parametrize("key, what, value", CASES, ids=[f"{k}-{w}" for k, w, _ in CASES])
def test_every_setting_refuses_a_wrong_type_and_an_out_of_range_value_in_one_line(key, what, value):
    assignment = f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
    with pytest.raises(VdiagError) as caught:
        resolve_config("simclr", "cpu", assignments=[assignment])
    message = str(caught.value)
    assert key in message and "\n" not in message, message


def test_the_generated_cases_cover_every_key_of_both_presets():
    for preset in ("cpu", "paper"):
        config = resolve_config("simclr", preset)
        keys = {"seed"} | {f"{s}.{k}" for s in ("backbone", "data", "augment", "train") for k in config[s]}
        assert keys == set(SCHEMA), keys ^ set(SCHEMA)
    assert len(CASES) == 2 * len(SCHEMA)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_typed_method_option_refuses_a_wrong_type(method):
    config = resolve_config(method, "cpu")
    for name, annotation in argument_types(method).items():
        rule = argument_setting(annotation)
        if rule is None or name not in config["method_args"]:
            continue
        wrong = {"float": "warm", "int": 1.5, "bool": "maybe", "text": "[1]"}[rule.kind]
        with pytest.raises(VdiagError, match=rf"method_args\.{name} must be"):
            resolve_config(method, "cpu", assignments=[f"method_args.{name}={wrong}"])


@pytest.mark.parametrize(
    "assignment, key, expected",
    [
        ("train.lr=1e-3", ("train", "lr"), 0.001),
        ("train.weight_decay=1e-6", ("train", "weight_decay"), 1e-6),
        ("method_args.temperature=1e-1", ("method_args", "temperature"), 0.1),
        ("train.epochs=2E0", ("train", "epochs"), 2),
        ("train.clip_grad=5e-1", ("train", "clip_grad"), 0.5),
        ("augment.crop_scale=[2e-1, 1]", ("augment", "crop_scale"), [0.2, 1.0]),
        ("train.milestones=[5e-1]", ("train", "milestones"), [0.5]),
    ],
)
def test_numbers_parse_as_users_write_them(assignment, key, expected):
    config = resolve_config("simclr", "cpu", assignments=[assignment])
    value = config[key[0]][key[1]]
    assert value == expected and type(value) is type(expected)


def test_numbers_in_a_config_file_parse_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: simclr\ntrain:\n  lr: 1e-3\n  weight_decay: 1e-6\nmethod_args:\n  temperature: 2e-1\n")
    config = resolve_config("simclr", config_file=path)
    assert config["train"]["lr"] == 0.001 and config["train"]["weight_decay"] == 1e-6 and config["method_args"]["temperature"] == 0.2


def test_words_stay_words():
    assert parse_number("abc") == "abc" and parse_number("1e") == "1e" and parse_number("inf") == "inf"
    assert parse_number("12") == 12 and parse_number("-3.5") == -3.5
    with pytest.raises(VdiagError, match="seed must be an integer ≥ 0, got 'abc'"):
        resolve_config("simclr", assignments=["seed=abc"])
    with pytest.raises(VdiagError, match="train.lr must be a number > 0"):
        check_setting("train.lr", float("nan"))


def test_negative_clip_grad_is_refused_not_inverted():
    """clip_grad_norm_ with max_norm −1 multiplies every gradient by a negative factor (ascent)."""
    with pytest.raises(VdiagError, match=r"train.clip_grad must be a number > 0 \(or null\), got -1"):
        resolve_config("supervised", assignments=["train.clip_grad=-1"])
    assert resolve_config("supervised", assignments=["train.clip_grad=null"])["train"]["clip_grad"] is None


def test_a_binary_or_foreign_config_file_is_one_line(tmp_path):
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(VdiagError, match="is not a text file"):
        resolve_config("simclr", config_file=binary)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(VdiagError, match="must hold a mapping"):
        resolve_config("simclr", config_file=listing)
    weird = tmp_path / "weird.yaml"
    weird.write_text("method: [simclr]\n")
    with pytest.raises(VdiagError, match="unknown method"):
        resolve_config(None, config_file=weird)
    section = tmp_path / "section.yaml"
    section.write_text("train: 3\n")
    with pytest.raises(VdiagError, match="config section 'train' must be a mapping"):
        resolve_config("simclr", config_file=section)


def test_set_keys_that_are_not_settings_are_one_line():
    with pytest.raises(VdiagError, match="not a dotted setting name"):
        resolve_config("simclr", assignments=["train..lr=1"])
    with pytest.raises(VdiagError, match="unknown setting train.lrate"):
        resolve_config("simclr", assignments=["train.lrate=1"])


def test_pad_reaches_the_clip_sampler(tiny_synth):
    from vdiag.train.trainer import build_training_dataset, resolve_data

    root, _ = tiny_synth
    for pad, policy in (("clamp", "pad"), ("loop", "loop")):
        config = resolve_config("simclr", options={"data": {"path": str(root)}}, assignments=[f"data.pad={pad}"])
        dataset = build_training_dataset(config, resolve_data(config), "auto")
        assert dataset.clip.short_video == policy
        # a 3-frame video and a clip at stride 2: clamp repeats the last frame, loop wraps to the start
        assert [int(i) for i in dataset.clip.indices(0, 3)[:4]] == ([0, 2, 2, 2] if pad == "clamp" else [0, 2, 1, 0])


def test_data_and_weights_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"")
    config = resolve_config("simclr", options={"data": {"path": "data"}, "backbone": {"weights": "w.pt"}})
    assert config["data"]["path"] == str(tmp_path / "data") and config["backbone"]["weights"] == str(tmp_path / "w.pt")


def test_config_differences_name_what_a_command_changes_and_skip_what_training_wrote():
    from vdiag.train.config import config_differences

    stored = resolve_config("supervised", assignments=["train.epochs=1"])
    stored["method_args"]["num_classes"] = 4  # recorded by build_model from the data
    stored["data"]["fingerprint"] = "24:0123456789abcdef"
    assert config_differences(stored, resolve_config("supervised", assignments=["train.epochs=1"])) == []
    asked = resolve_config("supervised", assignments=["train.epochs=3", "train.lr=1e-3", "data.size=32"])
    assert config_differences(stored, asked) == [("data.size", 64, 32)]  # epochs and lr may change on resume
    assert ("train.epochs", 1, 3) in config_differences(stored, asked, ignore=())
