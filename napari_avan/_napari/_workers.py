"""Running long work off the GUI thread: one heavy job per viewer, progress, Cancel, errors.

Jobs are generators from ``models`` (they yield after each batch). A job runs in a
superqt worker thread; it only reads arrays handed to it, never layers. Its yields arrive
on the GUI thread through Qt signals, where the widget updates layers. A failure becomes a
napari notification with the reason (and the widget's status line), never a traceback
dialog; Cancel stops the job at its next yield.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from napari_avan.types import AvanInputError

#: Viewer -> its job runner: one heavy job per viewer, shared by all dock widgets.
_RUNNERS: weakref.WeakKeyDictionary[Any, JobRunner] = weakref.WeakKeyDictionary()


def thread_safe(data: Any) -> Any:
    """A layer's data to read in a worker thread: a dask array wrapped so that each read
    computes apart from napari's dask cache (see
    :class:`~napari_avan.core.session.store.RegionReader`); anything else as it is."""
    if type(data).__module__.split(".")[0] != "dask":
        return data
    from napari_avan.core.session.store import RegionReader

    return RegionReader(data)


def describe_failure(what: str, exc: BaseException) -> str:
    """One line for the user: the reason, and the exception type when it is not ours."""
    if isinstance(exc, AvanInputError):
        return f"{what}: {exc}"
    if isinstance(exc, MemoryError):
        return f"{what}: out of memory: choose a smaller scope (viewport or a drawn box)"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return f"{what}: the disk is full: free space and run it again"
    return f"{what} failed: {type(exc).__name__}: {exc}"


def docked(native: Any) -> bool:
    """Whether a dock widget's Qt widget still sits in a dock (floating or not) or a main
    window: napari removes a dock by taking its contents out (they become a hidden window
    of their own), so a parent alone does not tell; False once the Qt widget is deleted."""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    try:
        widget = native
        while widget is not None:
            if isinstance(widget, (QDockWidget, QMainWindow)):
                return True
            widget = widget.parentWidget()
    except RuntimeError:  # the Qt widget is gone
        pass
    return False


def notify(message: str, level: str = "info") -> None:
    """Show a napari notification (``info``, ``warning`` or ``error``)."""
    from napari.utils import notifications

    show = {
        "info": notifications.show_info,
        "warning": notifications.show_warning,
        "error": notifications.show_error,
    }[level]
    show(message)


def guarded(status: Any, action: Callable[[], Any]) -> Any:
    """Run a dock's action; a refusal (:class:`AvanInputError`) becomes the dock's status
    line and a warning, never a traceback. Returns what the action returned, else None."""
    from napari_avan.types import AvanInputError

    try:
        return action()
    except AvanInputError as exc:
        status.value = str(exc)
        notify(str(exc), "warning")
        return None


class JobKind(Enum):
    """What a job does, for widgets that treat some jobs differently (a click on a cleft
    while another click's job runs is queued; any other job makes the click wait its turn
    as 'busy'). Tell jobs apart by this, never by their names, which are for people."""

    #: Detect clefts in an image region.
    DETECT = "detect"
    #: Partners of one clicked cleft.
    CLICK = "click"
    #: Partners of many clefts (Assign viewport).
    ASSIGN = "assign"
    #: A bootstrapped round: fine-tuning the models, then predicting again.
    TRAIN = "train"


@dataclass
class Job:
    """A running job: its name, kind, worker and progress bar."""

    name: str
    kind: JobKind
    worker: Any
    pbar: Any = None
    cancelled: bool = False

    def cancel(self) -> None:
        """Ask the job to stop at its next yield."""
        self.cancelled = True
        self.worker.quit()


class JobRunner:
    """Starts jobs for one viewer, one at a time."""

    def __init__(self) -> None:
        self.job: Job | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(
        self,
        name: str,
        work: Callable[[], Iterator[Any]],
        *,
        kind: JobKind,
        on_yield: Callable[[Any], None],
        on_done: Callable[[bool], None],
        on_error: Callable[[str], None],
        progress: Callable[[Any], tuple[int, int] | None] | None = None,
    ) -> Job | None:
        """Run ``work()`` (a generator) in a worker thread.

        Args:
            name: what the job does, for the progress bar and messages.
            work: returns the generator to run; it runs entirely in the worker thread.
            kind: what the job does (see :class:`JobKind`); ``job.kind`` tells it later.
            on_yield: called on the GUI thread with each yielded value.
            on_done: called on the GUI thread when the job ends; True if it finished,
                False if it was cancelled or failed.
            on_error: called on the GUI thread with a one-line reason when the job fails
                (a notification is shown too).
            progress: maps a yielded value to (done, total) for the progress bar.

        Returns:
            the job, or None when another job is running (the reason goes to on_error):
            one job per viewer, so two never compete for the cores.
        """
        from napari.utils import progress as napari_progress
        from superqt.utils import create_worker

        if self.job is not None:
            reason = f"{name}: busy with '{self.job.name}': wait for it to finish or press Cancel"
            on_error(reason)
            notify(reason, "warning")
            return None

        def run() -> Generator[Any, None, None]:
            yield from work()

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        job = Job(name, kind, worker)
        if progress is not None:
            job.pbar = napari_progress(total=0, desc=name)
        failed: list[str] = []

        def yielded(value: Any) -> None:
            if job.pbar is not None and progress is not None:
                counts = progress(value)
                if counts is not None:
                    done, total = counts
                    if job.pbar.total != total:
                        job.pbar.total = total
                    job.pbar.n = done
                    job.pbar.refresh()
            on_yield(value)

        def errored(exc: BaseException) -> None:
            reason = describe_failure(name, exc)
            failed.append(reason)
            notify(reason, "error")
            on_error(reason)

        def warned(warning: tuple[Any, ...]) -> None:
            notify(f"{name}: {warning[0]}", "warning")

        def finished() -> None:
            gc.unfreeze()
            if job.pbar is not None:
                job.pbar.close()
            if self.job is job:
                self.job = None
            on_done(not failed and not job.cancelled)

        worker.yielded.connect(yielded)
        worker.errored.connect(errored)
        worker.warned.connect(warned)
        worker.finished.connect(finished)
        self.job = job
        # A full garbage collection holds the GIL, so the GUI, for as long as it scans every
        # object (a 407 ms pause during a bulk run in a napari session here). Frozen objects
        # are skipped: during the job collections scan only what the job makes.
        gc.freeze()
        worker.start()
        return job

    def cancel(self) -> bool:
        """Cancel the running job; False when none runs."""
        if self.job is None:
            return False
        self.job.cancel()
        return True


def runner_for(viewer: Any) -> JobRunner:
    """The job runner shared by the dock widgets of ``viewer``."""
    runner = _RUNNERS.get(viewer)
    if runner is None:
        runner = _RUNNERS[viewer] = JobRunner()
    return runner
