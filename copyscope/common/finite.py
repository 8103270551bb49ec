"""Non-finite numbers at the JSON boundary: one rule for every report, analysis and estimate.

NaN and infinities are not JSON; copyscope writes them as ``null`` (None) and treats None as
"no value" when reading a report back.
"""

from __future__ import annotations

import math


def finite_or_none(x) -> float | None:
    """A float for JSON: NaN and +-inf become None (null); None stays None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def is_finite(x) -> bool:
    """A real number that is not NaN or +-inf (None, booleans and strings are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
