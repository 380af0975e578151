"""Why SSD works: the toy, the token-distribution evidence and the T_eff fits (one command each).

    python analyze.py command=toy                       # Appendix C.4 table + Figure 14, seconds
    python analyze.py toy                               # the same (a bare command name is accepted)
    python analyze.py command=tokens ssd.path=runs/train/.../hf data.limit=8   # Figure 6 + Eq. 30
    python analyze.py command=tokens model=tiny         # smoke run: base = "SSD" = the tiny model
    python analyze.py command=teff 'teff.results=[runs/evaluate]'             # Figure 3a fits
    python analyze.py command=decontaminate data=leetcode 'decontaminate.sets=[lcb_offline_v5]'

Figures and a JSON of every number go to output_dir (default: the Hydra run dir).
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ssd.analysis.report import COMMANDS, run_analysis
from ssd.config import user_errors
from ssd.data.prompts import DataError
from ssd.evaluation import eval_set_problems
from ssd.models import ModelNotFoundError


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    with user_errors(DataError, ModelNotFoundError, FileNotFoundError):
        out = cfg.output_dir or HydraConfig.get().runtime.output_dir
        run_analysis(cfg, Path(out), eval_set_problems)  # the loader for command=decontaminate


if __name__ == "__main__":
    # `python analyze.py toy` is not Hydra syntax (overrides are key=value); a bare command name
    # in first position can only mean `command=<name>`, so rewrite it before Hydra parses argv.
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        sys.argv[1] = f"command={sys.argv[1]}"
    main()
