"""Cluster launch and per-stage W&B runs.

- The SLURM preset, rendered by the real submitit into the sbatch script it would submit (a fake
  ``sbatch`` on PATH records it), and the multi-node rendezvous each train.py job derives from
  its SLURM task environment.
- The local preset: a real ``-m`` sweep whose points run as separate submitit subprocess jobs.
- generate.py's W&B run: one offline run per job inside the run directory, holding the metrics,
  the resolved config and the filter table; ``logger=none`` turns it off.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, compose

GENERATE_SMALL = ["model=tiny", "decoding.max_tokens=8", "engine.enforce_eager=true",
                  "progress=false"]


def compose_with_hydra(config_name: str, overrides: list[str]):
    """As conftest's compose, with the ``hydra`` node (the launcher's settings) kept."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import ssd.config  # noqa: F401  (registers the ${ssd.root:} resolver)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides,
                             return_hydra_config=True)


# -- reading an offline W&B run -------------------------------------------------------------------
def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` transaction log.

    W&B 0.31 no longer ships a Python reader for it. The file is a 7-byte header (":W&B", magic,
    version) followed by 32 KiB blocks of chunks, each with a 7-byte header (CRC32, little-endian
    uint16 length, type: 1 full, 2 first, 3 middle, 4 last); a block tail shorter than a chunk
    header is padding.
    """
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"not a W&B transaction log: {path}"
    block, pos, parts, records = 32768, 7, [], []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0:
            break
        parts.append(raw[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def offline_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one offline W&B run under ``run_dir/wandb``: (final summary, attached config)."""
    logs = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, f"expected one offline W&B run in {run_dir}: {logs}"
    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in record.summary.update})
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    return summary, config


# -- SLURM ----------------------------------------------------------------------------------------
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """An environment whose sbatch records the script it is given and refuses it (so nothing
    waits on a queue), with the srun submitit looks for and the scontrol rendezvous uses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": '#!/bin/sh\ncp "$1" "$FAKE_SBATCH_RECORD"\necho "sbatch: fake" >&2\nexit 1\n',
        "srun": "#!/bin/sh\nexit 0\n",
        # `scontrol show hostnames node[07-10]`
        "scontrol": "#!/bin/sh\nprintf 'node07\\nnode08\\nnode09\\nnode10\\n'\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_SBATCH_RECORD": str(tmp_path / "sbatch.sh")}


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))


def test_slurm_sweep_is_one_job_array_of_multi_node_jobs(tmp_path):
    """`train.py -m hydra/launcher=slurm trainer.num_nodes=4` over two sample files: one array of
    two elements, each 4 nodes x 1 task (train.py, which starts torchrun) x 8 GPUs."""
    env = {**os.environ, **fake_slurm(tmp_path), "SBATCH_PARTITION": "gpu-h100"}
    env.pop("SBATCH_ACCOUNT", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm",
         "trainer.num_nodes=4", "data.samples=a.jsonl,b.jsonl",
         f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "sbatch: fake" in result.stderr, result.stderr  # it got as far as submitting
    script = (tmp_path / "sbatch.sh").read_text()
    options = sbatch_options(script)
    assert options["array"].startswith("0-1")  # the two sweep points
    assert options["nodes"] == "4"  # follows trainer.num_nodes
    assert options["ntasks-per-node"] == "1"
    assert options["gpus-per-node"] == "8"
    assert options["partition"] == "gpu-h100"  # from SBATCH_PARTITION
    assert "account" not in options and "qos" not in options  # left to the cluster's defaults
    assert options["time"] == "1440" and options["cpus-per-task"] == "64"
    assert options["job-name"] == "train"
    # Every task runs the pickled Hydra job with this interpreter (the project's environment).
    assert re.search(rf"^srun .*{re.escape(sys.executable)} -u -m submitit\.core\._submit ",
                     script, flags=re.M)


def test_slurm_nodes_default_to_one_outside_training():
    for config, extra in (("generate", []), ("evaluate", []), ("train", ["data.samples=x"])):
        cfg = compose_with_hydra(config, ["hydra/launcher=slurm", *extra])
        assert cfg.hydra.launcher.nodes == 1, config
        assert cfg.hydra.launcher.tasks_per_node == 1
    cfg = compose_with_hydra("train", ["hydra/launcher=slurm", "trainer.num_nodes=3",
                                       "data.samples=x", "hydra.launcher.gpus_per_node=4"])
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.gpus_per_node) == (3, 4)


def test_each_node_job_joins_the_rendezvous_of_the_first_node(tmp_path, monkeypatch):
    """What train.py on node 2 of a 4-node SLURM allocation passes to torchrun."""
    from ssd.training.run import rendezvous

    for name, value in fake_slurm(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NODEID", "2")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[07-10]")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    args = rendezvous(4, "abc123")
    assert "--nnodes=4" in args and "--node-rank=2" in args
    # the port is derived from the job id, so two jobs sharing a first node do not collide
    assert "--rdzv-endpoint=node07:29742" in args and "--rdzv-id=abc123" in args
    assert rendezvous(1, "abc123") == ["--standalone"]


# -- local submitit jobs --------------------------------------------------------------------------
@pytest.mark.slow
def test_local_launcher_runs_each_sweep_point_as_its_own_job(tmp_path, tiny_model):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, str(REPO / "generate.py"), "-m", "hydra/launcher=local",
         *GENERATE_SMALL, "data.limit=2", "decoding.T=0.8,1.2", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    # Two submitit jobs (separate processes), each finished with a result.
    results = sorted(sweep.glob(".submitit/*/*_result.pkl"))
    assert len({path.parent.name for path in results}) == 2, results
    for path in results:
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success", job_return
    # Each job ran the whole stage into its own run directory.
    runs = sorted((tmp_path / "runs" / "generate" / "tiny" / "codeforces_sample").iterdir())
    assert [run.name.split("_")[0] for run in runs] == ["T0.8", "T1.2"]
    for run in runs:
        record = json.loads((run / "run.json").read_text())
        assert record["status"] == "complete" and record["samples"] == 2
        [filtered] = run.glob("filter-*")
        assert (filtered / "train.jsonl").exists()
        assert json.loads((filtered / "filter.json").read_text())["samples"] == 2
        summary, _ = offline_run(run)  # and its own W&B run
        assert summary["generate/samples"] == 2
    # Hydra's per-job folders of the sweep, as with the basic launcher.
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]


# -- W&B in generate.py ---------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_logs_one_offline_wandb_run_into_its_run_dir(tmp_path, tiny_model):
    from ssd.generation.run import run_generation

    out = run_generation(compose("generate", [*GENERATE_SMALL, "data.limit=4", "decoding.T=1.2",
                                              f"output_dir={tmp_path}/a"]))
    summary, config = offline_run(out)
    [filtered] = out.glob("filter-*")
    report = json.loads((filtered / "filter.json").read_text())
    assert summary["generate/samples"] == report["samples"] == 4
    assert summary["generate/kept"] == report["kept"]
    dropped = {key.removeprefix("generate/dropped/"): value for key, value in summary.items()
               if key.startswith("generate/dropped/")}
    assert dropped == {"prompt_too_long": 0, "cut_at_max_tokens": 0, "empty": 0,
                       "single_line_stub": 0, "shortest_fraction": 0, **report["dropped"]}
    assert summary["generate/kept_open"] == report["cut_samples"]["kept_open"]
    assert summary["generate/generated"] == 4 and summary["generate/completion_tokens"] > 0
    assert summary["generate/samples_per_s"] > 0 and summary["generate/tokens_per_s"] > 0
    # The filter counts as a table, the resolved config attached.
    tables = list(out.glob("wandb/offline-run-*/files/media/table/generate/filter_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["outcome", "samples", "fraction"]
    assert sum(row[1] for row in table["data"]) == 4
    assert config["decoding"]["T"] == 1.2
    assert config["logger"]["wandb"]["mode"] == "offline"
    # logger.csv: the same metrics as one CSV row.
    header, row = (filtered / "metrics.csv").read_text().splitlines()
    assert dict(zip(header.split(","), row.split(","), strict=True))["generate/samples"] == "4"

    off = run_generation(compose("generate", [*GENERATE_SMALL, "data.limit=2", "logger=none",
                                              f"output_dir={tmp_path}/b"]))
    assert (off / "run.json").exists() and not (off / "wandb").exists()


def test_slurm_grid_is_one_job_array_of_cells(tmp_path):
    """`pipeline.py -m hydra/launcher=slurm` over 2 T_train x 2 T_eval: one array of four cells,
    each one node (its stages run there, sharing the run directories through the filesystem)."""
    env = {**os.environ, **fake_slurm(tmp_path), "SBATCH_PARTITION": "gpu-h100"}
    result = subprocess.run(
        [sys.executable, str(REPO / "pipeline.py"), "-m", "hydra/launcher=slurm",
         "gen.T=0.5,1.0", "eval.T=0.6,1.0", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "sbatch: fake" in result.stderr, result.stderr
    options = sbatch_options((tmp_path / "sbatch.sh").read_text())
    assert options["array"].startswith("0-3") and options["nodes"] == "1"
    assert options["job-name"] == "pipeline"
