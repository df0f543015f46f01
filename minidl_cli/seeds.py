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
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from minidl_cli.runs import RunError, atomic_write, create_run_dir

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


def train_member(config: dict[str, Any], member: Path, threads: int | None = None) -> dict:
    """Train one seed's run into `member` (already created); its summary row."""
    import torch

    from minidl_cli.experiment import start_run, train_run
    from minidl_cli.train import Diverged

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    run, trainer = start_run(config, into=member)  # as any run: epoch-0 last.pt, locked
    status = "completed"
    try:
        train_run(run, trainer)
    except Diverged:
        status = "failed"
    last = trainer.history[-1] if trainer.history else {}
    return {"seed": config["seed"], "epochs": trainer.epoch, **trainer.task.summary(last),
            "wall_s": round(time.perf_counter() - started, 3), "status": status,
            "task": trainer.task.name}  # not a column: which columns the row has


def run_seeds(config: dict[str, Any], seeds: list[int], jobs: int = 1,
              on_done: Callable[[dict], None] | None = None) -> tuple[Path, list[dict]]:
    """Train `config` once per seed (in `jobs` processes); write group.json and summary.csv."""
    from minidl_cli.config import dump_yaml

    group = create_run_dir(Path(config["runs_dir"]), f"{config['name']}-seeds")
    members = [f"seed-{seed:04d}" for seed in seeds]
    for name in members:
        (group / name).mkdir()
    _write_json(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                     "members": members, "status": "running"})
    configs = [{**config, "seed": seed} for seed in seeds]
    atomic_write(group / "config.yaml", dump_yaml(configs[0]).encode())
    rows: list[dict] = []
    try:
        if jobs <= 1:
            for cfg, name in zip(configs, members, strict=True):
                rows.append(train_member(cfg, group / name))
                if on_done:
                    on_done(rows[-1])
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(train_member, cfg, group / name, 1)
                           for cfg, name in zip(configs, members, strict=True)]
                for future in futures:
                    rows.append(future.result())
                    if on_done:
                        on_done(rows[-1])
    finally:
        write_summary(group, rows)
        status = "completed" if len(rows) == len(seeds) else "interrupted"
        _write_json(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                         "members": members, "status": status})
    return group, rows


def write_summary(group: Path, rows: list[dict]) -> None:
    columns = summary_columns(rows[0]["task"] if rows else "classification")
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
