"""Data-parallel training over torch.distributed: N processes train one network as one would.

    minidl train CONFIG --nproc N              launch() starts N ranks of this same command
    torchrun --nproc-per-node N -m minidl_cli train CONFIG       the same, started by torchrun

Every rank runs the one training loop (train.Trainer.train_epoch). Each computes the same
shuffle (same seeded generator) and takes its contiguous slice of every global batch
(`shards`); after backward, `reduce_gradients` weights its mean gradient by its share of the
batch (local / global rows) and sums all ranks' gradients in one flattened all_reduce, so
every rank steps with the gradient of the whole batch: N ranks end with the weights of one
process (up to float rounding), uneven and empty slices included. The same all_reduce
carries each rank's signal flag (so all stop at the same batch); a divergence leaves the
same NaN weights on every rank, so all of them stop at the end of that epoch.
Rank 0 alone writes the run directory and prints; every rank evaluates (cheap, and the same
weights give the same metrics), so histories, schedules and decisions agree without messages.
Dropout draws its masks per rank, so a run with dropout is not identical to one process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from minidl_cli.train import StopFlag

EXIT_GRACE_S = 10.0  # how long the other ranks may outlive the one that ended the run
JOIN_TIMEOUT_S = 300.0  # how long a rank waits for the others to join (MINIDL_DIST_TIMEOUT)
JOIN_NOTICE_S = 3.0  # after this long without its peers, a rank says what it waits for


class RankLost(RuntimeError):
    """Another rank stopped (its process ended or its connection broke) in mid-training."""


class World:
    """This process's place among the data-parallel ranks (from RANK, WORLD_SIZE, LOCAL_RANK)."""

    def __init__(self, rank: int, size: int, local_rank: int):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))  # ranks on this machine
        self.stop: SharedStop | None = None
        self._buffer: torch.Tensor | None = None  # flat gradients + [SIGINT, SIGTERM]

    @classmethod
    def from_env(cls) -> World | None:
        """The rank torchrun (or `--nproc`) started; None for an ordinary single process."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            if size <= 1:
                return None
            rank = int(os.environ["RANK"])
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
        except (KeyError, ValueError) as e:
            raise ValueError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} asks for distributed "
                             f"training, but RANK / LOCAL_RANK are missing or not integers "
                             f"({e}); start the ranks with torchrun or minidl train "
                             "--nproc N") from None
        if not 0 <= rank < size:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={size}")
        return cls(rank, size, local_rank)

    # --- the process group ---

    def __enter__(self) -> World:
        """Join the process group (MASTER_ADDR / MASTER_PORT from the environment), unless
        `join` did already."""
        if not dist.is_initialized():
            self.join()
        return self

    def join(self, notify: Callable[[str], None] | None = None,
             timeout_s: float | None = None) -> None:
        """Wait for all ranks to join, at most `timeout_s` (default: MINIDL_DIST_TIMEOUT or
        JOIN_TIMEOUT_S seconds); after JOIN_NOTICE_S, `notify` says what this rank waits for.

        The rendezvous blocks inside torch, where Python cannot handle a signal: it runs in
        a helper thread while this one waits, so Ctrl-C (KeyboardInterrupt) and SIGTERM
        still stop the process at once. Raises TimeoutError naming the address and sizes.
        The helper thread cannot be stopped: after either, end the process with os._exit.
        """
        timeout_s = join_timeout() if timeout_s is None else timeout_s
        backend = "gloo"
        if torch.cuda.is_available():  # cuda tensors over nccl; objects and cpu tensors over gloo
            backend = "cpu:gloo,cuda:nccl"
            if self.local_rank < torch.cuda.device_count():
                torch.cuda.set_device(self.local_rank)
        outcome: list[BaseException | None] = []

        def rendezvous() -> None:
            try:
                dist.init_process_group(backend, init_method="env://", rank=self.rank,
                                        world_size=self.size)
                outcome.append(None)
            except BaseException as e:  # handed to the waiting thread
                outcome.append(e)

        helper = threading.Thread(target=rendezvous, name="minidl-rendezvous", daemon=True)
        helper.start()
        started = time.monotonic()
        helper.join(min(JOIN_NOTICE_S, timeout_s))
        if helper.is_alive() and notify is not None and timeout_s > JOIN_NOTICE_S:
            notify(f"rank {self.rank} of {self.size}: waiting for the other ranks at "
                   f"{self.address} (up to {timeout_s:g} s; MINIDL_DIST_TIMEOUT=SECONDS "
                   "changes it; Ctrl-C stops)")
        helper.join(max(0.0, timeout_s - (time.monotonic() - started)))
        if helper.is_alive():
            raise TimeoutError(
                f"rank {self.rank} of {self.size}: the other ranks did not join at "
                f"{self.address} within {timeout_s:g} s; start all {self.size} ranks with the "
                "same MASTER_ADDR, MASTER_PORT and WORLD_SIZE (torchrun --nproc-per-node N, "
                "or minidl train --nproc N), or wait longer with MINIDL_DIST_TIMEOUT=SECONDS")
        if outcome and outcome[0] is not None:
            raise outcome[0]

    @property
    def address(self) -> str:
        return (f"MASTER_ADDR={os.environ.get('MASTER_ADDR', '?')} "
                f"MASTER_PORT={os.environ.get('MASTER_PORT', '?')}")

    def __exit__(self, *exc: Any) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def check_device(self, device: torch.device) -> None:
        """ValueError unless every rank on this machine gets a GPU of its own."""
        check_gpus(device, self.local_size)

    # --- setup: rank 0 opens the run, the others copy its trainer ---

    def lead(self, prepare: Callable[[], Any]) -> Any:
        """Rank 0: `prepare()` -> (run, trainer) or None, then tell the other ranks what to train.

        They get the resolved config (its seed included) and the checkpoint to start from, or
        {"error": True} / None (--print-config): rank 0 reports, they leave quietly.
        """
        try:
            result = prepare()
        except BaseException:
            self._broadcast({"error": True})
            raise
        setup = None
        if result is not None:
            run, trainer = result
            setup = {"config": trainer.config, "checkpoint": str(run.checkpoint_path("last"))}
        self._broadcast(setup)
        return result

    def follow(self) -> dict[str, Any] | None:
        """A rank > 0: what rank 0's `lead` sent."""
        return self._broadcast(None)

    def _broadcast(self, obj: Any) -> Any:
        message = [obj]
        dist.broadcast_object_list(message, src=0)
        return message[0]

    # --- one training step ---

    def watch(self, local: StopFlag) -> SharedStop:
        """The stop flag the loop polls: set on every rank at once, when any rank got a signal."""
        self.stop = SharedStop(local)
        return self.stop

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's contiguous rows [lo, hi) of the global batch [start, stop); may be empty."""
        n = stop - start
        return start + n * self.rank // self.size, start + n * (self.rank + 1) // self.size

    def shards(self, x: torch.Tensor, targets: torch.Tensor, batch_size: int,
               mean_loss: bool, ignore_index: int | None = None
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """This rank's (x, targets, share) of each global batch of `batch_size` rows: share
        is the local / global count of what a mean-reduced loss divides by (`counted`: rows,
        or labels other than `ignore_index`, which ranks may hold different numbers of), 1
        for a summed one. A rank whose slice is empty (a batch smaller than the world)
        computes on the batch's first row with share 0: it adds nothing, and the all_reduce
        still needs every rank."""
        for start in range(0, len(x), batch_size):
            stop = min(start + batch_size, len(x))
            lo, hi = self.shard(start, stop)
            if hi == lo:
                yield x[start:start + 1], targets[start:start + 1], 0.0
            elif not mean_loss:
                yield x[lo:hi], targets[lo:hi], 1.0
            else:
                share = (counted(targets[lo:hi], ignore_index)
                         / max(counted(targets[start:stop], ignore_index), 1))
                yield x[lo:hi], targets[lo:hi], share

    def seed_masks(self, seed: int, epoch: int) -> None:
        """Ranks > 0 reseed the global RNG (dropout masks) each epoch: masks differ between
        ranks, and a resumed run draws the ones an uninterrupted run would have drawn."""
        if self.rank:
            text = f"minidl-rank-{seed}-{epoch}-{self.rank}".encode()
            torch.manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:7], "little"))

    def reduce_gradients(self, params: Sequence[Any], weight: float) -> None:
        """Sum weight × grad over the ranks, in place.

        `weight`: this rank's share of the batch (`shards`), so that the sum is the gradient
        of the whole batch. The same all_reduce sums the ranks' signal flags into `self.stop`.
        """
        grads = [p.grad for p in params]
        total = sum(g.numel() for g in grads)
        buffer = self._buffer
        if buffer is None or buffer.numel() != total + 2:
            buffer = self._buffer = grads[0].new_empty(total + 2)
        flat = buffer[:total]
        torch.cat([g.reshape(-1) for g in grads], out=flat)
        flat.mul_(weight)
        signum = self.stop.local.signum if self.stop else None
        buffer[total] = float(signum == signal.SIGINT)
        buffer[total + 1] = float(signum == signal.SIGTERM)
        try:
            dist.all_reduce(buffer)
        except RuntimeError as e:
            reason = (str(e).splitlines() or [""])[0][:200]
            raise RankLost(f"another of the {self.size} data-parallel processes stopped "
                           f"({reason})") from None
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.view_as(g))
        sigints, sigterms = buffer[total:].tolist()
        if self.stop and (sigints or sigterms) and self.stop.signum is None:
            self.stop.signum = signal.SIGTERM if sigterms else signal.SIGINT


def counted(targets: torch.Tensor, ignore_index: int | None) -> int:
    """What a mean-reduced loss divides by in a batch: its rows, or (integer labels and an
    `ignore_index`: cross_entropy) its labels other than ignore_index (a lines-mode text
    with target sequence pads with -100). Shape: targets (n, ...)."""
    if ignore_index is None or targets.is_floating_point():
        return len(targets)
    return int((targets != ignore_index).sum())


def check_gpus(device: torch.device, ranks: int) -> None:
    """ValueError unless `ranks` processes on this machine get a GPU each (cuda devices)."""
    if device.type == "cuda" and ranks > torch.cuda.device_count():
        raise ValueError(f"train.device: {ranks} data-parallel processes on cuda need one GPU "
                         f"each, and this machine has {torch.cuda.device_count()}; use fewer "
                         "processes or train.device=cpu")


def join_timeout() -> float:
    """Seconds a rank waits for the others: MINIDL_DIST_TIMEOUT, else JOIN_TIMEOUT_S."""
    text = os.environ.get("MINIDL_DIST_TIMEOUT")
    if not text:
        return JOIN_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"MINIDL_DIST_TIMEOUT={text!r}: expected a number of seconds > 0, "
                         "e.g. MINIDL_DIST_TIMEOUT=600")
    return value


class SharedStop(StopFlag):
    """Turns true on all ranks after the same step: when any rank's `local` flag was set."""

    def __init__(self, local: StopFlag):
        super().__init__()
        self.local = local


# --- the launcher behind `minidl train --nproc N` ---------------------------------------


def launch(argv: list[str], nproc: int) -> int:
    """Run `python -m minidl_cli *argv` as ranks 0..nproc-1 on this machine; rank 0's exit code.

    The ranks run in their own process group, and SIGINT / SIGTERM are forwarded to rank 0
    alone: it saves the run and exits 130 / 143; the others learn of it in the next step's
    all_reduce and stop with it.
    When rank 0 ends, the others get EXIT_GRACE_S to end too, then are killed.
    """
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    ranks: list[subprocess.Popen] = []

    def forward(signum: int, frame: Any) -> None:
        if ranks and ranks[0].poll() is None:
            ranks[0].send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for rank in range(nproc):
            ranks.append(subprocess.Popen(
                [sys.executable, "-m", "minidl_cli", *argv],
                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                start_new_session=True, preexec_fn=_parent_death_signal()))
        return _wait(ranks)
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
                process.wait()
        for s, h in previous.items():
            signal.signal(s, h)


def _wait(ranks: list[subprocess.Popen]) -> int:
    """Rank 0's exit code (128 + signal when a signal killed it), once every rank has ended."""
    leader, others = ranks[0], ranks[1:]
    while leader.poll() is None:
        failed = [p for p in others if p.poll() not in (None, 0)]
        if failed:  # a lost rank leaves rank 0 waiting in the all_reduce: stop it like Ctrl-C
            deadline = time.monotonic() + EXIT_GRACE_S
            while leader.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if leader.poll() is None:
                leader.send_signal(signal.SIGTERM)
                break
        time.sleep(0.05)
    code = _wait_until(leader, EXIT_GRACE_S)
    for process in others:
        _wait_until(process, EXIT_GRACE_S)
    return 128 - code if code < 0 else code


def _wait_until(process: subprocess.Popen, seconds: float) -> int:
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: make a rank get SIGTERM (it saves and exits) if the launcher dies, e.g. kill -9.

    Resolved here, before the fork: the child only makes the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
