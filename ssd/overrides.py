"""Hydra override strings from values, and the resolvers that let a preset declare them.

``override_value`` writes a value in Hydra's override grammar; a truncation is named by a
conf/truncation preset or by its values, ``k<top_k>_p<top_p>`` (``k10_p1.0``: top-k 10 alone);
the base model's reference decoding is Table 4's or a grid cell's. A declared stage
(``conf/study``) reads these through resolvers, each giving a list of overrides:

    ${ssd.truncation:k10_p1.0}  -> [truncation=none, truncation.top_k=10, truncation.top_p=1.0]
    ${ssd.base_decoding:table4,1.3,none}  -> [decoding=baseline, truncation=baseline]
    ${ssd.base_decoding:grid,1.3,none}    -> [decoding.T=1.3, truncation=none]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import ListConfig, OmegaConf

_PLAIN = re.compile(r"[\w./:+@-]+")
# A truncation given by its values: k<top_k>_p<top_p> (top_k 0: off; top_p 1: off).
_TRUNCATION_VALUES = re.compile(r"^k(?P<k>\d+)_p(?P<p>\d*\.?\d+)$")
# The base model's reference decoding: the paper's (Table 4: the recipe's baseline decoding), or
# a grid cell's own (T_eval and the evaluation truncation).
TABLE4, GRID = "table4", "grid"
BASE_DECODINGS = (TABLE4, GRID)


def override_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (quoted when it holds anything unusual)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides_from(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides from typed values, in order (a group choice is a key too:
    ``{"model": "tiny"}`` -> ``model=tiny``)."""
    return [f"{key}={override_value(value)}" for key, value in values.items()]


def truncation_values(spec: str) -> tuple[int, float] | None:
    """(top_k, top_p) of a ``k<top_k>_p<top_p>`` truncation; None for anything else (a preset
    name) or values out of range."""
    found = _TRUNCATION_VALUES.match(spec)
    if found is None:
        return None
    top_k, top_p = int(found.group("k")), float(found.group("p"))
    return (top_k, top_p) if 0 < top_p <= 1 else None


def truncation_overrides(spec: str) -> list[str]:
    """A stage's overrides for a truncation: its preset, or its values over ``none``."""
    values = truncation_values(spec)
    if values is None:
        return [f"truncation={spec}"]
    top_k, top_p = values
    return ["truncation=none", f"truncation.top_k={top_k}", f"truncation.top_p={top_p!r}"]


def base_decoding_overrides(mode: str, t_eval: float, truncation: str) -> list[str]:
    """The base model's decoding: Table 4's (``table4``) or the cell's (``grid``)."""
    if mode == TABLE4:
        return ["decoding=baseline", "truncation=baseline"]
    return [f"decoding.T={override_value(t_eval)}", *truncation_overrides(truncation)]


# A ListConfig, not a list: `--cfg job --resolve` resolves in place, which takes config nodes.
# ${ssd.is_set:<value>}: whether a key holds a value (a stage enabled by an optional key).
for _name, _resolver in {
        "ssd.is_set": lambda value: value is not None,
        "ssd.truncation": lambda spec: ListConfig(truncation_overrides(str(spec))),
        "ssd.base_decoding": lambda mode, t, spec: ListConfig(
            base_decoding_overrides(str(mode), t, str(spec)))}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
