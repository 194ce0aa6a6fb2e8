"""A training order that is a function of (seed, epoch), so a run killed mid-epoch resumes exactly.

A plain shuffled loader draws its order when the epoch's iterator starts and each sample's
augmentation from whatever generator state the process has then. A run resumed from a checkpoint
in the middle of an epoch therefore sees a new order and new augmentations for the rest of that
epoch: the same training in distribution, different bits. Here the order comes from the seed and
the epoch alone, each sample carries its own seed (drawn from the same two numbers and its index),
and the sampler can start part-way through the epoch: the resumed run sees exactly the batches the
uninterrupted one would have, whatever the number of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

__all__ = ["ResumableOrder", "ResumableSampler", "SampleKey", "generator_for"]


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: the item's position and the seed of its random draws."""

    index: int
    seed: int


def generator_for(key: int | SampleKey) -> tuple[int, torch.Generator | None]:
    """The position a key names and the generator its augmentations draw from.

    A plain integer (evaluation, tests, tools) draws from torch's global generator.
    """
    if isinstance(key, tuple):
        return int(key[0]), torch.Generator().manual_seed(int(key[1]))
    return int(key), None


class ResumableSampler(DistributedSampler):
    """This rank's share of a seeded permutation per epoch, each index paired with its own seed.

    A :class:`~torch.utils.data.distributed.DistributedSampler`, so Lightning leaves it in place under
    DDP (``num_replicas`` and ``rank`` from the trainer); with one process it is a plain shuffle.

    Args:
        dataset: the training set (only its length is used).
        seed: base seed of every epoch's order and draws.
        num_replicas, rank: processes sharing the epoch and this one's rank.
    """

    def __init__(self, dataset: Sized, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` from its beginning; the current epoch keeps its resume position
        (Lightning sets the epoch again after a mid-epoch resume has positioned the sampler)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.start = 0

    def resume(self, epoch: int, start: int) -> None:
        """Continue ``epoch`` after this rank's first ``start`` samples."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"cannot resume at sample {start} of an epoch of {self.num_samples}")
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[SampleKey]:
        indices = list(super().__iter__())
        # One seed per dataset item and epoch, independent of rank and position, from a stream
        # apart from the permutation's.
        seeds = (
            np.random.SeedSequence([self.seed, self.epoch]).generate_state(len(self.dataset), np.uint64) >> 1
        )
        for index in indices[self.start :]:
            yield SampleKey(index, int(seeds[index]))


class ResumableOrder:
    """Mixin for a LightningDataModule whose training loader takes :meth:`train_sampler`: the
    order's seed and position go into every checkpoint (Lightning saves a data module's
    ``state_dict``) and a resumed run's loader continues from there.

    Needs ``batch_size`` and ``trainer``; an optional ``set_epoch(epoch, max_epochs)`` is called
    for an epoch resumed part-way, for which Lightning calls no epoch-start hook.
    """

    batch_size: int
    _order: ResumableSampler | None = None
    _order_seed: int | None = None
    _order_resume: dict[str, int] | None = None

    def train_sampler(self, dataset: Sized) -> ResumableSampler:
        """The training sampler: this rank's share, continuing a restored position once."""
        trainer = getattr(self, "trainer", None)
        shards = {"num_replicas": 1, "rank": 0}
        if trainer is not None and trainer.distributed_sampler_kwargs:
            shards = {k: trainer.distributed_sampler_kwargs[k] for k in shards}
        if self._order_seed is None:
            # From torch's generator, which the run's seed set: every DDP rank draws the same.
            self._order_seed = int(torch.randint(0, 2**62, ()).item())
        self._order = ResumableSampler(dataset, self._order_seed, **shards)
        resume, self._order_resume = self._order_resume, None
        if resume is not None:
            self._order.resume(resume["epoch"], min(resume["start"], self._order.num_samples))
            set_epoch = getattr(self, "set_epoch", None)
            if set_epoch is not None and trainer is not None:
                set_epoch(resume["epoch"], trainer.max_epochs)
        return self._order

    def state_dict(self) -> dict[str, Any]:
        """The order's seed, and the epoch and sample a resumed run continues from."""
        trainer = getattr(self, "trainer", None)
        if self._order is None or trainer is None:
            return {}
        # The batches of this epoch the training loop has taken, not those the loader prefetched.
        taken = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        epoch, start = self._order.epoch, taken * self.batch_size
        if taken >= trainer.num_training_batches:
            epoch, start = epoch + 1, 0
        return {"order_seed": self._order_seed, "epoch": epoch, "start": start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "order_seed" in state_dict:  # checkpoints written before the order was saved have none
            self._order_seed = int(state_dict["order_seed"])
            self._order_resume = {"epoch": int(state_dict["epoch"]), "start": int(state_dict["start"])}
