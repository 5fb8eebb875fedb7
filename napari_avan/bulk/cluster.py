"""Where the tasks of a bulk run execute: this process, a local dask cluster, or an existing one.

- ``workers=0``: every task runs here, one after another (tests, debugging);
- ``workers=N``: a local dask cluster of N worker processes on the loopback interface
  (nothing is reachable from outside), the cores shared among them (one task at a time per
  worker, its network on the worker's threads), closed when the run ends;
- ``scheduler=ADDRESS``: an existing dask cluster (``tcp://host:8786``, a dask-jobqueue
  or Kubernetes cluster); its workers must see the input and output paths.

Tasks are plain functions of small picklable arguments; each writes its own results to the
output store and the run's ledger, so results never travel back through the scheduler and
a task that ran once is never needed again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_avan.types import AvanInputError


@dataclass
class BulkProgress:
    """``done`` of ``total`` tasks of a bulk run; ``phase`` is the one now running;
    ``result`` is set on the last yield."""

    phase: str
    done: int
    total: int
    result: Any = None


@dataclass
class RunStats:
    """How a bulk run went: tasks run now and finished by an earlier run, where they ran,
    and seconds (task time summed over workers by kind: read, network, compute, write; the
    client's stitching; phases' and the run's wall time)."""

    tasks_run: int
    tasks_skipped: int
    executor: str
    seconds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        again = f"; {self.tasks_skipped} done before" if self.tasks_skipped else ""
        return f"{self.tasks_run} tasks on {self.executor}{again}"


def changed_settings(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The settings (keys) whose values differ between a run's record and this run, sorted;
    a key missing on one side differs."""
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


#: Thread-count variables of numerical libraries, set for the workers of a local cluster.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Executor:
    """Runs tasks here (``client`` None) or on a dask cluster, yielding as each finishes."""

    client: Any | None
    description: str
    #: torch threads for each task's network
    threads_per_task: int

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn(item)`` for every item, in completion order."""
        if not items:
            return
        if self.client is None:
            for item in items:
                yield fn(item)
            return
        from distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:  # a cancelled run leaves nothing queued on the cluster
                future.cancel()


@contextlib.contextmanager
def open_executor(workers: int | None, scheduler: str | None) -> Iterator[Executor]:
    """The executor of a bulk run (see the module docstring); closes what it started."""
    if workers is not None and scheduler is not None:
        raise AvanInputError("give either --workers (a local cluster) or --scheduler, not both")
    if scheduler is not None:
        executor = _connect(scheduler)
        try:
            yield executor
        finally:
            if executor.client is not None:
                executor.client.close()
        return
    n = 0 if workers is None else int(workers)
    from napari_avan.models.device import available_cores

    if n < 0:
        raise AvanInputError(f"--workers {workers} must be 0 (this process) or more")
    if n == 0:
        yield Executor(None, "this process", available_cores())
        return
    import dask
    from distributed import Client, LocalCluster

    threads = max(1, available_cores() // n)
    # dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers, which makes glibc return
    # (and page back in) every large buffer: the network ran 30 % slower here with it
    environ = {name: str(threads) for name in THREAD_VARIABLES}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=n,
            # one task per worker at a time; torch uses the worker's share of the cores
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: never clash with another cluster
            silence_logs=40,  # logging.ERROR: the progress bar is the run's voice
        )
    try:
        with Client(cluster) as client:
            yield Executor(client, f"a local dask cluster of {n} workers", threads)
    finally:
        cluster.close()


def _connect(address: str) -> Executor:
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as err:
        raise AvanInputError(
            f"no dask scheduler answers at {address}: start one (dask scheduler) or check the "
            f"address ({err})"
        ) from err
    workers = client.scheduler_info().get("workers", {})
    # a worker runs as many tasks at once as it has threads: one torch thread each
    return Executor(client, f"the dask cluster at {address} ({len(workers)} workers)", 1)
