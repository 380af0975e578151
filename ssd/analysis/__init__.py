"""Analyses that explain *why* SSD works, computed exactly rather than sampled.

- ``toy``: the lock/fork finite-state machine of Appendix C.4 (Table 6, Figures 12-14), solved in
  closed form with the optima located on the nucleus discontinuities where they actually sit.
- ``theory``: the identities of Appendix B (Eqs. 9-40), written as pure functions so the tests can
  check them numerically against the project's reference decoding (``ssd.decoding``).
- ``teff``: the effective-temperature view of Section 3.4 (T_eff = T_train · T_eval, quadratic fit).

Every core function is pure; the only I/O lives in the explicit ``plot_*`` functions.

Public entry for the drivers: the T_eff fits the grid report draws (``ResultRecord``,
``TeffPanel``, ``fit_groups``, ``plot_teff``, ``plot_teff_panels``, ``summary_rows``) and the
exact path-product models the lab compares its learned models with (``ToyModel``,
``find_optimum``, ``ssd_student``, ``success_curve``, ``success_probability``); Table 5 for the
transfer study (``transfer_report``, ``COLUMN_ORDER``, ``PAPER_TABLE5``, ``INDEX``); the lab's
path-product mathematics (``lab_paths``: ``world_teacher``, ``learned_model``,
``planned_temperature``, ``gain_interval``, ``fit_errors``, ``sharpening``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ssd.analysis.teff import (
    ResultRecord,
    TeffPanel,
    fit_groups,
    plot_teff,
    plot_teff_panels,
    summary_rows,
)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous setting afterwards.

    The analyses push many tiny ``[rows, vocab]`` tensors through ``ssd.decoding``; on a shared
    CPU, torch's thread pool then spends milliseconds per call synchronising (measured: ~4 ms vs
    ~0.01 ms for a 40x16 softmax under load), which turns a sub-second analysis into tens of
    seconds. One thread is never slower at these sizes.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
from ssd.analysis.lab_paths import (  # noqa: E402
    BREAKPOINT_MARGIN,
    PAPER_T_RANGE,
    T_RANGE,
    VLLM_MAX_T,
    answer_text,
    binomial_se,
    fit_errors,
    gain_interval,
    learned_model,
    optimum_record,
    planned_temperature,
    question_id,
    rows_from_record,
    sharpening,
    world_teacher,
)
from ssd.analysis.toy import (  # noqa: E402  (toy uses single_thread, defined above)
    Optimum,
    ToyModel,
    find_optimum,
    ssd_student,
    success_curve,
    success_probability,
)
from ssd.analysis.transfer import (  # noqa: E402
    COLUMN_ORDER,
    INDEX,
    PAPER_TABLE5,
    transfer_report,
)

__all__ = [
    "BREAKPOINT_MARGIN",
    "COLUMN_ORDER",
    "INDEX",
    "PAPER_TABLE5",
    "PAPER_T_RANGE",
    "T_RANGE",
    "VLLM_MAX_T",
    "Optimum",
    "ResultRecord",
    "TeffPanel",
    "ToyModel",
    "answer_text",
    "binomial_se",
    "find_optimum",
    "fit_errors",
    "fit_groups",
    "gain_interval",
    "learned_model",
    "optimum_record",
    "planned_temperature",
    "plot_teff",
    "plot_teff_panels",
    "question_id",
    "rows_from_record",
    "sharpening",
    "single_thread",
    "ssd_student",
    "success_curve",
    "success_probability",
    "summary_rows",
    "transfer_report",
    "world_teacher",
]
