"""Studies: the paper's artefacts as declared stage runs (conf/study), one runner, their reports.

Public entry for the drivers that run a declared chain of their own (demo.py): ``StudyRunner``
and ``read_stages``."""

from ssd.studies.runner import StudyRunner
from ssd.studies.spec import read_stages

__all__ = ["StudyRunner", "read_stages"]
