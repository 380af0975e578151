"""The temperature grid of the paper's Section 3.4 as one Hydra multirun; one job = one cell.

    python pipeline.py -m gen.T=0.5,0.7,1.0,1.5,2.0 gen.truncation=none,top20_p08 \\
        eval.T=0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5           # T_train x truncation x T_eval
    python pipeline.py -m ... eval.checkpoints=all                # every saved checkpoint too
    python pipeline.py -m ... hydra/launcher=slurm                # each cell a SLURM array task

Each cell's generate.py, train.py and evaluate.py stages are content-addressed and computed at
most once (under a lock), however many cells or concurrent commands need them; a killed grid
resumes when the same command runs again. conf/pipeline.yaml maps the keys to the paper.
"""

import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from ssd.config import user_errors
from ssd.pipeline.grid import job_dir, run_cell
from ssd.pipeline.stages import StageFailed


@hydra.main(version_base="1.3", config_path="conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    try:
        with user_errors(HydraException, FileNotFoundError):
            run_cell(cfg, job_dir())
    except StageFailed as error:  # the stage printed its own error; one line on what to do
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.returncode)
    except KeyboardInterrupt:  # the stages got the same Ctrl-C; their run directories keep it
        print("pipeline: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
