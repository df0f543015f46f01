"""minidl: a small deep-learning framework with hand-written backpropagation.

Importing the package must stay cheap: it does not import torch, so that
`minidl --help` and `minidl --version` answer at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minidl_cli.predict import Predictor

__version__ = "0.1.0"


def load(run_dir: str | os.PathLike, checkpoint: str | int | None = None) -> Predictor:
    """A trained run as a Predictor: `.predict(x)`, `.classes` (`.vocabulary` of a language
    model), `.features`, `.model`, `.to_torch()` (see minidl_cli.predict). torch is imported
    on the first call only.

    checkpoint: 'last', 'best', an epoch number or a checkpoint path; None (the default):
    best for a run trained with train.early_stopping (the epoch it kept), else last, as
    `minidl evaluate`.
    """
    from minidl_cli.predict import load as _load

    return _load(run_dir, None if checkpoint is None else str(checkpoint))
