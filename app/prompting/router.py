"""HTTP for the surface-form catalog and prompt previews."""

from __future__ import annotations

from fastapi import APIRouter

from app.core.auth import Reader, SessionDep
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.prompting import service
from app.prompting.catalog import builtin_catalog
from app.prompting.schemas import PreviewItem, PreviewRequest, PreviewResponse, SurfaceFormRead

router = APIRouter(prefix="/v1", tags=["prompts"], route_class=GuardedRoute)


@router.get("/surface-forms", response_model=list[SurfaceFormRead])
def list_surface_forms(_principal: Reader) -> list[SurfaceFormRead]:
    """The genres documents can be written in."""
    return [SurfaceFormRead(**form.model_dump()) for form in builtin_catalog().values()]


@router.post("/prompts/preview", response_model=PreviewResponse, responses=documented(409))
def preview_prompts(
    request: PreviewRequest, principal: Reader, session: SessionDep
) -> PreviewResponse:
    """Render the exact messages for a spec's first items, without calling a model."""
    previews = service.preview(session, principal, request.spec, request.items)
    return PreviewResponse(
        items=[
            PreviewItem(
                index=p.item.index,
                plan=p.item.to_json(),
                messages=p.prompt.messages,
                prompt_sha256=p.prompt.sha256,
                template_version=p.prompt.template_version,
            )
            for p in previews
        ]
    )
