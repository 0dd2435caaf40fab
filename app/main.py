"""The FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.admin.router import router as admin_router
from app.billing.router import router as billing_router
from app.core import openapi, problems
from app.datasets.exports.router import router as exports_router
from app.datasets.router import router as datasets_router
from app.evals.router import router as evals_router
from app.evalsets.router import router as evalsets_router
from app.health.router import router as health_router
from app.jobs.router import router as jobs_router
from app.mixtures.router import router as mixtures_router
from app.prompting.router import router as prompts_router
from app.scenarios.router import router as scenarios_router
from app.teams.router import router as keys_router
from app.teams.router import teams_router


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Everything imported so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which would otherwise pause requests for milliseconds.
    gc.collect()
    gc.freeze()
    # A request allocates thousands of short-lived objects: with the default threshold (700)
    # they are collected, and promoted, several times a request while still in use.
    gc.set_threshold(50_000, 20, 20)
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="PriorForge",
        version="0.1.0",
        summary="Synthetic AI-discourse documents for alignment pretraining.",
    )
    problems.install(app)
    openapi.install(app)
    app.include_router(health_router)
    app.include_router(jobs_router)
    app.include_router(datasets_router)
    app.include_router(exports_router)
    app.include_router(mixtures_router)
    app.include_router(scenarios_router)
    app.include_router(evalsets_router)
    app.include_router(evals_router)
    app.include_router(prompts_router)
    app.include_router(keys_router)
    app.include_router(teams_router)
    app.include_router(billing_router)
    app.include_router(admin_router)
    app.mount("/admin/static", StaticFiles(packages=[("app.admin", "static")]), name="admin-static")
    return app


app = create_app()
