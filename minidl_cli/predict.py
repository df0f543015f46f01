"""A trained run used on new data: `load(run_dir)` gives a Predictor.

Everything comes from the checkpoint (weights, config, the task and its state, the feature
names, the data set's preprocessing, the input standardiser), never from the training
files, so a run predicts even when the data it was trained on is gone. Raw rows become
inputs as in training: the data set's preprocessing (columns by name), then the
standardiser. The CLI's `minidl predict` and `minidl evaluate --data` are thin shells over
`Predictor.predict_columns` and `Predictor.evaluate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from minidl_cli import tasks
from minidl_cli.build import build_loss, build_model
from minidl_cli.config.plugins import import_plugins
from minidl_cli.nn import Sequential
from minidl_cli.nn.module import forward_in_slices
from minidl_cli.runs import Run, RunError, load_checkpoint


class Predictor:
    """A trained network with what turns raw rows into its inputs and its outputs into
    predictions.

    Attributes: `model` (the minidl Sequential, eval mode), `task` (tasks.Task),
    `features` and `feature_names_in_` (the input column names: a table's columns before
    one-hot encoding), `encoded_features` (the network's input columns, in order: what a
    tensor given to `predict` must hold, e.g. color=green; not yet standardised),
    `classes` (class names; None for regression), `checkpoint` (its path), `epoch`.
    """

    def __init__(self, state: dict[str, Any], checkpoint: Path, base: Path):
        self.checkpoint, self.epoch = Path(checkpoint), state["epoch"]
        self.config = state["config"]
        self.input_shape = tuple(state.get("input_shape") or [_first_width(self.config)])
        recorded = state.get("preprocessing") or {}
        # a table's preprocessing of raw rows (None for other data); an image folder's pixels
        self.preprocessing = recorded if "columns" in recorded else None
        self.pixels: str | None = recorded.get("pixels")
        # the input columns a table needs, by name (tables: before one-hot encoding)
        if "features" in state:  # [] for images
            self.encoded_features: list[str] = list(state["features"])
        else:  # a checkpoint from before features were recorded: synthetic points
            self.encoded_features = [f"x{i + 1}" for i in range(self.input_shape[0])]
        if self.preprocessing is not None:
            self.encoded_features = list(self.preprocessing["feature_names"])
            self.features: list[str] = list(self.preprocessing["columns"])
        else:
            self.features = list(self.encoded_features)
        self.feature_names_in_ = self.features  # scikit-learn's name for the input columns
        self.dtype = getattr(torch, self.config["train"]["dtype"])
        import_plugins(self.config.get("plugins") or [], base)
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: not ours
            self.model: Sequential = build_model(self.config["model"], self.input_shape)
        self.model.to(dtype=self.dtype)
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise RunError(f"{checkpoint} does not fit its own config's model ({e})") from None
        self.model.eval()
        # a language model's inputs are token ids (int64), everything else's are features
        self.takes_ids = (state.get("task") or {}).get("name") == "language_model"
        self.task = tasks.from_state(state.get("task"), self.model_outputs())
        standardizer = state.get("standardizer")
        self.standardizer = (standardizer["mean"], standardizer["std"]) if standardizer else None

    @property
    def classes(self) -> list[str] | None:
        """The class names in output order, as in the training data; None for regression."""
        return getattr(self.task, "class_names", None)

    def model_outputs(self) -> int:
        """The network's output width. Shape: one input (1, *input_shape) -> (1, width)."""
        dtype = torch.int64 if self.takes_ids else self.dtype
        with torch.no_grad():
            return self.model(torch.zeros(1, *self.input_shape, dtype=dtype)).shape[-1]

    # --- raw data -> inputs -> outputs ---

    def inputs(self, x: Any) -> Tensor:
        """Raw features as the network's float64 input before standardisation.

        x: a tensor or array of shape (n, *input_shape) (numeric, already encoded: columns
        in the order of the training data's feature_names), or a table: a path to a CSV or
        Parquet file, a pyarrow Table or a pandas DataFrame, whose columns are found by name
        and encoded as in training. ValueError naming a missing column or a bad cell.
        A language model takes text: a str, a list of them, or a path (os.PathLike) to a
        UTF-8 file of one text per line, or int64 ids (n, block_size); each text becomes a
        context of token ids
        (sampling.contexts; ValueError naming a character outside the vocabulary).
        """
        if self.takes_ids:
            return self._contexts(x)
        if isinstance(x, (str, os.PathLike)) and len(self.input_shape) == 3:
            return self.read_images(x)[1]
        if isinstance(x, (str, os.PathLike)) or _is_table(x):
            from minidl_cli.data.table import encode_table

            return encode_table(_source(x), self._table_preprocessing())
        tensor = torch.as_tensor(x, dtype=torch.float64)
        if tensor.shape[1:] != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            columns = ""
            if len(self.input_shape) == 1 and self.encoded_features:
                columns = (f" (the encoded columns {', '.join(self.encoded_features)}, as "
                           "in training, before standardisation)")
            raise ValueError(f"predict: inputs of shape (n, {shape}) expected{columns}, got "
                             f"{tuple(tensor.shape)}")
        return tensor

    def read_images(self, path: str | os.PathLike) -> tuple[list[str] | None, Tensor]:
        """The images of an image run's input: an image file (any format Pillow reads, told
        by its content, not its name), a folder of images (recursively, sorted: the listing
        training uses) or an .npz with an `x` (or `x_test`) array; read as the run's
        image_folder options say (size, grayscale), else as they are. Returns the files (None
        for an .npz) and the pixels. Shape: -> (n, *input_shape) float64. ValueError naming
        the file.
        """
        import numpy as np

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
            x = self._pixels(files)
            files = [str(f) for f in files]
        if x.ndim == 3:
            x = x[:, None]
        if tuple(x.shape[1:]) != self.input_shape:
            fix = f"resize them to {height}×{width} (H×W) pixels"
            if tuple(x.shape[2:]) == (height, width):  # only the channels differ
                fix = _channel_fix(x.shape[1], channels)
            raise ValueError(f"predict: {path} gives images of shape (C, H, W) = "
                             f"{tuple(x.shape[1:])} but the run takes ({channels}, {height}, "
                             f"{width}); {fix}")
        return files, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))

    def _pixels(self, files: list[Path]) -> Any:
        """The images in `files`, decoded as the run's image_folder options say (size,
        grayscale), else as they are; ValueError when their bit depth is not the one the run
        was trained on (16-bit values given to an 8-bit network). Shape: -> (n, C, H, W)."""
        from minidl_cli.data.images import _read_images, pixel_depth

        data = self.config.get("data") or {}
        folder = isinstance(data, dict) and data.get("type") == "image_folder"
        size = tuple(data["size"]) if folder and data.get("size") else None
        grayscale = bool(data.get("grayscale")) if folder else self.input_shape[0] == 1
        pixels = _read_images(files, size, grayscale, where="predict")
        if self.pixels is not None and pixel_depth(pixels) != self.pixels:
            raise ValueError(f"predict: {files[0]} holds {pixel_depth(pixels)} pixels, but the "
                             f"run was trained on {self.pixels} images, whose values are on "
                             f"another scale; save the images as {self.pixels} (or train on "
                             "images like these)")
        return pixels

    def read_labelled_images(self, path: str | os.PathLike) -> tuple[Tensor, Tensor]:
        """Labelled images for an image run's evaluation: a folder of class folders
        (FOLDER/<class>/..., images told by content, subfolders included, as image_folder
        reads them) or an .npz with arrays x and y (or x_test and y_test). Labels are the
        run's class names (3 and '3' alike).

        Shape: -> x (n, *input_shape) float64, y (n,) int64 class indices.
        Raises ValueError naming a class the run does not have, or an input of neither kind.
        """
        import numpy as np

        from minidl_cli.data.files import file_kind, image_files
        from minidl_cli.data.table_io import value_key

        path, classes = Path(path), self.classes or []
        index = {value_key(c): i for i, c in enumerate(classes)}
        if path.is_dir():
            folders = sorted(p for p in path.iterdir()
                             if p.is_dir() and not p.name.startswith("."))
            pairs = [(folder.name, f) for folder in folders for f in image_files(folder)]
            if not pairs:
                raise ValueError(f"evaluate: {path} holds no images in class folders; give a "
                                 f"folder of class folders ({path}/<class>/image.png) named as "
                                 f"the run's classes ({', '.join(classes)})")
            x, labels = self._pixels([f for _, f in pairs]), [c for c, _ in pairs]
        elif path.is_file() and file_kind(path) == "zip":
            x, labels = _npz_xy(path)
        elif not path.exists():
            raise FileNotFoundError(f"evaluate: {path} not found")
        else:
            raise ValueError(f"evaluate: {path} is neither a folder of class folders nor an "
                             ".npz; an image run is evaluated on labelled images: a folder "
                             "FOLDER/<class>/image.png or an .npz with arrays x and y")
        unknown = sorted({str(v) for v in labels if value_key(str(v)) not in index})
        if unknown:
            raise ValueError(f"evaluate: {path} has images of class(es) "
                             f"{', '.join(map(repr, unknown[:5]))}, which the run does not "
                             f"have; its classes are {', '.join(classes)}")
        y = torch.tensor([index[value_key(str(v))] for v in labels], dtype=torch.int64)
        if x.ndim == 3:
            x = x[:, None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"evaluate: {path} gives images of shape (C, H, W) = "
                             f"{tuple(x.shape[1:])} but the run takes {self.input_shape}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)), y

    def _table_preprocessing(self) -> dict[str, Any]:
        """The data set's preprocessing of table rows; for data sets that have none
        (synthetic points), the plain one: the feature columns by name, as numbers."""
        if self.preprocessing is not None:
            return self.preprocessing
        if len(self.input_shape) != 1 or not self.features:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"this run's inputs are not table rows: it takes inputs of shape "
                             f"(n, {shape}), which no CSV or Parquet columns name; in Python, "
                             "give predict and evaluate a tensor of that shape")
        return {"version": 1, "columns": self.features, "categories": {},
                "feature_names": self.features, "missing": "error", "fill_values": None,
                "label": self.label_columns(), "task": self.task.name,
                "class_names": self.classes, "delimiter": ","}

    def outputs(self, x: Any) -> Tensor:
        """The network's outputs for raw inputs (see `inputs`), in eval mode.
        Shape: (n, num_outputs)."""
        inputs = self.inputs(x)
        if self.standardizer is not None:
            mean, std = self.standardizer
            inputs = (inputs - mean) / std
        with torch.no_grad():
            if inputs.is_floating_point():
                inputs = inputs.to(self.dtype)
                self._check_finite(inputs)
            return forward_in_slices(self.model, inputs)  # a slice of rows at a time

    def _check_finite(self, inputs: Tensor) -> None:
        """ValueError naming the first data row (counted from 1, the header not counted)
        and column whose value (after standardisation) the run's dtype cannot hold: the
        network would give NaN for it. Training refuses the same values
        (data.check_network_data). Shape: inputs (n, *input_shape) in the run's dtype."""
        flat = inputs.reshape(len(inputs), -1)
        bad = ~torch.isfinite(flat)
        if not bool(bad.any()):
            return
        row, column = (int(i) for i in bad.nonzero()[0])
        names = self.encoded_features or []
        what = (f"column {names[column]!r}" if len(self.input_shape) == 1 and column < len(names)
                else f"input value {column}")
        name = str(self.dtype).removeprefix("torch.")
        raise ValueError(
            f"predict: data row {row + 1}, {what}: the value (after the run's standardisation) "
            f"is beyond what {name} (the run's train.dtype) holds "
            f"({torch.finfo(self.dtype).max:.3g}), so the network would give NaN; fix the "
            "value (or its unit), or train a run with train.dtype: float64")

    def _contexts(self, x: Any) -> Tensor:
        """A language model's input for texts (see `inputs`). Shape: -> (n, block_size)."""
        from minidl_cli.data.text import read_text
        from minidl_cli.sampling import contexts

        if isinstance(x, Tensor) and x.dtype == torch.int64 and x.shape[1:] == self.input_shape:
            return x  # token ids already
        if isinstance(x, os.PathLike):  # one text per line; errors name the line
            lines = [(n, line) for n, line in enumerate(read_text(Path(x)).split("\n"), 1)
                     if line]
            return contexts(self.task, [line for _, line in lines],
                            [f"{x} line {n}" for n, _ in lines])
        elif isinstance(x, str):
            x = [x]
        if not isinstance(x, (list, tuple)) or not all(isinstance(t, str) for t in x):
            raise ValueError("predict: a language model takes text: a string, a list of "
                             f"strings or a path to a text file; got {type(x).__name__}")
        return contexts(self.task, list(x))

    def sample(self, num: int | None = None, max_tokens: int | None = None,
               temperature: float = 1.0, prompt: str = "", seed: int | None = None
               ) -> list[str]:
        """Text sampled from a language model (sampling.generate): `num` items of a `lines`
        run (each ends where the model draws the boundary token), or `num` texts of
        `max_tokens` tokens of a `stream` run, each starting with `prompt`. Raises
        ValueError for another task, a bad argument or a prompt character outside the
        vocabulary (naming both)."""
        from minidl_cli.sampling import generate

        if not self.takes_ids:
            raise ValueError(f"sample: this run's task is {self.task.name}; only a language "
                             "model (data type text) generates text")
        return generate(self.model, self.task, num, max_tokens, temperature, prompt, seed)

    def predict(self, x: Any) -> Any:
        """Class names (numpy array of str, shape (n,)) or values on the target's scale
        (float64 numpy array, (n,) for one target, (n, k) for several)."""
        return self.task.predictions(self.outputs(x))

    def predict_proba(self, x: Any) -> Any:
        """Softmax of the outputs, one column per class (scikit-learn's predict_proba).
        Shape: (n, num_classes) float64 numpy array."""
        return self.task.probabilities(self.outputs(x))

    def predict_columns(self, x: Any) -> dict[str, list]:
        """The columns `minidl predict` writes, one row per input row (the task's)."""
        return self.task.prediction_columns(self.outputs(x))

    def evaluate(self, data: Any) -> dict[str, Any]:
        """The loss and the task's evaluation on labelled data: a table (a path, a pyarrow
        Table or a pandas DataFrame with the feature and label columns), or for an image run
        a folder of class folders or an .npz with x and y (read_labelled_images), or for a
        language model a text file, all of it cut as the run cut its text."""
        from minidl_cli.data.table import encode_labelled

        if self.takes_ids:
            x, y = self._text_examples(data)
        elif len(self.input_shape) == 3 and isinstance(data, (str, os.PathLike)):
            x, y = self.read_labelled_images(data)
        else:
            x, y = encode_labelled(_source(data), self._table_preprocessing())
        outputs = self.outputs(x)
        loss_fn = build_loss(self.config["loss"])
        with torch.no_grad():
            loss = loss_fn(outputs, self.task.targets(y, loss_fn, self.dtype)).item()
        if loss_fn.reduction == "sum":
            loss /= self.task.count(y)
        return {"loss": loss, **self.task.evaluation(outputs, y)}

    def _text_examples(self, data: Any) -> tuple[Tensor, Tensor]:
        """Every example of a text file, cut as the run cuts its data (mode, block_size,
        target) with its vocabulary. Shape: -> x (N, T), y (N,) or (N, T)."""
        from minidl_cli.data.text import read_text, text_examples

        path, task = Path(data), self.task
        return text_examples(read_text(path), task.vocabulary, task.mode, task.block_size,
                             task.target, f"evaluate: {path}")

    def label_columns(self) -> list[str]:
        """The label column(s) of the training data (regression: the target names)."""
        if self.preprocessing is not None:
            return list(self.preprocessing["label"])
        return self.task.label_columns()  # synthetic points: written as x1, x2, label

    # --- torch.nn ---

    def to_torch(self) -> torch.nn.Sequential:
        """The network as torch.nn, in eval mode: each layer's torch.nn twin (as the layer
        declares it, blocks included), loaded from `model`'s state dict, so the same
        (standardised) inputs give the same outputs. ValueError naming a layer without one."""
        try:
            return self.model.to_torch().eval()
        except ValueError as e:
            raise ValueError(f"model: {e}") from None


def load(run_dir: str | os.PathLike, checkpoint: str = "last") -> Predictor:
    """The Predictor of a run's checkpoint ('last', 'best', an epoch number or a path).

    RunError (a ValueError) for a missing run or checkpoint.
    """
    run = Run.open(Path(run_dir))
    path = run.checkpoint_path(str(checkpoint))
    if checkpoint == "best" and not path.exists():
        raise RunError(f"{run.path} has no best.pt: it is kept only when train.val_fraction > 0; "
                       "use --checkpoint last")
    state = load_checkpoint(path)
    if "config" not in state:
        raise RunError(f"{path} holds no config; use a checkpoint minidl train wrote")
    return Predictor(state, path, run.path)


def write_csv(columns: dict[str, list]) -> str:
    """Columns of equal length as CSV text with a header row."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return buffer.getvalue()


def _source(x: Any) -> Any:
    """A path or a pyarrow Table (a pandas DataFrame is converted) for the table reader."""
    if isinstance(x, (str, os.PathLike)):
        return Path(x)
    if type(x).__module__.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(x, preserve_index=False)
    return x


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


def _is_table(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("pyarrow") or module.startswith("pandas")




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


def _first_width(config: dict[str, Any]) -> int:
    """The input width of a checkpoint that predates recorded input shapes."""
    first = config["model"][0]
    if isinstance(first, dict) and first.get("in_features"):
        return first["in_features"]
    raise RunError("this checkpoint does not record its input shape; retrain the run")
