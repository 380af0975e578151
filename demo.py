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

import hydra
from omegaconf import DictConfig

from ssd.pipeline.demo import run_demo
from ssd.pipeline.stages import run_driver


@hydra.main(version_base="1.3", config_path="conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    run_driver("demo", lambda: run_demo(cfg), cfg)


if __name__ == "__main__":
    main()
