"""Dataset indexes: which videos a dataset has, their labels and splits.

Ten layouts are read (docs/data-formats.md shows each):
- `synthetic`: a folder written by `vdiag synth-dataset` (manifest.json + labels.csv);
- `folder`: one sub-folder per class (optionally under train/ val/ test/) holding video files
  (GIF included) or per-video folders of JPEG/PNG frames;
- `ucf101`: the official layout (classInd.txt, trainlist0N.txt, testlist0N.txt; splits 1–3);
- `hmdb51`: the official layout (per-class `<class>_test_splitN.txt`, 1 = train, 2 = test, 0 = unused);
- `csv`: `path,label[,split]` rows, or a Kinetics annotation file
  (`label,youtube_id,time_start,time_end,split`) with the clips stored as files;
- `rawframes`: mmaction2's frame-folder list, lines "folder num_frames label";
- `pathlist`: the space-separated "path label" lists of PySlowFast, pytorchvideo, TimeSformer and
  mae_st (one file per split, or a folder holding `train.csv` / `val.csv` / `test.csv`);
- `ssv2`: Something-Something v2 (`something-something-v2-{train,validation}.json` + the labels file
  mapping templates to indices, videos `<id>.webm`);
- `something-else`: the Something-Else split folders (`train.json`, `validation.json`,
  `labels.json`, the same entries as SSv2; the bounding boxes are not read);
- `diving48`: Diving-48 (`Diving48_V2_{train,test}.json`, `Diving48_vocab.json`, videos `<vid_name>.mp4`).

A "video" is a file FFmpeg reads or a folder of images, one per frame (vdiag.data.decode reads both).

`load_index(path, format="auto", split=…, video_root=…)` detects the layout where that is
unambiguous (`detect_format`, the one detector every command uses) and returns a `DatasetIndex`.
Every error names the file and the fix; a malformed line or JSON entry is named as `file:line`.
Videos an annotation file lists but that are not on disk are left out, counted
(`DatasetIndex.missing`) and said in one line; more than `MAX_MISSING_SHARE` of them missing is an
error (a wrong `--video-root` far more often than link rot).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vdiag.data.frameindex import IMAGE_EXTENSIONS
from vdiag.errors import VdiagError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")
FORMATS = ("auto", "synthetic", "folder", "ucf101", "hmdb51", "csv", "rawframes", "pathlist", "ssv2", "something-else", "diving48")
SPLITS = ("train", "val", "test", "all")
SYNTHETIC_GENERATOR = "vdiag-synth"
LIST_SUFFIXES = (".csv", ".txt", ".tsv", ".lst")
MAX_MISSING_SHARE = 0.5  # more listed videos missing than this share: refused (a wrong --video-root, not link rot)
FOLDER_LAYOUTS = ("synthetic", "folder")  # layouts without annotation files: --video-root does not apply
_SAID_MISSING: set = set()  # (format, root, video root) whose missing videos were said in this process


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset: its file (or frame folder), label, id, split and factor labels.

    `declared_frames` is the frame count an annotation file states (mmaction rawframes lists), checked
    against the frames found when the video is read.
    """

    path: Path
    label: int
    video_id: str
    split: str | None = None
    factors: dict[str, int] = field(default_factory=dict)
    declared_frames: int | None = None


@dataclass
class DatasetIndex:
    """The videos of one split of a dataset, with the class names their labels index.

    `missing` names the videos the annotation files list for this split but that are not on disk
    (left out of `records`); `video_root` is the folder the videos were looked for in, when given.
    """

    format: str
    root: Path
    split: str
    records: list[VideoRecord]
    class_names: list[str]
    factor_values: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # listed in the annotation file but not found on disk
    video_root: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def listed(self) -> int:
        """Videos the annotation files list for this split: found (`records`) plus `missing`."""
        return len(self.records) + len(self.missing)

    def describe(self) -> str:
        return f"{self.format} dataset at {self.root}, split {self.split}: {len(self)} videos, {self.num_classes} classes"


def load_index(
    path: str | Path,
    format: str = "auto",
    split: str = "train",
    split_id: int = 1,
    video_root: str | Path | None = None,
    *,
    max_missing: float = MAX_MISSING_SHARE,
) -> DatasetIndex:
    """Read the index of a dataset split: the one validation path of every command and config.

    Args:
        path: the dataset folder, or a CSV / list file.
        format: one of FORMATS; 'auto' detects the layout (`detect_format`).
        split: 'train', 'val', 'test' or 'all'.
        split_id: UCF-101 / HMDB-51 split 1–3.
        video_root: where the videos are, for layouts that list them in annotation files
            (`--video-root`, `data.video_root`); refused for `folder` and `synthetic`.
        max_missing: the share of listed videos that may be missing from disk (left out, counted
            and said once); above it the split is refused. 1.0 accepts any share (`check-data`).

    Returns:
        The `DatasetIndex` of that split.

    Raises:
        VdiagError: the path or video root is missing, the layout unclear or malformed (naming
            file:line), no video is found, or more than `max_missing` of the listed videos are missing.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise VdiagError(f"dataset path {path} does not exist; check --data")
    if format not in FORMATS:
        raise VdiagError(f"unknown dataset format {format!r}; choose one of: {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise VdiagError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if video_root is not None:
        video_root = Path(video_root).expanduser()
        if video_root.is_file():
            raise VdiagError(f"--video-root {video_root} is a file; pass the folder that holds the videos")
    if format == "auto":
        format = detect_format(path)
    if video_root is not None and format in FOLDER_LAYOUTS:
        raise VdiagError(
            f"--video-root applies to layouts that list their videos in annotation files, not to a {format} dataset ({path}); drop it"
        )
    loaders = {
        "synthetic": lambda: load_synthetic(path, split),
        "folder": lambda: load_folder(path, split),
        "ucf101": lambda: load_ucf101(path, split, split_id, video_root),
        "hmdb51": lambda: load_hmdb51(path, split, split_id, video_root),
        "csv": lambda: load_csv(path, split, video_root),
        "rawframes": lambda: load_rawframes(path, split, video_root),
        "pathlist": lambda: load_pathlist(path, split, video_root),
        "ssv2": lambda: load_ssv2(path, split, video_root),
        "something-else": lambda: load_ssv2(path, split, video_root, layout="something-else"),
        "diving48": lambda: load_diving48(path, split, video_root),
    }
    index = loaders[format]()
    if video_root is not None and index.video_root is None:
        index.video_root = video_root
    check_missing(index, max_missing)
    if not index.records:
        raise VdiagError(f"{index.describe()}: no videos found; check the path, the split and the format")
    return index


def check_missing(index: DatasetIndex, max_missing: float = MAX_MISSING_SHARE) -> None:
    """Say, once per dataset and process, how many listed videos are missing; refuse more than `max_missing` of them.

    The line: "4,812 of 246,534 listed clips are missing; first: …". The videos found are used and
    every result counts them (`missing_videos` beside `failed_videos` and `padded_clips`).

    Args:
        index: a loaded split (its `missing` and `records`).
        max_missing: the share of the listed videos that may be missing.

    Raises:
        VdiagError: more than `max_missing` of the listed videos are missing.
    """
    if not index.missing:
        return
    where = f" under {index.video_root}" if index.video_root else ""
    if index.video_root and not index.video_root.exists():
        where += ", which does not exist"
    head = f"{len(index.missing):,} of {index.listed:,} listed clips are missing"
    if len(index.missing) > max_missing * index.listed:
        raise VdiagError(
            f"{head} (more than {max_missing:.0%}; first: {index.missing[0]}; looked{where or ' beside the annotation file'}): "
            "that is a wrong folder far more often than missing downloads; pass the folder holding the videos with --video-root"
        )
    key = (index.format, str(index.root), str(index.video_root))  # the first split read says it (a diagnostic reads "all" first)
    if key in _SAID_MISSING:
        return
    _SAID_MISSING.add(key)
    from vdiag import distributed as dist
    from vdiag.console import warn

    if dist.is_main():
        videos = f", videos{where}" if where else ""
        dataset = f"{index.format} dataset at {index.root}, split {index.split}{videos}"
        warn(f"{head}; first: {index.missing[0]} ({dataset}); using the {len(index):,} found")


def detect_format(path: Path) -> str:
    """The layout of `path`, or an error asking for --format when it is unclear.

    A file is told by its first line: commas or tabs make a CSV (a Kinetics header included),
    "folder num_frames label" an mmaction2 rawframes list, "path label" (an integer last) a
    PySlowFast / pytorchvideo list. A folder by its files: `manifest.json` (synthetic), UCF-101 /
    HMDB-51 split files, SSv2 / Something-Else / Diving-48 JSON annotations (in it or in its
    `annotations/` or `labels/` folder), class folders of videos, then `train.csv` / `val.csv` /
    `test.csv` "path label" lists.

    Raises:
        VdiagError: the layout cannot be told, or two layouts match.
    """
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in LIST_SUFFIXES:
            return _list_format(path)
        if suffix == ".json":
            raise VdiagError(
                f"{path} is a JSON annotation file; pass the folder that holds it and its labels / vocabulary file (--data {path.parent})"
            )
        raise VdiagError(f"{path} is a file but not a CSV or list; pass a dataset folder, a CSV or a list file")
    manifest = path / "manifest.json"
    if manifest.is_file() and _is_synthetic_manifest(manifest):
        return "synthetic"
    found = [name for name, finder in _ANNOTATED_LAYOUTS.items() if finder(path) is not None]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise VdiagError(f"{path} holds the annotation files of {' and '.join(found)}; pass --format {' or --format '.join(found)}")
    kinetics = _kinetics_annotations(path)
    if kinetics:
        raise VdiagError(
            f"{path} is a Kinetics download (annotations/{kinetics[0].name}); pass its annotation file: --data {kinetics[0]} "
            f"(the clips are found in {path / kinetics[0].stem})"
        )
    if any(_videos_in(d) for d in _subdirs(path)) or any(_videos_in(d) for s in SPLITS for d in _subdirs(path / s)):
        return "folder"
    if _pathlist_files(path):
        return "pathlist"
    if _videos_in(path):
        raise VdiagError(
            f"{path} holds videos (or frame folders) but no class sub-folders or split files; put each class in its own "
            "sub-folder or describe the videos in a CSV (path,label[,split])"
        )
    if _images_in(path):
        raise VdiagError(
            f"{path} holds image frames of one video; a frame-folder dataset is <class>/<video>/<frames> "
            "(or a rawframes list 'folder num_frames label')"
        )
    raise VdiagError(
        f"cannot tell the dataset format of {path} (no manifest.json, split files, JSON annotations, class folders of videos, "
        f"GIFs or frame folders); supported video files: {' '.join(VIDEO_EXTENSIONS)}; check the path or pass --format"
    )


def _kinetics_annotations(folder: Path) -> list[Path]:
    """The Kinetics annotation CSVs of a CVDF download folder (`annotations/train.csv` …), train first."""
    found = []
    for name in ("train", "val", "validate", "test"):
        candidate = folder / "annotations" / f"{name}.csv"
        if candidate.is_file():
            try:
                with open(candidate, errors="replace") as handle:
                    header = {c.strip().lower() for c in handle.readline().split(",")}
            except OSError:
                continue
            if KINETICS_COLUMNS <= header:
                found.append(candidate)
    return found


def _list_format(path: Path) -> str:
    """csv, rawframes or pathlist, from the first non-empty line of a list file."""
    lines = _lines(path)
    if not lines:
        return "csv"  # load_csv says it is empty
    number, line = lines[0]
    if "," in line or "\t" in line:
        return "csv"
    parts = line.split()
    if _rawframes_shape(parts):
        return "rawframes"
    if len(parts) >= 2 and _is_int(parts[-1]):
        return "pathlist"
    raise VdiagError(
        f"{path}:{number}: cannot tell the list format from {line!r}: expected 'path,label[,split]' (CSV), 'path label' "
        "(PySlowFast / pytorchvideo, an integer label) or 'folder num_frames label' (mmaction2 rawframes); or pass --format"
    )


def _rawframes_shape(parts: list[str]) -> bool:
    """'folder num_frames label': three fields, two integers, the first not a video file."""
    return len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit() and not parts[0].lower().endswith(VIDEO_EXTENSIONS)


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


# --- synthetic ----------------------------------------------------------------------------


def _is_synthetic_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("generator") == SYNTHETIC_GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def load_synthetic(root: Path, split: str) -> DatasetIndex:
    """A folder written by `vdiag synth-dataset` (manifest.json, labels.csv).

    Raises:
        VdiagError: the manifest or labels file is unreadable or malformed (naming file:line).
    """
    manifest_path = root / "manifest.json"
    labels_path = root / "labels.csv"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as err:
        raise VdiagError(f"cannot read {manifest_path} ({err}); regenerate with `vdiag synth-dataset`") from err
    if manifest.get("generator") != SYNTHETIC_GENERATOR:
        raise VdiagError(f"{manifest_path} was not written by `vdiag synth-dataset`; pass --format for this layout")
    factor_values: dict[str, list[str]] = manifest["factors"]
    label_factor = manifest["label_factor"]
    rows = _read_csv_rows(labels_path)
    records = []
    for line, row in rows:
        try:
            if split != "all" and row["split"] != split:
                continue
            factors = {name: factor_values[name].index(row[name]) for name in factor_values}
            records.append(VideoRecord(root / row["path"], factors[label_factor], row["id"], row["split"], factors))
        except (KeyError, ValueError) as err:
            raise VdiagError(f"{labels_path}:{line}: malformed row ({err}); regenerate with `vdiag synth-dataset`") from err
    return DatasetIndex("synthetic", root, split, records, list(factor_values[label_factor]), factor_values)


# --- class folders ------------------------------------------------------------------------


def load_folder(root: Path, split: str) -> DatasetIndex:
    """`root/<class>/<video>` or `root/<split>/<class>/<video>`; a video is a file or a folder of frames.

    Raises:
        VdiagError: split folders exist but not the one asked for.
    """
    split_dirs = [s for s in ("train", "val", "test") if any(_videos_in(d) for d in _subdirs(root / s))]
    if split_dirs:
        wanted = split_dirs if split == "all" else [split]
        if split != "all" and split not in split_dirs:
            raise VdiagError(f"{root} has no {split}/ folder of classes (found: {', '.join(split_dirs)}); pick --split")
        classes = sorted({d.name for s in split_dirs for d in _subdirs(root / s) if _videos_in(d)})
        pairs = [(s, d) for s in wanted for d in _subdirs(root / s)]
    else:
        classes = sorted(d.name for d in _subdirs(root) if _videos_in(d))
        pairs = [(None, d) for d in _subdirs(root)]
    lookup = {name: i for i, name in enumerate(classes)}
    records = [
        VideoRecord(video, lookup[d.name], _video_id(root, video), s) for s, d in pairs if d.name in lookup for video in _videos_in(d)
    ]
    return DatasetIndex("folder", root, split, records, classes)


# --- UCF-101 ------------------------------------------------------------------------------


def _find_ucf_split_dir(root: Path) -> Path | None:
    for candidate in (root, root / "ucfTrainTestlist", *_subdirs(root)):
        if (candidate / "classInd.txt").is_file():
            return candidate
    return None


def load_ucf101(root: Path, split: str, split_id: int, video_root=None) -> DatasetIndex:
    """UCF-101: `classInd.txt` ("1 ApplyEyeMakeup"), `trainlist0N.txt` ("Class/v_….avi 1"), `testlist0N.txt`.

    Raises:
        VdiagError: split files missing or malformed (naming file:line), or a 'val' split asked for.
    """
    _check_split_id(split_id)
    split_dir = _find_ucf_split_dir(root)
    if split_dir is None:
        raise VdiagError(f"{root} has no classInd.txt (looked in it, ucfTrainTestlist/ and sub-folders); is it UCF-101?")
    if split == "val":
        raise VdiagError("UCF-101 has no 'val' split; use --split train or --split test")
    classes: list[str] = []
    class_file = split_dir / "classInd.txt"
    for number, line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise VdiagError(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise VdiagError(f"{class_file}:{number}: class indices must run 1, 2, 3, … in order")
        classes.append(parts[1])
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    videos = _resolve_video_root(root, video_root, ("UCF-101", "UCF101", "videos"))
    records, missing = [], []
    for part in ("train", "test") if split == "all" else (split,):
        list_file = split_dir / f"{part}list0{split_id}.txt"
        if not list_file.is_file():
            raise VdiagError(f"missing {list_file}; UCF-101 split {split_id} needs {part}list0{split_id}.txt beside classInd.txt")
        for number, line in _lines(list_file):
            parts = line.split()
            relative = parts[0]
            class_name = relative.replace("\\", "/").split("/")[0].lower()
            if class_name not in lookup or len(parts) > 2:
                raise VdiagError(f"{list_file}:{number}: {line!r} does not name a class of classInd.txt as 'Class/video.avi'")
            label = lookup[class_name]
            if len(parts) == 2 and int(parts[1]) != label + 1:
                raise VdiagError(f"{list_file}:{number}: label {parts[1]} disagrees with classInd.txt ({label + 1} for {class_name})")
            if not (videos / relative).exists():
                missing.append(f"{list_file.name}:{number}: {relative}")
                continue
            records.append(VideoRecord(videos / relative, label, Path(relative).stem, part))
    return DatasetIndex("ucf101", root, split, records, classes, missing=missing, video_root=videos)


# --- HMDB-51 ------------------------------------------------------------------------------


def _find_hmdb_split_dir(root: Path) -> Path | None:
    for candidate in (root, root / "testTrainMulti_7030_splits", root / "splits", *_subdirs(root)):
        if candidate.is_dir() and any(candidate.glob("*_test_split1.txt")):
            return candidate
    return None


def load_hmdb51(root: Path, split: str, split_id: int, video_root=None) -> DatasetIndex:
    """HMDB-51: `<class>_test_split<N>.txt` lines "video.avi 1|2|0" (1 train, 2 test, 0 unused).

    Raises:
        VdiagError: split files missing or malformed (naming file:line), or a 'val' split asked for.
    """
    _check_split_id(split_id)
    split_dir = _find_hmdb_split_dir(root)
    if split_dir is None:
        raise VdiagError(f"{root} has no '*_test_split1.txt' files; is it HMDB-51 (testTrainMulti_7030_splits)?")
    if split == "val":
        raise VdiagError("HMDB-51 has no 'val' split; use --split train or --split test")
    suffix = f"_test_split{split_id}.txt"
    files = sorted(split_dir.glob(f"*{suffix}"))
    if not files:
        raise VdiagError(f"{split_dir} has no '*{suffix}' files for split {split_id}")
    classes = [f.name[: -len(suffix)] for f in files]
    videos = _resolve_video_root(root, video_root, ("videos", "hmdb51_org", "HMDB51"))
    wanted = {"1": "train", "2": "test"}
    records, missing = [], []
    for label, (class_name, split_file) in enumerate(zip(classes, files)):
        for number, line in _lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise VdiagError(f"{split_file}:{number}: expected '<video> <0|1|2>', got {line!r}")
            part = wanted.get(parts[1])
            if part is None or (split != "all" and part != split):
                continue
            if not (videos / class_name / parts[0]).exists():
                missing.append(f"{split_file.name}:{number}: {class_name}/{parts[0]}")
                continue
            records.append(VideoRecord(videos / class_name / parts[0], label, Path(parts[0]).stem, part))
    return DatasetIndex("hmdb51", root, split, records, classes, missing=missing, video_root=videos)


# --- CSV and Kinetics ---------------------------------------------------------------------


KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}


def load_csv(csv_path: Path, split: str, video_root=None) -> DatasetIndex:
    """`path,label[,split]` (header optional), or a Kinetics annotation CSV with clips as files.

    Relative paths are taken from `video_root`, else from the CSV's folder. Kinetics clips are found
    by file name `<youtube_id>_<start:06d>_<end:06d>.<ext>` (the usual downloader's naming) or
    `<youtube_id>.<ext>`, anywhere under the video root; without one, under the CSV's folder, else
    (the CVDF download: `annotations/train.csv` beside `train/`) under `../<csv name>/`. Listed
    videos not on disk are left out and counted (`missing`).

    Raises:
        VdiagError: the CSV is a folder, empty or malformed (naming file:line), or no clip is found.
    """
    if csv_path.is_dir():
        raise VdiagError(f"{csv_path} is a folder; the csv format takes a CSV file")
    base = Path(video_root).expanduser() if video_root else csv_path.parent
    rows = _read_csv_rows(csv_path, header=None)
    if not rows:
        raise VdiagError(f"{csv_path} is empty; expected rows 'path,label[,split]'")
    header = [c.strip().lower() for c in rows[0][1]]
    if KINETICS_COLUMNS <= set(header):
        beside = csv_path.parent.parent / csv_path.stem  # the CVDF download: annotations/train.csv beside train/
        fallback = not video_root and beside.is_dir()
        index = _load_kinetics(csv_path, rows, header, split, base, quiet=fallback)
        if not index.records and fallback:
            index = _load_kinetics(csv_path, rows, header, split, beside)
        return index
    if header[:2] == ["path", "label"]:
        rows = rows[1:]
    parsed = []
    for number, row in rows:
        if len(row) not in (2, 3) or not row[0].strip():
            raise VdiagError(f"{csv_path}:{number}: expected 'path,label[,split]', got {','.join(row)!r}")
        row_split = _normal_split(row[2]) if len(row) == 3 else None
        parsed.append((row[0].strip(), row[1].strip(), row_split, number))
    has_splits = any(s for _, _, s, _ in parsed)
    if split not in ("all", "train") and not has_splits:
        raise VdiagError(f"{csv_path} has no split column, so it has no {split!r} split; add a third column or use --split all")
    classes = sorted({label for _, label, _, _ in parsed})
    lookup = {name: i for i, name in enumerate(classes)}
    records, missing = [], []
    for path, label, row_split, number in parsed:
        if split != "all" and has_splits and row_split != split:
            continue
        if not _join(base, path).exists():
            missing.append(f"{csv_path.name}:{number}: {path}")
            continue
        records.append(VideoRecord(_join(base, path), lookup[label], Path(path).stem, row_split))
    return DatasetIndex("csv", csv_path, split, records, classes, missing=missing, video_root=Path(video_root) if video_root else None)


def _load_kinetics(csv_path: Path, rows, header, split, base: Path, quiet: bool = False) -> DatasetIndex:
    """The clips of a Kinetics annotation CSV found under `base`; with `quiet`, none found is no error (a second place is tried)."""
    column = {name: header.index(name) for name in header}
    files: dict[str, Path] = {}
    for video in sorted(p for p in base.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS):
        files.setdefault(video.stem, video)
    entries, missing = [], []
    for number, row in rows[1:]:
        try:
            label = row[column["label"]].strip()
            youtube_id = row[column["youtube_id"]].strip()
            start, end = int(float(row[column["time_start"]])), int(float(row[column["time_end"]]))
            row_split = _normal_split(row[column["split"]]) if "split" in column else None
        except (IndexError, ValueError) as err:
            raise VdiagError(f"{csv_path}:{number}: malformed Kinetics row {','.join(row)!r} ({err})") from err
        entries.append((label, youtube_id, start, end, row_split))
    classes = sorted({e[0] for e in entries})
    lookup = {name: i for i, name in enumerate(classes)}
    records = []
    for label, youtube_id, start, end, row_split in entries:
        if split not in ("all",) and "split" in column and row_split != split:
            continue
        video = files.get(f"{youtube_id}_{start:06d}_{end:06d}") or files.get(youtube_id)
        if video is None:
            missing.append(youtube_id)
            continue
        records.append(VideoRecord(video, lookup[label], f"{youtube_id}_{start:06d}_{end:06d}", row_split))
    if missing and not records and not quiet:
        raise VdiagError(
            f"none of the {len(missing)} clips of {csv_path} were found under {base} "
            f"(e.g. {missing[0]}_<start>_<end>.mp4); pass --video-root"
        )
    return DatasetIndex("csv", csv_path, split, records, classes, missing=missing, video_root=base)


# --- mmaction rawframes lists -------------------------------------------------------------


def load_rawframes(list_path: Path, split: str, video_root=None) -> DatasetIndex:
    """An mmaction2 rawframes list: lines "folder num_frames label" (label 0-based; one list per split).

    Folders are taken from `video_root`, else the list's folder (or its `rawframes/` sub-folder).
    The stated frame counts are kept (`VideoRecord.declared_frames`) and checked when read.

    Raises:
        VdiagError: the list is a folder or malformed (naming file:line), or no folder is found.
    """
    if list_path.is_dir():
        raise VdiagError(f"{list_path} is a folder; the rawframes format takes a list file 'folder num_frames label'")
    base = Path(video_root).expanduser() if video_root else list_path.parent
    if not video_root and (base / "rawframes").is_dir():
        candidates = [base, base / "rawframes"]
    else:
        candidates = [base]
    entries, missing = [], []
    for number, line in _lines(list_path):
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise VdiagError(f"{list_path}:{number}: expected 'folder num_frames label' (two integers), got {line!r}")
        folder = next((c / parts[0] for c in candidates if (c / parts[0]).is_dir()), None)
        if folder is None:
            missing.append(f"{list_path.name}:{number}: {parts[0]}")
            continue
        entries.append((folder, int(parts[1]), int(parts[2]), parts[0]))
    if not entries:
        first = missing[0] if missing else "no lines"
        raise VdiagError(f"none of the frame folders of {list_path} were found under {base} (e.g. {first}); pass --video-root")
    classes = [str(k) for k in range(max(label for _, _, label, _ in entries) + 1)]
    records = [VideoRecord(folder, label, name.rstrip("/"), None, declared_frames=count) for folder, count, label, name in entries]
    return DatasetIndex("rawframes", list_path, split, records, classes, missing=missing)


# --- PySlowFast / pytorchvideo / TimeSformer "path label" lists ---------------------------


PATHLIST_SPLITS = ("train", "val", "test")
PATHLIST_SUFFIXES = (".csv", ".txt")


def _pathlist_files(folder: Path) -> dict[str, Path]:
    """{split: list file} of a PySlowFast data folder (`train.csv`, `val.csv`, `test.csv`) in "path label" form."""
    if not folder.is_dir():
        return {}
    found = {}
    for part in PATHLIST_SPLITS:
        for suffix in PATHLIST_SUFFIXES:
            candidate = folder / f"{part}{suffix}"
            if part not in found and candidate.is_file() and _first_line_is_pathlist(candidate):
                found[part] = candidate
    return found


def _first_line_is_pathlist(path: Path) -> bool:
    try:
        with open(path, errors="replace") as handle:
            line = next((line.strip() for line in handle if line.strip()), "")
    except OSError:
        return False
    parts = line.split()
    return "," not in line and "\t" not in line and len(parts) >= 2 and _is_int(parts[-1]) and not _rawframes_shape(parts)


def load_pathlist(path: Path, split: str, video_root=None) -> DatasetIndex:
    """A "path label" list of PySlowFast, pytorchvideo (`LabeledVideoPaths.from_csv`), TimeSformer or mae_st.

    One video per line: its path, whitespace, an integer label (0-based). The label is the last
    field and everything before it the path, spaces included (pytorchvideo's rule). `path` is one
    list (its videos have no split) or a folder holding `train.csv` / `val.csv` / `test.csv` (or
    `.txt`), one list per split (PySlowFast's `DATA.PATH_TO_DATA_DIR`; without a test list, `val.csv`
    is the test split, as Kinetics is tested on its validation set). Relative paths are taken
    from `video_root` (PySlowFast's `DATA.PATH_PREFIX`), else from the list's folder. Class names
    are the label numbers.

    Raises:
        VdiagError: a line without an integer label ≥ 0 (naming file:line), or a split the folder has no list for.
    """
    if path.is_dir():
        files = _pathlist_files(path)
        if not files:
            raise VdiagError(f"{path} holds no 'path label' lists named train.csv, val.csv or test.csv; pass a list file or --format")
        found = ", ".join(f.name for f in files.values())
        aliased = "test" not in files and "val" in files  # PySlowFast Kinetics folders: val.csv is what is tested on
        if aliased:
            files["test"] = files.pop("val")
        key = "test" if split == "val" and aliased else split
        if split != "all" and key not in files:
            raise VdiagError(f"{path} has no {split}.csv list (found: {found}); pick --split")
        wanted = files if split == "all" else {split: files[key]}
        base = Path(video_root) if video_root else path
    else:
        wanted = {None: path}
        base = Path(video_root) if video_root else path.parent
    listed, missing = [], []
    for part, list_file in wanted.items():
        for number, line in _lines(list_file):
            fields = line.rsplit(None, 1)
            if len(fields) != 2 or not _is_int(fields[1]):
                raise VdiagError(f"{list_file}:{number}: expected 'path label' (an integer label after the last space), got {line!r}")
            label = int(fields[1])
            if label < 0:
                raise VdiagError(f"{list_file}:{number}: label {label}: an unlabelled (test) list? vdiag needs labels 0, 1, 2, …")
            listed.append((fields[0].strip(), label, part, f"{list_file.name}:{number}"))
    records = []
    for name, label, part, where in listed:
        video = _join(base, name)
        if not video.exists():
            missing.append(f"{where}: {name}")
            continue
        records.append(VideoRecord(video, label, str(Path(name).with_suffix("")).replace("\\", "/"), part))
    classes = [str(k) for k in range(max(label for _, label, _, _ in listed) + 1)] if listed else []
    return DatasetIndex("pathlist", path, split, records, classes, missing=missing, video_root=base)


# --- Something-Something v2 and Something-Else --------------------------------------------


ANNOTATION_DIRS = ("", "annotations", "labels")
SSV2_FILES = {"train": "something-something-v2-train.json", "test": "something-something-v2-validation.json"}
SSV2_LABELS = ("something-something-v2-labels.json", "labels.json")
SOMETHING_ELSE_FILES = {"train": "train.json", "test": "validation.json"}
SSV2_VIDEO_DIRS = ("20bn-something-something-v2", "something-something-v2", "videos", "frames")
DIVING48_FILES = (
    {"train": "Diving48_V2_train.json", "test": "Diving48_V2_test.json"},
    {"train": "Diving48_train.json", "test": "Diving48_test.json"},
)
DIVING48_VOCAB = "Diving48_vocab.json"
DIVING48_VIDEO_DIRS = ("rgb", "videos")


def _annotation_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The folder (root, root/annotations or root/labels) holding every file of `names`."""
    if not root.is_dir():
        return None
    for sub in ANNOTATION_DIRS:
        folder = root / sub if sub else root
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def _find_ssv2(root: Path) -> Path | None:
    return _annotation_dir(root, (SSV2_FILES["train"],))


def _find_something_else(root: Path) -> Path | None:
    return _annotation_dir(root, (SOMETHING_ELSE_FILES["train"], SOMETHING_ELSE_FILES["test"], "labels.json"))


def _find_diving48(root: Path) -> Path | None:
    for names in DIVING48_FILES:
        folder = _annotation_dir(root, (names["train"],))
        if folder is not None:
            return folder
    return None


def template_class(template: str) -> str:
    """An SSv2 template as its labels file names it: placeholders lose their brackets.

    "Putting [something] onto [something]" → "Putting something onto something"; "[Something]
    falling like a rock" → "Something falling like a rock" (the rule of the dataset's own loaders).
    """
    return template.replace("[", "").replace("]", "")


def load_ssv2(root: Path, split: str, video_root=None, layout: str = "ssv2") -> DatasetIndex:
    """Something-Something v2, or a Something-Else split folder (the same JSON entries).

    SSv2: `something-something-v2-{train,validation}.json` (lists of {"id", "label", "template",
    "placeholders"}) and `something-something-v2-labels.json` or `labels.json` (template without
    brackets → class index, as text or integer), in `root` or its `annotations/` or `labels/`
    folder; videos `<id>.webm` (any video file `<id>.<ext>`, or a folder `<id>/` of frames) in
    `video_root`, else `20bn-something-something-v2/`, `videos/`, `frames/` or the root (or beside
    the annotation folder). Something-Else (`layout="something-else"`): `train.json`,
    `validation.json`, `labels.json` (its compositional and shuffled splits); its bounding boxes are
    not read. The labelled held-out set (validation) is the test split (as the papers report it);
    `split="val"` returns the same videos. The unlabelled SSv2 test set is not read.

    Raises:
        VdiagError: a JSON file is missing or malformed, a template is not in the labels file
            (naming file:line), or `root` is a file.
    """
    names = SSV2_FILES if layout == "ssv2" else SOMETHING_ELSE_FILES
    title = "Something-Something v2" if layout == "ssv2" else "Something-Else"
    if root.is_file():
        raise VdiagError(f"{root} is a file; the {layout} format takes the folder holding {names['train']} (--data {root.parent})")
    folder = _find_ssv2(root) if layout == "ssv2" else _find_something_else(root)
    if folder is None:
        raise VdiagError(f"{root} has no {names['train']} (looked in it, annotations/ and labels/); is it {title}?")
    labels_file = next((folder / n for n in SSV2_LABELS if (folder / n).is_file()), None)
    if labels_file is None:
        raise VdiagError(f"{folder} has no labels file ({' or '.join(SSV2_LABELS)}) beside {names['train']}")
    classes = _ssv2_classes(labels_file)
    lookup = {name: i for i, name in enumerate(classes)}
    videos = _resolve_video_dir(root, folder, video_root, SSV2_VIDEO_DIRS)
    files = _video_files(videos)
    parts = {"train": ("train",), "val": ("test",), "test": ("test",), "all": ("train", "test")}[split]
    records, missing = [], []
    for part in parts:
        split_file = folder / names[part]
        if not split_file.is_file():
            raise VdiagError(f"missing {split_file}; {title} needs {names['train']} and {names['test']} beside {labels_file.name}")
        entries, line_of = _json_list(split_file)
        tag = "val" if split == "val" else part
        for k, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)) or not isinstance(entry.get("template"), str):
                raise VdiagError(
                    f'{split_file}:{line_of(k)}: entry {k + 1} is not {{"id": …, "template": …}} (got {_short(entry)}); '
                    "the unlabelled test file cannot be used"
                )
            name = template_class(entry["template"])
            if name not in lookup:
                raise VdiagError(f"{split_file}:{line_of(k)}: template {entry['template']!r} (as {name!r}) is not in {labels_file}")
            video_id = str(entry["id"])
            video = files.get(video_id)
            if video is None:
                missing.append(video_id)
                continue
            records.append(VideoRecord(video, lookup[name], video_id, tag))
    return DatasetIndex(layout, root, split, records, classes, missing=missing, video_root=videos)


def _ssv2_classes(labels_file: Path) -> list[str]:
    """Class names in index order from {template: index} (index as an integer or its text), checked to run 0, 1, 2, …"""
    data, _ = _json_value(labels_file)
    if not isinstance(data, dict) or not data:
        raise VdiagError(f'{labels_file} must map each template to its class index, e.g. {{"Holding something": "0", …}}')
    by_index: dict[int, str] = {}
    for name, value in data.items():
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
            raise VdiagError(f"{labels_file}: {name!r} maps to {value!r}, not a class index")
        index = int(value)
        if index in by_index:
            raise VdiagError(f"{labels_file}: {name!r} and {by_index[index]!r} both have class index {index}")
        by_index[index] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise VdiagError(f"{labels_file}: class indices must be 0 … {len(by_index) - 1}, each once")
    return [by_index[i] for i in range(len(by_index))]


# --- Diving-48 ----------------------------------------------------------------------------


def load_diving48(root: Path, split: str, video_root=None) -> DatasetIndex:
    """Diving-48: `Diving48_V2_{train,test}.json` (V1: `Diving48_{train,test}.json`) and `Diving48_vocab.json`.

    Each JSON file lists {"vid_name", "label", "start_frame", "end_frame"}; the files are found in
    `root` or its `annotations/` or `labels/` folder (V2, the corrected labels, is preferred). The
    vocabulary lists the 48 classes as [takeoff, somersault, twist, flight] and names them
    ("Back 15som 05Twis FREE"); without it the class names are the label numbers. Videos are
    `<vid_name>.mp4` (any video file, or a folder of frames) in `video_root`, else `rgb/`, `videos/`
    or the root (or beside the annotation folder). The trimmed clips are read whole: `start_frame` /
    `end_frame` are checked (integers, start ≤ end) but not used to cut. Splits: train, test.

    Raises:
        VdiagError: a JSON file is missing or malformed (naming file:line), a label outside the
            vocabulary, a 'val' split asked for, or `root` is a file.
    """
    if root.is_file():
        raise VdiagError(f"{root} is a file; the diving48 format takes the folder holding Diving48_V2_train.json (--data {root.parent})")
    folder = _find_diving48(root)
    if folder is None:
        raise VdiagError(f"{root} has no Diving48_V2_train.json (looked in it, annotations/ and labels/); is it Diving-48?")
    if split == "val":
        raise VdiagError("Diving-48 has no 'val' split; use --split train or --split test")
    names = next(n for n in DIVING48_FILES if (folder / n["train"]).is_file())
    vocab = _diving48_vocab(folder / DIVING48_VOCAB) if (folder / DIVING48_VOCAB).is_file() else None
    videos = _resolve_video_dir(root, folder, video_root, DIVING48_VIDEO_DIRS)
    files = _video_files(videos)
    listed = []
    for part in ("train", "test"):
        split_file = folder / names[part]
        if not split_file.is_file():
            raise VdiagError(f"missing {split_file}; Diving-48 needs {names['train']} and {names['test']}")
        entries, line_of = _json_list(split_file)
        for k, entry in enumerate(entries):
            where = f"{split_file}:{line_of(k)}: entry {k + 1}"
            if not isinstance(entry, dict) or not isinstance(entry.get("vid_name"), str) or not _json_int(entry.get("label")):
                raise VdiagError(f'{where} is not {{"vid_name": …, "label": <integer>, …}} (got {_short(entry)})')
            label = int(entry["label"])
            if label < 0 or (vocab is not None and label >= len(vocab)):
                raise VdiagError(f"{where}: label {label} is outside 0 … {len(vocab) - 1 if vocab else '∞'} ({DIVING48_VOCAB})")
            bounds = [entry.get(key) for key in ("start_frame", "end_frame")]
            if any(b is not None and not _json_int(b) for b in bounds) or (None not in bounds and int(bounds[0]) > int(bounds[1])):
                raise VdiagError(f"{where}: start_frame / end_frame must be integers with start ≤ end, got {bounds}")
            listed.append((entry["vid_name"], label, part))
    classes = vocab if vocab is not None else [str(k) for k in range(max((label for _, label, _ in listed), default=-1) + 1)]
    records, missing = [], []
    for name, label, part in listed:
        if split != "all" and part != split:
            continue
        video = files.get(name)
        if video is None:
            missing.append(name)
            continue
        records.append(VideoRecord(video, label, name, part))
    return DatasetIndex("diving48", root, split, records, classes, missing=missing, video_root=videos)


def _diving48_vocab(path: Path) -> list[str]:
    """Class names from the vocabulary: each entry a list of attributes (joined by spaces) or a name."""
    data, line_of = _json_list(path)
    names = []
    for k, entry in enumerate(data):
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, list) and entry and all(isinstance(part, str) for part in entry):
            names.append(" ".join(entry))
        else:
            raise VdiagError(
                f'{path}:{line_of(k)}: entry {k + 1} should list the class\'s attributes, e.g. ["Back", "15som", "05Twis", "FREE"]'
            )
    return names


_ANNOTATED_LAYOUTS = {
    "ucf101": lambda path: _find_ucf_split_dir(path),
    "hmdb51": lambda path: _find_hmdb_split_dir(path),
    "ssv2": _find_ssv2,
    "something-else": _find_something_else,
    "diving48": _find_diving48,
}


# --- JSON annotation helpers --------------------------------------------------------------


def _json_value(path: Path):
    """The parsed JSON file and its text; invalid JSON is one line naming file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise VdiagError(f"cannot read {path}: {err}") from err
    try:
        return json.loads(text), text
    except json.JSONDecodeError as err:
        raise VdiagError(f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from err


def _json_list(path: Path):
    """(entries, line_of): a JSON file holding a list, and a function giving entry k's line (found only when asked)."""
    data, text = _json_value(path)
    if not isinstance(data, list):
        raise VdiagError(f"{path}: expected a JSON list of entries, got a {type(data).__name__}")
    starts: list[int] = []

    def line_of(k: int) -> int:
        if not starts:
            decoder, position = json.JSONDecoder(), text.index("[") + 1
            line = 1 + text.count("\n", 0, position)
            while True:
                while position < len(text) and text[position] in " \t\r\n,":
                    line += text[position] == "\n"
                    position += 1
                if position >= len(text) or text[position] == "]":
                    break
                starts.append(line)
                _, end = decoder.raw_decode(text, position)
                line += text.count("\n", position, end)
                position = end
        return starts[k] if k < len(starts) else 1

    return data, line_of


def _json_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, str) and _is_int(value.strip()))


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _resolve_video_dir(root: Path, annotations: Path, video_root, candidates: tuple[str, ...]) -> Path:
    """`video_root`, else the first of `candidates` in the root, the annotation folder or beside it, else the root."""
    if video_root:
        return Path(video_root).expanduser()
    for base in dict.fromkeys((root, annotations, annotations.parent)):
        for name in candidates:
            if (base / name).is_dir():
                return base / name
    return root


def _video_files(folder: Path) -> dict[str, Path]:
    """{name without extension: path} of the video files and sub-folders (frame folders) directly in `folder`, one listing.

    A video file wins over a folder of the same name. Folders are not opened here: an empty one
    fails when read, counted as an unreadable video.
    """
    files: dict[str, Path] = {}
    folders: dict[str, Path] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                stem, suffix = os.path.splitext(entry.name)
                if entry.is_file() and suffix.lower() in VIDEO_EXTENSIONS:
                    files.setdefault(stem, Path(entry.path))
                elif entry.is_dir():
                    folders[entry.name] = Path(entry.path)
    except OSError as err:
        raise VdiagError(f"cannot list the videos in {folder}: {err.strerror or err}; check --video-root") from err
    return {**folders, **files}


# --- helpers ------------------------------------------------------------------------------


def _normal_split(value: str) -> str:
    value = value.strip().lower()
    return {"validate": "val", "validation": "val", "valid": "val", "training": "train", "testing": "test"}.get(value, value)


def _read_csv_rows(path: Path, header="infer"):
    """Rows with their 1-based line numbers. With header='infer', rows are dicts keyed by the header."""
    try:
        with open(path, newline="") as handle:
            sample = handle.read(4096)
            handle.seek(0)
            delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
            reader = csv.reader(handle, delimiter=delimiter)
            rows = [(number, row) for number, row in enumerate(reader, 1) if row and any(c.strip() for c in row)]
    except OSError as err:
        raise VdiagError(f"cannot read {path}: {err.strerror or err}") from err
    except (csv.Error, UnicodeDecodeError) as err:
        raise VdiagError(f"{path} is not a readable CSV ({err})") from err
    if header != "infer":
        return rows
    if not rows:
        raise VdiagError(f"{path} is empty")
    names = [c.strip() for c in rows[0][1]]
    return [(number, dict(zip(names, row))) for number, row in rows[1:]]


def _lines(path: Path):
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise VdiagError(f"cannot read {path}: {err}") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _check_split_id(split_id: int) -> None:
    if split_id not in (1, 2, 3):
        raise VdiagError(f"split number must be 1, 2 or 3, got {split_id}")


def _resolve_video_root(root: Path, video_root, candidates) -> Path:
    if video_root:
        return Path(video_root).expanduser()
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    return root


def _subdirs(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _videos_in(path: Path) -> list[Path]:
    """Video files and frame folders (sub-folders holding images) directly in `path`."""
    if not path.is_dir():
        return []
    found = []
    for p in path.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(p)
        elif p.is_dir() and _images_in(p):
            found.append(p)
    return sorted(found)


def _images_in(path: Path) -> bool:
    """Whether `path` holds at least one image file (stops at the first)."""
    try:
        with os.scandir(path) as entries:
            return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries)
    except OSError:
        return False


def _video_id(root: Path, video: Path) -> str:
    relative = video.relative_to(root)
    return str(relative if video.is_dir() else relative.with_suffix("")).replace("\\", "/")


def _join(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def check_target(index: DatasetIndex, target: str) -> DatasetIndex:
    """Fail before any extraction when `target` is neither 'label' nor a factor of the dataset.

    The one `--target` check of training (a supervised head's classes), the diagnostics and the
    figures (classify, colour or group by a target).

    Args:
        index: the dataset split.
        target: "label" or a synthetic factor name (bg_color, fg_shape, bg_brightness, fg_trajectory).

    Returns:
        `index`, unchanged (so that a call can wrap `data.split(...)`).

    Raises:
        VdiagError: `target` is not a factor of this dataset (the message lists those it has).
    """
    if target != "label" and target not in index.factor_values:
        known = ", ".join(index.factor_values) or "none (not a synthetic dataset)"
        raise VdiagError(f"--target {target!r} is not a factor of this dataset; use 'label' or one of: {known}")
    return index
