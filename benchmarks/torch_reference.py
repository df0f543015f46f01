"""The reference experiment in plain torch.nn + autograd + torch.optim: it only trains.

What `minidl train configs/disk.yaml` does, less everything around the training loop:
1000 disk points, 2 → 25 → 25 → 25 → 2 (ReLU, Tanh), MSE on ±1 one-hot targets, SGD
lr 0.007, 500 epochs of batch 100, shuffled every epoch (one gather, then slices: the
fast way to feed batches; a DataLoader would be slower). No per-epoch evaluation, no
checkpoints, no pictures: bench_cli.py times this whole process against `minidl train`.

    python benchmarks/torch_reference.py [EPOCHS]
"""

import math
import sys

import torch

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
BATCH, N_TRAIN, WIDTH, LR = 100, 1000, 25, 0.007

gen = torch.Generator().manual_seed(0)
x = torch.rand(N_TRAIN, 2, generator=gen, dtype=torch.float64)
inside = ((x - 0.5).norm(dim=1) < 1 / math.sqrt(2 * math.pi)).long()
x, targets = x.float(), torch.nn.functional.one_hot(inside, 2).float() * 2 - 1

torch.manual_seed(0)
layers = [torch.nn.Linear(2, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH),
          torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(),
          torch.nn.Linear(WIDTH, 2), torch.nn.Tanh()]
for layer in layers[::2]:  # Xavier-uniform weights and zero biases, as minidl's Linear
    torch.nn.init.xavier_uniform_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
model = torch.nn.Sequential(*layers)
loss_fn = torch.nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=LR)

for _ in range(EPOCHS):
    order = torch.randperm(N_TRAIN, generator=gen)
    xs, ys = x[order], targets[order]
    for start in range(0, N_TRAIN, BATCH):
        optimizer.zero_grad()
        loss = loss_fn(model(xs[start:start + BATCH]), ys[start:start + BATCH])
        loss.backward()
        optimizer.step()
if EPOCHS:
    print(f"final batch loss {loss.item():.4f}")
