"""``/training``: plan a LoRA fine-tune, start it as a ``train`` job, follow it.

Cancel, resume and the live events are the one job system's: ``DELETE /jobs/{id}``, ``POST /jobs/{id}/resume``,
``GET /jobs/{id}/events``.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import JobManagerDep, TrainingDep
from backend.schemas.training import TrainJob, TrainJobList, TrainPlan, TrainRequest

router = APIRouter(prefix="/training", tags=["training"])


@router.post("/plan", operation_id="planTraining", response_model=TrainPlan)
def plan_training(request: TrainRequest, training: TrainingDep) -> TrainPlan:
    """What the run would need (weights, adapter, gradients, optimizer state, activations) against the memory
    free now, the batch size that fits, the steps and examples; nothing starts."""
    return training.plan(request)


@router.post("/jobs", operation_id="startTraining", response_model=TrainJob, status_code=status.HTTP_202_ACCEPTED)
def start_training(request: TrainRequest, training: TrainingDep) -> TrainJob:
    """Start a LoRA fine-tune in its own process: 202 with the ``train`` job (progress in steps, the loss curve in
    ``history``). 507 ``insufficient_memory`` with the plan when it will not fit, unless ``force``."""
    return training.start(request)


@router.get("/jobs", operation_id="listTrainingJobs", response_model=TrainJobList)
def list_training_jobs(jobs: JobManagerDep) -> TrainJobList:
    """Training jobs, newest first (``GET /jobs?kind=train``)."""
    return TrainJobList(jobs=[j for j in jobs.list(kind="train") if isinstance(j, TrainJob)])


@router.get("/jobs/{job_id}", operation_id="getTrainingJob", response_model=TrainJob)
def get_training_job(job_id: str, jobs: JobManagerDep) -> TrainJob:
    job = jobs.get(job_id, kind="train")
    assert isinstance(job, TrainJob)
    return job
