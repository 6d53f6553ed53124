"""The loss scaling every trainer's `compute_loss` shares, apart from the training code so that the trainers
(`ilearn.learning.recipes`, `ilearn.learning.distill`) and the multi-process launcher
(`ilearn.learning.distributed`) can all use it without importing each other."""

from __future__ import annotations

import torch


def sum_over_processes(loss: torch.Tensor, trainer, num_items_in_batch) -> torch.Tensor:
    """A loss divided by the whole step's token count (`num_items_in_batch`, summed over the processes by the
    trainer), made ready for DDP's gradient mean: times the number of processes, as `transformers.Trainer.
    compute_loss` does, so that N processes take the steps one process takes. Every `compute_loss` override
    calls it (one process: unchanged)."""
    if num_items_in_batch is not None and trainer.args.average_tokens_across_devices:
        return loss * trainer.accelerator.num_processes
    return loss


__all__ = ["sum_over_processes"]
