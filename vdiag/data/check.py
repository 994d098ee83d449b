"""`vdiag check-data`: read every file of a dataset once and say what is wrong with it.

Per file (video or frame folder): the frames that decode against the count the container (or the
annotation file) records, the display rotation, variable frame rate, whether the decoders agree on
sampled clips, files that do not decode (or stop decoding early), and runs of repeated frames.
Building the frame index of each file is the scan itself, so the frame-index cache
(vdiag.data.frameindex) is filled as a side effect and training and diagnostics start from it.

Problems (counted against `--max-problems`): unreadable, truncated, frame count ≠ metadata, decoders
disagreeing on a sampled clip, mostly frozen (at least half of the frames repeat the one before).
Notes (reported, not problems): rotation, VFR, decord replaced by PyAV for the file, shorter runs
of repeated frames, videos shorter than one clip (their clips are padded).
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdiag.data.decode import decord_available, read_frames, resolve_decoder
from vdiag.data.formats import load_index
from vdiag.data.frameindex import DECORD_TOLERANCE, FrameIndex, frame_index
from vdiag.data.sampling import ClipSpec, uniform_starts
from vdiag.errors import DecodeError, VdiagError
from vdiag.results import Result

FROZEN_SHARE = 0.5
PROBLEM_KINDS = ("unreadable", "truncated", "count_mismatch", "decoders_disagree", "frozen")


@dataclass
class FileReport:
    """What `check_file` found in one file."""

    path: str
    frames: int | None = None
    metadata_frames: int | None = None
    fps: float | None = None
    size: str = ""
    rotation: int = 0
    vfr: bool = False
    decoder: str = ""
    duplicate_frames: int = 0
    longest_duplicate_run: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def problem(self, kind: str, tag: str, text: str) -> None:
        """Record a problem: its kind (PROBLEM_KINDS), a short tag for tables, the full sentence."""
        self.kinds.append(kind)
        self.tags.append(f"!{tag}")
        self.problems.append(text)

    def note(self, tag: str, text: str) -> None:
        """Record a note (not a problem): a short tag for tables, the full sentence."""
        self.tags.append(tag)
        self.notes.append(text)

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return dict(self.__dict__)


def check_file(path: str | Path, clip: ClipSpec, clips: int = 2, decoder: str = "auto", declared_frames: int | None = None) -> FileReport:
    """Index one file (building its cache entry) and check it.

    Args:
        path: a video file or frame folder.
        clip: the clip shape used to sample the decoder-agreement clips.
        clips: clips compared between decord and PyAV (uniformly spread).
        decoder: the decoder training would use ('auto', 'decord', 'pyav').
        declared_frames: a frame count an annotation file states, checked like container metadata.

    Returns:
        The file's `FileReport`.
    """
    report = FileReport(str(path))
    try:
        entry = frame_index(path, check_decord=decoder != "pyav" and decord_available())
    except DecodeError as err:
        report.problem("unreadable", "unreadable", f"unreadable: {err.reason}")
        return report
    report.frames, report.fps = entry.num_frames, round(entry.fps, 3)
    report.size, report.rotation, report.vfr = f"{entry.width}x{entry.height}", entry.rotation, entry.vfr
    expected = declared_frames if declared_frames is not None else entry.metadata_frames
    report.metadata_frames = expected
    if entry.error:
        report.problem("truncated", "truncated", f"truncated: {entry.error}")
    if expected is not None and expected != entry.num_frames:
        source = "the list states" if declared_frames is not None else "the container records"
        report.problem("count_mismatch", f"{expected} recorded", f"{source} {expected} frames, {entry.num_frames} decode")
    if entry.rotation:
        report.note(f"rotated {entry.rotation}°", f"rotated {entry.rotation}° (applied by both decoders)")
    if entry.vfr:
        report.note("VFR", "variable frame rate (indexed by decoded order)")
    _duplicates(entry, report)
    _agreement(path, entry, clip, clips, decoder, report)
    if entry.num_frames < clip.span:
        report.note("short", f"shorter than one clip ({entry.num_frames} < {clip.span} frames): its clips are padded")
    return report


def _duplicates(entry: FrameIndex, report: FileReport) -> None:
    report.duplicate_frames = entry.duplicate_frames
    report.longest_duplicate_run = max((length for _, length in entry.duplicate_runs), default=0)
    if not entry.duplicate_runs:
        return
    start, length = max(entry.duplicate_runs, key=lambda run: run[1])
    text = f"{entry.duplicate_frames} repeated frames in {len(entry.duplicate_runs)} run(s), longest {length} from frame {start}"
    if entry.duplicate_frames >= FROZEN_SHARE * entry.num_frames:
        report.problem("frozen", f"frozen {entry.duplicate_frames}/{entry.num_frames}", f"mostly frozen: {text}")
    else:
        report.note(f"{entry.duplicate_frames} repeats", text)


def _agreement(path, entry: FrameIndex, clip: ClipSpec, clips: int, decoder: str, report: FileReport) -> None:
    if entry.kind == "frames":
        report.decoder = "images"
        return
    if decoder == "pyav" or not decord_available():
        report.decoder = "pyav"
        return
    if entry.decord != "ok":
        report.decoder = "pyav"
        report.note("decord→PyAV", f"decord not used for this file: {entry.decord}")
        return
    report.decoder = "decord"
    spec = ClipSpec(min(clip.total_frames, entry.num_frames), clip.stride if clip.span <= entry.num_frames else 1)
    for start in uniform_starts(entry.num_frames, spec, clips):
        wanted = spec.indices(start, entry.num_frames).tolist()
        try:
            by_decord = read_frames(path, wanted, "decord").astype(np.int16)
            by_pyav = read_frames(path, wanted, "pyav")
        except DecodeError as err:
            report.problem("decoders_disagree", "decoders disagree", f"decoders disagree: {err.reason}")
            return
        errors = np.abs(by_decord - by_pyav).mean(axis=(1, 2, 3)) if by_decord.shape == by_pyav.shape else [np.inf]
        if max(errors) > DECORD_TOLERANCE:
            text = f"decoders disagree on frames {wanted[0]}..{wanted[-1]} (mean difference {max(errors):.1f} levels)"
            report.problem("decoders_disagree", "decoders disagree", text)
            return


def _check_job(job) -> FileReport:
    return check_file(*job)


def check_data(
    path: str | Path,
    format: str = "auto",
    split: str = "all",
    split_id: int = 1,
    video_root: str | Path | None = None,
    decoder: str = "auto",
    clip: ClipSpec | None = None,
    clips: int = 2,
    max_problems: int = 0,
    progress=None,
    workers: int = 0,
) -> Result:
    """Scan every file of a dataset split once (filling the frame-index cache) and report per file.

    Args:
        path: the dataset (any layout `load_index` reads).
        format, split, split_id, video_root: as for `load_index`.
        decoder: the decoder training would use.
        clip: clip shape for the agreement clips and the too-short note (default 8 frames, stride 2).
        clips: clips per file compared between the decoders.
        max_problems: files with problems allowed before `metrics["exceeded"]` is 1.
        progress: optional callable `(iterable, total)` wrapping the reports as they come (a progress bar).
        workers: processes that scan files in parallel (0: this process).

    Returns:
        A Result with metrics (files, problem counts by kind, notes, throughput) and one row per
        file under `details["files"]`.

    Raises:
        VdiagError: the dataset cannot be read, or an unknown decoder is named.
    """
    resolve_decoder(decoder)
    clip = clip or ClipSpec(8, stride=2)
    # every share of missing videos is reported here (metrics["missing"]), not refused as training refuses it
    index = load_index(path, format=format, split=split, split_id=split_id, video_root=video_root, max_missing=1.0)
    records = index.records
    jobs = [(record.path, clip, clips, decoder, record.declared_frames) for record in records]
    started = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")  # no decoder state shared with the parent
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            found = pool.map(_check_job, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
            reports = list(progress(found, len(jobs)) if progress is not None else found)
    else:
        found = (_check_job(job) for job in jobs)
        reports = list(progress(found, len(jobs)) if progress is not None else found)
    seconds = time.perf_counter() - started
    frames = sum(r.frames or 0 for r in reports)
    with_problems = sum(1 for r in reports if r.problems)
    metrics = {
        "files": len(reports),
        "files_with_problems": with_problems,
        **{kind: sum(kind in r.kinds for r in reports) for kind in PROBLEM_KINDS},
        "decoder_switches": sum(1 for r in reports if any(n.startswith("decord not used") for n in r.notes)),
        "rotated": sum(1 for r in reports if r.rotation),
        "vfr": sum(1 for r in reports if r.vfr),
        "with_repeated_frames": sum(1 for r in reports if r.duplicate_frames),
        "shorter_than_a_clip": sum(1 for r in reports if r.frames is not None and r.frames < clip.span),
        "frames": frames,
        "seconds": round(seconds, 3),
        "files_per_second": round(len(reports) / seconds, 2) if seconds > 0 else 0.0,
        "frames_per_second": round(frames / seconds, 1) if seconds > 0 else 0.0,
        "missing": len(index.missing),
        "exceeded": int(with_problems > max_problems),
    }
    if not reports:
        raise VdiagError(f"{index.describe()}: nothing to check")
    return Result(
        command="check-data",
        data=str(path),
        metrics=metrics,
        config={
            "format": index.format,
            "split": split,
            "decoder": decoder,
            "clip": clip.__dict__,
            "clips": clips,
            "max_problems": max_problems,
        },
        details={"files": [r.to_dict() for r in reports], "missing": index.missing[:100]},
    )
