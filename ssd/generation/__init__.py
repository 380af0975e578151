"""The generate stage: unverified samples from the frozen base model, then the filter step.

Public entry (what drivers use): ``run_generation``, ``validate``, ``sampling_plan``,
``filter_plan``, ``train_set_path``.
"""

from ssd.generation.run import (
    filter_plan,
    run_generation,
    sampling_plan,
    train_set_path,
    validate,
)

__all__ = ["filter_plan", "run_generation", "sampling_plan", "train_set_path", "validate"]
