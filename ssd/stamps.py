"""What an evaluation's numbers are about, as every report states it: the problem set (name,
definition, problem count, sha256 of the sorted question ids) and the grader profile.

evaluate.py writes both into metrics.json (``problem_set``: ``problem_sets.set_record``;
``grader``: name and summary). The reports (the evaluate sweep summary, the grid report, the
demo report) read them from there with the helpers below, and wherever two evaluations are
compared (base against SSD) they say when the two differ: a pass@k difference between two
problem sets or two graders is not the model's. Pure: dicts in, strings out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DIGEST_CHARS = 12  # the digest's hex digits shown to people (JSON keeps all 64)
COLUMNS = ["problem set", "definition", "problems", "ids sha256", "grader"]


def describe_set(record: Mapping[str, Any]) -> str:
    """One line for people: name, definition, count and the digest's first 12 hex digits."""
    return (f"problem set {record['name']} ({record['definition']}): {record['problems']} "
            f"problems, ids sha256 {record['id_digest'][:DIGEST_CHARS]}")


def describe_grader(record: Mapping[str, Any]) -> str:
    summary = f", {record['summary']}" if record.get("summary") else ""
    return f"grader {record['name']}{summary}"


def stamp(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation's problem set and grader from its metrics.json (None where not recorded:
    an evaluation from before they were)."""
    problem_set, grader = metrics.get("problem_set"), metrics.get("grader")
    return {"problem_set": dict(problem_set) if isinstance(problem_set, Mapping) else None,
            "grader": dict(grader) if isinstance(grader, Mapping) else None}


def describe(metrics: Mapping[str, Any]) -> str:
    """The problem set and grader of an evaluation, in one line."""
    s = stamp(metrics)
    return "; ".join([
        describe_set(s["problem_set"]) if s["problem_set"] else "problem set not recorded",
        describe_grader(s["grader"]) if s["grader"] else "grader not recorded"])


def cells(metrics: Mapping[str, Any]) -> list[str]:
    """The row of ``COLUMNS`` for one evaluation ("–" where not recorded)."""
    s = stamp(metrics)
    p, g = s["problem_set"] or {}, s["grader"] or {}
    digest = p.get("id_digest")
    return [str(p.get("name", "–")), str(p.get("definition", "–")), str(p.get("problems", "–")),
            digest[:DIGEST_CHARS] if digest else "–", str(g.get("name", "–"))]


def grader_lines(evaluations: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per grader profile the evaluations (metrics.json dicts) used: its summary."""
    found = {}
    for metrics in evaluations:
        grader = stamp(metrics)["grader"]
        if grader:
            found.setdefault(grader["name"], grader.get("summary"))
    return [f"Grader `{name}`: {summary or 'no summary recorded'}."
            for name, summary in found.items()]


def _set_label(p: Mapping[str, Any]) -> str:
    return (f"{p['name']}, {p['problems']} problems, ids sha256 "
            f"{p['id_digest'][:DIGEST_CHARS]}")


def differences(a: Mapping[str, Any], b: Mapping[str, Any], label_a: str = "base",
                label_b: str = "SSD") -> list[str]:
    """Sentences saying how the problem sets or graders of two evaluations (metrics.json dicts)
    differ, or that one of them did not record its own; empty when they agree."""
    sa, sb = stamp(a), stamp(b)
    found = []
    pa, pb = sa["problem_set"], sb["problem_set"]
    if pa is None or pb is None:
        missing = " and ".join(label for label, p in ((label_a, pa), (label_b, pb)) if p is None)
        found.append(f"cannot check that {label_a} and {label_b} were evaluated on the same "
                     f"problems: no problem set recorded for {missing}")
    elif pa.get("id_digest") != pb.get("id_digest"):
        found.append(f"{label_a} and {label_b} were evaluated on different problem sets "
                     f"({label_a}: {_set_label(pa)}; {label_b}: {_set_label(pb)})")
    ga, gb = sa["grader"], sb["grader"]
    if ga is None or gb is None:
        missing = " and ".join(label for label, g in ((label_a, ga), (label_b, gb)) if g is None)
        found.append(f"cannot check that {label_a} and {label_b} were graded alike: no grader "
                     f"recorded for {missing}")
    elif ga.get("name") != gb.get("name"):
        found.append(f"{label_a} and {label_b} were graded by different grader profiles "
                     f"({label_a}: {ga.get('name')}; {label_b}: {gb.get('name')})")
    return found


def warning(found: Sequence[str]) -> str:
    """A report's line for ``differences`` ("" when there are none)."""
    if not found:
        return ""
    return ("**Warning:** " + "; ".join(found) + ". The difference is then not the models' "
            "alone.")


def groups(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The distinct (problem set, grader) of labelled evaluations, in first-seen order, each with
    the labels that have it: [{"problem_set", "grader", "evaluations": [labels]}]."""
    found: dict[str, dict[str, Any]] = {}
    for label, metrics in items:
        s = stamp(metrics)
        key = json.dumps(s, sort_keys=True)
        found.setdefault(key, {**s, "evaluations": []})["evaluations"].append(label)
    return list(found.values())


def group_lines(found: Sequence[dict[str, Any]], what: str = "evaluation") -> list[str]:
    """Markdown lines stating each group of ``groups``: one sentence when every evaluation
    shares one problem set and grader, else one bullet per group."""
    if len(found) == 1:
        count = len(found[0]["evaluations"])
        every = f"Every {what} ({count})" if count > 1 else f"The {what}"
        return [f"{every}: {describe(found[0])}."]
    lines = [f"**The {what}s do not share one problem set and grader:**", ""]
    for group in found:
        lines.append(f"- {describe(group)}; {what}s: {', '.join(group['evaluations'])}")
    return lines
