"""The SSD lab: a world with a known answer through the real generate -> train -> evaluate.

    python lab.py                       # the paper's lock/fork toy (Appendix C.4)
    python lab.py lab=c4_context        # lock and fork positions depend on the prompt
    python lab.py ablate=true           # plus the ablations of lab.ablations
    python lab.py lora.ranks=[2,8]      # plus SSD through LoRA adapters of rank 2 and 8

Finished stages are reused and a killed lab resumes: run the same command again.
"""

import hydra
from omegaconf import DictConfig

from ssd.pipeline.lab import run_lab
from ssd.pipeline.stages import run_driver


@hydra.main(version_base="1.3", config_path="conf", config_name="lab")
def main(cfg: DictConfig) -> None:
    run_driver("lab", lambda: run_lab(cfg), cfg)


if __name__ == "__main__":
    main()
