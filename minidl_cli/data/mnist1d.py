"""MNIST-1D (Greydanus & Kobak, 2020): ten 1-D digit templates, padded, sheared, translated
and noised into 40-point signals; shipped with minidl, built offline from the authors'
generator (see mnist1d/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from minidl_cli.data.base import Dataset
from minidl_cli.registry import register

MNIST1D_FILE = Path(__file__).parent / "mnist1d" / "mnist1d.csv.gz"  # Apache 2.0, see LICENSE
N_TRAIN = 4000  # the generator's own split: the first 80% of its 5000 shuffled signals
# The "shuffled" variant's one fixed permutation of the 40 time steps: the one the authors'
# make_dataset draws with shuffle_seq=True (seed 42), so the data equal theirs.
SHUFFLE = (19, 22, 4, 32, 17, 18, 28, 31, 11, 24, 23, 7, 25, 35, 34, 6, 3, 13, 12, 26,
           1, 27, 20, 10, 36, 9, 37, 29, 8, 30, 5, 38, 16, 15, 33, 39, 14, 21, 0, 2)


@register("dataset", "mnist1d")
def mnist1d(shuffle_sequence: bool = False, *, generator: torch.Generator) -> Dataset:
    """The MNIST-1D default set: 4000 train and 1000 test signals of 40 points, 10 classes.

    `shuffle_sequence` permutes the 40 time steps of every signal with one fixed permutation
    (the paper's "shuffled" variant: local structure gone, class information kept); the
    permutation is recorded as the data set's preprocessing ({"permutation": [...]}: signal
    point i of the network's input is point permutation[i] of the natural signal), so
    predict and evaluate --data apply it to signals given in their natural order.
    Like the digits, it records no data_files: the file is part of minidl.

    Shape: x (n, 40) float64 (features x0..x39), y (n,) int64.
    Raises FileNotFoundError when the shipped file is missing.
    """
    del generator  # the split is the generator's own, the same for every seed
    if not MNIST1D_FILE.is_file():
        raise FileNotFoundError(f"mnist1d dataset: {MNIST1D_FILE} is missing; reinstall minidl")
    table = np.loadtxt(MNIST1D_FILE, delimiter=",", skiprows=1)  # x0..x39, then the label
    x = torch.from_numpy(table[:, :40].copy())
    y = torch.from_numpy(table[:, 40].astype(np.int64))
    preprocessing = None
    if shuffle_sequence:
        x = x[:, list(SHUFFLE)]
        preprocessing = {"version": 1, "permutation": list(SHUFFLE)}
    names = [f"x{i}" for i in range(40)]
    return Dataset(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], 10, names,
                   class_names=[str(c) for c in range(10)], signal=True,
                   preprocessing=preprocessing)
