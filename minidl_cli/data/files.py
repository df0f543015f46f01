"""Data files' fingerprints: the SHA-256 of every file a data set read, and which have changed.

A run records `{absolute path: sha256}` (Dataset.data_files) so that `evaluate`, `--resume`
and `predict` can refuse a file whose content differs from the one the run trained on. A folder
read as a whole (image_folder's) is recorded too, as `{folder: "listing:<suffixes>:<sha256>"}`,
the digest of its sorted file names, so that a file added to it (or removed) is a change.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from minidl_cli.data.base import file_sha256


def hash_in_background(paths: list[Path]) -> Future:
    """Start hashing `paths` on a thread; the future's result is {absolute path: sha256}.

    hashlib releases the GIL on file_sha256's 1 MiB blocks, so the digest overlaps pyarrow
    parsing on its own threads and costs little time.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minidl-sha256")
    future = pool.submit(
        lambda: {str(Path(p).absolute()): file_sha256(p) for p in dict.fromkeys(paths)}
    )
    pool.shutdown(wait=False)  # the worker finishes this one job, then exits
    return future


LISTING = "listing:"


def folder_listing(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files under `folder` (recursively, hidden names skipped) whose suffix, lower-cased,
    is one of `suffixes`, sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def listing_entry(folder: Path, suffixes: tuple[str, ...]) -> tuple[str, str]:
    """The data_files entry of a folder read as a whole: (absolute path, "listing:<suffixes>:
    <sha256 of its sorted relative file names>")."""
    folder = Path(folder).absolute()
    names = "\n".join(p.relative_to(folder).as_posix() for p in folder_listing(folder, suffixes))
    digest = hashlib.sha256(names.encode()).hexdigest()
    return str(folder), f"{LISTING}{','.join(suffixes)}:{digest}"


def _unchanged(path: str, digest: str) -> bool:
    try:
        if digest.startswith(LISTING):
            suffixes = tuple(digest[len(LISTING):].rsplit(":", 1)[0].split(","))
            return Path(path).is_dir() and listing_entry(Path(path), suffixes)[1] == digest
        return Path(path).is_file() and file_sha256(path) == digest
    except OSError:  # unreadable now: not the file the run read
        return False


def changed_files(data_files: dict[str, str]) -> list[str]:
    """The paths among `data_files` (path -> sha256, or a folder's listing entry) that are gone,
    whose content changed, or (a folder) that hold other files than when recorded."""
    return [path for path, digest in data_files.items() if not _unchanged(path, digest)]


def describe_change(path: str, data_files: dict[str, str]) -> str:
    """How a path that changed_files returned differs, for an error message: "is gone", "has
    changed", or for a folder "holds a new file F" / "no longer holds F"."""
    digest = data_files[path]
    if not Path(path).exists():
        return "is gone"
    if not digest.startswith(LISTING) or not Path(path).is_dir():
        return "has changed"
    suffixes = tuple(digest[len(LISTING):].rsplit(":", 1)[0].split(","))
    now = {str(p.absolute()) for p in folder_listing(Path(path), suffixes)}
    before = {p for p, d in data_files.items() if Path(p).is_relative_to(path) and p != path}
    if now - before:
        return f"holds a new file {sorted(now - before)[0]}"
    if before - now:
        return f"no longer holds {sorted(before - now)[0]}"
    return "holds other files"
