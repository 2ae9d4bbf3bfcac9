"""Progress of a model load, tensor by tensor, from transformers' own weight loading; and its cancel.

transformers 5 loads weights in a loop wrapped in ``logging.tqdm(..., desc="Loading weights")``. One hook, installed
with the public ``transformers.utils.logging.set_tqdm_hook``, turns that bar into a callback for the loads that ask
for one (on their own thread; every other bar is left as it was), and stops the load there when it is cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import Any

from backend.errors import JobCancelled
from backend.utils.libraries import import_libraries

ProgressCallback = Callable[[int, int | None], None]
_weights_report = threading.local()


class _WeightsProgress:
    """What transformers' "Loading weights" bar becomes during one of our loads: it reports each tensor to the
    load's callback (and stops the load when it is cancelled), drawing nothing."""

    def __init__(self, iterable: Iterable[Any], report: Callable[[int, int | None], None]) -> None:
        self.iterable = iterable
        self.report = report

    def __iter__(self) -> Iterator[Any]:
        total = len(self.iterable) if isinstance(self.iterable, Sized) else None
        self.report(0, total)
        for done, item in enumerate(self.iterable, start=1):
            yield item
            self.report(done, total)

    def __enter__(self) -> _WeightsProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., None]:  # update, close, set_postfix...: nothing to draw
        return lambda *args, **kwargs: None


def _tqdm_hook(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    report = getattr(_weights_report, "report", None)
    if report is not None and kwargs.get("desc") == "Loading weights" and args:
        return _WeightsProgress(args[0], report)
    return factory(*args, **kwargs)


_hook_installed = False
_hook_lock = threading.Lock()


@contextmanager
def report_weights(on_progress: ProgressCallback | None, cancelled: Callable[[], bool] | None) -> Iterator[None]:
    """Feed transformers' own weight-loading progress (its ``Loading weights`` loop, through the public
    ``transformers.utils.logging.set_tqdm_hook``) to ``on_progress`` for loads on this thread, and stop the load
    when ``cancelled()`` turns true. Other threads' bars are left as they are."""
    global _hook_installed
    if on_progress is None and cancelled is None:
        yield
        return
    import_libraries()
    from transformers.utils import logging as hf_logging

    with _hook_lock:
        if not _hook_installed:
            previous = hf_logging.set_tqdm_hook(_tqdm_hook)
            if previous is not None:  # keep someone else's hook working for everything that is not ours
                hf_logging.set_tqdm_hook(lambda f, a, k: _tqdm_hook(lambda *x, **y: previous(f, x, y), a, k))
            _hook_installed = True

    def report(done: int, total: int | None) -> None:
        if cancelled is not None and cancelled():
            raise JobCancelled()
        if on_progress is not None:
            on_progress(done, total)

    _weights_report.report = report
    try:
        yield
    finally:
        _weights_report.report = None
