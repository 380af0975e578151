"""pass@k of a model on a code benchmark: n seeded samples per problem, checked in the sandbox.

    python evaluate.py model.path=runs/train/.../hf/final        # an SSD model (Table 3 decoding)
    python evaluate.py decoding=baseline truncation=baseline      # the base model (Table 4)
    python evaluate.py eval=lcb_v6 experiment=qwen3-4b-instruct-2507
    python evaluate.py model=tiny eval=lcb_sample eval.limit=8 eval.n=4
    python evaluate.py -m decoding.T=0.6,0.7,0.8,0.9,1.0          # one engine; table + plot
    python evaluate.py eval.completions=completions.jsonl        # score given completions, no model
"""

import hydra
from omegaconf import DictConfig

from ssd.config import user_errors
from ssd.evaluation.run import run_evaluation
from ssd.models import ModelNotFoundError


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors(ModelNotFoundError, FileNotFoundError):
        run_evaluation(cfg)


if __name__ == "__main__":
    main()
