"""Runs the protocol's jobs at once on disjoint CPU slots, each as soon as it is ready."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


class RunJob:
    """What `run_jobs` runs: one or more commands in sequence on one slot."""

    waits_for: RunJob | None = None
    ended = False

    def ready(self) -> bool:
        """Whether the job may start (what it waits for has ended)."""
        return self.waits_for is None or self.waits_for.ended

    def next_command(self) -> tuple[list[str], Path] | None:
        """The first command and its log, or None to end the job without running anything."""
        raise NotImplementedError

    def command_ended(self, code: int) -> tuple[list[str], Path] | None:
        """Takes a command's exit code; returns the next command, or None when the job ends."""
        raise NotImplementedError


def cpu_slots(jobs: int) -> list[list[int]]:
    """The usable CPUs split into ``jobs`` disjoint groups, one per concurrent run."""
    cpus = sorted(os.sched_getaffinity(0))
    jobs = max(1, min(jobs, len(cpus)))
    return [cpus[index::jobs] for index in range(jobs)]


def launch(command: list[str], log: Path, slot: list[int]) -> subprocess.Popen:
    """Starts a command pinned to ``slot``'s CPUs with as many torch threads."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    handle.write(" ".join(command) + "\n\n")
    handle.flush()
    env = os.environ | {
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "OMP_NUM_THREADS": str(len(slot)),
    }

    def pin() -> None:
        os.sched_setaffinity(0, slot)

    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=pin
    )
    handle.close()
    return process


def run_jobs(jobs: list[RunJob], slots: list[list[int]]) -> None:
    """Runs jobs (each a sequence of commands) on the CPU slots, in order as they are ready.

    A job is ready when the jobs it waits for have ended; ``job.start`` may decline to run
    (a failed dependency, the budget) and ``job.next_command`` gives its next command.
    """
    pending = list(jobs)
    running: dict[int, tuple[RunJob, subprocess.Popen]] = {}
    free = list(range(len(slots)))
    while pending or running:
        for slot in list(free):
            ready = next((job for job in pending if job.ready()), None)
            if ready is None:
                break
            pending.remove(ready)
            step = ready.next_command()
            if step is None:
                continue
            free.remove(slot)
            running[slot] = (ready, launch(*step, slots[slot]))
        finished = [slot for slot, (_, process) in running.items() if process.poll() is not None]
        if not finished:
            time.sleep(0.05)
            continue
        for slot in finished:
            job, process = running.pop(slot)
            step = job.command_ended(process.returncode)
            if step is not None:  # the job's next command (evaluation) keeps the slot
                running[slot] = (job, launch(*step, slots[slot]))
            else:
                free.append(slot)
                free.sort()
