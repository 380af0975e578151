"""Report text from templates (ssd.templates): the filters' formats, a missing name is an error,
and the lab's report reads its numbers from the summary it is given."""

from __future__ import annotations

import jinja2
import pytest

from ssd.templates import environment, pct, pp, render, signed


def test_the_filters_write_shares_and_signed_differences() -> None:
    assert (pct(0.0833), pp(0.047), pp(-0.0125), signed(0.0275)) == (
        "8.33%", "+4.70 pp", "-1.25 pp", "+2.75")


def test_a_name_the_template_needs_and_is_not_given_fails() -> None:
    template = environment().from_string("gain {{ head.gain | pp }} over {{ base | pct }}")
    assert template.render(head={"gain": 0.05}, base=0.1) == "gain +5.00 pp over 10.00%"
    with pytest.raises(jinja2.UndefinedError):
        template.render(head={"gain": 0.05})


def test_the_lora_section_renders_its_table() -> None:
    text = render("lab_lora.md.j2", lora_table=(["rank", "gain"], [[2, "+1.00 pp"]]))
    assert text.startswith("## LoRA\n\n") and "| rank | gain |\n|---|---|\n| 2 | +1.00 pp |" in text
