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
