"""Train a config's torch.nn twin the way minidl trains the config, to compare their results.

For each seed, minidl builds the run's parts (the same data, split and initial weights as
`minidl train CONFIG` with that seed); the model's `to_torch()` twin is then trained with
autograd and the torch.optim optimizer of the same name and options (sgd, adam, adamw), the
same epochs, batch size and batch order (the per-epoch reshuffle by the same seeded generator,
or with `train.shuffle: false` the stored order every epoch), gradient clipping and
per-epoch cosine or step schedule. It prints the final test loss and accuracy
of each seed and their mean ± std: the "torch.nn" column of docs/RESULTS.md.

    python benchmarks/torch_twin.py configs/mnist1d-cnn.yaml --seeds 0-4
    python benchmarks/torch_twin.py configs/mnist1d-gru.yaml data.shuffle_sequence=true --seeds 0-4
    python benchmarks/torch_twin.py configs/shakespeare-gpt.yaml --seeds 0
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidl_cli.config import load_config  # noqa: E402
from minidl_cli.parts import build_parts  # noqa: E402

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def torch_optimizer(config: dict, params) -> torch.optim.Optimizer:
    options = dict(config["optimizer"])
    name = options.pop("type")
    if name not in OPTIMIZERS:
        raise SystemExit(f"no torch.optim twin for optimizer {name!r} here")
    return OPTIMIZERS[name](params, **options)


def torch_scheduler(config: dict, optimizer: torch.optim.Optimizer):
    sched = config.get("scheduler")
    if not sched:
        return None
    options = dict(sched)
    name = options.pop("type")
    if name == "cosine":
        t_max = options.pop("T_max", None) or config["train"]["epochs"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max, **options)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, **options)
    raise SystemExit(f"no torch.optim twin for scheduler {name!r} here")


def evaluate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy (per row or per token) and accuracy, in slices of rows."""
    net.eval()
    total, right, count = 0.0, 0, 0
    rows = max(1, 2**20 // max(x[:1].numel(), 1) // 64)
    with torch.no_grad():
        for start in range(0, len(x), rows):
            out = net(x[start:start + rows])
            target = y[start:start + rows]
            logits, labels = out.reshape(-1, out.shape[-1]), target.reshape(-1)
            total += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            right += (logits.argmax(1) == labels).sum().item()
            count += labels.numel()
    return total / count, right / count


def train_twin(config_path: str, seed: int, overrides: list[str] = ()) -> dict[str, float]:
    config = load_config(Path(config_path), [*overrides, f"seed={seed}"])
    parts = build_parts(config)
    net = parts.model.to_torch().train()
    optimizer = torch_optimizer(config, net.parameters())
    scheduler = torch_scheduler(config, optimizer)
    train, test = parts.splits["train"], parts.splits["test"]
    batch, clip = config["train"]["batch_size"], config["train"].get("clip_grad_norm")
    shuffle = torch.Generator().manual_seed(seed) if config["train"]["shuffle"] else None
    started = time.process_time()
    for _ in range(config["train"]["epochs"]):
        net.train()
        x, y = train.x, train.targets
        if shuffle is not None:  # as DataLoader(shuffle=True): a new order every epoch
            order = torch.randperm(len(x), generator=shuffle)
            x, y = x[order], y[order]
        for start in range(0, len(x), batch):
            out = net(x[start:start + batch])
            target = y[start:start + batch]
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                     target.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    test_loss, test_accuracy = evaluate(net, test.x, test.y)
    return {"test_loss": test_loss, "test_accuracy": test_accuracy,
            "cpu_s": time.process_time() - started}


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, as minidl train takes them")
    parser.add_argument("--seeds", default="0", help="e.g. 0-4 (default 0)")
    args = parser.parse_args(argv)
    results = []
    for seed in seeds(args.seeds):
        result = train_twin(args.config, seed, args.overrides)
        results.append(result)
        print(f"seed {seed}: test loss {result['test_loss']:.4f}, test accuracy "
              f"{result['test_accuracy']:.2%} ({result['cpu_s']:.0f} s CPU)", flush=True)
    for key in ("test_loss", "test_accuracy"):
        values = [r[key] for r in results]
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        print(f"{key}: {statistics.mean(values):.4f} ± {std:.4f} over {len(values)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
