"""HTTP for tokenizers and exports: upload a tokenizer.json, export a version, pull files."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from app.core.auth import Reader, SessionDep, Submitter
from app.core.body import MiB, raw_body, raw_body_declaration
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.datasets.exports import service
from app.datasets.exports.schemas import (
    ExportCreate,
    ExportPage,
    ExportRead,
    TokenizerPage,
    TokenizerRead,
)
from app.datasets.router import (
    FILE_RESPONSES,
    DatasetName,
    Owner,
    VersionNumber,
    immutable_headers,
    serve_file,
)
from app.models import Export, Tokenizer
from app.storage.default import get_store

router = APIRouter(prefix="/v1", tags=["exports"], route_class=GuardedRoute)

TokenizerName = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
TOKENIZER_BODY = raw_body_declaration(
    ("application/json",),
    64 * MiB,
    "A Hugging Face tokenizers tokenizer.json, at most 64 MiB.",
    {"type": "object"},
)


def _tokenizer(row: Tokenizer) -> TokenizerRead:
    return TokenizerRead(
        name=row.name,
        sha256=row.sha256,
        bytes=row.bytes,
        vocab_size=row.vocab_size,
        created_at=row.created_at,
    )


@router.post(
    "/tokenizers",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenizerRead,
    openapi_extra=TOKENIZER_BODY,
    responses={
        200: {"model": TokenizerRead, "description": "The same file was uploaded before"},
        **documented(409),
    },
)
def upload_tokenizer(
    body: Annotated[bytes, Depends(raw_body)],
    name: TokenizerName,
    principal: Submitter,
    session: SessionDep,
    response: Response,
) -> TokenizerRead:
    """Keep a tokenizer.json under a name exports refer to (a name never changes its file)."""
    row, created = service.register_tokenizer(session, principal, name, body, store=get_store())
    if not created:
        response.status_code = status.HTTP_200_OK
    return _tokenizer(row)


@router.get("/tokenizers", response_model=TokenizerPage)
def list_tokenizers(principal: Reader, session: SessionDep) -> TokenizerPage:
    """The team's tokenizers."""
    return TokenizerPage(items=[_tokenizer(t) for t in service.list_tokenizers(session, principal)])


def _export(name: str, row: Export) -> ExportRead:
    asked: dict[str, Any] = row.request
    return ExportRead(
        id=row.id,
        dataset=name,
        version=row.version,
        status=row.status,
        tokenizer=asked["tokenizer"],
        formats=asked["formats"],
        eos=asked["eos"],
        mds_text=asked["mds_text"],
        documents_total=row.documents_total,
        documents_done=row.documents_done,
        tokens=row.tokens,
        index_sha256=row.index_sha256,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


EXPORTS = "/datasets/{name}/versions/{version}/exports"
# An export that has not finished has no index, so no files yet: 409.
EXPORT_FILE_RESPONSES = {**FILE_RESPONSES, **documented(409)}
ExportId = Annotated[uuid.UUID, Path()]


@router.post(
    EXPORTS,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportRead,
    responses={
        200: {"model": ExportRead, "description": "This export was requested before"},
        **documented(409),
    },
)
def request_export(
    name: DatasetName,
    version: VersionNumber,
    body: ExportCreate,
    principal: Submitter,
    session: SessionDep,
    response: Response,
) -> ExportRead:
    """Tokenize the version into training formats (a worker writes them; poll the export)."""
    row, created = service.request_export(
        session,
        principal,
        name,
        version,
        service.ExportRequest(
            tokenizer=body.tokenizer,
            formats=tuple(body.formats),
            eos=body.eos,
            mds_text=body.mds_text,
        ),
        store=get_store(),
        dispatch=service.celery_dispatch,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/datasets/{name}/versions/{version}/exports/{row.id}"
    return _export(name, row)


@router.get(EXPORTS, response_model=ExportPage)
def list_exports(
    name: DatasetName,
    version: VersionNumber,
    principal: Reader,
    session: SessionDep,
    owner: Owner = None,
) -> ExportPage:
    """The version's exports, oldest first."""
    rows = service.list_exports(session, principal, name, version, owner)
    return ExportPage(items=[_export(name, row) for row in rows])


@router.get(EXPORTS + "/{export_id}", response_model=ExportRead)
def get_export(
    name: DatasetName,
    version: VersionNumber,
    export_id: ExportId,
    principal: Reader,
    session: SessionDep,
    owner: Owner = None,
) -> ExportRead:
    """An export's status and progress (documents and tokens written so far)."""
    _dataset, row = service.get_export(session, principal, name, version, export_id, owner)
    return _export(name, row)


@router.get(
    EXPORTS + "/{export_id}/index",
    response_class=Response,
    responses={
        200: {
            "description": "The export index (JSON): files with sha256, tokens per file, "
            "stance and format",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **documented(409),
    },
)
def get_index(
    name: DatasetName,
    version: VersionNumber,
    export_id: ExportId,
    principal: Reader,
    session: SessionDep,
    owner: Owner = None,
) -> Response:
    """A finished export's index (409 while it runs)."""
    _dataset, row = service.get_export(session, principal, name, version, export_id, owner)
    body = service.read_index(get_store(), row)
    assert row.index_sha256 is not None
    headers = immutable_headers(row.index_sha256)
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    EXPORTS + "/{export_id}/files/{file:path}",
    operation_id="download_export_file",
    response_class=Response,
    responses=EXPORT_FILE_RESPONSES,
)
@router.head(
    EXPORTS + "/{export_id}/files/{file:path}",
    operation_id="head_export_file",
    response_class=Response,
    responses=EXPORT_FILE_RESPONSES,
)
def get_export_file(
    request: Request,
    name: DatasetName,
    version: VersionNumber,
    export_id: ExportId,
    file: Annotated[str, Path(max_length=512)],
    principal: Reader,
    session: SessionDep,
    redirect: Annotated[bool, Query(description="On S3: 307 to a presigned URL.")] = False,
    owner: Owner = None,
) -> Response:
    """Download an export file by its index path; Range, If-None-Match and HEAD."""
    dataset, row = service.get_export(session, principal, name, version, export_id, owner)
    store = get_store()
    ref = service.find_export_file(store, dataset, row, file)
    return serve_file(request, store, ref, redirect, media_type="application/octet-stream")
