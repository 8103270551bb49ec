"""User-facing errors: one line, exit code 2, never a traceback."""

from __future__ import annotations


class CopyscopeError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``str(error)`` as one red line and exits with code 2. Messages say what is
    wrong and where: ``zoo.yaml:12: loras[1].weight: expected a number, got 'high'``.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class MissingDependency(CopyscopeError):
    """An optional extra or weights file is not available on this machine."""
