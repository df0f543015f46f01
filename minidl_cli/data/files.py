"""What a data file or folder is, decided in one place: a file's format from its first bytes
(never from its name), the images a folder holds, and the fingerprints of what a data set read.

`file_kind` tells Parquet, the image formats Pillow reads, compressed streams, zip (.npz)
and IDX files apart by their magic bytes, so a file on stdin, through a pipe or with an odd
suffix keeps its kind. `open_binary` reads any file through its compression. `image_files`
is the one listing of a folder's images: training (image_folder), `predict` and the run's
fingerprint all use it.

A run records `{absolute path: sha256}` (Dataset.data_files) so that `evaluate`, `--resume`
and `predict` can refuse a file whose content differs from the one the run trained on. A folder
read as a whole (image_folder's) is recorded too, as `{folder: "listing:images:<sha256>"}`,
the digest of its sorted image file names, so that an image added to it (or removed) is a
change.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from minidl_cli.data.base import file_sha256

IMAGE_KINDS = ("png", "jpeg", "gif", "bmp", "tiff", "webp")  # what Pillow reads
COMPRESSIONS = ("gzip", "bz2", "xz", "zstd")
# names that say "image" when a file's bytes do not (a damaged image is an error, not skipped)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# IDX type bytes (yann.lecun.com/exdb/mnist, "THE IDX FILE FORMAT")
IDX_TYPE_BYTES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)
HEAD = 16  # bytes file_kind reads


def sniff(head: bytes) -> str | None:
    """The format the first bytes of a file announce: "parquet", an image kind (IMAGE_KINDS),
    a compression (COMPRESSIONS), "zip" (an .npz), "idx", or None (text: a CSV)."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and head[6:10] == b"\0\0\0\0":  # reserved zeros: not text
        return "bmp"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "bz2"
    if head.startswith(b"\xfd7zXZ\0"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPE_BYTES:
        return "idx"
    return None


def file_kind(path: str | Path) -> str | None:
    """sniff() of a file's first bytes (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        return sniff(f.read(HEAD))


def open_binary(path: str | Path) -> BinaryIO:
    """A file's bytes, decompressed when its first bytes say gzip, bz2, xz or zstd.

    The stream is a readable binary file object (pyarrow's C++ decoders, Python's lzma for
    xz); close it after use.
    """
    kind = file_kind(path)
    if kind == "xz":
        import lzma

        return lzma.open(path, "rb")
    if kind in COMPRESSIONS:
        import pyarrow as pa

        return pa.input_stream(str(path), compression=kind)
    return open(path, "rb")


def open_text(path: str | Path) -> io.TextIOWrapper:
    """A text file through its compression, as UTF-8 (a byte-order mark skipped), with the
    newlines left to the csv module."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", newline="")


STDIN_NAME = "<stdin>"  # what messages call `-`


@contextmanager
def readable_file(path: Path) -> Iterator[tuple[Path, str]]:
    """(the file to read, what to call it). `path` itself when it is a regular file or a
    folder (or missing: the reader says so); otherwise (`-` for stdin, a pipe such as
    <(...), /dev/stdin) its bytes copied into a temporary file, as the readers open a file
    more than once. The copy keeps the input's kind (formats are told by content), and an
    error raised inside the block names the input as given (`<stdin>` for `-`, the pipe's
    path), never the copy.
    """
    stdin = str(path) == "-"
    if not stdin and (not path.exists() or path.is_file() or path.is_dir()):
        yield path, str(path)
        return
    data = sys.stdin.buffer.read() if stdin else path.read_bytes()
    shown = STDIN_NAME if stdin else str(path)
    with tempfile.TemporaryDirectory(prefix="minidl-input-") as folder:
        copy = Path(folder) / "input"
        copy.write_bytes(data)
        try:
            yield copy, shown
        except (ValueError, OSError) as e:
            e.args = tuple(a.replace(str(copy), shown) if isinstance(a, str) else a
                           for a in e.args)
            if isinstance(e, OSError) and e.filename == str(copy):
                e.filename = shown
            raise


def is_image(path: Path) -> bool:
    """Whether a file is an image: its first bytes are an image format's, or its name says
    so (then a damaged image is reported, not skipped)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        return file_kind(path) in IMAGE_KINDS
    except OSError:
        return False


def image_files(folder: Path) -> list[Path]:
    """The images under `folder`, in subfolders too (as torchvision's ImageFolder reads
    them), hidden files and folders skipped (.DS_Store, ._photo.jpg), sorted by path.
    Images are told by content (is_image); other files (a README) are not images."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*")
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.is_file() and is_image(p))


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
IMAGES = "images"  # a listing entry's rule: image_files (older runs recorded suffixes)


def folder_listing(folder: Path, suffixes: tuple[str, ...] | str = IMAGES) -> list[Path]:
    """The files a listing entry covers: image_files(folder) for IMAGES; for the suffixes an
    older run recorded, the files under `folder` (recursively, hidden names skipped) whose
    suffix, lower-cased, is one of them. Sorted."""
    folder = Path(folder)
    if suffixes == IMAGES:
        return image_files(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def listing_entry(folder: Path, rule: tuple[str, ...] | str = IMAGES) -> tuple[str, str]:
    """The data_files entry of a folder read as a whole: (absolute path, "listing:<rule>:
    <sha256 of its sorted relative file names>")."""
    folder = Path(folder).absolute()
    names = "\n".join(p.relative_to(folder).as_posix() for p in folder_listing(folder, rule))
    digest = hashlib.sha256(names.encode()).hexdigest()
    shown = rule if isinstance(rule, str) else ",".join(rule)
    return str(folder), f"{LISTING}{shown}:{digest}"


def _rule(digest: str) -> tuple[str, ...] | str:
    rule = digest[len(LISTING):].rsplit(":", 1)[0]
    return rule if rule == IMAGES else tuple(rule.split(","))


def _unchanged(path: str, digest: str) -> bool:
    try:
        if digest.startswith(LISTING):
            return Path(path).is_dir() and listing_entry(Path(path), _rule(digest))[1] == digest
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
    now = {str(p.absolute()) for p in folder_listing(Path(path), _rule(digest))}
    before = {p for p, d in data_files.items() if Path(p).is_relative_to(path) and p != path}
    if now - before:
        return f"holds a new file {sorted(now - before)[0]}"
    if before - now:
        return f"no longer holds {sorted(before - now)[0]}"
    return "holds other files"
