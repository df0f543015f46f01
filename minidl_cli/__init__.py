"""minidl: a small deep-learning framework with hand-written backpropagation.

Importing the package must stay cheap: it does not import torch, so that
`minidl --help` and `minidl --version` answer at once.
"""

__version__ = "0.1.0"
