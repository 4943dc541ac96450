"""nn_pruning's cubic threshold schedule and the regularization lambda that follows it.

Steps are optimizer steps. With ``W = warmup_steps`` and ``T = total_steps``:

* ``step <= initial_warmup * W``: threshold is ``initial_threshold`` (progress 0);
* ``step > T - final_warmup * W``: threshold is ``final_threshold`` (progress 1);
* otherwise, with
  ``m = 1 - (step - initial_warmup * W) / (T - (initial_warmup + final_warmup) * W)``,
  threshold is ``final + (initial - final) * m**3`` and progress is ``1 - m``.

The regularization lambda is ``regularization_final_lambda * threshold / final_threshold``
(nn_pruning's formula): with the usual ``sigmoied_threshold`` recipe (0 -> 0.1) it ramps from 0
to the final lambda along the cubic curve.

Worked example (``initial=1.0, final=0.1, W=10, initial_warmup=1, final_warmup=2, T=110``):
step 10 -> 1.0; step 50 -> ``m = 0.5`` -> ``0.1 + 0.9 * 0.125 = 0.2125``; step 90 -> 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SchedulePoint", "ThresholdSchedule", "eval_threshold"]


@dataclass(frozen=True)
class SchedulePoint:
    """Scheduled values at one step.

    Attributes
    ----------
    threshold : float
        Threshold handed to the binarizers.
    regularization_lambda : float
        Multiplier of the regularization loss.
    progress : float
        0 during the initial warmup, 1 from the final warmup on, ``1 - m`` in between.
    """

    threshold: float
    regularization_lambda: float
    progress: float


@dataclass(frozen=True)
class ThresholdSchedule:
    """The cubic threshold schedule of nn_pruning's patch coordinator.

    Parameters
    ----------
    initial_threshold, final_threshold : float
        Threshold before and after the cubic ramp.
    initial_warmup, final_warmup : float
        Lengths of the flat start and flat end, in units of ``warmup_steps``.
    warmup_steps : int
        The trainer's learning-rate warmup steps (nn_pruning reuses them as the unit).
    total_steps : int
        Total optimizer steps.
    regularization_final_lambda : float
        Lambda reached when the threshold reaches ``final_threshold``.

    Raises
    ------
    ValueError
        On negative lengths or when the two warmups do not fit in ``total_steps``.
    """

    initial_threshold: float
    final_threshold: float
    initial_warmup: float
    final_warmup: float
    warmup_steps: int
    total_steps: int
    regularization_final_lambda: float = 0.0

    def __post_init__(self):
        for name in ("initial_warmup", "final_warmup", "warmup_steps", "total_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, not {getattr(self, name)!r}")
        flat_steps = (self.initial_warmup + self.final_warmup) * self.warmup_steps
        if flat_steps > self.total_steps:
            raise ValueError(
                f"initial_warmup + final_warmup ({flat_steps:g} steps) exceed total_steps "
                f"{self.total_steps}")

    def _ramp_factor(self, step: float) -> float:
        """nn_pruning's ``mul_coeff``: 1 before the ramp, 0 after it."""
        ramp_start = self.initial_warmup * self.warmup_steps
        if step <= ramp_start:
            return 1.0
        if step > self.total_steps - self.final_warmup * self.warmup_steps:
            return 0.0
        flat_steps = (self.initial_warmup + self.final_warmup) * self.warmup_steps
        ramp_steps = self.total_steps - flat_steps
        return 1.0 - (step - ramp_start) / ramp_steps

    def progress(self, step: float) -> float:
        """Fraction of the ramp done at ``step`` (``1 - mul_coeff``)."""
        return 1.0 - self._ramp_factor(step)

    def threshold(self, step: float) -> float:
        """Threshold at ``step``."""
        factor = self._ramp_factor(step)
        if factor == 0.0:
            return self.final_threshold
        if factor == 1.0:
            return self.initial_threshold
        return (self.final_threshold
                + (self.initial_threshold - self.final_threshold) * factor ** 3)

    def regularization_lambda(self, step: float) -> float:
        """``regularization_final_lambda * threshold(step) / final_threshold``.

        Raises
        ------
        ValueError
            If ``final_threshold`` is 0 while a lambda is requested (the ratio is undefined).
        """
        if self.regularization_final_lambda == 0:
            return 0.0
        if self.final_threshold == 0:
            raise ValueError("final_threshold must be non-zero to scale regularization lambda")
        return self.regularization_final_lambda * self.threshold(step) / self.final_threshold

    def at(
        self, step: int, *, training: bool = True, eval_with_current_patch_params: bool = False,
    ) -> SchedulePoint:
        """Scheduled values for a training step, or for an evaluation run after ``step`` steps.

        Evaluation follows nn_pruning: it looks at ``step - 1`` (the last step trained) and,
        unless ``eval_with_current_patch_params``, uses the final values (``final_threshold``,
        progress 1) whatever the step, so eval reports the sparsity the run is heading for.
        """
        if not training:
            step -= 1
            if not eval_with_current_patch_params:
                step = self.total_steps + 1
        return SchedulePoint(
            threshold=self.threshold(step),
            regularization_lambda=self.regularization_lambda(step),
            progress=self.progress(step),
        )


def eval_threshold(
    schedule: ThresholdSchedule, step: int, *, eval_with_current_patch_params: bool,
) -> float:
    """Threshold an evaluation after ``step`` training steps uses (current or final)."""
    return schedule.at(step, training=False,
                       eval_with_current_patch_params=eval_with_current_patch_params).threshold

