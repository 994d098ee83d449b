"""Map-style video clip datasets (DDP-friendly and deterministic).

`VideoClipDataset` turns a `DatasetIndex` into samples:

    {"clips": uint8 (ρ, C, T, H, W) or float after a transform, "label": int, "video_id": str,
     "index": int, "factors": {name: int}, "starts": (ρ,), "padded": bool (ρ,),
     "reading": {path, num_frames, [switched], [metadata_frames], [declared_frames]}}

Clip start times come from a generator seeded by (seed, epoch, item index), so a sample does not
depend on which worker or rank reads it. Frame indices are positions in the decoded stream of the
file (vdiag.data.frameindex), so a clip's frames are always real, distinct frames of the video,
except where a video is shorter than a clip: then the short-video policy ('pad' or 'loop') fills
the clip, and the sample says so (`"padded"`: one bool per clip), counted by `FailureTracker`.

A video that cannot be decoded does not kill the epoch: the sample comes back as
`{"failed": path, "error": reason, "index": i}`, `collate_clips` sets it aside, and a
`FailureTracker` in the main process warns once per file and raises a clear error when more than a set share of the videos has failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from rich.markup import escape
from torch.utils.data import Dataset, default_collate

from vdiag.data.decode import read_frames, resolve_decoder
from vdiag.data.formats import DatasetIndex
from vdiag.data.sampling import ClipSpec, random_starts, uniform_starts
from vdiag.errors import DecodeError, VdiagError

READING_WARNINGS = 20  # files warned about one by one (count mismatch, decoder switch); the rest are counted
ClipTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class VideoClipDataset(Dataset):
    """ρ random clips per video (mode 'train') or N uniformly spread clips (mode 'eval').

    Args:
        index: the videos and labels (`vdiag.data.formats.load_index`).
        clip: clip length, stride, extra frames and short-video policy.
        mode: 'train' (independent random starts) or 'eval' (uniform starts).
        clips_per_video: ρ for training (2 or 4 in the papers), N for evaluation (10).
        transform: optional `f(clip_uint8 (C, T, H, W), generator) -> tensor` applied per clip in
            the worker (augmentation, resizing); without one, clips stay uint8.
        decoder: 'auto', 'decord' or 'pyav'.
        seed: base seed of the clip sampling and the transform.

    Example:
        >>> index = load_index("data/ucf101", split="train")
        >>> dataset = VideoClipDataset(index, ClipSpec(8, stride=4), clips_per_video=2)
        >>> sample = dataset[0]; sample["clips"].shape   # (2, 3, 8, H, W)
    """

    def __init__(
        self,
        index: DatasetIndex,
        clip: ClipSpec,
        mode: str = "train",
        clips_per_video: int = 2,
        transform: ClipTransform | None = None,
        decoder: str = "auto",
        seed: int = 0,
    ):
        if mode not in ("train", "eval"):
            raise VdiagError(f"mode must be 'train' or 'eval', got {mode!r}")
        if clips_per_video < 1:
            raise VdiagError(f"clips per video must be at least 1, got {clips_per_video}")
        self.index = index
        self.clip = clip
        self.mode = mode
        self.clips_per_video = clips_per_video
        self.transform = transform
        self.decoder = resolve_decoder(decoder)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index.records)

    def set_epoch(self, epoch: int) -> None:
        """New random clips each epoch, reproducibly (call before each epoch, as with DistributedSampler)."""
        self.epoch = epoch

    def generator(self, item: int) -> torch.Generator:
        """The random generator of one item in the current epoch (clip starts and augmentation)."""
        seed = int(np.random.SeedSequence([self.seed, self.epoch, item]).generate_state(1, np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(seed)

    def __getitem__(self, item: int) -> dict:
        record = self.index.records[item]
        generator = self.generator(item)
        chosen = {}

        def select(frame_count: int) -> np.ndarray:
            if chosen.get("frame_count") == frame_count:  # PyAV retrying after decord: same clips
                return chosen["indices"].reshape(-1)
            chosen["frame_count"] = frame_count
            if self.mode == "train":
                starts = random_starts(frame_count, self.clip, self.clips_per_video, generator)
            else:
                starts = uniform_starts(frame_count, self.clip, self.clips_per_video)
            chosen["starts"] = starts
            chosen["indices"] = np.stack([self.clip.indices(s, frame_count) for s in starts])  # (ρ, T)
            return chosen["indices"].reshape(-1)

        report: dict = {}
        try:
            frames = torch.from_numpy(read_frames(record.path, select, self.decoder, report=report))  # (ρ·T, H, W, C)
        except DecodeError as err:
            return {"failed": str(record.path), "error": err.reason, "index": item}
        starts = chosen["starts"]
        padded = [self.clip.padded(s, report["num_frames"]) for s in starts]
        padded_extra = [self.clip.padded_with_extra(s, report["num_frames"]) for s in starts]
        clips = frames.view(*chosen["indices"].shape, *frames.shape[1:])  # (ρ, T, H, W, C)
        clips = clips.permute(0, 4, 1, 2, 3).contiguous()  # (ρ, C, T, H, W)
        if self.transform is not None:
            clips = torch.stack([self.transform(c, generator) for c in clips])
        return {
            "clips": clips,
            "label": record.label,
            "video_id": record.video_id,
            "index": item,
            "factors": dict(record.factors),
            "starts": torch.tensor(starts),
            "padded": torch.tensor(padded),  # (ρ,) bool: the clip repeats (pad) or wraps (loop) frames
            "padded_extra": torch.tensor(padded_extra),  # (ρ,) bool: the same, its extra frames included
            "reading": _reading_notes(record, report),
        }


def _reading_notes(record, report: dict) -> dict:
    """What the main process should hear about how this file was read (decoder switch, count mismatch)."""
    notes = {"path": str(record.path), "num_frames": report["num_frames"]}
    if report.get("switched"):
        notes["switched"] = report["switched"]
    if report.get("count_mismatch"):
        notes["metadata_frames"] = report["metadata_frames"]
    declared = getattr(record, "declared_frames", None)
    if declared is not None and declared != report["num_frames"]:
        notes["declared_frames"] = declared
    return notes


def collate_clips(samples: list[dict]) -> dict:
    """Batch the good samples; failed ones are listed under 'failures' (possibly an empty batch).

    The batch also carries 'padded_clips' (clips filled by the short-video policy) and 'reading'
    (one dict per sample: decoder switches and frame-count mismatches, for `FailureTracker`).
    """
    good = [dict(s) for s in samples if "failed" not in s]
    failures = [{"path": s["failed"], "error": s["error"]} for s in samples if "failed" in s]
    reading = [s.pop("reading") for s in good if "reading" in s]
    batch = default_collate(good) if good else {}
    batch["failures"] = failures
    batch["size"] = len(good)
    batch["padded_clips"] = int(batch["padded"].sum()) if "padded" in batch else 0
    batch["padded_extra_clips"] = int(batch["padded_extra"].sum()) if "padded_extra" in batch else batch["padded_clips"]
    batch["reading"] = reading
    return batch


class FailureTracker:
    """Counts unreadable videos seen by the main process; warns once per file, fails past a share.

    `max_failure_share` is the share of distinct videos that may fail before the run stops with an
    error naming the files (default 5%). `min_seen` keeps one early failure from tripping it.

    It also carries the videos the annotation files list but that are not on disk (`missing`,
    counted when the index was read, `vdiag.data.formats.check_missing`: they never reach a batch)
    and counts, from each batch: clips filled by the short-video policy (`padded_clips`, and
    the videos they came from), files read with PyAV because decord disagrees with their frame
    index (`switched`, warned once per file) and files whose container records another frame
    count than the frames that decode (`count_mismatches`, warned once per file). `summary()`
    gives the numbers a result should carry. Messages reach `warn` as rich markup (file names and
    decoder errors escaped), as `vdiag.console.warn` prints them.

    Raises:
        VdiagError: (from `update`) when more than the allowed share of videos has failed.
    """

    def __init__(
        self,
        total_videos: int,
        max_failure_share: float = 0.05,
        warn: Callable[[str], None] | None = None,
        min_seen: int = 20,
        *,
        missing: int = 0,
    ):
        self.total_videos = max(total_videos, 1)
        self.missing = missing
        self.max_failure_share = max_failure_share
        self.warn = warn or (lambda message: None)
        self.min_seen = min_seen
        self.errors: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.seen = 0
        self.padded_clips = 0
        self.padded_videos: set[str] = set()
        self.padded_extra_clips = 0  # clips padded once their extra frames are counted (ClipSpec.extra_optional)
        self.padded_extra_videos: set[str] = set()
        self.switched: dict[str, str] = {}
        self.count_mismatches: dict[str, tuple[int, int]] = {}
        self.reading_warnings = 0

    def update(self, batch: dict) -> None:
        """Take in one collated batch (see `collate_clips`).

        Raises:
            VdiagError: more than the allowed share of the videos seen so far failed to decode.
        """
        self.seen += batch.get("size", 0) + len(batch.get("failures", []))
        self.padded_clips += int(batch.get("padded_clips", 0))
        self.padded_extra_clips += int(batch.get("padded_extra_clips", batch.get("padded_clips", 0)))
        padded, padded_extra = batch.get("padded"), batch.get("padded_extra", batch.get("padded"))
        for k, notes in enumerate(batch.get("reading", [])):
            path = notes["path"]
            if padded is not None and bool(padded[k].any()):
                self.padded_videos.add(path)
            if padded_extra is not None and bool(padded_extra[k].any()):
                self.padded_extra_videos.add(path)
            said = []
            if notes.get("switched") and path not in self.switched:
                self.switched[path] = notes["switched"]
                said.append(f"read with PyAV ({notes['switched']})")
            expected = notes.get("metadata_frames", notes.get("declared_frames"))
            if expected is not None and path not in self.count_mismatches:
                self.count_mismatches[path] = (expected, notes["num_frames"])
                said.insert(0, f"{expected} frames recorded but {notes['num_frames']} decode, clips come from those")
            if said:
                self._warn_reading(f"{path}: {'; '.join(said)}")
        for failure in batch.get("failures", []):
            path = failure["path"]
            if path not in self.errors:
                self.warn(escape(f"skipping unreadable video {path}: {failure['error']}"))
            self.errors[path] = failure["error"]
            self.counts[path] += 1
        self.check()

    def _warn_reading(self, message: str) -> None:
        """One line per file, up to READING_WARNINGS files; then one line saying where the rest are."""
        self.reading_warnings += 1
        if self.reading_warnings <= READING_WARNINGS:
            self.warn(escape(message))
        elif self.reading_warnings == READING_WARNINGS + 1:
            self.warn("more files with frame-count mismatches or decoder switches; `vdiag check-data DATA` lists them all")

    @property
    def failed(self) -> int:
        return len(self.errors)

    def summary(self, *, with_extra: bool = False) -> dict[str, int]:
        """Counts for a run's results: missing and failed videos, padded clips and videos, decoder
        switches, count mismatches. `with_extra`: padded clips and videos counted with their extra
        frames (the frame-difference view, which reads them; `ClipSpec.extra_optional`)."""
        return {
            "missing_videos": self.missing,
            "failed_videos": self.failed,
            "padded_clips": self.padded_extra_clips if with_extra else self.padded_clips,
            "padded_videos": len(self.padded_extra_videos if with_extra else self.padded_videos),
            "decoder_switches": len(self.switched),
            "frame_count_mismatches": len(self.count_mismatches),
        }

    def check(self) -> None:
        """Stop the run when too many videos have failed.

        Raises:
            VdiagError: more than `max_failure_share` of the videos seen so far failed to decode.
        """
        share = self.failed / min(self.total_videos, max(self.seen, 1))
        if self.seen >= min(self.min_seen, self.total_videos) and share > self.max_failure_share:
            worst = ", ".join(f"{p} ({self.errors[p]})" for p, _ in self.counts.most_common(3))
            raise VdiagError(
                f"{self.failed} of {self.seen} videos read so far could not be decoded "
                f"({share:.0%} > {self.max_failure_share:.0%} allowed); e.g. {worst}. "
                "Fix or remove them, or try --decoder pyav"
            )
