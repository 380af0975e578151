"""The main job end to end: generate -> filter -> train -> HF export -> evaluate the base and the
SSD model on the same problems -> report.md, each stage its own script run as a subprocess.

    python demo.py                        # SmolLM2-135M-Instruct on the CPU (what `make demo` runs)
    python demo.py demo.scale=2           # twice the prompts, training steps and problems
    python demo.py model=tiny demo.generate.max_tokens=32 demo.train.steps=4
    python demo.py 'demo.extra.train=["optimizer.lr=2e-5"]'  # any stage override, passed through

Finished stages are reused and a killed demo resumes: run the same command again.

A thin Hydra main like the three stages, so the demo takes the same override syntax, prints its
config with --cfg job, and composes each stage's config through the same Hydra instance.
"""

import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from ssd.config import user_errors
from ssd.pipeline.demo import run_demo
from ssd.pipeline.stages import StageFailed


@hydra.main(version_base="1.3", config_path="conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    try:
        with user_errors(HydraException, FileNotFoundError):
            run_demo(cfg)
    except StageFailed as error:  # the stage printed its own error; one line on what to do
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.returncode)
    except KeyboardInterrupt:  # the stages got the same Ctrl-C; their run directories keep it
        print("demo: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
