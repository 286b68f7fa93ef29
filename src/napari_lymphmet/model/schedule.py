"""A training run's length and learning rate, fitted to a time limit as its epochs are timed."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Plan"]


@dataclass
class Plan:
    """One phase's length and its cosine learning rate, refitted to a deadline once an epoch is timed.

    Keras's ``CosineDecay`` fixes its length when the model is compiled;
    this plan can shorten after the first epoch shows what an epoch costs
    on this machine, so the rate still comes down to its floor at the
    (earlier) end. Hosts sold as "2 cores" differ 2.5-fold in speed: a
    fixed epoch count cannot promise a time, a measured one can.
    """

    epochs: int
    steps_per_epoch: int
    learning_rate: float
    deadline: float | None = None  # time.monotonic() by which the phase ends; None: no limit
    alpha: float = 0.05  # the floor, as a share of the starting rate
    most: int | None = None  # the epochs the first refit may grow the plan to; None: it only shrinks
    step: int = 0

    def rate(self) -> float:
        """The learning rate for the next step: a cosine from the starting rate to ``alpha`` of it."""
        progress = min(1.0, self.step / max(1, self.epochs * self.steps_per_epoch))
        return self.learning_rate * (self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * progress)))

    def refit(self, epoch_seconds: float, now: float, *, done: int = 1) -> bool:
        """After ``done`` epochs of ``epoch_seconds`` each (on average): keep the epochs the deadline has room
        for, never fewer than are done. It is called after every epoch, since a shared host can slow down.

        After the first epoch a plan with ``most`` also grows, up to ``most``
        epochs, where the host is fast enough: the rate has barely moved
        from its start by then, so the longer cosine is the one it would
        have followed from the start. Later refits only shrink it.

        Returns whether the plan changed.
        """
        if self.deadline is None or epoch_seconds <= 0:
            return False
        fits = done + max(0, int((self.deadline - now) // epoch_seconds))
        before = self.epochs
        self.epochs = min(self.most, fits) if self.most is not None and done == 1 else min(self.epochs, fits)
        self.epochs = max(self.epochs, done)
        return self.epochs != before
