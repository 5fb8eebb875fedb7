"""Blockwise processing on dask: detection and assignment over volumes larger than memory.

``plan_job`` / ``plan_assign_job`` read the volumes' metadata and the model;
``iter_bulk_detect`` / ``iter_bulk_assign`` run the job in this process, on a local dask
cluster or on an existing one, yielding progress per task, resumable from the ledger they
keep beside their output (:mod:`napari_avan.bulk.detect`, :mod:`napari_avan.bulk.assign`).
Nothing here is imported by ``import napari_avan``.
"""

from napari_avan.bulk.assign import AssignJob, AssignResult, iter_bulk_assign, plan_assign_job
from napari_avan.bulk.detect import BulkProgress, BulkResult, Job, iter_bulk_detect, plan_job

__all__ = [
    "AssignJob",
    "AssignResult",
    "BulkProgress",
    "BulkResult",
    "Job",
    "iter_bulk_assign",
    "iter_bulk_detect",
    "plan_assign_job",
    "plan_job",
]
