"""Crash-safe file output: write to a temporary name beside the target, then rename.

`os.replace` is atomic on POSIX and Windows within one file system, so a reader (or a run that
crashed halfway) sees either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vdiag.errors import VdiagError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    On an exception inside the block the temporary file is removed and `target` is left as it was.

    Raises:
        VdiagError: the folder cannot be created or written to.

    Example:
        >>> with atomic_path("out/result.json") as tmp:
        ...     tmp.write_text("{}")
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise VdiagError(f"cannot write {target}: {err.strerror or err}; choose another output path") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write `obj` as indented JSON, atomically (numpy values, paths and sets through `to_jsonable`).

    Raises:
        VdiagError: the folder cannot be created or written to.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=to_jsonable) + "\n")
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Write `arrays` to an uncompressed `.npz` file at `path`, atomically (`atomic_path`).

    The file is written through an open handle, so numpy keeps the name as given (it would append
    `.npz` to a bare path); read it back with `np.load(path)`, which for string arrays needs no pickle.

    Args:
        path: the target file; its folder is created.
        **arrays: name → array-like, stored under that name (as `np.savez` does).

    Returns:
        `path`, as a Path.

    Raises:
        VdiagError: the folder cannot be created or written to.

    Example:
        >>> save_npz("out/embeddings.npz", embeddings=x, labels=y)
    """
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)


def to_jsonable(value):
    """`json.dumps(default=...)` hook: numpy scalars and arrays, paths, sets."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target`.

    An existing `target` is removed only once the new one is complete.

    Raises:
        VdiagError: the parent folder cannot be created or written to.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise VdiagError(f"cannot write {target}: {err.strerror or err}; choose another output folder") from err
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cache_dir() -> Path:
    """The folder vdiag caches generated data in: `$VDIAG_CACHE_DIR`, else `~/.cache/vdiag`."""
    env = os.environ.get("VDIAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vdiag"


LOCK_NAME = ".vdiag.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, option: str = "--out") -> Iterator[Path]:
    """Hold `folder/.vdiag.lock` (this process's pid and host) while writing into `folder`.

    The folder is created, and a folder vdiag cannot write to is found here, before any
    computation. A lock held by a live process refuses the second writer; a lock left by a process
    that no longer exists on this host is taken over. The lock is removed on exit.

    Args:
        folder: the output folder (e.g. a pretraining run's `--out`).
        option: how error messages name the folder's option.

    Yields:
        The lock file's path.

    Raises:
        VdiagError: the folder cannot be created or written to, or another live vdiag holds it.
    """
    import json as _json
    import socket
    import time

    folder = Path(folder)
    lock = folder / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VdiagError(f"cannot create {folder}: {err.strerror or err}; choose another {option}") from None
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None:
                raise VdiagError(
                    f"{folder} is in use by another vdiag (pid {holder.get('pid')} on {holder.get('host')}); "
                    f"wait for it to finish or choose another {option} (if that process is gone, delete {lock})"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        except OSError as err:
            raise VdiagError(f"cannot write to {folder}: {err.strerror or err}; choose another {option}") from None
        with os.fdopen(fd, "w") as f:
            f.write(_json.dumps(record))
        break
    else:
        raise VdiagError(f"cannot take the lock {lock}; delete it if no vdiag is writing to {folder}")
    try:
        yield lock
    finally:
        if (_lock_holder(lock, check_alive=False) or {}).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)


def _lock_holder(lock: Path, check_alive: bool = True) -> dict | None:
    """The lock's record if a live process (or one on another host, which cannot be checked) holds it; None if stale."""
    import json as _json
    import socket
    import time

    try:
        text = lock.read_text()
        holder = _json.loads(text)
        pid = int(holder["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        try:  # being written this instant by its owner, or garbage left by a crash
            young = time.time() - lock.stat().st_mtime < 5
        except OSError:
            return None
        return {"pid": "?", "host": "?"} if young and check_alive else None
    if not check_alive or holder.get("host") != socket.gethostname():
        return holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return holder
    return holder


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the `.NAME.*.tmp` files and folders that `atomic_path` / `atomic_dir` left in `folder`
    when a process was killed mid-write; call it only while holding `folder_lock(folder)`.

    Returns:
        How many were removed.
    """
    removed = 0
    for leftover in Path(folder).glob(".*.tmp"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    return removed


# --- content digests of input files (the caches' keys) ----------------------------------------

DIGEST_SAMPLE = 64 << 10  # bytes: of a larger file, its first, middle and last 64 KiB are hashed, with its size
DIGEST_WHOLE_UP_TO = 3 * DIGEST_SAMPLE  # bytes: files up to 192 KiB are hashed whole (as much as the samples)
_DIGESTS: dict[tuple, str] = {}  # this process's digests, by (path, device, inode, size, mtime, ctime)
_DIGESTS_SIZE = 1 << 16


def file_stamp(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes whenever a file's bytes may have: (device, inode, size, mtime_ns, ctime_ns).

    A replaced file has a new inode (renamed over) or a new ctime (written in place, or its mtime set
    back with `touch -r` / `cp -p`: setting the mtime sets the ctime to now), so an unchanged stamp
    means unchanged bytes; a changed stamp does not mean changed bytes (`chmod`, a copy).
    """
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def content_digest(path: str | os.PathLike, stat: os.stat_result | None = None) -> str:
    """A cheap hash of a file's content: SHA-256 of the whole file up to `DIGEST_WHOLE_UP_TO`
    (192 KiB), else of its size and its first, middle and last `DIGEST_SAMPLE` (64 KiB) bytes:
    at most 192 KiB read per file.
    A folder (of frame images) hashes its listing (names, sizes, modification times) and the
    digests of its first and last file.

    Remembered in this process by `file_stamp`, so each file is read once per process while it is
    unchanged. A sampled digest misses an edit of a large file that keeps its size and touches only
    bytes between the samples; re-encoding, trimming or replacing a video changes its header, its
    end and its size. Measured cost: docs/commands/cache.md.

    Args:
        path: a regular file.
        stat: its `os.stat` result, if already taken.

    Returns:
        24 hexadecimal characters.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    stat = stat or path.stat()
    if stat_is_dir(stat):
        return _folder_digest(path)
    key = (str(path), *file_stamp(stat))
    found = _DIGESTS.get(key)
    if found is not None:
        return found
    import hashlib

    digest = hashlib.sha256(f"{stat.st_size}|".encode())
    with open(path, "rb") as f:
        if stat.st_size <= DIGEST_WHOLE_UP_TO:
            digest.update(f.read())
        else:
            for offset in (0, (stat.st_size - DIGEST_SAMPLE) // 2, stat.st_size - DIGEST_SAMPLE):
                f.seek(offset)
                digest.update(f.read(DIGEST_SAMPLE))
    found = digest.hexdigest()[:24]
    if len(_DIGESTS) >= _DIGESTS_SIZE:
        _DIGESTS.clear()
    _DIGESTS[key] = found
    return found


def stat_is_dir(stat: os.stat_result) -> bool:
    """Whether an `os.stat` result is a folder's."""
    import stat as stat_module

    return stat_module.S_ISDIR(stat.st_mode)


def _folder_digest(folder: Path) -> str:
    import hashlib

    files = sorted((entry for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith(".")), key=lambda e: e.name)
    digest = hashlib.sha256(b"folder|")
    for entry in files:
        stat = entry.stat()
        digest.update(f"{entry.name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    for entry in files[:1] + files[-1:]:
        digest.update(content_digest(entry.path).encode())
    return digest.hexdigest()[:24]
