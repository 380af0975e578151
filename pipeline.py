"""The temperature grid of the paper's Section 3.4 as one Hydra multirun; one job = one cell.

    python pipeline.py -m gen.T=0.5,0.7,1.0,1.5,2.0 gen.truncation=none,top20_p08 \\
        eval.T=0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5           # T_train x truncation x T_eval
    python pipeline.py -m ... eval.checkpoints=all                # every saved checkpoint too
    python pipeline.py -m ... hydra/launcher=slurm                # each cell a SLURM array task

Each cell's generate.py, train.py and evaluate.py stages are content-addressed and computed at
most once (under a lock), however many cells or concurrent commands need them; a killed grid
resumes when the same command runs again. conf/pipeline.yaml maps the keys to the paper.
"""

import hydra
from omegaconf import DictConfig

from ssd.pipeline.grid import job_dir, run_cell
from ssd.pipeline.stages import run_driver


@hydra.main(version_base="1.3", config_path="conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    run_driver("pipeline", lambda: run_cell(cfg, job_dir()), cfg)


if __name__ == "__main__":
    main()
