"""The train stage: plain SFT on the sampled token ids, in a Lightning module (FSDP2 when sharded).

Public entry (what drivers use): ``run_training``, ``validate``, ``validate_settings``,
``training_plan``.
"""

from ssd.training.run import run_training, training_plan, validate, validate_settings

__all__ = ["run_training", "training_plan", "validate", "validate_settings"]
