"""Progress bars for the audit's steps: none, tqdm on stderr, or the caller's factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras_audit.audit.catalog import AuditInputError


class NoBar:
    """A progress bar that shows nothing (``progress=None``)."""

    n = 0

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Ignore a status text."""

    def close(self) -> None:
        """Nothing to close."""


def _no_bar(**_kwargs: Any) -> NoBar:
    return NoBar()


def progress_factory(progress: bool | Callable[..., Any] | None) -> Callable[..., Any]:
    """A callable ``factory(desc=..., total=...)`` returning a bar with ``update``/``close``.

    Raises:
        AuditInputError: ``progress`` is neither None, a bool nor a callable.
    """
    if progress is None or progress is False:
        return _no_bar
    if progress is True:
        import sys
        from functools import partial

        from tqdm import tqdm

        return partial(tqdm, file=sys.stderr, leave=True)
    if callable(progress):
        return progress
    raise AuditInputError(f"progress must be None, True/False or a callable like tqdm.tqdm; "
                          f"got {progress!r}")
