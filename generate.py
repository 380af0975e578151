"""Sample the SSD training set from a frozen base model (paper Eq. 1), then filter it.

    python generate.py                                   # the embedded default (SmolLM2-135M)
    python generate.py decoding.T=1.6 truncation.top_k=20 truncation.top_p=0.8
    python generate.py experiment=qwen3-4b-instruct-2507 engine.tensor_parallel_size=8
    python generate.py -m shard.index=0,1,2,3 shard.count=4   # data-parallel shards
"""

import hydra
from omegaconf import DictConfig

from ssd.config import user_errors
from ssd.data.prompts import DataError
from ssd.evaluation import eval_set_problems
from ssd.generation.run import run_generation
from ssd.models import ModelNotFoundError


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    with user_errors(DataError, ModelNotFoundError, FileNotFoundError):
        # data.decontaminate's sets are loaded as evaluate.py loads them; the generation stage
        # gets the loader from here, since it may not import the evaluation stage.
        run_generation(cfg, eval_set_problems)


if __name__ == "__main__":
    main()
