"""The paper's artefacts as declared studies (conf/study), run by one runner.

    python study.py study=main experiment=qwen3-4b-instruct-2507     # Table 2 row, Figures 1-2
    python study.py study=stress experiment=qwen3-30b-a3b-instruct-2507    # Section 4.4 / C.5
    python study.py study=transfer experiment=qwen3-4b-instruct-2507 # Table 5 row
    python study.py study=paper                   # every result in the paper's layouts
    python study.py study=main dry_run=true                          # the plan only

Finished stages are reused (whoever computed them) and a killed study resumes: run the same
command again.
"""

import hydra
from omegaconf import DictConfig

from ssd.pipeline.stages import run_driver
from ssd.studies.runner import run_study


@hydra.main(version_base="1.3", config_path="conf", config_name="study")
def main(cfg: DictConfig) -> None:
    run_driver("study", lambda: run_study(cfg), cfg)


if __name__ == "__main__":
    main()
