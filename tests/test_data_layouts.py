"""The layouts the field distributes, on generated miniature copies (tiny real videos, real file formats).

Kinetics as the CVDF download lays it out, the "path label" lists of PySlowFast / pytorchvideo,
Something-Something v2, Something-Else and Diving-48; `--video-root` on every command that takes
`--data` and in configs; listed-but-missing videos counted, said in one line, refused past half.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from helpers import write_indexed_video

from vdiag.data import formats
from vdiag.data.datasets import FailureTracker, VideoClipDataset
from vdiag.data.formats import detect_format, load_index, template_class
from vdiag.data.sampling import ClipSpec
from vdiag.errors import VdiagError


@pytest.fixture
def said(monkeypatch):
    """The warnings `check_missing` prints, captured (and the once-per-process memory cleared)."""
    lines: list[str] = []
    monkeypatch.setattr(formats, "_SAID_MISSING", set())
    monkeypatch.setattr("vdiag.console.warn", lines.append)
    return lines


# --- Kinetics, as the CVDF download lays it out -------------------------------------------


def make_kinetics(root: Path, present=("-3B32lodo2M", "0a_hWeCSxyE", "zzz_AbCdEf1", "Yy-9__xz0Q8")) -> Path:
    """k400/annotations/train.csv (quoted labels, ids starting with '-', an is_cc column) beside k400/train/."""
    rows = [
        ("riding a bike", "-3B32lodo2M", 59, 69),
        ("riding a bike", "0a_hWeCSxyE", 10, 20),
        ("riding a bike", "gone0000001", 30, 40),
        ("passing American football (in game)", "zzz_AbCdEf1", 0, 10),
        ("passing American football (in game)", "Yy-9__xz0Q8", 123, 133),
    ]
    (root / "annotations").mkdir(parents=True)
    lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for k, (label, youtube_id, start, end) in enumerate(rows):
        lines.append(f'"{label}",{youtube_id},{start},{end},train,0')
        if youtube_id in present:
            write_indexed_video(root / "train" / f"{youtube_id}_{start:06d}_{end:06d}.mp4", num_frames=6, seed=k)
    (root / "annotations" / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_kinetics_as_distributed_loads_with_and_without_video_root(tmp_path, said):
    k400 = make_kinetics(tmp_path / "k400")
    csv = k400 / "annotations" / "train.csv"
    with_root = load_index(csv, video_root=k400 / "train")
    assert with_root.class_names == ["passing American football (in game)", "riding a bike"]
    assert len(with_root) == 4 and with_root.missing == ["gone0000001"] and with_root.listed == 5
    assert {r.video_id for r in with_root.records} >= {"-3B32lodo2M_000059_000069", "Yy-9__xz0Q8_000123_000133"}
    videos = k400 / "train"
    dataset = f"csv dataset at {csv}, split train, videos under {videos}"
    assert said == [f"1 of 5 listed clips are missing; first: gone0000001 ({dataset}); using the 4 found"]
    beside = load_index(csv)  # no --video-root: annotations/train.csv beside train/
    assert [r.path for r in beside.records] == [r.path for r in with_root.records] and beside.video_root == videos
    load_index(csv, split="all", video_root=videos)
    assert len(said) == 1  # said once per dataset (and video root) and process
    load_index(csv, video_root=k400)  # another video root: said again
    assert len(said) == 2 and f"videos under {k400})" in said[1]


def test_a_kinetics_download_folder_is_not_read_as_class_folders(tmp_path):
    k400 = make_kinetics(tmp_path / "k400")  # train/ holds videos: it would look like one class named "train"
    with pytest.raises(VdiagError, match=r"is a Kinetics download \(annotations/train.csv\); pass its annotation file"):
        load_index(k400)


def test_more_than_half_missing_is_refused_naming_the_folder(tmp_path, said):
    k400 = make_kinetics(tmp_path / "k400", present=("zzz_AbCdEf1", "Yy-9__xz0Q8"))
    csv = k400 / "annotations" / "train.csv"
    with pytest.raises(
        VdiagError, match=r"3 of 5 listed clips are missing \(more than 50%; first: -3B32lodo2M; looked under .*--video-root"
    ):
        load_index(csv, video_root=k400 / "train")
    assert len(load_index(csv, video_root=k400 / "train", max_missing=1.0)) == 2  # check-data lists them all
    assert not said[:-1]


def test_missing_videos_reach_every_result_through_the_tracker():
    tracker = FailureTracker(4, missing=1)
    assert tracker.summary()["missing_videos"] == 1 and tracker.summary()["failed_videos"] == 0


def test_plain_csv_and_ucf_count_missing_files(tmp_path, said):
    for name in ("a", "b", "c"):
        write_indexed_video(tmp_path / "v" / f"{name}.mp4", num_frames=4)
    (tmp_path / "list.csv").write_text("path,label\nv/a.mp4,x\nv/b.mp4,y\nv/c.mp4,x\nv/gone.mp4,y\n")
    index = load_index(tmp_path / "list.csv", split="all")
    assert len(index) == 3 and index.missing == ["list.csv:5: v/gone.mp4"]
    assert said and said[0].startswith("1 of 4 listed clips are missing; first: list.csv:5: v/gone.mp4")


# --- PySlowFast / pytorchvideo / TimeSformer "path label" lists ---------------------------


def make_pathlists(root: Path) -> Path:
    """train.csv / test.csv "path label" lists beside the videos, one path holding spaces."""
    lines = {"train": [], "test": []}
    for part, label, name in [("train", 0, "jump/a.mp4"), ("train", 1, "run/b b.mp4"), ("train", 2, "hop/c.mp4"), ("test", 1, "run/d.mp4")]:
        write_indexed_video(root / "videos" / name, num_frames=6 + label)
        lines[part].append(f"videos/{name} {label}")
    for part, rows in lines.items():
        (root / f"{part}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_pathlist_file_and_folder(tmp_path):
    root = make_pathlists(tmp_path / "ds")
    assert detect_format(root / "train.csv") == "pathlist"
    assert detect_format(root) == "pathlist"  # PySlowFast's DATA.PATH_TO_DATA_DIR
    single = load_index(root / "train.csv")
    assert single.format == "pathlist" and single.class_names == ["0", "1", "2"]
    assert [(r.path.name, r.label, r.split) for r in single.records] == [("a.mp4", 0, None), ("b b.mp4", 1, None), ("c.mp4", 2, None)]
    assert single.records[1].video_id == "videos/run/b b"
    both = load_index(root, split="all")
    assert [(r.label, r.split) for r in both.records] == [(0, "train"), (1, "train"), (2, "train"), (1, "test")]
    assert [r.path.name for r in load_index(root, split="test").records] == ["d.mp4"]
    with pytest.raises(VdiagError, match=r"has no val.csv list \(found: train.csv, test.csv\)"):
        load_index(root, split="val")
    sample = VideoClipDataset(single, ClipSpec(4, 1), clips_per_video=1)[1]  # the path with a space decodes
    assert "failed" not in sample and sample["clips"].shape[:3] == (1, 3, 4) and sample["label"] == 1


def test_pathlist_folder_without_a_test_list_tests_on_val(tmp_path):
    root = make_pathlists(tmp_path / "ds")
    (root / "test.csv").rename(root / "val.csv")  # PySlowFast's Kinetics folders: train.csv and val.csv
    assert [(r.path.name, r.split) for r in load_index(root, split="test").records] == [("d.mp4", "test")]
    assert [(r.path.name, r.split) for r in load_index(root, split="val").records] == [("d.mp4", "val")]
    assert [r.split for r in load_index(root, split="all").records] == ["train", "train", "train", "test"]


def test_pathlist_paths_come_from_the_video_root(tmp_path):
    root = make_pathlists(tmp_path / "ds")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("jump/a.mp4 0\nrun/b b.mp4 1\n")  # PySlowFast's DATA.PATH_PREFIX
    index = load_index(tmp_path / "lists" / "train.txt", video_root=root / "videos")
    assert [r.path for r in index.records] == [root / "videos" / "jump" / "a.mp4", root / "videos" / "run" / "b b.mp4"]


def test_pathlist_errors_name_file_and_line(tmp_path):
    listing = tmp_path / "train.csv"
    write_indexed_video(tmp_path / "a.mp4", num_frames=4)
    listing.write_text("a.mp4 0\na.mp4 jump\n")
    with pytest.raises(VdiagError, match=r"train.csv:2: expected 'path label' \(an integer label after the last space\)"):
        load_index(listing)
    listing.write_text("a.mp4 0\na.mp4 -1\n")
    with pytest.raises(VdiagError, match=r"train.csv:2: label -1: an unlabelled \(test\) list"):
        load_index(listing)
    listing.write_text("just-a-path.mp4\n")
    with pytest.raises(VdiagError, match=r"train.csv:1: cannot tell the list format .*'path label'"):
        load_index(listing)


def test_list_detection_keeps_csv_and_rawframes_apart(tmp_path):
    (tmp_path / "c.csv").write_text("path,label\na.mp4,jump\n")
    (tmp_path / "r.txt").write_text("jump/video_a 150 0\n")
    (tmp_path / "p.txt").write_text("jump/a.mp4 150 0\n")  # a video file: "path label" with a space in the path
    (tmp_path / "t.tsv").write_text("a.mp4\tjump\n")
    assert [detect_format(tmp_path / n) for n in ("c.csv", "r.txt", "p.txt", "t.tsv")] == ["csv", "rawframes", "pathlist", "csv"]


# --- Something-Something v2 and Something-Else --------------------------------------------

SSV2_LABELS = {
    "Holding something": "0",
    "Putting something onto something": "1",
    "Something falling like a rock": "2",
    "Tipping something with something in it over, so something in it falls out": "3",
}


def _entry(video_id, template, placeholders):
    label = template
    for word in placeholders:
        label = label.replace(label[label.index("[") : label.index("]") + 1], word, 1)
    return {"id": video_id, "label": label.lower(), "template": template, "placeholders": placeholders}


SSV2_TRAIN = [
    _entry("101", "Holding [something]", ["a cup"]),
    _entry("102", "Putting [something] onto [something]", ["pen", "box"]),
    _entry("103", "[Something] falling like a rock", ["stone"]),
    _entry("104", "Tipping [something] with [something in it] over, so [something in it] falls out", ["cup", "coin", "coin"]),
    _entry("105", "Holding [something]", ["a phone"]),
]
SSV2_VALIDATION = [_entry("201", "Holding [something]", ["keys"]), _entry("202", "Putting [something] onto [something]", ["lid", "jar"])]


def _webm(path: Path, seed: int) -> None:
    from helpers import indexed_frames
    from video_kinds import write_pyav

    write_pyav(path, indexed_frames(6, seed=seed), "libvpx-vp9", fps=12, options={"crf": "10", "b": "0", "g": "6"})


def make_ssv2(root: Path, skip=("105",)) -> Path:
    """labels/ with the official JSON files (pretty-printed, string indices) beside 20bn-something-something-v2/<id>.webm."""
    (root / "labels").mkdir(parents=True)
    for name, data in [("train", SSV2_TRAIN), ("validation", SSV2_VALIDATION), ("labels", SSV2_LABELS)]:
        (root / "labels" / f"something-something-v2-{name}.json").write_text(json.dumps(data, indent=4))
    (root / "labels" / "something-something-v2-test.json").write_text(json.dumps([{"id": "301"}], indent=4))
    for k, entry in enumerate(SSV2_TRAIN + SSV2_VALIDATION):
        if entry["id"] not in skip:
            _webm(root / "20bn-something-something-v2" / f"{entry['id']}.webm", seed=k)
    return root


def test_templates_lose_their_brackets():
    assert template_class("[Something] falling like a rock") == "Something falling like a rock"
    assert template_class("Tipping [something] with [something in it] over, so [something in it] falls out") in SSV2_LABELS


def test_ssv2_loads_templates_as_classes_and_validation_as_test(tmp_path, said):
    root = make_ssv2(tmp_path / "ssv2")
    assert detect_format(root) == "ssv2"
    train = load_index(root, split="train")
    assert train.class_names == list(SSV2_LABELS)
    assert [(r.video_id, r.label, r.split) for r in train.records] == [
        ("101", 0, "train"),
        ("102", 1, "train"),
        ("103", 2, "train"),
        ("104", 3, "train"),
    ]
    assert train.missing == ["105"] and train.video_root == root / "20bn-something-something-v2"
    assert said and said[0].startswith("1 of 5 listed clips are missing; first: 105 (ssv2 dataset at")
    test = load_index(root, split="test")
    assert [(r.video_id, r.label, r.split) for r in test.records] == [("201", 0, "test"), ("202", 1, "test")]
    assert [r.video_id for r in load_index(root, split="val").records] == ["201", "202"]
    assert len(load_index(root, split="all")) == 6
    sample = VideoClipDataset(test, ClipSpec(4, 1), mode="eval", clips_per_video=1)[1]  # VP9 WebM decodes
    assert "failed" not in sample and sample["clips"].shape == (1, 3, 4, 32, 40) and sample["label"] == 1


def test_ssv2_videos_from_the_video_root(tmp_path):
    root = make_ssv2(tmp_path / "ssv2", skip=())
    moved = tmp_path / "elsewhere"
    shutil.move(root / "20bn-something-something-v2", moved)
    with pytest.raises(VdiagError, match=r"5 of 5 listed clips are missing .*--video-root"):
        load_index(root)
    index = load_index(root, video_root=moved)
    assert len(index) == 5 and all(r.path.parent == moved for r in index.records)


def test_ssv2_errors_name_file_and_line(tmp_path):
    root = make_ssv2(tmp_path / "ssv2")
    train = root / "labels" / "something-something-v2-train.json"
    bad = json.loads(train.read_text())
    bad[2]["template"] = "Juggling [something]"
    train.write_text(json.dumps(bad, indent=4))
    line = 1 + train.read_text()[: train.read_text().index('"103"')].count("\n") - 1  # the entry opens one line above its "id"
    with pytest.raises(VdiagError, match=rf"something-something-v2-train.json:{line}: template 'Juggling \[something\]'"):
        load_index(root)
    del bad[2]["template"]
    train.write_text(json.dumps(bad, indent=4))
    with pytest.raises(VdiagError, match=rf"train.json:{line}: entry 3 is not"):
        load_index(root)
    train.write_text('[{"id": "101",\n "template": "Holding [something]"},\n oops]')
    with pytest.raises(VdiagError, match=r"train.json:3: not valid JSON"):
        load_index(root)
    (root / "labels" / "something-something-v2-labels.json").write_text(json.dumps({"Holding something": "0", "Other": "2"}))
    with pytest.raises(VdiagError, match=r"class indices must be 0 … 1"):
        load_index(root)
    with pytest.raises(VdiagError, match=r"is a JSON annotation file; pass the folder"):
        load_index(train)


def test_something_else_split_folder_with_frame_folders(tmp_path):
    from helpers import indexed_frames
    from PIL import Image

    root = tmp_path / "compositional"
    root.mkdir()
    labels = {template_class(e["template"]): i for i, e in enumerate(SSV2_TRAIN[:4])}  # integer indices, as Something-Else writes them
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "train.json").write_text(json.dumps(SSV2_TRAIN[:4]))  # one line, as Something-Else writes them
    (root / "validation.json").write_text(json.dumps(SSV2_VALIDATION))
    for entry in SSV2_TRAIN[:4] + SSV2_VALIDATION:
        for t, frame in enumerate(indexed_frames(5)):
            (tmp_path / "frames" / entry["id"]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(tmp_path / "frames" / entry["id"] / f"{t + 1:04d}.jpg")
    assert detect_format(root) == "something-else"
    index = load_index(root, split="all", video_root=tmp_path / "frames")
    assert index.format == "something-else" and index.class_names == list(labels)
    assert [(r.video_id, r.label, r.split) for r in index.records][-2:] == [("201", 0, "test"), ("202", 1, "test")]
    sample = VideoClipDataset(index, ClipSpec(4, 1), clips_per_video=1)[0]
    assert "failed" not in sample and sample["clips"].shape[:3] == (1, 3, 4)
    broken = [*SSV2_TRAIN[:2], {"id": "9"}]
    (root / "train.json").write_text(json.dumps(broken))
    with pytest.raises(VdiagError, match=r"train.json:1: entry 3 is not"):
        load_index(root, video_root=tmp_path / "frames")


# --- Diving-48 ----------------------------------------------------------------------------

VOCAB = [["Back", "15som", "05Twis", "FREE"], ["Back", "15som", "15Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"]]


def make_diving48(root: Path) -> Path:
    """annotations/Diving48_V2_{train,test}.json + Diving48_vocab.json, rgb/<vid_name>.mp4."""
    train = [{"vid_name": f"-mmq0PT-u8k_0015{k}", "label": k % 3, "start_frame": 0, "end_frame": 7} for k in range(4)]
    test = [{"vid_name": "_8Vy3dlHg2w_00000", "label": 2, "start_frame": 0, "end_frame": 7}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "Diving48_V2_train.json").write_text(json.dumps(train))
    (root / "annotations" / "Diving48_V2_test.json").write_text(json.dumps(test))
    (root / "annotations" / "Diving48_vocab.json").write_text(json.dumps(VOCAB))
    for k, entry in enumerate(train + test):
        write_indexed_video(root / "rgb" / f"{entry['vid_name']}.mp4", num_frames=8, seed=k)
    return root


def test_diving48_names_classes_from_the_vocabulary(tmp_path):
    root = make_diving48(tmp_path / "diving48")
    assert detect_format(root) == "diving48"
    train, test = load_index(root, split="train"), load_index(root, split="test")
    assert train.class_names == ["Back 15som 05Twis FREE", "Back 15som 15Twis FREE", "Forward 25som NoTwis PIKE"]
    assert [r.label for r in train.records] == [0, 1, 2, 0] and all(r.path.parent == root / "rgb" for r in train.records)
    assert [(r.video_id, r.label, r.split) for r in test.records] == [("_8Vy3dlHg2w_00000", 2, "test")]
    with pytest.raises(VdiagError, match="Diving-48 has no 'val' split"):
        load_index(root, split="val")
    sample = VideoClipDataset(test, ClipSpec(4, 2), mode="eval", clips_per_video=1)[0]
    assert "failed" not in sample and sample["label"] == 2


def test_diving48_errors_name_file_and_line(tmp_path):
    root = make_diving48(tmp_path / "diving48")
    test = root / "annotations" / "Diving48_V2_test.json"
    test.write_text('[\n {"vid_name": "_8Vy3dlHg2w_00000", "label": 2},\n {"vid_name": "x", "label": 7}\n]')
    with pytest.raises(VdiagError, match=r"Diving48_V2_test.json:3: entry 2: label 7 is outside 0 … 2"):
        load_index(root)
    test.write_text('[{"vid_name": "x", "label": 1, "start_frame": 9, "end_frame": 2}]')
    with pytest.raises(VdiagError, match=r"Diving48_V2_test.json:1: entry 1: start_frame / end_frame"):
        load_index(root)
    test.write_text('[{"vid_name": "x"}]')
    with pytest.raises(VdiagError, match=r"Diving48_V2_test.json:1: entry 1 is not"):
        load_index(root)


# --- --video-root: every command, configs, the recorded fingerprint ----------------------


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_command_that_takes_data_takes_video_root():
    from vdiag.cli.main import cli

    takes_data = [name for name, command in _commands(cli) if "--data" in _flags(command)]
    assert {"pretrain", "probe static-bias", "probe shuffle", "eval linear", "eval finetune", "viz eig", "viz tsne", "report"} <= set(
        takes_data
    )
    without = [name for name, command in _commands(cli) if "--data" in _flags(command) and "--video-root" not in _flags(command)]
    assert without == ["demo"]  # demo's --data is a synthetic dataset folder: it has no annotation files
    assert "--video-root" in _flags(dict(_commands(cli))["check-data"])


def _flags(command: click.Command) -> set[str]:
    return {flag for p in command.params for flag in getattr(p, "opts", [])}


def test_video_root_in_configs_is_checked_and_stored_absolute(tmp_path, monkeypatch):
    from vdiag.train.config import resolve_config

    monkeypatch.chdir(tmp_path)
    config = resolve_config("simclr", options={"data": {"path": "k400/annotations/train.csv", "video_root": "k400/train"}})
    assert config["data"]["video_root"] == str(tmp_path / "k400" / "train")
    assert resolve_config("simclr")["data"]["video_root"] is None
    with pytest.raises(VdiagError, match=r"data.video_root must be a path or name \(text\) \(or null\), got 3"):
        resolve_config("simclr", assignments=["data.video_root=3"])


def test_video_root_on_a_folder_dataset_is_refused(tmp_path, tiny_synth):
    with pytest.raises(VdiagError, match="--video-root applies to layouts that list their videos"):
        load_index(tiny_synth[0], video_root=tmp_path)


def test_diagnostics_read_a_run_with_its_recorded_video_root(tmp_path, said):
    from vdiag.checkpoint import dataset_fingerprint
    from vdiag.diagnostics.data import resolve_data

    k400 = make_kinetics(tmp_path / "k400")
    copy = tmp_path / "copy"
    shutil.copytree(k400 / "train", copy)
    csv = k400 / "annotations" / "train.csv"
    trained = load_index(csv, video_root=copy)
    fingerprint = dataset_fingerprint(trained.records, trained.root)
    assert fingerprint != dataset_fingerprint(load_index(csv).records, csv)  # the same names under another root
    data = {"path": str(csv), "format": "auto", "split": "train", "split_id": 1, "video_root": str(copy), "fingerprint": fingerprint}
    ref = resolve_data(SimpleNamespace(config={"data": data}))
    assert ref.video_root == str(copy) and [r.path for r in ref.split("all").records] == [r.path for r in trained.records]
    assert ref.describe()["video_root"] == str(copy) and ref.describe()["missing_videos"] == 1
    with pytest.raises(VdiagError, match="is not the one this checkpoint was trained on"):
        resolve_data(SimpleNamespace(config={"data": {**data, "video_root": None}}))


def test_video_root_reaches_training_and_the_diagnostics_from_the_command_line(tmp_path):
    import torch
    from test_pretrain import run_cli

    from vdiag.models.backbones import build_backbone

    torch.save(build_backbone("tiny").body.state_dict(), tmp_path / "w.pt")
    k400 = make_kinetics(tmp_path / "k400")
    csv = k400 / "annotations" / "train.csv"
    empty = tmp_path / "empty"
    empty.mkdir()
    pretrain = ["pretrain", "--method", "simclr", "--out", tmp_path / "run"]
    for command in (pretrain, ["probe", "static-bias", tmp_path / "w.pt", "--backbone", "tiny"]):
        proc = run_cli(*command, "--data", csv, "--video-root", empty, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"none of the 5 clips of {csv} were found under {empty}" in proc.stderr, proc.stderr
