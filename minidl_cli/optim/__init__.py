"""Optimizers and learning-rate schedules with torch.optim's update rules."""

from minidl_cli.optim.adagrad import Adagrad
from minidl_cli.optim.adam import Adam, AdamW
from minidl_cli.optim.clip import clip_grad_norm_
from minidl_cli.optim.optimizer import Optimizer
from minidl_cli.optim.rmsprop import RMSprop
from minidl_cli.optim.schedules import CosineAnnealingLR, LRScheduler, StepLR
from minidl_cli.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "LRScheduler", "StepLR",
           "CosineAnnealingLR", "clip_grad_norm_"]
