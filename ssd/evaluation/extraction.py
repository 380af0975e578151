"""Extract the program from a model response: the project's rule (``ssd.code_blocks``, shared
with the generate stage's diagnostics) and the reference graders' rules (grader profiles lcb and
ml_ssd, ``graders.py``).
"""

from __future__ import annotations

import re

from ssd.code_blocks import Extraction, extract_code, fenced_blocks, strip_thinking

# The project's rule is re-exported: the evaluation modules and their tests read it from here.
__all__ = ["Extraction", "extract_code", "extract_code_lcb", "extract_code_ml_ssd",
           "fenced_blocks", "strip_thinking"]


# -- the reference graders' extraction (grader profiles lcb and ml_ssd) ---------------------------
def extract_code_lcb(response: str) -> Extraction:
    """LiveCodeBench's rule for chat models: the lines strictly between the last two lines that
    contain three backticks anywhere, whatever the tag. Reasoning is not removed."""
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return Extraction(None, "no_code_block")
    code = "\n".join(lines[fences[-2] + 1 : fences[-1]])
    return Extraction(code + "\n") if code.strip() else Extraction(None, "empty_code_block")


# A fence whose tag is letters only, a newline, and the shortest body up to the next fence: a
# ```python3 (or ```c++) block is not a match at its opening fence.
_ML_SSD_BLOCK = re.compile(r"```[A-Za-z]*\n(.*?)```", re.DOTALL)


def extract_code_ml_ssd(response: str) -> Extraction:
    """The paper's released evaluator: the last match of _ML_SSD_BLOCK over the whole response
    (reasoning included), then cut at a "</code>", "```python" removed, cut at the next fence,
    "<code>" removed."""
    blocks = _ML_SSD_BLOCK.findall(response)
    if not blocks:
        return Extraction(None, "no_code_block")
    code = blocks[-1].split("</code>")[0].replace("```python", "").split("```")[0]
    code = code.replace("<code>", "")
    return Extraction(code) if code.strip() else Extraction(None, "empty_code_block")
