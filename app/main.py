"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from app.core import openapi, problems
from app.datasets.router import router as datasets_router
from app.evalsets.router import router as evalsets_router
from app.health.router import router as health_router
from app.jobs.router import router as jobs_router
from app.prompting.router import router as prompts_router
from app.scenarios.router import router as scenarios_router
from app.teams.router import router as keys_router


def create_app() -> FastAPI:
    app = FastAPI(
        title="PriorForge",
        version="0.1.0",
        summary="Synthetic AI-discourse documents for alignment pretraining.",
    )
    problems.install(app)
    openapi.install(app)
    app.include_router(health_router)
    app.include_router(jobs_router)
    app.include_router(datasets_router)
    app.include_router(scenarios_router)
    app.include_router(evalsets_router)
    app.include_router(prompts_router)
    app.include_router(keys_router)
    return app


app = create_app()
