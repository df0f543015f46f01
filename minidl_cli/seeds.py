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

from minidl_cli.config.validate import SEED_LIMIT  # a config's seed's bound
from minidl_cli.early_stopping import kept_row
from minidl_cli.runs import (
    GROUP_FILE,
    RunError,
    atomic_write,
    create_run_dir,
    kept_metrics,
    locked,
    write_json_atomic,
)

if TYPE_CHECKING:
    from minidl_cli.train import StopFlag


def summary_columns(task: str) -> list[str]:
    """summary.csv's header: seed, epochs, the task's final metrics, wall time, status."""
    from minidl_cli.tasks import by_name

    return ["seed", "epochs", *by_name(task).summary_keys(), "wall_s", "status"]


MAX_SEEDS = 10_000  # runs in one group: each is a folder, a process's work and a summary row


def parse_seeds(text: str) -> list[int]:
    """'0-19', '0,3,5' or '0-4,10' -> sorted distinct seeds.

    Raises ValueError explaining the format, a seed outside 0 to 2**63 - 1 (a config's seed
    range), or more than MAX_SEEDS seeds (counted before any list is made)."""
    ranges: list[range] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
            if first < 0 or last < first:
                raise ValueError
            ranges.append(range(first, last + 1))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected a range or a list of seeds >= 0, "
                         "e.g. --seeds 0-19 or --seeds 0,3,5") from None
    if any(r[-1] >= SEED_LIMIT for r in ranges):
        raise ValueError(f"--seeds {text!r}: a seed is at most 2**63 - 1 "
                         f"({SEED_LIMIT - 1}), as a config's seed")
    if sum(len(r) for r in ranges) > MAX_SEEDS:
        raise ValueError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds in one group; "
                         "give a shorter range, e.g. --seeds 0-19")
    return sorted({seed for r in ranges for seed in r})


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
    In a worker process of run_members, the group's shared stop flag.
    """
    from minidl_cli.experiment import start_run

    stop = stop or _worker_stop
    if stop is not None and stop():
        return {"seed": config["seed"], "epochs": 0, "status": NOT_STARTED}
    started = time.perf_counter()
    _set_threads(threads)
    run, trainer = start_run(config, into=member)  # as any run: epoch-0 last.pt, locked
    return _train_and_report(run, trainer, started, stop)


def resume_member(member: Path, overrides: list[str], threads: int | None = None,
                  stop: StopFlag | None = None) -> dict:
    """Continue one member run from its last.pt (experiment.resume_run, `overrides` such as
    train.epochs=N); its summary row, as train_member's. Stopped before it starts, the row
    keeps the member's recorded status."""
    from minidl_cli.experiment import resume_run

    stop = stop or _worker_stop
    if stop is not None and stop():
        return member_state(json.loads((member / "meta.json").read_text())["seed"], member)
    started = time.perf_counter()
    _set_threads(threads)
    run, trainer = resume_run(member, overrides, collection=False)  # the caller holds it
    return _train_and_report(run, trainer, started, stop)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _train_and_report(run, trainer, started: float, stop: StopFlag | None) -> dict:
    from minidl_cli.experiment import train_run
    from minidl_cli.train import Diverged, Interrupted

    status, why = "completed", {}
    try:
        train_run(run, trainer, stop=stop)
    except Diverged as e:
        status, why = "failed", {"reason": diverged_reason(e, trainer.config)}
        run.write_meta(**why)  # for whoever reads the member back (a resumed sweep)
    except Interrupted:
        status = "interrupted"
    kept = kept_row(trainer.history, trainer.config["train"]) or {}
    return {"seed": trainer.config["seed"], "epochs": trainer.epoch,
            **trainer.task.summary(kept), "wall_s": round(time.perf_counter() - started, 3),
            "status": status, "task": trainer.task.name, **why}  # task: not a column


def diverged_reason(error: Exception, config: dict[str, Any]) -> str:
    """Why a member failed when its loss diverged, and what a single run advises then."""
    lr = config["optimizer"].get("lr")
    example = f", e.g. optimizer.lr={lr / 10:g}" if isinstance(lr, (int, float)) else ""
    return f"{error}; try a smaller learning rate{example}"


def run_seeds(config: dict[str, Any], seeds: list[int], jobs: int = 1,
              on_done: Callable[[dict], None] | None = None,
              stop: StopFlag | None = None) -> tuple[Path, list[dict]]:
    """Train `config` once per seed (in `jobs` processes); write group.json and summary.csv.

    Once `stop()` is true (the CLI's flag: Ctrl-C, SIGTERM), seeds not yet started never
    start, those training are saved and marked interrupted, and the summary lists every
    seed: its final metrics when it completed, else its status and epochs.
    """
    group = create_run_dir(Path(config["runs_dir"]), f"{config['name']}-seeds")
    with locked(group):  # a --resume of it from another process is refused meanwhile
        return group, _train_group(group, config, seeds, jobs, on_done, stop)


def _train_group(group: Path, config: dict[str, Any], seeds: list[int], jobs: int,
                 on_done: Callable[[dict], None] | None, stop: StopFlag | None) -> list[dict]:
    """run_seeds' work in the new, locked directory `group`; a row per seed."""
    configs = prepare_group(group, config, seeds)
    rows: dict[int, dict] = {}

    def done(i: int, row: dict) -> None:
        rows[seeds[i]] = row
        if on_done and row["status"] != NOT_STARTED:
            on_done(row)

    try:
        run_members([(train_member, (cfg, group / member_name(cfg["seed"])))
                     for cfg in configs], jobs, done, stop)
    finally:
        finish_group(group, seeds, rows)
    return [rows[seed] for seed in seeds]


def check_seeds(configs: list[dict[str, Any]], seeds: list[int]) -> None:
    """Make each config's data set with each seed before anything trains (a text's lines
    are split by the seed: one seed may draw a character's only line into the test part);
    ConfigError naming every seed whose data cannot be made. A data section is made once
    per seed however many configs share it; a config's own seed was checked when resolved."""
    from minidl_cli.config import ConfigError
    from minidl_cli.config.resolver import make_checked_dataset

    problems: list[str] = []
    seen: set[tuple[str, int]] = set()
    for config in configs:
        for seed in seeds:
            key = (json.dumps(config["data"], sort_keys=True, default=str), seed)
            if seed == config["seed"] or key in seen:
                continue
            seen.add(key)
            try:
                make_checked_dataset({**config, "seed": seed})
            except ConfigError as e:
                problems += [f"seed {seed}: {problem}" for problem in e.problems]
    if problems:
        raise ConfigError(problems)


def member_name(seed: int) -> str:
    return f"seed-{seed:04d}"


def prepare_group(group: Path, config: dict[str, Any], seeds: list[int]) -> list[dict]:
    """group.json, config.yaml and an empty folder per seed in `group`; each seed's config."""
    from minidl_cli.config import dump_yaml

    for seed in seeds:
        (group / member_name(seed)).mkdir()
    write_json_atomic(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                     "members": [member_name(s) for s in seeds],
                                     "status": "running"})
    configs = [{**config, "seed": seed} for seed in seeds]
    atomic_write(group / "config.yaml", dump_yaml(configs[0]).encode())
    return configs


def run_members(work: list[tuple[Callable[..., dict], tuple]], jobs: int,
                done: Callable[[int, dict], None], stop: StopFlag | None) -> None:
    """Each (function, args) of `work` — train_member or resume_member and its arguments —
    in this process, or in `jobs` worker processes; done(index, row) as each ends.

    A second signal (train.Interrupted from stop_on_signals' handler, the first having set
    `stop`) ends the wait at once: the members still training were told to stop at the
    first and save themselves, those queued never start, and the caller reads every
    member's state back from its files, as after one signal.
    """
    from minidl_cli.train import Interrupted

    try:
        if jobs <= 1:
            for i, (function, args) in enumerate(work):
                done(i, function(*args, None, stop))
        else:
            _run_in_pool(work, jobs, done, stop)
    except Interrupted:
        if stop is None or not stop():  # not the second of a stop request's signals
            raise


def _run_in_pool(work: list[tuple[Callable[..., dict], tuple]], jobs: int,
                 done: Callable[[int, dict], None], stop: StopFlag | None) -> None:
    """The members in `jobs` worker processes. The workers ignore Ctrl-C and SIGHUP (the
    terminal sends them to the whole process group): this process tells them to stop
    through a shared value, and cancels the members still queued."""
    shared = multiprocessing.get_context().RawValue("i", 0)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                             initargs=(shared,)) as pool:
        index = {pool.submit(function, *args, 1): i for i, (function, args) in enumerate(work)}
        pending = set(index)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(index[future], future.result())
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


def finish_group(group: Path, seeds: list[int], rows: dict) -> str:
    """summary.csv with a row per seed and group.json's status (returned); a member that
    never started leaves no empty directory behind. A seed's wall_s adds the time the
    summary on disk recorded for it (a resumed group: what its members trained before)."""
    members = [member_name(seed) for seed in seeds]
    for seed, name in zip(seeds, members, strict=True):
        if seed not in rows:  # stopped before it reported: what its meta.json says
            rows[seed] = member_state(seed, group / name)
        if rows[seed]["status"] == NOT_STARTED and (group / name).is_dir():
            try:
                (group / name).rmdir()  # only if empty: a started member keeps its files
            except OSError:
                rows[seed] = member_state(seed, group / name)
    kept = [name for seed, name in zip(seeds, members, strict=True)
            if rows[seed]["status"] != NOT_STARTED]
    earlier = recorded_wall(group)
    for seed in seeds:  # a resume keeps the wall time its members recorded before
        if seed in earlier:
            now = rows[seed].get("wall_s")
            rows[seed] = {**rows[seed], "wall_s": earlier[seed] if now is None
                          else round(earlier[seed] + now, 3)}
    write_summary(group, [rows[seed] for seed in seeds])
    status = ("completed" if all(rows[s]["status"] in ("completed", "failed") for s in seeds)
              else "interrupted")
    write_json_atomic(group / GROUP_FILE, {"kind": "minidl-seed-group", "seeds": seeds,
                                     "members": kept, "status": status})
    return status


def recorded_wall(group: Path) -> dict[int, float]:
    """Each seed's wall_s in the group's summary.csv as it is on disk (none when there is
    no summary yet, or it cannot be read): the time its member trained before a resume."""
    try:
        with open(Path(group) / "summary.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    wall = {}
    for row in rows:
        try:
            wall[int(row["seed"])] = float(row["wall_s"])
        except (KeyError, TypeError, ValueError):  # not recorded: a seed not started
            continue
    return wall


def member_state(seed: int, member: Path) -> dict:
    """A summary row from a member's files: meta.json's status and epochs, and the final
    metrics of the model it keeps (runs.kept_metrics: its last metrics.csv row, or its
    best epoch's with train.early_stopping)."""
    from minidl_cli.tasks import by_name

    try:
        meta = json.loads((member / "meta.json").read_text())
    except (OSError, ValueError):
        return {"seed": seed, "epochs": 0, "status": NOT_STARTED}
    row = {"seed": seed, "epochs": meta.get("epochs_completed", 0),
           "status": meta.get("status", "interrupted"),
           **({"reason": meta["reason"]} if meta.get("reason") else {})}
    values = kept_metrics(member)
    try:
        task = by_name(meta["task"])
    except (KeyError, ValueError):
        return row
    if values is None:
        return row
    # a task's summary reads the row alone: no fitted state is needed
    return {**row, **task.__new__(task).summary(values), "task": meta["task"]}


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

