"""Studies: the paper's artefacts as declared stage runs (conf/study), one runner, their reports."""
