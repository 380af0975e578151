"""Studies: the paper's artefacts as declared stage runs (conf/study), one runner, their reports.

Public entry for the drivers that run a declared chain of their own (demo.py): ``StudyRunner``
``read_stages`` and ``StageSpec`` (a declared stage)."""

from ssd.studies.runner import StudyRunner
from ssd.studies.spec import StageSpec, read_stages

__all__ = ["StageSpec", "StudyRunner", "read_stages"]
