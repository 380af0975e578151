"""The stages chained: ``demo`` runs generate.py -> train.py -> evaluate.py as subprocesses and
``report`` turns their records into report.md."""
