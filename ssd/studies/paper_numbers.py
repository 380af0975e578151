"""The paper's published numbers the reports set beside a run of one of its presets.

Table 2 (percent), read from ../shared/paper/ssd-paper.txt: per model (conf/experiment preset),
per benchmark, the base row and the +SSD row, each 8 values in Table 2's column order
(pass@1 all/easy/medium/hard, then pass@5 all/easy/medium/hard). Where the text's OCR garbled a
value ("73.@", "§9.7", "780k") it is the other row plus the printed difference, which the
surrounding rows check (every printed difference equals +SSD minus base).
"""

from __future__ import annotations

TABLE2_COLUMNS = tuple(f"pass@{k} {scope}" for k in (1, 5)
                       for scope in ("overall", "easy", "medium", "hard"))

Row = tuple[float, float, float, float, float, float, float, float]

PAPER_TABLE2: dict[str, dict[str, dict[str, Row]]] = {
    "qwen3-4b-thinking-2507": {
        "lcb_v6": {"base": (54.5, 97.4, 59.2, 29.7, 67.5, 100.0, 75.4, 45.8),
                   "ssd": (57.8, 98.7, 62.8, 33.8, 71.4, 100.0, 77.3, 53.1)},
        "lcb_v5": {"base": (59.6, 98.8, 69.5, 31.4, 70.3, 98.9, 80.1, 47.5),
                   "ssd": (63.1, 98.5, 74.1, 35.7, 74.7, 98.9, 86.8, 52.8)}},
    "qwen3-30b-a3b-thinking-2507": {
        "lcb_v6": {"base": (66.1, 99.8, 73.0, 41.5, 76.7, 100.0, 84.7, 59.7),
                   "ssd": (68.2, 100.0, 76.4, 46.7, 80.2, 100.0, 87.1, 65.8)},
        "lcb_v5": {"base": (69.1, 98.6, 81.7, 43.9, 79.8, 98.9, 91.4, 61.1),
                   "ssd": (69.9, 98.4, 82.9, 44.9, 80.5, 98.9, 91.8, 62.4)}},
    "llama3.1-8b-instruct": {
        "lcb_v6": {"base": (12.7, 46.8, 5.4, 0.0, 23.0, 76.7, 15.1, 0.8),
                   "ssd": (16.2, 52.6, 10.0, 1.6, 24.0, 73.3, 17.1, 3.3)},
        "lcb_v5": {"base": (12.7, 45.1, 4.1, 0.7, 20.8, 64.7, 11.6, 2.8),
                   "ssd": (13.5, 45.2, 5.9, 1.3, 21.9, 67.1, 12.3, 3.7)}},
    "qwen3-4b-instruct-2507": {
        "lcb_v6": {"base": (34.0, 79.7, 34.4, 10.5, 41.0, 90.0, 40.5, 16.5),
                   "ssd": (41.5, 86.5, 45.1, 16.2, 56.8, 98.1, 59.7, 34.1)},
        "lcb_v5": {"base": (34.3, 85.4, 28.4, 10.1, 45.4, 96.0, 45.4, 17.5),
                   "ssd": (45.7, 90.2, 52.1, 16.6, 61.9, 98.8, 73.1, 33.6)}},
    "qwen3-30b-a3b-instruct-2507": {
        "lcb_v6": {"base": (42.4, 84.5, 46.8, 18.3, 53.5, 93.3, 56.8, 31.1),
                   "ssd": (55.3, 91.0, 61.0, 33.6, 71.6, 99.9, 76.4, 54.1)},
        "lcb_v5": {"base": (45.8, 91.2, 49.8, 17.7, 58.7, 96.1, 69.2, 30.6),
                   "ssd": (54.3, 92.9, 64.1, 25.9, 70.7, 97.6, 83.0, 47.2)}},
}
# Section 4.4 / C.5 (Qwen3-30B-Instruct, T_train 2.0, no truncation): 62 of 100 (checkpoint,
# T_eval) configurations above the 42.4% base pass@1; the best (iteration 2250, T_eval 0.9) at
# 48.1% pass@1 and 64.0% pass@5; ~62% of samples hold no extractable code.
PAPER_STRESS = {"model": "qwen3-30b-a3b-instruct-2507", "above_base": 62, "configurations": 100,
                "base_pass@1": 42.4, "base_pass@5": 53.5, "best_pass@1": 48.1,
                "best_pass@5": 64.0, "best_t_eval": 0.9, "best_step": 2250,
                "no_code_block": 0.62}


def paper_row(experiment: str | None, benchmark: str, role: str) -> Row | None:
    """Table 2's row for a paper preset on lcb_v6 / lcb_v5; None for anything else."""
    return PAPER_TABLE2.get(experiment or "", {}).get(benchmark, {}).get(role)
