"""The documentation: the site builds strictly, a broken link fails it, every section of the old
README has a page, the configuration reference holds every key the configs compose to, and the
commands the pages show name real scripts, presets and keys."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from ssd.config_reference import line_comments, reference_markdown
from tests.conftest import REPO, compose

MKDOCS = [sys.executable, "-m", "mkdocs"]
ENTRY_POINTS = ["generate", "train", "evaluate", "analyze", "demo", "lab", "pipeline"]

# Every heading of the README before it became a front page, and the page that holds it now.
OLD_README_HOMES = {
    "Quick start": "getting-started.md",
    "The three stages": "stages/index.md",
    "Config groups and the paper's notation": "concepts.md",
    "The SSD lab: a measured effect against a known answer": "lab.md",
    "The temperature grid (Section 3.4) in one command": "grid.md",
    "Paper recipes on a GPU cluster": "cluster.md",
    "Shared filesystems": "cluster.md",
    "Problem sets": "evaluation.md",
    "Grader profiles": "evaluation.md",
    "Paired statistics": "evaluation.md",
    "Decontamination": "evaluation.md",
    "Design": "design.md",
    "The sample record, and what train.py trains on": "stages/generate.md",
    "Identity is content": "design.md",
    "Packed rows and attention": "stages/train.md",
    "Run directories": "run-directories.md",
    "Benchmarks": "benchmarks.md",
    "Troubleshooting": "troubleshooting.md",
}


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=root)


def test_the_site_builds_strictly_with_the_generated_pages(tmp_path: Path) -> None:
    result = build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("index.html", "reference/config/index.html", "stages/train/index.html"):
        assert (tmp_path / "site" / page).is_file()
    home = (tmp_path / "site" / "index.html").read_text()
    assert "simple self-distillation" in home.lower()


def test_a_planted_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root)
    shutil.copy(REPO / "README.md", root)
    assert build(root, tmp_path / "ok").returncode == 0  # the copy itself builds
    page = root / "docs" / "lab.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = build(root, tmp_path / "broken")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_every_section_of_the_old_readme_has_a_page() -> None:
    for heading, page in OLD_README_HOMES.items():
        text = (REPO / "docs" / page).read_text()
        assert re.search(rf"^#+ {re.escape(heading)}$", text, re.M), (heading, page)


def test_the_readme_is_a_front_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).is_file(), target


# -- the configuration reference ---------------------------------------------------------------
def flat_keys(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flat_keys(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def composed_keys(config_name: str, overrides: list[str]) -> set[str]:
    cfg = compose(config_name, overrides)
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return set(flat_keys(container))


def group_options(config_name: str) -> list[str]:
    """``group=option`` for every option of every group the entry point's defaults name."""
    defaults = OmegaConf.load(REPO / "conf" / f"{config_name}.yaml").get("defaults", [])
    groups = [next(iter(d)) for d in defaults if isinstance(d, dict)]
    return [f"{group}={path.stem}" for group in groups if "/" not in group
            for path in sorted((REPO / "conf" / group).glob("*.yaml"))]


def test_the_configuration_reference_lists_every_key_of_every_composed_config() -> None:
    page = reference_markdown()
    listed = set(re.findall(r"^\| `([^`]+)` \|", page, re.M))
    for name in ENTRY_POINTS:
        for choice in [None, *group_options(name)]:
            overrides = [choice] if choice else []
            if name == "pipeline" and choice and not choice.startswith(("recipe", "experiment")):
                continue  # pipeline.py passes stage groups through to the stages
            missing = composed_keys(name, overrides) - listed
            assert not missing, (name, choice, sorted(missing)[:10])


def test_the_reference_carries_each_keys_comment_and_default() -> None:
    page = reference_markdown()
    assert "| `decoding.T` | `${recipe.generation.T}` |" in page
    row = next(line for line in page.splitlines() if line.startswith("| `trainer.attention` |"))
    assert "packed rows" in row.lower()
    assert "### `eval=lcb_v6`" in page and "### `evaluate.py`" in page


def test_comments_are_read_from_the_block_above_and_the_end_of_the_line() -> None:
    text = ("# the group\nouter:\n  # above\n  inner: 1   # after\n  plain: 'a # b'\n"
            "# --- a rule --------\nnext: {a: 1}\n")
    assert line_comments(text) == {"outer": "the group", "outer.inner": "above after",
                                   "outer.plain": "", "next": ""}


# -- the commands the pages show ---------------------------------------------------------------
PAGES_WITH_COMMANDS = ["README.md", "docs/getting-started.md", "docs/stages/generate.md",
                       "docs/stages/train.md", "docs/stages/evaluate.md",
                       "docs/stages/analyse.md", "docs/lab.md", "docs/cluster.md", "docs/grid.md",
                       "docs/studies.md"]
# Placeholders the pages use, and a value that composes in their place.
PLACEHOLDERS = {"experiment=E": "experiment=qwen3-4b-instruct-2507"}


def shown_commands() -> Iterator[tuple[str, str]]:
    for page in PAGES_WITH_COMMANDS:
        text = (REPO / page).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                command = line.split(" #")[0].strip()
                if command.startswith(("python ", "make ")):
                    yield page, command


def test_the_pages_show_commands() -> None:
    assert len(list(shown_commands())) >= 25


@pytest.mark.parametrize(("page", "command"), list(shown_commands()))
def test_every_shown_command_names_a_real_script_preset_and_key(page: str, command: str) -> None:
    words = shlex.split(re.sub(r"<[^>]*>|\.\.\.", "x", command))  # placeholders: a value
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M)
        assert words[1] in targets, (page, command)
        return
    script = words[1]
    assert (REPO / script).is_file(), (page, command)
    if not (REPO / "conf" / f"{Path(script).stem}.yaml").is_file():
        return  # a plain script (bench/): argparse flags, no Hydra config to compose
    overrides = []
    for word in words[2:]:
        if word in ("-m", "x", "toy"):
            continue  # a sweep flag, an elided rest ("..."), analyze.py's shorthand for the toy
        word = PLACEHOLDERS.get(word, word)
        key, value = word.split("=", 1)
        if "," in value and not value.startswith(("[", "'[")):  # a sweep: its first value
            value = value.split(",")[0]
        overrides.append(f"{key}={value}")
    compose(Path(script).stem, overrides)  # raises on an unknown script config, group or key
