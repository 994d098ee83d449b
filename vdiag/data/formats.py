"""Dataset indexes: which videos a dataset has, their labels and splits.

Six layouts are read (docs/data-formats.md shows each):
- `synthetic`: a folder written by `vdiag synth-dataset` (manifest.json + labels.csv);
- `folder`: one sub-folder per class (optionally under train/ val/ test/) holding video files
  (GIF included) or per-video folders of JPEG/PNG frames;
- `ucf101`: the official layout (classInd.txt, trainlist0N.txt, testlist0N.txt; splits 1–3);
- `hmdb51`: the official layout (per-class `<class>_test_splitN.txt`, 1 = train, 2 = test, 0 = unused);
- `csv`: `path,label[,split]` rows, or a Kinetics annotation file
  (`label,youtube_id,time_start,time_end,split`) with the clips stored as files;
- `rawframes`: mmaction2's frame-folder list, lines "folder num_frames label".

A "video" is a file FFmpeg reads or a folder of images, one per frame (vdiag.data.decode reads both).

`load_index(path, format="auto", split=…)` detects the layout where that is unambiguous and
returns a `DatasetIndex`. Every error names the file and the fix.
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
FORMATS = ("auto", "synthetic", "folder", "ucf101", "hmdb51", "csv", "rawframes")
SPLITS = ("train", "val", "test", "all")
SYNTHETIC_GENERATOR = "vdiag-synth"


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
    """The videos of one split of a dataset, with the class names their labels index."""

    format: str
    root: Path
    split: str
    records: list[VideoRecord]
    class_names: list[str]
    factor_values: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # listed in the annotation file but not found on disk

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        return f"{self.format} dataset at {self.root}, split {self.split}: {len(self)} videos, {self.num_classes} classes"


def load_index(
    path: str | Path,
    format: str = "auto",
    split: str = "train",
    split_id: int = 1,
    video_root: str | Path | None = None,
) -> DatasetIndex:
    """Read the index of a dataset split.

    Args:
        path: the dataset folder, or a CSV / list file.
        format: one of FORMATS; 'auto' detects the layout.
        split: 'train', 'val', 'test' or 'all'.
        split_id: UCF-101 / HMDB-51 split 1–3.
        video_root: where the videos are, for layouts that list them in annotation files.

    Returns:
        The `DatasetIndex` of that split.

    Raises:
        VdiagError: the path is missing, the layout unclear or malformed (naming file:line), or no
            video is found.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise VdiagError(f"dataset path {path} does not exist; check --data")
    if format not in FORMATS:
        raise VdiagError(f"unknown dataset format {format!r}; choose one of: {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise VdiagError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if format == "auto":
        format = detect_format(path)
    loaders = {
        "synthetic": lambda: load_synthetic(path, split),
        "folder": lambda: load_folder(path, split),
        "ucf101": lambda: load_ucf101(path, split, split_id, video_root),
        "hmdb51": lambda: load_hmdb51(path, split, split_id, video_root),
        "csv": lambda: load_csv(path, split, video_root),
        "rawframes": lambda: load_rawframes(path, split, video_root),
    }
    index = loaders[format]()
    if not index.records:
        raise VdiagError(f"{index.describe()}: no videos found; check the path, the split and the format")
    return index


def detect_format(path: Path) -> str:
    """The layout of `path`, or an error asking for --format when it is unclear.

    Raises:
        VdiagError: the layout cannot be told, or two layouts match.
    """
    if path.is_file():
        if path.suffix.lower() in (".csv", ".txt", ".tsv"):
            return "rawframes" if _looks_like_rawframes(path) else "csv"
        raise VdiagError(f"{path} is a file but not a CSV; pass a dataset folder or a CSV file")
    manifest = path / "manifest.json"
    if manifest.is_file() and _is_synthetic_manifest(manifest):
        return "synthetic"
    found = []
    if _find_ucf_split_dir(path) is not None:
        found.append("ucf101")
    if _find_hmdb_split_dir(path) is not None:
        found.append("hmdb51")
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise VdiagError(f"{path} holds both UCF-101 and HMDB-51 split files; pass --format ucf101 or --format hmdb51")
    if any(_videos_in(d) for d in _subdirs(path)) or any(_videos_in(d) for s in SPLITS for d in _subdirs(path / s)):
        return "folder"
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
        f"cannot tell the dataset format of {path} (no manifest.json, split files, class folders of videos, GIFs or "
        f"frame folders); supported video files: {' '.join(VIDEO_EXTENSIONS)}; check the path or pass --format"
    )


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
    records = []
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
            records.append(VideoRecord(videos / relative, label, Path(relative).stem, part))
    return DatasetIndex("ucf101", root, split, records, classes)


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
    records = []
    for label, (class_name, split_file) in enumerate(zip(classes, files)):
        for number, line in _lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise VdiagError(f"{split_file}:{number}: expected '<video> <0|1|2>', got {line!r}")
            part = wanted.get(parts[1])
            if part is None or (split != "all" and part != split):
                continue
            records.append(VideoRecord(videos / class_name / parts[0], label, Path(parts[0]).stem, part))
    return DatasetIndex("hmdb51", root, split, records, classes)


# --- CSV and Kinetics ---------------------------------------------------------------------


KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}


def load_csv(csv_path: Path, split: str, video_root=None) -> DatasetIndex:
    """`path,label[,split]` (header optional), or a Kinetics annotation CSV with clips as files.

    Relative paths are taken from `video_root`, else from the CSV's folder. Kinetics clips are found
    by file name `<youtube_id>_<start:06d>_<end:06d>.<ext>` (the usual downloader's naming) or
    `<youtube_id>.<ext>`, anywhere under the video root.

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
        return _load_kinetics(csv_path, rows, header, split, base)
    if header[:2] == ["path", "label"]:
        rows = rows[1:]
    parsed = []
    for number, row in rows:
        if len(row) not in (2, 3) or not row[0].strip():
            raise VdiagError(f"{csv_path}:{number}: expected 'path,label[,split]', got {','.join(row)!r}")
        row_split = _normal_split(row[2]) if len(row) == 3 else None
        parsed.append((row[0].strip(), row[1].strip(), row_split))
    has_splits = any(s for _, _, s in parsed)
    if split not in ("all", "train") and not has_splits:
        raise VdiagError(f"{csv_path} has no split column, so it has no {split!r} split; add a third column or use --split all")
    classes = sorted({label for _, label, _ in parsed})
    lookup = {name: i for i, name in enumerate(classes)}
    records = [
        VideoRecord(_join(base, path), lookup[label], Path(path).stem, row_split)
        for path, label, row_split in parsed
        if split == "all" or not has_splits or row_split == split
    ]
    return DatasetIndex("csv", csv_path, split, records, classes)


def _load_kinetics(csv_path: Path, rows, header, split, base: Path) -> DatasetIndex:
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
    if missing and not records:
        raise VdiagError(
            f"none of the {len(missing)} clips of {csv_path} were found under {base} "
            f"(e.g. {missing[0]}_<start>_<end>.mp4); pass --video-root"
        )
    return DatasetIndex("csv", csv_path, split, records, classes, missing=missing)


# --- mmaction rawframes lists -------------------------------------------------------------


def _looks_like_rawframes(path: Path) -> bool:
    """The first line reads 'folder num_frames label' (whitespace separated, two integers)."""
    for _, line in _lines(path)[:1]:
        parts = line.split()
        return len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit() and "," not in line
    return False


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
