"""Fine-tune the model on its own raw samples (paper Eq. 2) with FSDP2 under Lightning.

    python train.py data.samples=runs/generate/.../train.jsonl
    python train.py model=tiny data.samples=train.jsonl trainer.max_steps=20
    python train.py trainer.devices=8 experiment=qwen3-4b-instruct-2507 data.samples=...
    python train.py -m data.samples=a.jsonl,b.jsonl           # two independent runs
"""

import hydra
from omegaconf import DictConfig

from ssd.config import user_errors
from ssd.models import ModelNotFoundError
from ssd.training.data import SamplesError
from ssd.training.run import TrainingFailed, run_training


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors(SamplesError, ModelNotFoundError, TrainingFailed):
        run_training(cfg)


if __name__ == "__main__":
    main()
