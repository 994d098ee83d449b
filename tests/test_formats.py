from pathlib import Path

import pytest
from helpers import write_indexed_video

from vdiag.data.formats import detect_format, load_index
from vdiag.errors import VdiagError


def make_ucf(root: Path, classes=("ApplyEyeMakeup", "Archery", "Biking")) -> Path:
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True)
    (split_dir / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    train, test = [], []
    for i, name in enumerate(classes, 1):
        for group in (1, 2, 3):
            rel = f"{name}/v_{name}_g0{group}_c01.avi"
            write_indexed_video(root / "UCF-101" / rel, num_frames=12, seed=i)
            (test if group == 1 else train).append(rel)
    (split_dir / "trainlist01.txt").write_text("".join(f"{rel} {classes.index(rel.split('/')[0]) + 1}\r\n" for rel in train))
    (split_dir / "testlist01.txt").write_text("".join(f"{rel}\r\n" for rel in test))
    return root


def make_hmdb(root: Path, classes=("brush_hair", "cartwheel")) -> Path:
    split_dir = root / "testTrainMulti_7030_splits"
    split_dir.mkdir(parents=True)
    for name in classes:
        lines = []
        for k, marker in enumerate((1, 1, 2, 0)):
            video = f"{name}_clip{k}.avi"
            write_indexed_video(root / "videos" / name / video, num_frames=10)
            lines.append(f"{video} {marker} \n")
        (split_dir / f"{name}_test_split1.txt").write_text("".join(lines))
    return root


def make_folder(root: Path, with_splits=False) -> Path:
    for split in ("train", "test") if with_splits else (None,):
        for name in ("jump", "run"):
            for k in range(2):
                base = root / split / name if split else root / name
                write_indexed_video(base / f"{name}{k}.mp4", num_frames=8)
    return root


def test_ucf101_official_layout(tmp_path):
    root = make_ucf(tmp_path / "ucf")
    assert detect_format(root) == "ucf101"
    train = load_index(root, split="train")
    test = load_index(root, split="test")
    assert train.class_names == ["ApplyEyeMakeup", "Archery", "Biking"]
    assert len(train) == 6 and len(test) == 3
    assert {r.label for r in test.records} == {0, 1, 2}
    assert all(r.path.is_file() for r in train.records + test.records)
    assert all("_g01_" in r.video_id for r in test.records)
    assert len(load_index(root, split="all")) == 9


def test_ucf101_bad_inputs(tmp_path):
    root = make_ucf(tmp_path / "ucf")
    with pytest.raises(VdiagError, match="no 'val' split"):
        load_index(root, split="val")
    with pytest.raises(VdiagError, match="trainlist02"):
        load_index(root, split="train", split_id=2)
    with pytest.raises(VdiagError, match="1, 2 or 3"):
        load_index(root, split_id=4)
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 3\n")
    with pytest.raises(VdiagError, match=r"trainlist01.txt:1: label 3 disagrees"):
        load_index(root, split="train")
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("NotAClass/v.avi 1\n")
    with pytest.raises(VdiagError, match="does not name a class"):
        load_index(root, split="train")
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\nthree B\n")
    with pytest.raises(VdiagError, match="classInd.txt:2"):
        load_index(root, split="train")


def test_hmdb51_official_layout(tmp_path):
    root = make_hmdb(tmp_path / "hmdb")
    assert detect_format(root) == "hmdb51"
    train = load_index(root, split="train")
    test = load_index(root, split="test")
    assert train.class_names == ["brush_hair", "cartwheel"]
    assert len(train) == 4 and len(test) == 2  # marker 0 (unused) is left out
    assert all(r.path.is_file() for r in train.records)


def test_hmdb51_malformed_split_file(tmp_path):
    root = make_hmdb(tmp_path / "hmdb")
    (root / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt").write_text("cartwheel_clip0.avi 7\n")
    with pytest.raises(VdiagError, match=r"cartwheel_test_split1.txt:1: expected '<video> <0\|1\|2>'"):
        load_index(root, split="train")


def test_class_folders_flat_and_with_splits(tmp_path):
    flat = load_index(make_folder(tmp_path / "flat"), split="all")
    assert flat.format == "folder" and flat.class_names == ["jump", "run"] and len(flat) == 4
    split = make_folder(tmp_path / "split", with_splits=True)
    assert len(load_index(split, split="train")) == 4
    assert len(load_index(split, split="all")) == 8
    with pytest.raises(VdiagError, match="no val/ folder"):
        load_index(split, split="val")


def test_csv_with_and_without_header_and_splits(tmp_path):
    root = make_folder(tmp_path / "videos")
    (tmp_path / "with_header.csv").write_text(
        "path,label,split\nvideos/jump/jump0.mp4,jump,train\nvideos/run/run0.mp4,run,train\nvideos/run/run1.mp4,run,test\n"
    )
    index = load_index(tmp_path / "with_header.csv", split="train")
    assert index.format == "csv" and index.class_names == ["jump", "run"] and len(index) == 2
    assert [r.label for r in load_index(tmp_path / "with_header.csv", split="test").records] == [1]
    (tmp_path / "plain.csv").write_text(f"{root}/jump/jump1.mp4,jump\n{root}/run/run1.mp4,run\n")
    plain = load_index(tmp_path / "plain.csv", split="all")
    assert len(plain) == 2 and all(r.path.is_file() for r in plain.records)
    with pytest.raises(VdiagError, match="no split column"):
        load_index(tmp_path / "plain.csv", split="test")
    (tmp_path / "bad.csv").write_text("a,b,c,d\n")
    with pytest.raises(VdiagError, match=r"bad.csv:1: expected 'path,label\[,split\]'"):
        load_index(tmp_path / "bad.csv", split="all")


def test_kinetics_annotation_csv_with_clips_as_files(tmp_path):
    for yid, label in (("abc123", "abseiling"), ("xyz789", "air drumming")):
        write_indexed_video(tmp_path / "clips" / "train" / label / f"{yid}_000010_000020.mp4", num_frames=8)
    annotations = tmp_path / "train.csv"
    annotations.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        'abseiling,abc123,10,20,train\n"air drumming",xyz789,10,20,train\nabseiling,missing1,0,10,train\n'
    )
    index = load_index(annotations, split="train", video_root=tmp_path / "clips")
    assert index.class_names == ["abseiling", "air drumming"]
    assert len(index) == 2 and index.missing == ["missing1"]
    with pytest.raises(VdiagError, match="none of the"):
        load_index(annotations, split="train", video_root=tmp_path / "empty-root")


def test_synthetic_manifest(tiny_synth):
    root, config = tiny_synth
    assert detect_format(root) == "synthetic"
    train = load_index(root, split="train")
    assert len(train) == 24 and train.class_names == config.fg_trajectory
    assert set(train.factor_values) == {"bg_color", "fg_shape", "bg_brightness", "fg_trajectory"}
    assert all(r.label == r.factors["fg_trajectory"] for r in train.records)


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(VdiagError, match="does not exist"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VdiagError, match="cannot tell the dataset format"):
        load_index(tmp_path / "empty")
    with pytest.raises(VdiagError, match="unknown dataset format"):
        load_index(tmp_path / "empty", format="kinetics700")
    loose = tmp_path / "loose"
    write_indexed_video(loose / "a.mp4", num_frames=4)
    with pytest.raises(VdiagError, match="no class sub-folders"):
        load_index(loose)
    (tmp_path / "empty_classes" / "run").mkdir(parents=True)
    with pytest.raises(VdiagError, match="cannot tell"):
        load_index(tmp_path / "empty_classes")


def test_ambiguous_layout_asks_for_format(tmp_path):
    root = make_ucf(tmp_path / "both")
    make_hmdb(root)
    with pytest.raises(VdiagError, match="--format"):
        load_index(root)
    assert load_index(root, format="hmdb51", split="train").format == "hmdb51"


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_every_format_loads_real_clips_through_each_decoder(tmp_path, tiny_synth, decoder):
    from vdiag.data.datasets import VideoClipDataset
    from vdiag.data.sampling import ClipSpec

    (tmp_path / "list.csv").write_text("path,label\nf/jump/jump0.mp4,jump\nf/run/run0.mp4,run\n")
    make_folder(tmp_path / "f")
    (tmp_path / "k" / "clips").mkdir(parents=True)
    write_indexed_video(tmp_path / "k" / "clips" / "abc_000001_000011.mp4", num_frames=8)
    (tmp_path / "k" / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,1,11,train\n")
    indexes = [
        load_index(make_ucf(tmp_path / "ucf"), split="test"),
        load_index(make_hmdb(tmp_path / "hmdb"), split="train"),
        load_index(tmp_path / "f", split="all"),
        load_index(tmp_path / "list.csv", split="all"),
        load_index(tmp_path / "k" / "train.csv", split="train"),
        load_index(tiny_synth[0], split="test"),
    ]
    for index in indexes:
        sample = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=2, decoder=decoder)[len(index) - 1]
        assert "failed" not in sample, (index.format, sample)
        assert sample["clips"].shape[:3] == (2, 3, 4), index.format
        assert sample["label"] == index.records[-1].label


def _frame_folder(folder: Path, count: int, start: int = 0) -> Path:
    from PIL import Image
    from video_kinds import coded_frames

    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(coded_frames(count)[start:]):
        Image.fromarray(frame).save(folder / f"img_{t + 1:05d}.jpg", quality=95)
    return folder


def test_class_folders_of_gifs_load_like_videos(tmp_path):
    from video_kinds import make_kind

    for name in ("hop", "skip"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for k in range(2):
            path, _, _ = make_kind("gif", tmp_path / "tmp" / f"{name}{k}", num_frames=12)
            path.rename(tmp_path / "data" / name / f"{k}.gif")
    root = tmp_path / "data"
    assert detect_format(root) == "folder"
    index = load_index(root, split="all")
    assert index.class_names == ["hop", "skip"] and len(index) == 4
    assert all(r.path.suffix == ".gif" for r in index.records)


def test_class_folders_of_frame_folders_load_like_videos(tmp_path):
    from video_kinds import frame_indices

    from vdiag.data.datasets import VideoClipDataset
    from vdiag.data.sampling import ClipSpec

    root = tmp_path / "frames"
    for name in ("hop", "skip"):
        for k in range(2):
            _frame_folder(root / name / f"video_{k}", 20 + k)
    assert detect_format(root) == "folder"
    index = load_index(root, split="all")
    assert [r.video_id for r in index.records] == ["hop/video_0", "hop/video_1", "skip/video_0", "skip/video_1"]
    sample = VideoClipDataset(index, ClipSpec(4, stride=3), clips_per_video=2)[1]
    for clip, start in zip(sample["clips"], sample["starts"].tolist()):
        assert frame_indices(clip.permute(1, 2, 3, 0).numpy()) == [start + 3 * k for k in range(4)]


def test_one_frame_folder_alone_gets_a_hint(tmp_path):
    _frame_folder(tmp_path / "v", 3)
    with pytest.raises(VdiagError, match="frame-folder dataset is <class>/<video>/<frames>"):
        detect_format(tmp_path / "v")


def test_rawframes_list(tmp_path):
    from vdiag.data.datasets import FailureTracker, VideoClipDataset, collate_clips
    from vdiag.data.sampling import ClipSpec

    _frame_folder(tmp_path / "rawframes" / "jump" / "a", 12)
    _frame_folder(tmp_path / "rawframes" / "run" / "b", 10)
    listing = tmp_path / "train_list_rawframes.txt"
    listing.write_text("jump/a 12 0\nrun/b 15 1\n")  # b states 15 frames, 10 are there
    assert detect_format(listing) == "rawframes"
    index = load_index(listing)
    assert index.format == "rawframes" and index.class_names == ["0", "1"]
    assert [(r.path.name, r.label, r.declared_frames) for r in index.records] == [("a", 0, 12), ("b", 1, 15)]
    dataset = VideoClipDataset(index, ClipSpec(4, 2), clips_per_video=1)
    warned = []
    tracker = FailureTracker(2, warn=warned.append)
    tracker.update(collate_clips([dataset[0], dataset[1]]))
    assert tracker.count_mismatches == {str(index.records[1].path): (15, 10)}
    assert len(warned) == 1 and "15 frames recorded but 10 decode" in warned[0]


def test_rawframes_errors_name_file_and_line(tmp_path):
    _frame_folder(tmp_path / "a", 3)
    listing = tmp_path / "list.txt"
    listing.write_text("a 3 0\na three 0\n")
    with pytest.raises(VdiagError, match=r"list.txt:2: expected 'folder num_frames label'"):
        load_index(listing, format="rawframes")
    listing.write_text("missing 3 0\n")
    with pytest.raises(VdiagError, match=r"list.txt:1: missing.*--video-root"):
        load_index(listing, format="rawframes")
