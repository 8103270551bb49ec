"""The one hub-id pattern, shared by the zoo file's model strings (:mod:`copyscope.config`) and the
metric backbones (:mod:`copyscope.score.metrics`). A leaf: imports nothing from copyscope."""

from __future__ import annotations

import re

# The one hub-id pattern: "owner/name", or a bare "name" where the hub allows it (model repos of the
# zoo file); segments start with a letter or digit. Anything else (a path separator beyond that, a
# leading "." or "/", a file suffix) is a local path.
_HUB_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
HUB_ID_RE = re.compile(rf"^{_HUB_SEGMENT}(/{_HUB_SEGMENT})?$")
HUB_REPO_RE = re.compile(rf"^{_HUB_SEGMENT}/{_HUB_SEGMENT}$")  # owner required (metric backbones)


def is_hub_id(value: str, owner: bool = False) -> bool:
    """Whether ``value`` reads as a hub id ("owner/name"; with ``owner=False`` a bare "name" too)."""
    return bool((HUB_REPO_RE if owner else HUB_ID_RE).match(value))
