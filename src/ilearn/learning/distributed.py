"""Training on several processes through Hugging Face Accelerate: the same recipe, data-parallel (DDP or DeepSpeed).

The recipes train with TRL's trainers, which run on Accelerate: started by `accelerate launch`, the same code
trains data-parallel (each process a share of every batch, gradients averaged). `train_distributed` is that
launch for one training run of the learner:

    result = train_distributed(vlm, rows, LearnConfig(recipe="sft", batch_size=4), "versions/v3", processes=2)

It writes the job (the model's settings, the rows, the learning settings) into `out_dir/job`, starts
`accelerate launch --num_processes N -m ilearn.learning.distributed JOB` and reads back rank 0's `TrainResult`;
the trained parts are saved once, by rank 0, exactly as a single-process run saves them. Each process loads the
base model from the model's settings (the recipes always train from the base weights), so nothing but the
settings and the rows crosses processes.

`batch_size` is per process: N processes with `batch_size` b take the same optimiser steps as one process with
`batch_size` N * b over the same examples (Accelerate's batch sharding gives process i batches i, i + N, ... of
one shuffled order). Data-parallel runs use `find_unused_parameters`: a process whose share of a batch has no
image does not run the vision encoder, and without it DDP stops the run (it expects every parameter's gradient).

On CPU the processes talk through gloo on the loopback interface; on GPUs through NCCL, one process per GPU.
An Accelerate config file (`accelerate config`; e.g. DeepSpeed ZeRO, docs/fleet.md) is passed as is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ilearn.config import LearnConfig
from ilearn.errors import ILearnError, InvalidInput
from ilearn.learning.base import TrainResult

if TYPE_CHECKING:
    from ilearn.models.base import TrainableModel

logger = logging.getLogger(__name__)

JOB_NAME = "job"
RESULT_NAME = "result.json"


class TrainingFailed(ILearnError):
    """A process of a multi-process training run failed (its output is in the message)."""


def free_port() -> int:
    """A TCP port free on the loopback interface now (for the processes' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(job: Path, processes: int, *, cpu: bool, accelerate_config: str | Path | None = None,
                   port: int | None = None) -> list[str]:
    """The `accelerate launch` command line that trains `job` on `processes` processes."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--num_machines", "1", "--main_process_port", str(port or free_port()), "--monitor_interval", "1"]
    if accelerate_config is not None:
        command += ["--config_file", str(accelerate_config)]
    else:  # torchrun's launcher (accelerate's --cpu starts one process, or MPI); the trainer's use_cpu picks gloo
        command += ["--mixed_precision", "no", "--dynamo_backend", "no", *(["--multi_gpu"] if processes > 1 else [])]
    return [*command, "-m", "ilearn.learning.distributed", str(job)]


def train_distributed(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path, *,
                      processes: int, accelerate_config: str | Path | None = None,
                      timeout_s: float | None = None) -> TrainResult:
    """Train `settings.recipe` on `rows` with `processes` data-parallel processes (module docstring); the trained
    parts land in `out_dir` as with `ilearn.learning.recipes.train`. TrainingFailed names what went wrong."""
    if not isinstance(processes, int) or processes < 1:
        raise InvalidInput(f"processes must be a whole number >= 1, not {processes!r}")
    if not rows:
        raise InvalidInput("no training examples: collect more events first")
    out_dir = Path(out_dir)
    job = out_dir / JOB_NAME
    job.mkdir(parents=True, exist_ok=True)
    torch.save({"model": vlm.config, "rows": list(rows), "settings": settings, "out_dir": str(out_dir)},
               job / "job.pt")
    cpu = torch.device(vlm.config.device).type != "cuda"
    env = dict(os.environ)
    if cpu:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: gloo's hostname-based choice can fail
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run on a machine with GPUs: torch.distributed would use them
    env.setdefault("OMP_NUM_THREADS", str(vlm.config.threads))
    command = launch_command(job, processes, cpu=cpu, accelerate_config=accelerate_config)
    logger.info("training %s on %d processes: %s", settings.recipe, processes, " ".join(command))
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TrainingFailed(f"training on {processes} processes ran past {timeout_s} s") from exc
    result_file = job / RESULT_NAME
    if done.returncode != 0 or not result_file.is_file():
        raise TrainingFailed(f"training on {processes} processes failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:] or done.stdout[-4000:]}")
    data = json.loads(result_file.read_text())
    data.pop("tokens_per_s", None)
    shutil.rmtree(job, ignore_errors=True)  # the rows (images included) leave no copy behind
    return TrainResult(**data)


def run_job(job: Path) -> None:
    """One process of `train_distributed`: load the base model, train (Accelerate sees the launch's processes),
    rank 0 writes the result, every rank leaves the process group."""
    from accelerate import PartialState

    from ilearn import plugins
    from ilearn.models import load_model

    spec = torch.load(job / "job.pt", weights_only=False)  # written by train_distributed, in a private folder
    vlm = load_model(spec["model"])
    recipe = plugins.resolve("recipe", spec["settings"].recipe)  # one process each: the recipe itself
    result = recipe(vlm, spec["rows"], spec["settings"], spec["out_dir"])
    state = PartialState()  # only now: the trainer's Accelerator sets it up first (gloo on CPU, `use_cpu`)
    if state.num_processes != int(os.environ.get("WORLD_SIZE", 1)):
        raise TrainingFailed(f"{state.num_processes} process(es) trained, not the {os.environ['WORLD_SIZE']} launched")
    if state.is_main_process:
        (job / RESULT_NAME).write_text(json.dumps(result.to_dict()))
    state.wait_for_everyone()
    # Explicitly, and only after a run that went well (a failed rank's peers would wait in it): left to the
    # interpreter's exit, gloo's worker threads are torn down during finalisation and a rank now and then dies
    # with SIGABRT ("terminate called without an active exception") after its result was written.
    state.destroy_process_group()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("ILEARN_LOG_LEVEL", "WARNING"))
    run_job(Path(sys.argv[1]))
