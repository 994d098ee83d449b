"""`vdiag cache info` and `vdiag cache verify`: what the cache folder holds, and whether each entry
still matches its sources.

The cache folder (`vdiag.io.cache_dir`: `$VDIAG_CACHE_DIR`, else `~/.cache/vdiag`) holds

    features/<key>.npz            frozen features (vdiag.diagnostics.features); each records its
                                  sources: the checkpoint (path, fingerprint of the tensors loaded)
                                  and every video (path, size, mtime, content digest)
    frame-index/v<N>/**/<h>.json  one frame index per video file (vdiag.data.frameindex)
    datasets/<name>/              generated synthetic datasets (vdiag.data.synthetic)

`verify_cache` re-checks every entry against its source:

- a feature entry is **stale** when a video it was computed from is missing or changed (size, mtime
  or content digest), or its checkpoint is missing or now loads to other tensors (the checkpoint is
  loaded again, once per checkpoint, and its fingerprint compared); written by an older vdiag
  (another cache version, no recorded sources) it can never be read again and is stale too;
- a frame index is **stale** when its video is missing or changed (`frameindex.index_matches`), or
  it lies in an older format's folder (`frame-index/v1`);
- an entry that cannot be read (truncated, not an npz / JSON) is **corrupt**;
- a temporary file of an interrupted write (`.<name>.*.tmp`, older than `TEMPORARY_AGE` seconds)
  is **stale**;
- a synthetic dataset is **corrupt** without its `manifest.json` (the generator writes it last);
  its videos are generated, so there is nothing else to check.

`prune=True` deletes the stale and corrupt entries, each by one atomic step (`os.unlink` of a file;
a folder is first renamed to a hidden temporary name, then removed), so no entry is ever left
half-deleted under its own name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdiag.data import frameindex
from vdiag.diagnostics import features as feature_cache
from vdiag.errors import VdiagError
from vdiag.io import cache_dir, content_digest
from vdiag.results import Result

KINDS = ("features", "frame-index", "datasets", "temporary", "other")
TEMPORARY_AGE = 600  # seconds: a younger temporary may belong to a write in progress
STATUSES = ("ok", "stale", "corrupt")


@dataclass
class CacheEntry:
    """One entry of the cache folder and what `verify_cache` found.

    Attributes:
        kind: one of `KINDS`.
        path: the file or folder.
        size: bytes (a folder: all files under it).
        status: "ok", "stale" or "corrupt" ("ok" for what `cache_info` does not check).
        reason: why it is stale or corrupt (one line), else "".
    """

    kind: str
    path: Path
    size: int
    status: str = "ok"
    reason: str = ""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def cache_entries(root: str | Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache folder, classified by kind (not verified).

    Args:
        root: the cache folder [`cache_dir()`].

    Returns:
        `CacheEntry`s (status "ok"), features first, then frame indexes, datasets, temporaries, other.
    """
    root = Path(root) if root is not None else cache_dir()
    if not root.is_dir():
        return []
    entries: list[CacheEntry] = []
    now = time.time()

    def temporary(path: Path) -> None:
        age = now - path.stat().st_mtime
        if age >= TEMPORARY_AGE:
            entries.append(CacheEntry("temporary", path, _size(path), "stale", "left by an interrupted write"))

    for path in sorted(root.iterdir()):
        if _is_temporary(path):
            temporary(path)
        elif path.name == "features" and path.is_dir():
            for item in sorted(path.iterdir()):
                if _is_temporary(item):
                    temporary(item)
                else:
                    entries.append(CacheEntry("features", item, _size(item)))
        elif path.name == "frame-index" and path.is_dir():
            current = frameindex.index_cache_folder().name
            for version in sorted(path.iterdir()):
                if version.name != current:
                    entries.append(
                        CacheEntry("frame-index", version, _size(version), "stale", f"an older frame-index format ({version.name})")
                    )
                    continue
                for folder, _, files in os.walk(version):
                    for name in sorted(files):
                        item = Path(folder) / name
                        if _is_temporary(item):
                            temporary(item)
                        else:
                            entries.append(CacheEntry("frame-index", item, item.stat().st_size))
        elif path.name == "datasets" and path.is_dir():
            for item in sorted(path.iterdir()):
                if _is_temporary(item):
                    temporary(item)
                else:
                    entries.append(CacheEntry("datasets", item, _size(item)))
        else:
            entries.append(CacheEntry("other", path, _size(path)))
    return entries


class _Checker:
    """Verifies entries, loading each checkpoint and digesting each video at most once."""

    def __init__(self):
        self.fingerprints: dict[tuple, str | Exception] = {}
        self.videos: dict[str, tuple[int, int, str] | None] = {}

    def video(self, path: str) -> tuple[int, int, str] | None:
        if path not in self.videos:
            try:
                stat = os.stat(path)
                self.videos[path] = (stat.st_size, stat.st_mtime_ns, content_digest(path, stat))
            except OSError:
                self.videos[path] = None
        return self.videos[path]

    def fingerprint(self, model: dict) -> str | Exception:
        key = (model["path"], model.get("backbone"), model.get("layer"), model.get("keep_temporal"))
        if key not in self.fingerprints:
            from vdiag.diagnostics.model import load_model

            try:
                self.fingerprints[key] = load_model(
                    model["path"], backbone=model.get("backbone"), layer=model.get("layer"), keep_temporal=model.get("keep_temporal")
                ).fingerprint
            except VdiagError as err:
                self.fingerprints[key] = err
        return self.fingerprints[key]

    def features(self, entry: CacheEntry) -> None:
        if entry.path.suffix != ".npz":
            entry.status, entry.reason = "stale", "not a feature cache file"
            return
        try:
            with np.load(entry.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                shape = data["features"].shape
                labels = data["labels"].shape
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            entry.status, entry.reason = "corrupt", f"unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            return
        sources = meta.get("sources")
        if not isinstance(sources, dict) or sources.get("version") != feature_cache.CACHE_VERSION:
            found = sources.get("version") if isinstance(sources, dict) else "≤ 2"
            entry.status, entry.reason = "stale", f"written by an older vdiag (cache version {found}); never read again"
            return
        if shape[:1] != labels or len(meta.get("video_ids", [])) != shape[0]:
            entry.status, entry.reason = "corrupt", "its arrays do not match (features, labels, video ids)"
            return
        for path, size, mtime, digest in sources["videos"]:
            now = self.video(path)
            if now is None:
                entry.status, entry.reason = "stale", f"video missing: {path}"
                return
            if now[:2] != (size, mtime) or now[2] != digest:
                entry.status, entry.reason = "stale", f"video changed: {path}"
                return
        model = sources["model"]
        if model["path"].startswith("<"):  # a model built in memory (vdiag validate): only its videos can be checked
            return
        if not Path(model["path"]).exists():
            entry.status, entry.reason = "stale", f"checkpoint missing: {model['path']}"
            return
        found = self.fingerprint(model)
        if isinstance(found, Exception):
            entry.status, entry.reason = "stale", f"checkpoint no longer loads: {model['path']} ({str(found).splitlines()[0]})"
        elif found != model["fingerprint"]:
            entry.status, entry.reason = "stale", f"checkpoint changed: {model['path']}"

    def frame_index(self, entry: CacheEntry) -> None:
        try:
            data = json.loads(entry.path.read_text())
            if data.get("version") != frameindex.INDEX_VERSION:
                entry.status, entry.reason = "stale", f"an older frame-index format (version {data.get('version')})"
                return
            index = frameindex.FrameIndex.from_json(data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            entry.status, entry.reason = "corrupt", f"unreadable ({type(err).__name__})"
            return
        video = Path(index.path)
        try:
            stat = video.stat()
        except OSError:
            entry.status, entry.reason = "stale", f"video missing: {video}"
            return
        if frameindex.cache_file(video).name != entry.path.name:  # named by the hash of the video's path
            entry.status, entry.reason = "stale", f"not where the index of {video} is looked up"
        elif frameindex.index_matches(index, video, stat) is False:
            entry.status, entry.reason = "stale", f"video changed: {video}"

    def dataset(self, entry: CacheEntry) -> None:
        if entry.path.is_dir() and not (entry.path / "manifest.json").is_file():
            entry.status, entry.reason = "corrupt", "no manifest.json: an interrupted generation"


def verify_cache(root: str | Path | None = None, *, prune: bool = False) -> Result:
    """Re-check every cache entry against its source; with `prune`, delete the stale and corrupt ones.

    Args:
        root: the cache folder [`cache_dir()`].
        prune: delete every stale or corrupt entry (atomically, one by one).

    Returns:
        `Result` "cache verify"; metrics: per kind `<kind>_entries`, `<kind>_stale`,
        `<kind>_corrupt`, `<kind>_bytes`, and in all `entries`, `stale`, `corrupt`, `bytes`,
        `stale_bytes` (bytes of stale and corrupt entries), `pruned`, `pruned_bytes`, `remaining`
        (stale and corrupt entries still there: the command exits 1 when > 0). details: `entries`
        (kind, path, bytes, status, reason, pruned) of every entry that is not ok.
    """
    root = Path(root) if root is not None else cache_dir()
    entries = cache_entries(root)
    checker = _Checker()
    for entry in entries:
        if entry.status != "ok":
            continue
        if entry.kind == "features":
            checker.features(entry)
        elif entry.kind == "frame-index":
            checker.frame_index(entry)
        elif entry.kind == "datasets":
            checker.dataset(entry)
    pruned: set[Path] = set()
    if prune:
        for entry in entries:
            if entry.status != "ok" and _remove(entry.path):
                pruned.add(entry.path)
    metrics = _summary(entries)
    bad = [e for e in entries if e.status != "ok"]
    metrics.update(
        {
            "stale_bytes": sum(e.size for e in bad),
            "pruned": len(pruned),
            "pruned_bytes": sum(e.size for e in bad if e.path in pruned),
            "remaining": len(bad) - len(pruned),
        }
    )
    rows = [
        {"kind": e.kind, "path": str(e.path), "bytes": e.size, "status": e.status, "reason": e.reason, "pruned": e.path in pruned}
        for e in bad
    ]
    return Result(command="cache verify", metrics=metrics, data=str(root), config={"prune": prune}, details={"entries": rows})


def cache_info(root: str | Path | None = None) -> Result:
    """What the cache folder holds: entries and bytes per kind (nothing is checked or read).

    Args:
        root: the cache folder [`cache_dir()`].

    Returns:
        `Result` "cache info"; metrics `<kind>_entries`, `<kind>_bytes` per kind and `entries`,
        `bytes` in all; details: `datasets` (name, bytes of each generated dataset).
    """
    root = Path(root) if root is not None else cache_dir()
    entries = cache_entries(root)
    metrics = {}
    for kind in KINDS:
        found = [e for e in entries if e.kind == kind]
        metrics[f"{kind}_entries"], metrics[f"{kind}_bytes"] = len(found), sum(e.size for e in found)
    metrics["entries"], metrics["bytes"] = len(entries), sum(e.size for e in entries)
    datasets = [{"name": e.path.name, "bytes": e.size} for e in entries if e.kind == "datasets"]
    return Result(command="cache info", metrics=metrics, data=str(root), details={"datasets": datasets})


def _summary(entries: list[CacheEntry]) -> dict[str, int]:
    metrics: dict[str, int] = {}
    for kind in KINDS:
        found = [e for e in entries if e.kind == kind]
        metrics[f"{kind}_entries"] = len(found)
        for status in ("stale", "corrupt"):
            metrics[f"{kind}_{status}"] = sum(e.status == status for e in found)
        metrics[f"{kind}_bytes"] = sum(e.size for e in found)
    metrics["entries"] = len(entries)
    metrics["stale"] = sum(e.status == "stale" for e in entries)
    metrics["corrupt"] = sum(e.status == "corrupt" for e in entries)
    metrics["bytes"] = sum(e.size for e in entries)
    return metrics


def _remove(path: Path) -> bool:
    """Delete one entry atomically: a file by `unlink`, a folder by renaming it to a hidden
    temporary (one step), then removing that. False when it could not be removed."""
    try:
        if path.is_dir() and not path.is_symlink():
            hidden = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            os.replace(path, hidden / path.name)
            shutil.rmtree(hidden)
        else:
            path.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
