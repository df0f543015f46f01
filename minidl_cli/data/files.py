"""Data files' fingerprints: the SHA-256 of every file a data set read, and which have changed.

A run records `{absolute path: sha256}` (Dataset.data_files) so that `evaluate`, `--resume`
and `predict` can refuse a file whose content differs from the one the run trained on.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

CHUNK = 1 << 20  # 1 MiB reads: hashlib releases the GIL on them, so hashing overlaps parsing


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_in_background(paths: list[Path]) -> Future:
    """Start hashing `paths` on a thread; the future's result is {absolute path: sha256}.

    The table reader parses on its own threads meanwhile, so the digest costs little time.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minidl-sha256")
    future = pool.submit(
        lambda: {str(Path(p).absolute()): sha256_file(p) for p in dict.fromkeys(paths)}
    )
    pool.shutdown(wait=False)  # the worker finishes this one job, then exits
    return future


def changed_files(data_files: dict[str, str]) -> list[str]:
    """The paths among `data_files` (path -> sha256) that are gone or whose content changed."""
    changed = []
    for path, digest in data_files.items():
        try:
            same = Path(path).is_file() and sha256_file(path) == digest
        except OSError:  # unreadable now: not the file the run read
            same = False
        if not same:
            changed.append(path)
    return changed
