"""configs/names-mlp.yaml trained by torch.nn + autograd + torch.optim: the same experiment
with another engine, for docs/RESULTS.md.

For each seed, minidl's Trainer builds the data (the same text split, validation split and
shuffling generator) and the initial weights; a torch.nn twin (Embedding, Flatten, Linear,
BatchNorm1d, Tanh, Linear) loads those weights and trains with autograd, torch.optim.SGD
and StepLR on the same batches. Prints the final loss per split and seed, then mean ± std.

    python benchmarks/twin_names_mlp.py --seeds 0 1 2 3 4 [--epochs 30]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from minidl_cli.config import load_config
from minidl_cli.train import Trainer

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "names-mlp.yaml"


def twin_of(config: dict, vocabulary: int) -> torch.nn.Sequential:
    """The torch.nn network of names-mlp.yaml (its keys are minidl's)."""
    emb, _, hidden, norm, _, out = config["model"]
    return torch.nn.Sequential(
        torch.nn.Embedding(vocabulary, emb["embedding_dim"]),
        torch.nn.Flatten(),
        torch.nn.Linear(hidden["in_features"], hidden["out_features"], bias=hidden["bias"]),
        torch.nn.BatchNorm1d(norm["num_features"], momentum=norm["momentum"]),
        torch.nn.Tanh(),
        torch.nn.Linear(out["in_features"], out["out_features"]))


def train_seed(seed: int, epochs: int | None) -> dict[str, float]:
    overrides = [f"seed={seed}"] + ([f"train.epochs={epochs}"] if epochs else [])
    config = load_config(CONFIG, overrides)
    trainer = Trainer(config)  # data, split, weights and shuffling as minidl's run has them
    net = twin_of(config, len(trainer.dataset.vocabulary))
    net.load_state_dict(trainer.model.state_dict())
    train_cfg, opt_cfg, sched = config["train"], config["optimizer"], config["scheduler"]
    optimizer = torch.optim.SGD(net.parameters(), lr=opt_cfg["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, sched["step_size"], sched["gamma"])
    x, y = trainer.splits["train"].x, trainer.splits["train"].y
    batch = train_cfg["batch_size"]
    for _ in range(train_cfg["epochs"]):
        net.train()
        order = torch.randperm(len(x), generator=trainer.shuffle_gen)
        xs, ys = x[order], y[order]
        for start in range(0, len(x), batch):
            loss = F.cross_entropy(net(xs[start:start + batch]), ys[start:start + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    net.eval()
    with torch.no_grad():
        return {split: F.cross_entropy(net(part.x), part.y).item()
                for split, part in trainer.splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        losses = train_seed(seed, args.epochs)
        results.append(losses)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()),
              flush=True)
    for split in results[0]:
        values = [r[split] for r in results]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{split}: {statistics.mean(values):.4f} ± {std:.4f} over {len(values)} seeds")


if __name__ == "__main__":
    main()
