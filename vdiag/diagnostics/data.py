"""Which dataset a diagnostic reads, and which of its videos train and which test.

The dataset is `--data`, else the one recorded in the checkpoint, else the default synthetic
dataset (generated on first use, and said so).

A diagnostic never evaluates on a video it trained on. A dataset with its own splits (train/ and
test/ folders, a split column, UCF-101 / HMDB-51 split files, a synthetic dataset) is used as
given, after checking that no video is in both train and test. A dataset without any (class
folders with no train/ test/ folders, a CSV with no split column) is split here, by video: within
each class the videos (sorted by path) are permuted by a generator seeded with `split_seed` and the
first `round(test_share · n)` (at least one when the class has two or more videos, never all of
them) are test videos. The split is said on the terminal and recorded in every result's
`config["data"]` (seed, share, how many videos, the test videos' ids), so the same command
reproduces it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vdiag.console import note
from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.diagnostics.model import DiagnosticModel
from vdiag.errors import VdiagError

TEST_SHARE = 0.3
SPLIT_SEED = 0
_SAID: set = set()  # generated splits already announced in this process


@dataclass(frozen=True)
class DataRef:
    """A dataset a diagnostic reads: folder or CSV, layout (`FORMATS`, "auto" detects it), the
    UCF-101 / HMDB-51 split number (1–3), the folder holding the videos of an annotation-file
    layout (`--video-root`, absolute; None: found beside the annotations), and, for a dataset
    without splits, the share of each class's videos held out for testing and the seed that picks them."""

    path: str
    format: str = "auto"
    split_id: int = 1
    test_share: float = TEST_SHARE
    split_seed: int = SPLIT_SEED
    video_root: str | None = None

    def _load(self, split: str) -> DatasetIndex:
        return load_index(self.path, self.format, split, self.split_id, video_root=self.video_root)

    def split(self, name: str) -> DatasetIndex:
        """The index of split `name` ("train", "val", "test", "all"), disjoint from the other splits.

        Raises:
            VdiagError: a missing or malformed dataset; a video listed in both train and test; "val"
                of a dataset without splits.
        """
        everything = self._load("all")
        if name == "all":
            return everything
        if not _has_splits(everything):
            return _generated_split(everything, name, test_share=self.test_share, seed=self.split_seed)
        index = self._load(name)
        if name in ("train", "test"):
            other = self._load("test" if name == "train" else "train")
            shared = sorted({str(r.path) for r in index.records} & {str(r.path) for r in other.records})
            if shared:
                raise VdiagError(
                    f"{len(shared)} videos of {self.path} are in both the train and the test split (e.g. {shared[0]}); "
                    "a diagnostic never tests on training videos: fix the split"
                )
        return index

    @property
    def generated_split(self) -> bool:
        """True when the dataset has no splits of its own and `split` makes them (by video, seeded)."""
        return not _has_splits(self._load("all"))

    def describe(self) -> dict:
        """What a result records about its data: the dataset (for a synthetic one: its size, frames,
        videos per split and confounding p, not just a path) and how train and test were split.

        Returns:
            A JSON-able dict: `path`, `format`, `description`, `split` ("as given" or "by video,
            seeded"), and for a generated split `split_seed`, `test_share`, `train_videos`,
            `test_videos` and `test_video_ids`; `video_root` and `missing_videos` (listed but not on
            disk, all splits) where they apply.
        """
        everything = self._load("all")
        out = {"path": self.path, "format": everything.format, "description": describe_dataset(everything)}
        if self.video_root:
            out["video_root"] = self.video_root
        if everything.missing:
            out["missing_videos"] = len(everything.missing)
        if _has_splits(everything):
            return {**out, "split": "as given by the dataset"}
        train = _generated_split(everything, "train", test_share=self.test_share, seed=self.split_seed, quiet=True)
        test = _generated_split(everything, "test", test_share=self.test_share, seed=self.split_seed, quiet=True)
        return {
            **out,
            "split": "by video, seeded (the dataset has no split)",
            "split_seed": self.split_seed,
            "test_share": self.test_share,
            "train_videos": len(train),
            "test_videos": len(test),
            "test_video_ids": [r.video_id for r in test.records],
        }


def describe_dataset(index: DatasetIndex) -> str:
    """One line naming the dataset: for a synthetic one its generator settings, else format, videos and classes.

    Args:
        index: the index of all videos ("all").

    Returns:
        E.g. "synthetic: 96/64/64 train/val/test videos, 32 px, 8 frames, confounding p = 0.0 (train)".
    """
    if index.format == "synthetic":
        try:
            manifest = json.loads((Path(index.root) / "manifest.json").read_text())
            p = manifest["parameters"]
            counts = "/".join(str(p[f"num_{s}"]) for s in ("train", "val", "test"))
            return (
                f"synthetic (vdiag synth-dataset, generator {manifest.get('generator_version', '?')}): {counts} train/val/test videos, "
                f"{p['size']} px, {p['frames']} frames, label {p['label_factor']}, confounding p = {p['correlation']} in train"
            )
        except (OSError, ValueError, KeyError):
            pass
    return f"{index.format}: {len(index)} videos, {index.num_classes} classes"


def _has_splits(index: DatasetIndex) -> bool:
    return any(record.split for record in index.records)


def _generated_split(index: DatasetIndex, name: str, *, test_share: float, seed: int, quiet: bool = False) -> DatasetIndex:
    """Split a dataset without splits by video: per class, a seeded permutation of the sorted videos."""
    if name not in ("train", "test"):
        raise VdiagError(
            f"{index.root} has no split, so it has no {name!r} videos; put the videos under train/ val/ test/ folders "
            "(or add a split column to the CSV)"
        )
    rng = np.random.default_rng(seed)
    chosen, counts = [], {"train": 0, "test": 0}
    for label in range(index.num_classes):
        videos = sorted((r for r in index.records if r.label == label), key=lambda r: str(r.path))
        order = rng.permutation(len(videos))
        held_out = min(len(videos) - 1, max(1 if len(videos) >= 2 else 0, round(test_share * len(videos))))
        picked = set(order[:held_out].tolist())
        counts["test"] += held_out
        counts["train"] += len(videos) - held_out
        chosen += [replace(r, split=name) for i, r in enumerate(videos) if (i in picked) == (name == "test")]
    if not quiet and (str(index.root), seed, test_share) not in _SAID:
        _SAID.add((str(index.root), seed, test_share))
        note(
            f"{index.root} has no split (no train/ test/ folders or split column): split by video, seed {seed}, "
            f"{test_share:.0%} of each class held out: {counts['train']} train and {counts['test']} test videos, never the same "
            "(recorded in the result)"
        )
    return DatasetIndex(index.format, index.root, name, chosen, list(index.class_names), dict(index.factor_values), list(index.missing))


def resolve_data(
    model: DiagnosticModel,
    path: str | None = None,
    *,
    format: str | None = None,
    split_id: int | None = None,
    video_root: str | None = None,
) -> DataRef:
    """The dataset a diagnostic reads: `path`, else the one recorded in a vdiag checkpoint, else the
    default synthetic dataset (generated on first use, and said so).

    The recorded dataset is read with its recorded `data.video_root` (or `video_root` when given),
    and its training split must match the recorded fingerprint (whose video paths include the
    video root), so a diagnostic finds the videos the run trained on.

    Args:
        model: the loaded checkpoint (its config records the training data).
        path: the dataset folder or CSV (`--data`).
        format: its layout [auto, or as recorded].
        split_id: the UCF-101 / HMDB-51 split [1, or as recorded].
        video_root: the folder holding the videos (`--video-root`) [none, or as recorded].

    Returns:
        The `DataRef`.

    Raises:
        VdiagError: the checkpoint records a relative data path, or the dataset at its recorded path
            is not the one it was trained on (`vdiag.checkpoint.check_recorded_data`): pass --data.
    """
    recorded = (model.config or {}).get("data", {})
    if path is None and recorded.get("path"):
        from vdiag.checkpoint import check_recorded_data

        video_root = video_root or recorded.get("video_root")

        def load_split(*args):
            return load_index(*args, video_root=video_root)

        check_recorded_data(model.config, load_split=load_split)  # never diagnose another folder's data silently
        path = recorded["path"]
        format = format or recorded.get("format", "auto")
        split_id = split_id or recorded.get("split_id", 1)
    if not path:
        path = str(default_synthetic_dataset())
    root = str(Path(video_root).expanduser().resolve()) if video_root else None
    return DataRef(str(path), format or "auto", split_id or 1, video_root=root)
