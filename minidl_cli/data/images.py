"""Image data sets: the shipped 8×8 digits, MNIST-format (IDX) files, folders of images
(PNG, JPEG, GIF, BMP, TIFF, WebP: told by content, read with Pillow) and NumPy .npz archives.

Every set gives x as float64 (n, C, H, W) holding the stored pixel values (digits 0..16,
8-bit images 0..255, 16-bit images 0..65535), turned upright as their EXIF orientation
says: set `standardize: true` to z-score each channel with training statistics. Labels
become class indices 0..K-1 in the sorted order of the distinct training labels, whose text
is kept in `class_names`.
"""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import Tensor

from minidl_cli.data.base import Dataset, file_sha256, random_split
from minidl_cli.data.files import file_kind, image_files, is_image, listing_entry, open_binary
from minidl_cli.registry import Range, register

Fraction = Annotated[float, Range(gt=0, lt=1)]
DIGITS_FILE = Path(__file__).parent / "digits" / "digits.csv.gz"  # CC BY 4.0, see digits/LICENSE
# IDX type byte -> big-endian element type (yann.lecun.com/exdb/mnist, "THE IDX FILE FORMAT")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


# ---------------------------------------------------------------- the data sets


@register("dataset", "digits")
def digits(test_fraction: Fraction = 0.25, *, generator: torch.Generator) -> Dataset:
    """The UCI 8×8 handwritten digits (Alpaydin & Kaynak, 1998; 1797 images, values 0..16,
    classes 0..9), shipped with minidl; a seeded random `test_fraction` of them is the test set.
    Like the synthetic sets, it records no data_files: the file is part of minidl, wherever
    it is installed, so a run moved to another install still evaluates and resumes.

    Shape: x (n, 1, 8, 8) float64, y (n,) int64.
    """
    if not DIGITS_FILE.is_file():
        raise FileNotFoundError(f"digits dataset: {DIGITS_FILE} is missing; reinstall minidl")
    table = np.loadtxt(DIGITS_FILE, delimiter=",", dtype=np.int64)  # 64 pixels, then the digit
    x, labels = table[:, :64].reshape(-1, 1, 8, 8), table[:, 64]
    train, test = _split(len(x), test_fraction, generator, "digits dataset")
    where = f"digits dataset: {DIGITS_FILE}"
    return _images(x[train], labels[train], x[test], labels[test], where, where, files=[])


@register("dataset", "idx")
def idx(
    train_images: Path,
    train_labels: Path,
    test_images: Path,
    test_labels: Path,
    *,
    generator: torch.Generator,
) -> Dataset:
    """MNIST-format files (IDX: a big-endian header, then the values), compressed or not.

    Shape: images files (n, H, W) -> x (n, 1, H, W) float64; labels files (n,) -> y int64.
    """
    parts = []
    for images_path, labels_path in ((train_images, train_labels), (test_images, test_labels)):
        images, labels = read_idx(Path(images_path)), read_idx(Path(labels_path))
        if images.ndim != 3 or not np.isfinite(images).all():
            raise ValueError(f"idx dataset: {images_path} holds an array of shape {images.shape}; "
                             "an images file holds (n, rows, columns) finite numbers")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(f"idx dataset: {labels_path} holds {labels.dtype} values of shape "
                             f"{labels.shape}; a labels file holds n integers")
        if len(images) != len(labels):
            raise ValueError(f"idx dataset: {images_path} has {len(images)} images but "
                             f"{labels_path} has {len(labels)} labels; they must match")
        if len(images) == 0:
            raise ValueError(f"idx dataset: {images_path} holds no images (its header says "
                             f"{images.shape[0]} of {images.shape[1]}×{images.shape[2]}); give "
                             "files with at least one image")
        parts += [images[:, None], labels]
    files = [Path(p) for p in (train_images, train_labels, test_images, test_labels)]
    return _images(*parts, f"idx dataset: {train_labels}", f"idx dataset: {test_labels}", files)


@register("dataset", "image_folder")
def image_folder(
    train: Path,
    test: Path | None = None,
    test_fraction: Annotated[float | None, Range(gt=0, lt=1)] = None,
    size: tuple[int, int] | None = None,
    grayscale: bool = False,
    *,
    generator: torch.Generator,
) -> Dataset:
    """Images in one folder per class, `train/<class>/**` (classes: the sorted folder names;
    images in subfolders of a class folder belong to it, as in torchvision's ImageFolder;
    hidden files skipped; images told by content), read with Pillow; the test set is a
    `test` folder alike or a seeded `test_fraction` of the training images. `size: [H, W]`
    resizes (bilinear); without it all images must have one size. `grayscale` gives one
    channel, otherwise RGB.

    Shape: x (n, 1 or 3, H, W) float64 (0..255 for 8-bit images), y (n,) int64.
    """
    where = "image_folder dataset"
    if (test is None) == (test_fraction is None):
        raise ValueError(f"{where}: give exactly one of data.test (a folder of class folders) "
                         "or data.test_fraction (the share of the training images to hold out)")
    if size is not None and not all(isinstance(s, int) and s >= 1 for s in size):
        raise ValueError(f"{where}: size must be [height, width] in pixels (>= 1), got {size}")
    train_files, test_files = _folder_splits(Path(train), test, test_fraction, generator)
    x = decode_images([f for _, f in train_files + test_files], size, grayscale)
    labels = np.array([c for c, _ in train_files + test_files])
    n = len(train_files)
    data = _images(x[:n], labels[:n], x[n:], labels[n:], f"{where}: {train}",
                   f"{where}: {test or train}", [f for _, f in train_files + test_files],
                   split=test_fraction)
    data.preprocessing = {"version": 1, "pixels": pixel_depth(x)}  # predict checks its inputs
    for folder in [train] + ([test] if test is not None else []):  # an added file is a change
        path, entry = listing_entry(Path(folder))
        data.data_files[path] = entry
    return data


def _folder_splits(train: Path, test: Path | None, test_fraction: float | None,
                   generator: torch.Generator) -> tuple[list, list]:
    """The (class, file) pairs of an image_folder's training and test images: the `test`
    folder's, or a seeded `test_fraction` of the training images. ValueError for fewer than
    two classes or a test class without a training folder."""
    where = "image_folder dataset"
    train_files = _class_files(train, "train")
    classes = sorted({c for c, _ in train_files})
    if len(classes) < 2:
        raise ValueError(f"{where}: {train} has one class folder; a classifier needs at least two")
    if test is None:
        train_idx, test_idx = _split(len(train_files), test_fraction, generator, where)
        return ([train_files[i] for i in train_idx.tolist()],
                [train_files[i] for i in test_idx.tolist()])
    test_files = _class_files(Path(test), "test")
    unknown = sorted({c for c, _ in test_files} - set(classes))
    if unknown:
        raise ValueError(f"{where}: the test class folder {Path(test) / unknown[0]} has no "
                         f"training folder {train / unknown[0]}; every test class must "
                         "be a training class")
    return train_files, test_files


@register("dataset", "npz")
def npz(path: Path, *, generator: torch.Generator) -> Dataset:
    """A NumPy .npz archive holding x_train, y_train, x_test, y_test (loaded without pickle).

    Shape: x (n, H, W) -> (n, 1, H, W); (n, C, H, W) as it is; (n, d) tables too
    (features x1..xd); y (n,) labels (integers or strings) -> int64 class indices.
    """
    path = Path(path)
    arrays = _read_npz(path)
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim not in (2, 3, 4) or x.dtype.kind not in "biuf":
            raise ValueError(f"npz dataset: {path}: x_{part} holds {x.dtype} values of shape "
                             f"{x.shape}; it needs numbers, (n, H, W), (n, C, H, W) or (n, d)")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"npz dataset: {path}: y_{part} has shape {y.shape} but x_{part} "
                             f"has {len(x)} rows; it needs one label per row, shape ({len(x)},)")
        if len(x) == 0:
            raise ValueError(f"npz dataset: {path}: x_{part} holds no rows (shape {x.shape}); "
                             f"give x_{part} and y_{part} at least one row each")
        if not np.isfinite(x).all():
            raise ValueError(f"npz dataset: {path}: x_{part} holds NaN or infinite values")
        if x.ndim == 3:
            arrays[f"x_{part}"] = x[:, None]
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"npz dataset: {path}: x_train has inputs of shape "
                         f"{arrays['x_train'].shape[1:]} but x_test {arrays['x_test'].shape[1:]}")
    return _images(*(arrays[k] for k in NPZ_KEYS), f"npz dataset: {path}: y_train",
                   f"npz dataset: {path}: y_test", [path])


# ---------------------------------------------------------------- shared steps


def _images(x_train: np.ndarray, labels_train: np.ndarray, x_test: np.ndarray,
            labels_test: np.ndarray, train_source: str, test_source: str,
            files: list[Path], split: float | None = None) -> Dataset:
    """A classification Dataset from arrays of inputs and raw labels, and the files read;
    `split`: the test_fraction that drew the test part from the training images."""
    names, y_train, y_test = _encode_labels(labels_train, labels_test, train_source, test_source,
                                            split)
    x_train, x_test = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
                       for x in (x_train, x_test))
    wide = x_train.ndim == 2  # a table from an .npz file: features named like synthetic sets
    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=len(names),
        feature_names=[f"x{i + 1}" for i in range(x_train.shape[1])] if wide else [],
        class_names=names,
        data_files={os.path.abspath(f): file_sha256(f) for f in dict.fromkeys(files)},
    )


def _encode_labels(train: np.ndarray, test: np.ndarray, train_source: str,
                   test_source: str, split: float | None = None
                   ) -> tuple[list[str], Tensor, Tensor]:
    """Class names (the distinct training labels, sorted) and both label arrays as indices.
    `split`: the test_fraction that drew the test labels from the same images, so that a
    class missing from the training part is the split's doing, not the data's.

    Shape: train (n,), test (m,) -> y_train (n,), y_test (m,) int64.
    """
    train, test = _integral(train, train_source), _integral(test, test_source)
    values = np.unique(train)
    unseen = np.setdiff1d(np.unique(test), values).tolist()
    if unseen and split is not None:
        count = int(np.isin(test, unseen[:1]).sum())
        raise ValueError(f"{train_source}: the seeded test_fraction {split:g} split put all "
                         f"{count} image(s) of class {unseen[0]!r} into the test part, so "
                         "training never sees it; add images of that class, train with another "
                         "seed (seed=N), or give the test images in a folder of their own "
                         "(data.test)")
    if len(values) < 2:
        raise ValueError(f"{train_source}: every training label is {values[0].item()!r}; "
                         "a classifier needs at least two classes")
    if unseen:
        raise ValueError(f"{test_source}: the test label {unseen[0]!r} never occurs in the "
                         f"training labels ({train_source}); a classifier cannot learn it")

    def index(labels: np.ndarray) -> Tensor:
        return torch.from_numpy(np.searchsorted(values, labels).astype(np.int64))

    return [str(v) for v in values.tolist()], index(train), index(test)


def _integral(labels: np.ndarray, source: str) -> np.ndarray:
    """Float labels as integers (3.0 is the class 3); 2.5 or NaN is an error naming `source`."""
    if labels.dtype.kind != "f":
        return labels
    if not (np.isfinite(labels) & (labels == np.round(labels))).all():
        raise ValueError(f"{source}: class labels must be integers or strings, "
                         f"got non-integer {labels.dtype} values")
    return labels.astype(np.int64)


def _split(n: int, fraction: float, generator: torch.Generator,
           where: str) -> tuple[Tensor, Tensor]:
    """Seeded random (train, test) indices, each in their original order."""
    n_test = round(fraction * n)
    if not 1 <= n_test < n:
        raise ValueError(f"{where}: test_fraction {fraction} of {n} images must leave at least "
                         "one image for each of train and test; choose a value in (0, 1)")
    return random_split(n, n_test, generator)


# ---------------------------------------------------------------- file formats


def read_idx(path: Path) -> np.ndarray:
    """An IDX file, compressed (gzip, bz2, xz, zstd: told by content) or not: magic 0x00
    0x00 <type> <ndim>, ndim big-endian uint32 sizes, then the values, big-endian, in C order.

    Shape: -> the sizes the header gives, e.g. (n, 28, 28) for MNIST images, (n,) for labels.
    Raises FileNotFoundError; ValueError naming the file when it is corrupt or truncated.
    """
    if not path.is_file():
        raise FileNotFoundError(f"idx dataset: file {path} not found "
                                "(paths are relative to the config file)")
    try:
        with open_binary(path) as f:
            raw = f.read()
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
        raise ValueError(f"idx dataset: {path} is a corrupt or truncated {file_kind(path)} "
                         f"file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise ValueError(f"idx dataset: {path} is not an IDX file (it must start with 00 00, "
                         "a type byte and the number of dimensions)")
    ndim, dtype = raw[3], np.dtype(IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"idx dataset: {path} is truncated inside its header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"idx dataset: {path} is {what}: shape {shape} needs {expected} bytes, "
                         f"the file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of an .npz file; FileNotFoundError, or ValueError naming the file or key."""
    if not path.is_file():
        raise FileNotFoundError(f"npz dataset: file {path} not found "
                                "(paths are relative to the config file)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"npz dataset: {path} is not a .npz (zip) archive; write one with "
                         "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    problem = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                problem = (f"npz dataset: {path} has no array {missing[0]!r}; it holds "
                           f"{', '.join(archive.files) or 'no arrays'}, and needs "
                           f"{', '.join(NPZ_KEYS)}")
            else:
                return {k: archive[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as e:
        problem = f"npz dataset: {path} is not a readable .npz file ({e})"
    raise ValueError(problem)


def _class_files(root: Path, option: str) -> list[tuple[str, Path]]:
    """(class name, image file) pairs of a folder of class folders, sorted by class, then file:
    every image under a class folder (files.image_files), subfolders included."""
    where = "image_folder dataset"
    if not root.is_dir():
        raise FileNotFoundError(f"{where}: data.{option} folder {root} not found "
                                "(paths are relative to the config file)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{where}: {root} has no class folders; put each class's images "
                         f"in {root}/<class name>/")
    loose = [p for p in root.iterdir()
             if p.is_file() and not p.name.startswith(".") and is_image(p)]
    if loose:
        raise ValueError(f"{where}: {sorted(loose)[0]} is an image directly in {root}, in no "
                         f"class folder; move it into {root}/<class name>/ (or out of {root})")
    pairs = []
    for folder in folders:
        files = image_files(folder)
        if not files:
            raise ValueError(f"{where}: the class folder {folder} has no images; add some or "
                             "remove the folder")
        pairs += [(folder.name, f) for f in files]
    return pairs


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's more-than-8-bit modes


def pixel_depth(pixels: np.ndarray) -> str:
    """What decode_images made of a set of images: "8-bit" (uint8, 0..255) or "more than
    8-bit" (float32 holding 16-bit, 32-bit or float values as stored)."""
    return "8-bit" if pixels.dtype == np.uint8 else "more than 8-bit"


def decode_images(files: list[Path], size: tuple[int, int] | None, grayscale: bool,
                 where: str = "image_folder dataset") -> np.ndarray:
    """Decode each image, turn it upright as its EXIF orientation says (as viewers show it),
    convert and resize it; without `size` all must have the first's size. 16-bit (and 32-bit
    or float) grayscale images keep their stored values (Pillow's convert("L") would clip
    them to 255); images of different bit depths are refused, as one scale cannot hold both.

    Shape: -> (n, 1 or 3, H, W), uint8 for 8-bit images, float32 for wider ones.
    """
    from PIL import Image, ImageOps  # Pillow: imported here, only images need it

    arrays, depths = [], []
    for path in files:
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened)  # a sideways phone photo: upright
                wide = image.mode in WIDE_MODES
                depth = f"{image.mode} (more than 8-bit)" if wide else "8-bit"
                image = image.convert("F" if wide else "L" if grayscale else "RGB")
                if size is not None:
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"{where}: {path} is not a readable image ({e}); "
                             "replace or remove the file") from None
        if wide and not grayscale:
            pixels = np.repeat(pixels[..., None], 3, axis=2)  # gray as RGB, values kept
        arrays.append(pixels)
        depths.append(depth)
        if depths[-1] != depths[0]:
            raise ValueError(f"{where}: {path} holds {depths[-1]} pixels but {files[0]} "
                             f"{depths[0]}; their values are on different scales, so save "
                             "them all with one bit depth")
        if arrays[-1].shape != arrays[0].shape:
            (h, w), (h0, w0) = arrays[-1].shape[:2], arrays[0].shape[:2]
            raise ValueError(f"{where}: {path} is {h}×{w} (H×W) pixels but "
                             f"{files[0]} is {h0}×{w0}; set data.size: [height, width] to "
                             "resize every image")
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
