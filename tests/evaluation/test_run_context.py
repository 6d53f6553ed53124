"""RunContext.every_core: torch threads for both runs' cores only while the experiment's process works alone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ilearn.config import Config
from ilearn.evaluation.runner_common import RunContext


def context(parallel: bool, threads: int = 1) -> RunContext:
    return RunContext(scenario="pharmacy", seed=0, vlm=None, config=Config(), home=None, cache=None, sizes=None,
                      teach_personas=[], test_personas=[], methods=[], threads=threads, parallel=parallel)


@pytest.mark.parametrize(("parallel", "training", "inside"), [(True, False, 2), (True, True, 1), (False, False, 1)])
def test_both_cores_only_while_nothing_trains_beside(parallel, training, inside):
    torch.set_num_threads(1)
    dep = SimpleNamespace(background={"sft-full": object()} if training else {})
    with context(parallel).every_core(dep) as threads:
        assert threads == inside == torch.get_num_threads()
    assert torch.get_num_threads() == 1


def test_threads_come_back_after_an_error():
    torch.set_num_threads(1)
    with pytest.raises(RuntimeError), context(True).every_core(SimpleNamespace(background={})):
        assert torch.get_num_threads() == 2
        raise RuntimeError("a dialogue failed")
    assert torch.get_num_threads() == 1
