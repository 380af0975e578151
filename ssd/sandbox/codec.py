"""Wire format shared by the trusted evaluator and the in-sandbox harness (standard library only).

Frames are a 4-byte big-endian length followed by UTF-8 JSON. Values crossing the boundary (call
arguments, return values) use a tagged JSON encoding that keeps Python's container types apart
(`[1, 2]` vs `(1, 2)` vs `{1, 2}`): HumanEval-style checks compare with `==` against tuples and
sets, so a lossy plain-JSON round trip would turn correct answers into failures.

Only exact builtin types are encoded (`type(v) is int`, not `isinstance`): a candidate cannot
smuggle an object with a forged `__eq__`, `__repr__` or `__iter__` through a subclass. Anything else
raises `Unencodable`, which the evaluator scores as a wrong answer. The exceptions are the standard
library's dict and tuple subclasses, which solutions return where a dict or a list is expected:
`Counter`, `OrderedDict` and `defaultdict` (exact types) cross as their plain dict, a named tuple
(any tuple subclass with `_fields`) as its plain tuple, each read through the base type's own
methods, so no override of the candidate's runs, and tagged with the type's name (a grader that
compares `str()`, the paper's, must see that it was not plain). Decoding yields plain values only.
"""

from __future__ import annotations

import json
import struct
from collections import Counter, OrderedDict, defaultdict
from typing import Any

HEADER = struct.Struct(">I")
DICT_SUBCLASSES = (Counter, OrderedDict, defaultdict)
SUBCLASS_TAGS = ("m", "n")  # a standard-library dict subclass, a named tuple
MAX_DEPTH = 200
# Ints longer than this many bits cross as hex ({"i": ...}): JSON carries ints in decimal, and
# Python refuses decimal conversions past its int->str digit limit (4300 digits by default, on
# either side), which would turn a big but correct result into a broken frame.
MAX_DECIMAL_INT_BITS = 13_000

# LiveCodeBench executes every candidate after the same block of star-imports (its runner prepends
# them to the source). Mirroring it matters: starter code uses `List[int]` without importing typing,
# and many solutions lean on names like `defaultdict`, `heappush` or `inf` being in scope.
_STAR_MODULES = (
    "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing",
)  # fmt: skip
_PLAIN_MODULES = _STAR_MODULES[:16]  # the same list minus builtins and typing
PRELUDE_SOURCE = "".join(f"from {m} import *\n" for m in _STAR_MODULES) + "".join(
    f"import {m}\n" for m in _PLAIN_MODULES
)


class Unencodable(TypeError):
    """The value is not built solely from exact builtin scalar and container types."""


def encode_value(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise Unencodable("value nested too deeply")
    kind = type(value)
    if kind is int and value.bit_length() > MAX_DECIMAL_INT_BITS:
        return {"i": format(value, "x")}
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return {"l": [encode_value(v, depth + 1) for v in value]}
    if kind is tuple:
        return {"t": [encode_value(v, depth + 1) for v in value]}
    if kind is dict:
        return {
            "d": [
                [encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()
            ]
        }
    if kind is set:
        return {"s": [encode_value(v, depth + 1) for v in value]}
    if kind is frozenset:
        return {"f": [encode_value(v, depth + 1) for v in value]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if kind in DICT_SUBCLASSES:
        items = [[encode_value(k, depth + 1), encode_value(v, depth + 1)]
                 for k, v in dict.items(value)]
        return {"m": [kind.__name__, items]}
    if issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
        return {"n": [kind.__name__, [encode_value(v, depth + 1) for v in tuple.__iter__(value)]]}
    raise Unencodable(f"cannot encode a value of type {kind.__name__}")


def decode_value(tree: Any) -> Any:
    """The plain value `encode_value` encoded (a dict or tuple subclass becomes its plain dict or
    tuple). Raises ValueError/TypeError on malformed input."""
    if tree is None or type(tree) in (bool, int, float, str):
        return tree
    if type(tree) is not dict or len(tree) != 1:
        raise ValueError("malformed encoded value")
    ((tag, body),) = tree.items()
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "i":
        return int(body, 16)
    if type(body) is not list:
        raise ValueError("malformed encoded container")
    if tag == "l":
        return [decode_value(v) for v in body]
    if tag == "t":
        return tuple(decode_value(v) for v in body)
    if tag == "d":
        return {decode_value(k): decode_value(v) for k, v in body}
    if tag == "s":
        return {decode_value(v) for v in body}
    if tag == "f":
        return frozenset(decode_value(v) for v in body)
    if tag == "c":
        return complex(body[0], body[1])
    if tag in SUBCLASS_TAGS:
        name, items = body
        if type(name) is not str or type(items) is not list:
            raise ValueError("malformed encoded subclass")
        return decode_value({"d" if tag == "m" else "t": items})
    raise ValueError(f"unknown tag {tag!r}")


def pack_frame(obj: Any) -> bytes:
    # ASCII-only JSON: lone surrogates in candidate strings cannot break the UTF-8 framing.
    data = json.dumps(obj, separators=(",", ":")).encode("ascii")
    return HEADER.pack(len(data)) + data
