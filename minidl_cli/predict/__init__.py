"""A trained run used on new data: `load(run_dir)` gives a Predictor.

Everything comes from the checkpoint (weights, config, the task and its state, the feature
names, the data set's preprocessing, the input standardiser), never from the training
files, so a run predicts even when the data it was trained on is gone. Raw rows become
inputs as in training (inputs.py: the data set's preprocessing, columns by name; images.py:
image files read as the run read its own), then the standardiser. The CLI's
`minidl predict` and `minidl evaluate --data` are thin shells over
`Predictor.predict_columns` and `Predictor.evaluate`.
"""

from minidl_cli.predict.predictor import Predictor, load, write_csv

__all__ = ["Predictor", "load", "write_csv"]
