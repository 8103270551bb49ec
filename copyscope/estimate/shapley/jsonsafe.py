"""JSON-safe conversion for :meth:`Estimate.to_dict <copyscope.estimate.shapley.result.Estimate.to_dict>` and
:meth:`Estimate.from_dict <copyscope.estimate.shapley.result.Estimate.from_dict>`: arrays to nested lists with
non-finite numbers as None (:func:`copyscope.common.finite.finite_or_none`, the one rule) and back to float arrays
with None as NaN, and an estimate's ``info`` (dicts, lists, NumPy scalars and arrays) to plain JSON values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...common.finite import finite_or_none

__all__ = ["from_json_array", "json_array", "jsonable"]


def json_array(a: np.ndarray | None) -> Any:
    if a is None:
        return None
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return finite_or_none(a)
    return [json_array(x) for x in a]


def from_json_array(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    return np.asarray(
        [np.nan if x is None else x for x in np.ravel(np.asarray(a, dtype=object))], dtype=float
    ).reshape(np.shape(np.asarray(a, dtype=object)))


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_array(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return finite_or_none(x)
    return x
