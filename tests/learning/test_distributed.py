"""Training on two CPU processes (gloo, through Accelerate) against one process on the same rows.

One process with batch size 2 and two processes with batch size 1 each take the same optimiser steps over the
same examples (`ilearn.learning.distributed`), so the trained weights must agree up to float32 rounding: the
gradients are summed in another order (measured 1.4e-5 of the update's size after 4 steps). The tolerance, 1e-3
of the update, is 70 times that and far below what a real difference gives: without the loss scaling for several
processes the gap was 9.8%, and a different batch composition makes it tens of percent.

The rows are one picture and seven text-only questions: in the step that has the picture, one process runs the
vision encoder and the other does not; without `find_unused_parameters` DDP stops that run ("Expected to have
finished reduction in the prior iteration", measured) and a run that hangs instead fails at its timeout.
"""

from __future__ import annotations

import copy

import pytest
import torch
from learning_data import QUESTION, assistant, shape, user

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.learning.distributed import JOB_NAME, TrainingFailed, launch_command, train_distributed
from ilearn.learning.parts import apply_trained, locate_parts, part_of
from ilearn.learning.recipes import train

SETTINGS = dict(recipe="sft", max_steps=4, learning_rate=1e-2)


def rows() -> list[dict]:
    text = [{"messages": [{"role": "user", "content": [{"type": "text", "text": f"say {w}"}]}] + assistant(w), "images": []}
            for w in ("yes", "no", "maybe", "ok", "fine", "good", "bad")]
    return [*text[:3], {"messages": user(QUESTION) + assistant("red"), "images": [shape("red")]}, *text[3:]]


def trained(vlm, path) -> dict[str, torch.Tensor]:
    model = apply_trained(copy.deepcopy(vlm.model), path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.state_dict()


def test_two_processes_train_as_one_on_batches_mixing_text_and_pictures(tiny_vlm, tmp_path) -> None:
    one = train(tiny_vlm, rows(), LearnConfig(batch_size=2, **SETTINGS), tmp_path / "one")
    two = train_distributed(tiny_vlm, rows(), LearnConfig(batch_size=1, **SETTINGS), tmp_path / "two",
                            processes=2, timeout_s=600)
    assert two.steps == one.steps == 4 and two.examples == one.examples == 8
    assert two.train_loss == pytest.approx(one.train_loss, rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not (tmp_path / "two" / JOB_NAME).exists()  # the rows leave no copy behind

    base = tiny_vlm.model.state_dict()
    a, b = trained(tiny_vlm, tmp_path / "one"), trained(tiny_vlm, tmp_path / "two")
    update = sum(float(((a[k] - base[k]).float() ** 2).sum()) for k in base) ** 0.5
    gap = sum(float(((a[k] - b[k]).float() ** 2).sum()) for k in base) ** 0.5
    assert update > 0 and gap / update < 1e-3, (gap, update)
    located = locate_parts(tiny_vlm.model)
    changed = {part_of(k, located) for k in base if not torch.equal(b[k], base[k])}
    assert changed == {"projector", "language"}  # the picture's step trained the projector; vision stayed frozen


def test_a_failing_run_says_why(tiny_vlm, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="processes"):
        train_distributed(tiny_vlm, rows(), LearnConfig(**SETTINGS), tmp_path, processes=0)
    with pytest.raises(InvalidInput, match="learn.processes"):
        LearnConfig(processes=0)
    with pytest.raises(TrainingFailed, match="kto needs both"):  # `learn` reaches the processes through `train`
        train(tiny_vlm, [{"prompt": user(QUESTION), "completion": assistant("red"), "label": True,
                          "images": [shape("red")]}], LearnConfig(recipe="kto", max_steps=1, processes=2),
              tmp_path / "kto")


def test_the_launch_command(tmp_path) -> None:
    command = launch_command(tmp_path / "job", 4, cpu=True, port=29999)
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and command[-3:] == [
        "-m", "ilearn.learning.distributed", str(tmp_path / "job")]
    assert "--num_processes" in command and command[command.index("--num_processes") + 1] == "4"
    assert command[command.index("--main_process_port") + 1] == "29999" and "--multi_gpu" in command
    assert "--multi_gpu" not in launch_command(tmp_path / "job", 1, cpu=False)  # one process: no rendezvous
    zero = launch_command(tmp_path / "job", 8, cpu=False, accelerate_config=tmp_path / "zero3.yaml")
    assert zero[zero.index("--config_file") + 1] == str(tmp_path / "zero3.yaml") and "--multi_gpu" not in zero


@pytest.mark.gpu
def test_every_gpu_trains_one_process_of_the_run(tmp_path) -> None:
    from ilearn.config import ModelConfig
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend="tiny", device="cuda"))
    n = torch.cuda.device_count()
    result = train_distributed(vlm, rows(), LearnConfig(batch_size=1, **SETTINGS), tmp_path / "gpu", processes=n,
                               timeout_s=600)
    assert result.steps == 4 and (tmp_path / "gpu" / "weights.safetensors").is_file()  # max_steps: global steps
