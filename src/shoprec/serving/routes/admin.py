"""Operations and the run registry: health, readiness, metrics, runs, reload and publish."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shoprec.exceptions import ShoprecError
from shoprec.pipeline.build import list_runs, publish
from shoprec.serving.dependencies import RunIdPath, ServiceDep, require_key
from shoprec.serving.errors import public_message
from shoprec.serving.registry import NotReadyError
from shoprec.serving.schemas import Readiness, errors

__all__ = ["router"]

router = APIRouter()
_TEXT = {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}


@router.get("/health", tags=["operations"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    tags=["operations"],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "no run is served yet"}},
)
def ready(service: ServiceDep) -> JSONResponse:
    """Whether a run is served; ``reload_error`` says why a newer published run could not be
    loaded while the one before it keeps serving."""
    registry = service.registry
    current = registry.current()
    problem = registry.last_error and public_message(registry.last_error, service.workspace)
    if current is None:
        answer = Readiness(ready=False, reason=problem or "no published run yet")
        return JSONResponse(answer.model_dump(), status_code=503)
    answer = Readiness(
        ready=True, run_id=current.run_id, model=current.model_name, reload_error=problem
    )
    return JSONResponse(answer.model_dump())


@router.get("/metrics", tags=["operations"], response_class=Response, responses={200: _TEXT})
def metrics(service: ServiceDep) -> Response:
    # The service's own metrics, then the process-wide ones (the process, the embedding
    # provider calls the worker makes).
    body = generate_latest(service.metrics) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/runs", tags=["registry"])
def runs(service: ServiceDep) -> dict[str, Any]:
    current = service.registry.current()
    return {
        "current": current.run_id if current is not None else None,
        "runs": list_runs(service.workspace),
    }


@router.post(
    "/admin/reload",
    tags=["registry"],
    dependencies=[Depends(require_key)],
    responses=errors(401, 403, 503),
)
def reload(service: ServiceDep) -> dict[str, Any]:
    swapped = service.registry.refresh(force=True)
    if not service.registry.ready:
        raise NotReadyError(service.registry.last_error or "no published run")
    return {"reloaded": swapped, "run_id": service.engine.run_id}


@router.post(
    "/admin/publish/{run_id}",
    tags=["registry"],
    dependencies=[Depends(require_key)],
    responses=errors(401, 403, 404, 409, 422, 503),
)
def publish_run(service: ServiceDep, run_id: RunIdPath) -> dict[str, Any]:
    if not (service.workspace / "models" / run_id).is_dir():
        raise HTTPException(404, f"run {run_id}: no such run in the workspace")
    try:
        publish(service.workspace, run_id)
    except ShoprecError as exc:
        raise HTTPException(409, str(exc)) from None
    service.registry.refresh(force=True)
    if service.registry.last_error:
        raise HTTPException(409, service.registry.last_error)
    return {"published": run_id, "run_id": service.engine.run_id}
