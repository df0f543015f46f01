"""Images given to a trained run: an image file, a folder of images or an .npz, read as the
run read its training images (size, grayscale, bit depth)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class RunImages:
    """Reads images for an image run whose inputs are `input_shape` (C, H, W), with the
    options of its `data` config (an image_folder's size and grayscale) and the bit depth
    of its training pixels (`pixels`: "8-bit" or "more than 8-bit"; None when unrecorded)."""

    def __init__(self, input_shape: tuple[int, ...], data: Any, pixels: str | None):
        self.input_shape, self.pixels = input_shape, pixels
        folder = isinstance(data, dict) and data.get("type") == "image_folder"
        self.size = tuple(data["size"]) if folder and data.get("size") else None
        self.grayscale = bool(data.get("grayscale")) if folder else input_shape[0] == 1

    def read(self, path: str | os.PathLike) -> tuple[list[str] | None, Tensor]:
        """The images of an image run's input: an image file (any format Pillow reads, told
        by its content, not its name), a folder of images (recursively, sorted: the listing
        training uses) or an .npz with an `x` (or `x_test`) array; read as the run's
        image_folder options say (size, grayscale), else as they are. Returns the files (None
        for an .npz) and the pixels. Shape: -> (n, *input_shape) float64. ValueError naming
        the file.
        """
        from minidl_cli.data.files import IMAGE_KINDS, file_kind, image_files, is_image

        path, (channels, height, width) = Path(path), self.input_shape
        if path.is_dir():
            files = image_files(path)
            if not files:
                raise ValueError(f"predict: the folder {path} holds no images")
        elif not path.is_file():
            raise FileNotFoundError(f"predict: image {path} not found")
        else:
            kind = file_kind(path)
            if kind == "zip":
                x, files = _npz_x(path), None
            elif kind in IMAGE_KINDS or is_image(path):
                files = [path]
            else:
                raise ValueError(f"predict: {path} is not an image (its first bytes are no "
                                 "PNG, JPEG, GIF, BMP, TIFF or WebP image's) nor an .npz; this "
                                 "run takes images: give an image file, a folder of them, or "
                                 f"an .npz with an array x of shape (n, {channels}, {height}, "
                                 f"{width})")
        if files is not None:
            x = self.decode(files)
            files = [str(f) for f in files]
        x = x[:, None] if x.ndim == 3 else x
        if tuple(x.shape[1:]) != self.input_shape:
            fix = f"resize them to {height}×{width} (H×W) pixels"
            if tuple(x.shape[2:]) == (height, width):  # only the channels differ
                fix = _channel_fix(x.shape[1], channels)
            raise ValueError(f"predict: {path} gives images of shape (C, H, W) = "
                             f"{tuple(x.shape[1:])} but the run takes ({channels}, {height}, "
                             f"{width}); {fix}")
        return files, _float64(x)

    def decode(self, files: list[Path]) -> Any:
        """The images in `files`, decoded as the run's image_folder options say (size,
        grayscale), else as they are; ValueError when their bit depth is not the one the run
        was trained on (16-bit values given to an 8-bit network). Shape: -> (n, C, H, W)."""
        from minidl_cli.data.images import decode_images, pixel_depth

        pixels = decode_images(files, self.size, self.grayscale, where="predict")
        if self.pixels is not None and pixel_depth(pixels) != self.pixels:
            raise ValueError(f"predict: {files[0]} holds {pixel_depth(pixels)} pixels, but the "
                             f"run was trained on {self.pixels} images, whose values are on "
                             f"another scale; save the images as {self.pixels} (or train on "
                             "images like these)")
        return pixels

    def read_labelled(self, path: str | os.PathLike, classes: list[str]
                      ) -> tuple[Tensor, Tensor]:
        """Labelled images for an image run's evaluation: a folder of class folders
        (FOLDER/<class>/..., images told by content, subfolders included, as image_folder
        reads them) or an .npz with arrays x and y (or x_test and y_test). Labels are the
        run's `classes` (3 and '3' alike).

        Shape: -> x (n, *input_shape) float64, y (n,) int64 class indices.
        Raises ValueError naming a class the run does not have, or an input of neither kind.
        """
        from minidl_cli.data.table_io import value_key

        path = Path(path)
        x, labels = self._labelled_pixels(path, classes)
        index = {value_key(c): i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in labels if value_key(str(v)) not in index})
        if unknown:
            raise ValueError(f"evaluate: {path} has images of class(es) "
                             f"{', '.join(map(repr, unknown[:5]))}, which the run does not "
                             f"have; its classes are {', '.join(classes)}")
        y = torch.tensor([index[value_key(str(v))] for v in labels], dtype=torch.int64)
        x = x[:, None] if x.ndim == 3 else x
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"evaluate: {path} gives images of shape (C, H, W) = "
                             f"{tuple(x.shape[1:])} but the run takes {self.input_shape}")
        return _float64(x), y

    def _labelled_pixels(self, path: Path, classes: list[str]) -> tuple[Any, list]:
        """The pixels and the labels as written (folder names, or an .npz's y) of `path`."""
        from minidl_cli.data.files import file_kind, image_files

        if path.is_dir():
            folders = sorted(p for p in path.iterdir()
                             if p.is_dir() and not p.name.startswith("."))
            pairs = [(folder.name, f) for folder in folders for f in image_files(folder)]
            if not pairs:
                raise ValueError(f"evaluate: {path} holds no images in class folders; give a "
                                 f"folder of class folders ({path}/<class>/image.png) named as "
                                 f"the run's classes ({', '.join(classes)})")
            return self.decode([f for _, f in pairs]), [c for c, _ in pairs]
        if path.is_file() and file_kind(path) == "zip":
            return _npz_xy(path)
        if not path.exists():
            raise FileNotFoundError(f"evaluate: {path} not found")
        raise ValueError(f"evaluate: {path} is neither a folder of class folders nor an "
                         ".npz; an image run is evaluated on labelled images: a folder "
                         "FOLDER/<class>/image.png or an .npz with arrays x and y")


def _float64(x: Any) -> Tensor:
    """A numpy array of pixels as a float64 tensor."""
    import numpy as np

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _npz_x(path: Path) -> Any:
    """The `x` (or `x_test`) array of an .npz file, loaded without pickle."""
    import zipfile

    import numpy as np

    if not zipfile.is_zipfile(path):
        raise ValueError(f"predict: {path} is not a .npz (zip) archive")
    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in ("x", "x_test") if k in archive.files), None)
        if key is None:
            raise ValueError(f"predict: {path} has no array 'x' (or 'x_test'); it holds "
                             f"{', '.join(archive.files) or 'no arrays'}")
        x = archive[key]
    if len(x) == 0:
        raise ValueError(f"predict: {path}: {key} holds no images (shape {x.shape})")
    if x.ndim not in (3, 4) or x.dtype.kind not in "biuf":
        raise ValueError(f"predict: {path}: {key} holds {x.dtype} values of shape {x.shape}; "
                         "it needs numbers of shape (n, H, W) or (n, C, H, W)")
    return x


def _npz_xy(path: Path) -> tuple[Any, list]:
    """The images and labels of an .npz: arrays x and y (or x_test and y_test)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        keys = next((k for k in (("x", "y"), ("x_test", "y_test"))
                     if all(key in archive.files for key in k)), None)
        if keys is None:
            raise ValueError(f"evaluate: {path} has no arrays x and y (or x_test and y_test); "
                             f"it holds {', '.join(archive.files) or 'no arrays'}")
        x, y = archive[keys[0]], archive[keys[1]]
    if len(x) == 0 or y.shape != (len(x),) or x.dtype.kind not in "biuf":
        raise ValueError(f"evaluate: {path}: {keys[0]} of shape {x.shape} and {keys[1]} of "
                         f"shape {y.shape}; it needs n >= 1 images of numbers and n labels")
    labels = [v.item() if hasattr(v, "item") else v for v in y]
    return x, [int(v) if isinstance(v, float) and v.is_integer() else v for v in labels]


def _channel_fix(given: int, taken: int) -> str:
    """What to do with images whose channel count (C) is not the run's."""
    if given == 1 and taken == 3:
        return ("they have 1 channel (grayscale) and the run takes 3 (RGB): convert them to "
                "RGB (for an .npz, repeat the channel: x.repeat(3, axis=1)), or use a run "
                "trained with data.grayscale: true")
    if given in (3, 4) and taken == 1:
        return (f"they have {given} channels (colour) and the run takes 1 (grayscale): "
                "convert them to grayscale, or use a run trained on colour images")
    return f"give images with {taken} channel{'s' if taken != 1 else ''} (C), not {given}"
