"""Data files' fingerprints: the SHA-256 of every file a data set read, and which have changed.

A run records `{absolute path: sha256}` (Dataset.data_files) so that `evaluate`, `--resume`
and `predict` can refuse a file whose content differs from the one the run trained on.
"""

from __future__ import annotations

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


def changed_files(data_files: dict[str, str]) -> list[str]:
    """The paths among `data_files` (path -> sha256) that are gone or whose content changed."""
    changed = []
    for path, digest in data_files.items():
        try:
            same = Path(path).is_file() and file_sha256(path) == digest
        except OSError:  # unreadable now: not the file the run read
            same = False
        if not same:
            changed.append(path)
    return changed
