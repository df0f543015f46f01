"""Seed groups: one run per seed inside a group directory, and their summary statistics.

    <runs_dir>/<name>-seeds-<YYYYMMDD-HHMMSS>/
        group.json      which seeds, which member directories, status
        config.yaml     the resolved config of seed 0's member, for reference
        seed-0000/ ...  ordinary run directories (evaluate, plot, resume each as usual)
        summary.csv     one row per seed: final metrics, epochs, wall time
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.runs import RunError, atomic_write, create_run_dir

if TYPE_CHECKING:
    from minidl_cli.train import StopFlag

GROUP_FILE = "group.json"


def summary_columns(task: str) -> list[str]:
    """summary.csv's header: seed, epochs, the task's final metrics, wall time, status."""
    from minidl_cli.tasks import by_name

    return ["seed", "epochs", *by_name(task).summary_keys(), "wall_s", "status"]


def parse_seeds(text: str) -> list[int]:
    """'0-19', '0,3,5' or '0-4,10' -> sorted distinct seeds; ValueError explains the format."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
            if first < 0 or last < first:
                raise ValueError
            seeds.update(range(first, last + 1))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected a range or a list of seeds >= 0, "
                         "e.g. --seeds 0-19 or --seeds 0,3,5") from None
    return sorted(seeds)


def is_group(path: Path) -> bool:
    return (Path(path) / GROUP_FILE).is_file()


def member_dirs(group: Path) -> list[Path]:
    info = json.loads((Path(group) / GROUP_FILE).read_text())
    return [Path(group) / name for name in info["members"]]


def train_member(config: dict[str, Any], member: Path, threads: int | None = None,
                 stop: StopFlag | None = None) -> dict:
    """Train one seed's run into `member` (already created); its summary row.

    `stop`: polled between batches; once it is true the member is saved and marked
    interrupted (status "interrupted"), or not started at all ("not started").
    In a worker process of run_seeds, the group's shared stop flag.
    """
    import torch

    from minidl_cli.experiment import start_run, train_run
    from minidl_cli.train import Diverged, Interrupted

    stop = stop or _worker_stop
    if stop is not None and stop():
        return {"seed": config["seed"], "epochs": 0, "status": NOT_STARTED}
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    run, trainer = start_run(config, into=member)  # as any run: epoch-0 last.pt, locked
    status = "completed"
    try:
        train_run(run, trainer, stop=stop)
    except Diverged:
        status = "failed"
    except Interrupted:
        status = "interrupted"
    last = trainer.history[-1] if trainer.history else {}
    return {"seed": config["seed"], "epochs": trainer.epoch, **trainer.task.summary(last),
            "wall_s": round(time.perf_counter() - started, 3), "status": status,
            "task": trainer.task.name}  # not a column: which columns the row has


def run_seeds(config: dict[str, Any], seeds: list[int], jobs: int = 1,
              on_done: Callable[[dict], None] | None = None,
              stop: StopFlag | None = None) -> tuple[Path, list[dict]]:
    """Train `config` once per seed (in `jobs` processes); write group.json and summary.csv.

    Once `stop()` is true (the CLI's flag: Ctrl-C, SIGTERM), seeds not yet started never
    start, those training are saved and marked interrupted, and the summary lists every
    seed: its final metrics when it completed, else its status and epochs.
    """
    from minidl_cli.config import dump_yaml

    group = create_run_dir(Path(config["runs_dir"]), f"{config['name']}-seeds")
    members = [f"seed-{seed:04d}" for seed in seeds]
    for name in members:
        (group / name).mkdir()
    _write_json(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                     "members": members, "status": "running"})
    configs = [{**config, "seed": seed} for seed in seeds]
    atomic_write(group / "config.yaml", dump_yaml(configs[0]).encode())
    rows: dict[int, dict] = {}

    def done(row: dict) -> None:
        rows[row["seed"]] = row
        if on_done and row["status"] != NOT_STARTED:
            on_done(row)

    try:
        if jobs <= 1:
            for cfg, name in zip(configs, members, strict=True):
                done(train_member(cfg, group / name, stop=stop))
        else:
            _run_in_pool(configs, [group / name for name in members], jobs, done, stop)
    finally:
        _finish_group(group, seeds, members, rows)
    return group, [rows[seed] for seed in seeds]


def _run_in_pool(configs: list[dict], members: list[Path], jobs: int,
                 done: Callable[[dict], None], stop: StopFlag | None) -> None:
    """The members in `jobs` worker processes. The workers ignore Ctrl-C and SIGHUP (the
    terminal sends them to the whole process group): this process tells them to stop
    through a shared value, and cancels the seeds still queued."""
    shared = multiprocessing.get_context().RawValue("i", 0)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                             initargs=(shared,)) as pool:
        pending = {pool.submit(train_member, cfg, member, 1) for cfg, member in
                   zip(configs, members, strict=True)}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(future.result())
                if stop is not None and stop() and not shared.value:
                    shared.value = stop.signum or signal.SIGINT
                    for future in pending:
                        future.cancel()  # queued ones never start; running ones stop and save
                    pending = {f for f in pending if not f.cancelled()}
        finally:  # leaving early (a second Ctrl-C, an error): stop the workers, drop the queue
            shared.value = shared.value or signal.SIGINT
            for future in pending:
                future.cancel()


NOT_STARTED = "not started"
_worker_stop: StopFlag | None = None  # in a worker process: the group's shared stop flag


def _init_worker(shared) -> None:
    """A seed-group worker: Ctrl-C and SIGHUP reach the parent, which says when to stop;
    SIGTERM sent to this worker alone stops its member (saved, interrupted)."""
    from minidl_cli.train import StopFlag

    global _worker_stop

    class GroupStop(StopFlag):
        def __call__(self) -> bool:
            if self.signum is None and shared.value:
                self.signum = shared.value
            return self.signum is not None

    _worker_stop = GroupStop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(_worker_stop, "signum", signum))


def _finish_group(group: Path, seeds: list[int], members: list[str], rows: dict) -> None:
    """summary.csv with a row per seed and group.json's status; a member that never
    started leaves no empty directory behind."""
    for seed, name in zip(seeds, members, strict=True):
        if seed not in rows:  # stopped before it reported: what its meta.json says
            rows[seed] = _member_state(seed, group / name)
        if rows[seed]["status"] == NOT_STARTED and (group / name).is_dir():
            try:
                (group / name).rmdir()  # only if empty: a started member keeps its files
            except OSError:
                rows[seed] = _member_state(seed, group / name)
    kept = [name for seed, name in zip(seeds, members, strict=True)
            if rows[seed]["status"] != NOT_STARTED]
    write_summary(group, [rows[seed] for seed in seeds])
    status = ("completed" if all(rows[s]["status"] in ("completed", "failed") for s in seeds)
              else "interrupted")
    _write_json(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                     "members": kept, "status": status})


def _member_state(seed: int, member: Path) -> dict:
    """A summary row from a member's meta.json: its status and epochs, no metrics."""
    try:
        meta = json.loads((member / "meta.json").read_text())
    except (OSError, ValueError):
        return {"seed": seed, "epochs": 0, "status": NOT_STARTED}
    return {"seed": seed, "epochs": meta.get("epochs_completed", 0),
            "status": meta.get("status", "interrupted")}


def write_summary(group: Path, rows: list[dict]) -> None:
    # a seed that never started has no task in its row: the others say which columns
    columns = summary_columns(next((r["task"] for r in rows if "task" in r), "classification"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(group / "summary.csv", buffer.getvalue().encode())


def statistics(values: list[float]) -> dict[str, float]:
    """mean, sample std (n − 1, as the published figures), min and max."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "min": min(values), "max": max(values)}


def open_group(path: Path) -> list[Path]:
    """The member run directories of a group; RunError if it is not one."""
    if not is_group(path):
        raise RunError(f"{path} is not a seed group (no {GROUP_FILE})")
    return member_dirs(path)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())
