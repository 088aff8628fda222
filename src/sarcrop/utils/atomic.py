"""Atomic writes: a final-named output is either complete or absent.

Everything sarcrop writes goes to a temporary sibling first, is flushed to disk and only then
renamed onto its final name, so an interrupted run (SIGKILL, disk full) never leaves a partial
file under the name a user or a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sarcrop.errors import SarcropError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


FSYNC_THREADS = 16
"""Syncs at once: a store is hundreds of chunk files and folders (fsync releases the GIL, and
the file system commits concurrent syncs together): a fresh copy of a 519-entry store synced
in 0.27-0.31 s one by one, 0.10-0.15 s at once (AMD EPYC, 2 cores, beside other work)."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_tree(path: Path) -> None:
    """Sync every file of ``path``, then its folders; all have finished, their errors raised,
    before the caller renames it."""
    if path.is_file():
        _fsync_file(path)
        return
    files: list[Path] = []
    folders: list[Path] = []
    for root, _dirs, names in os.walk(path):
        files += [Path(root) / name for name in names]
        folders.append(Path(root))
    with ThreadPoolExecutor(FSYNC_THREADS) as pool:
        list(pool.map(_fsync_file, files))
        list(pool.map(_fsync_dir, folders))


def _apply_umask(path: Path) -> None:
    """Give the output the permissions a plain ``open()`` would (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    mode = (0o777 if path.is_dir() else 0o666) & ~umask
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def _remove(path: Path, attempts: int = 3) -> None:
    """Remove a temporary file or folder, again if something appeared in it meanwhile.

    Writers must have finished before this is called (see ``create_store``); the repeat only
    guards against a file created while the tree was being removed.
    """
    for _ in range(attempts):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not os.path.lexists(path):
            return


@contextlib.contextmanager
def atomic_path(final: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success move it onto ``final``.

    Works for single files and for directory stores (Zarr). On any exception the temporary
    path is removed and ``final`` is left exactly as it was.
    """
    final = Path(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SarcropError(f"cannot create output directory: {exc.strerror}", parent) from exc
    if not os.access(parent, os.W_OK):
        raise SarcropError("output directory is not writable", parent)
    prefix = f".{final.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=parent, suffix=final.suffix)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _fsync_tree(tmp)
        _apply_umask(tmp)
        if directory and final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(parent)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise SarcropError(f"could not write output: {exc.strerror}", final) from exc
        raise


def remove_stale(final: str | Path) -> None:
    """Remove the temporary siblings of ``final`` (and their side files, e.g. GDAL's
    overviews) that a writer killed outright (SIGKILL, power loss) left behind. Call it only
    while no other writer of ``final`` can run, e.g. under a lock on it.

    A folder's previous version moved aside for its replacement (``.<name>.old-<pid>``) is
    removed where the replacement took its name, and put back where the kill came between
    the two renames."""
    final = Path(final)
    for old in final.parent.glob(glob.escape(f".{final.name}.old-") + "*"):
        if os.path.lexists(final):
            _remove(old)
        else:
            os.replace(old, final)
    for stale in final.parent.glob(glob.escape(f".{final.name}.tmp-") + "*"):
        _remove(stale)


def lock_path(out: Path) -> Path:
    """The file a run holds locked while it writes ``out``."""
    return out.with_name(out.name + ".lock")


@contextlib.contextmanager
def output_lock(out: Path, *, busy: str, what: str) -> Iterator[None]:
    """Hold ``<out>.lock`` exclusively while writing ``out``: a second run fails at once with
    ``busy``; ``what`` names the output (\"a map\") where its folder cannot take it.

    The kernel releases a ``flock`` when its process dies, so a crashed run leaves at most an
    unlocked empty file that the next run takes over, and the temporaries that the next run
    removes (:func:`remove_stale`); a finished run removes the lock file.
    """
    path = lock_path(out)
    # Folders this run makes, innermost first: removed again where left empty.
    made = [folder for folder in path.parents if not folder.exists()]
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(out, exc, what) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise SarcropError(busy, out) from None
            raise SarcropError(f"cannot lock: {exc.strerror}", path) from exc
        # A run that just finished may have removed the file we opened: lock the one on disk.
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        remove_stale(out)  # what a run killed while writing it left
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        for folder in made:  # a run refused before it wrote anything leaves no folder either
            with contextlib.suppress(OSError):
                folder.rmdir()


def _unwritable(out: Path, exc: OSError, what: str) -> SarcropError:
    """Why the output's folder cannot take it, as a user would look for it."""
    parent = next((p for p in out.parents if os.path.lexists(p)), out.parent)
    if not parent.is_dir():
        return SarcropError(f"is a file, not a folder: {what} cannot go inside it", parent)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SarcropError(f"output directory is not writable ({exc.strerror})", out.parent)
    return SarcropError(f"cannot write {what} here: {exc.strerror}", out.parent)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically and return its path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write a binary file atomically and return its path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
