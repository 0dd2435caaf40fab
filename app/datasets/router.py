"""HTTP for datasets, versions, manifests and shard downloads (Range, ETag, sha256)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.core.auth import Admin, Reader, SessionDep, Submitter
from app.core.errors import RangeNotSatisfiable
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.core.settings import get_settings
from app.datasets import service
from app.datasets.http_range import UnsatisfiableRange, parse_range
from app.datasets.schemas import (
    DatasetRead,
    DatasetVersionRead,
    PositionRange,
    ShareCreate,
    ShareRead,
    VersionDiffRead,
)
from app.models import DatasetVersion
from app.storage import ObjectStore
from app.storage.default import get_store

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=GuardedRoute)

DatasetName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
Owner = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        description="The team whose dataset this is, when it shared it with yours "
        "(default: your team's own).",
    ),
]


def _read(name: str, version: DatasetVersion) -> DatasetVersionRead:
    return DatasetVersionRead(
        dataset=name,
        version=version.number,
        manifest_sha256=version.manifest_sha256,
        files=version.files,
        records=version.records,
        bytes=version.bytes,
        created_at=version.created_at,
    )


@router.get("", response_model=list[DatasetRead])
def list_datasets(principal: Reader, session: SessionDep) -> list[DatasetRead]:
    """The team's datasets, and those other teams shared with it (read them with ?owner=)."""
    return [
        DatasetRead(
            name=d.name, owner=owner, shared=d.team_id != principal.team_id, created_at=d.created_at
        )
        for d, owner in service.list_readable(session, principal)
    ]


@router.get("/{name}/shares", response_model=list[ShareRead])
def list_shares(name: DatasetName, principal: Admin, session: SessionDep) -> list[ShareRead]:
    """The teams the dataset is shared with."""
    return [
        ShareRead(team=team, created_at=created)
        for team, created in service.list_shares(session, principal, name)
    ]


@router.post(
    "/{name}/shares",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "It was shared with that team already"},
        **documented(409),
    },
)
def share_dataset(
    name: DatasetName, body: ShareCreate, principal: Admin, session: SessionDep, response: Response
) -> dict[str, str]:
    """Let another team read the dataset: versions, manifests, files, exports (not write)."""
    if not service.share_dataset(session, principal, name, body.team):
        response.status_code = status.HTTP_200_OK
    return {"dataset": name, "team": body.team}


@router.delete(
    "/{name}/shares/{team}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def unshare_dataset(
    name: DatasetName,
    team: Annotated[str, Path(min_length=1, max_length=100)],
    principal: Admin,
    session: SessionDep,
) -> Response:
    """Stop sharing the dataset with a team."""
    service.unshare_dataset(session, principal, name, team)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


ZSTD_FILE: dict[str, Any] = {
    "application/zstd": {"schema": {"type": "string", "contentMediaType": "application/zstd"}}
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": ZSTD_FILE},
    206: {"description": "The requested byte range", "content": ZSTD_FILE},
    304: {"description": "Not modified (If-None-Match)"},
    307: {"description": "?redirect=1 on S3: a presigned URL in Location"},
    **documented(416, 503),
}


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetVersionRead,
    responses={
        200: {
            "model": DatasetVersionRead,
            "description": "Nothing changed since the latest version, which is returned",
        },
        201: {"description": "A new version"},
        409: {
            "description": "Nothing to snapshot yet, or shard files are missing from the "
            "object store (listed in the problem); no version was published",
        },
        **documented(503),
    },
)
def create_version(
    name: DatasetName, principal: Submitter, session: SessionDep, response: Response
) -> DatasetVersionRead:
    """Snapshot the dataset's shards into an immutable version (the latest, if unchanged)."""
    created = service.create_version(
        session, principal, name, store=get_store(), settings=get_settings()
    )
    if not created.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/datasets/{name}/versions/{created.version.number}"
    return _read(name, created.version)


@router.get("/{name}/versions", response_model=list[DatasetVersionRead])
def list_versions(
    name: DatasetName, principal: Reader, session: SessionDep, owner: Owner = None
) -> list[DatasetVersionRead]:
    """Every version of the dataset, oldest first."""
    return [_read(name, v) for v in service.list_versions(session, principal, name, owner)]


@router.get(
    "/{name}/versions/{version}/diff",
    response_model=VersionDiffRead,
    responses=documented(409, 503),
)
def diff_versions(
    name: DatasetName,
    version: VersionNumber,
    since: Annotated[int, Query(ge=1, le=2**31 - 1, description="The earlier version.")],
    principal: Reader,
    session: SessionDep,
    owner: Owner = None,
) -> VersionDiffRead:
    """Documents (position ranges per stance) and files added or removed since a version."""
    found = service.diff_versions(
        session, principal, name, version, since, store=get_store(), owner=owner
    )

    def ranges(spans: dict[str, tuple[int, int]]) -> dict[str, PositionRange]:
        return {
            stance: PositionRange(start=start, end=end, documents=end - start)
            for stance, (start, end) in spans.items()
        }

    return VersionDiffRead(
        dataset=name,
        since=found.since,
        version=found.version,
        files_added=found.files_added,
        files_removed=found.files_removed,
        documents_added=ranges(found.documents_added),
        documents_removed=ranges(found.documents_removed),
    )


@router.head(
    "/{name}/versions/{version}/manifest",
    operation_id="head_dataset_manifest",
    response_class=Response,
    responses={
        200: {"description": "The manifest's headers"},
        206: {"description": "The headers of the requested byte range"},
        **documented(409, 416, 503),
    },
)
@router.get(
    "/{name}/versions/{version}/manifest",
    response_class=Response,
    responses={
        200: {
            "description": "The manifest (JSON)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        206: {
            "description": "The requested byte range of the manifest",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        304: {"description": "Not modified (If-None-Match)"},
        **documented(409, 416, 503),
    },
)
def get_manifest(
    request: Request,
    name: DatasetName,
    version: VersionNumber,
    principal: Reader,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
    owner: Owner = None,
) -> Response:
    """The version's manifest: files with path, bytes, sha256 and records."""
    _dataset, found = service.get_version(session, principal, name, version, owner)
    headers = immutable_headers(found.manifest_sha256)
    if not_modified(if_none_match, headers):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    body = service.read_manifest(get_store(), found)
    headers["Accept-Ranges"] = "bytes"
    byte_range = wanted_range(request, headers, len(body), "the manifest's")
    code, media_type = status.HTTP_200_OK, "application/json"
    if byte_range is not None:  # a piece of JSON is not JSON
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        body = body[start : end + 1]
        code, media_type = status.HTTP_206_PARTIAL_CONTENT, "application/octet-stream"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=code, headers=headers, media_type=media_type)
    return Response(body, status_code=code, media_type=media_type, headers=headers)


@router.get(
    "/{name}/versions/{version}/files/{file:path}",
    operation_id="download_dataset_file",
    response_class=Response,
    responses=FILE_RESPONSES,
)
@router.head(
    "/{name}/versions/{version}/files/{file:path}",
    operation_id="head_dataset_file",
    response_class=Response,
    responses=FILE_RESPONSES,
)
def get_file(
    request: Request,
    name: DatasetName,
    version: VersionNumber,
    file: Annotated[str, Path(max_length=512)],
    principal: Reader,
    session: SessionDep,
    redirect: Annotated[
        bool,
        Query(
            description="On S3, answer 307 with a short-lived presigned URL instead of "
            "streaming the bytes through the API (the local store streams them anyway)."
        ),
    ] = False,
    owner: Owner = None,
) -> Response:
    """Download a file by its manifest path (or file name); Range, If-None-Match and HEAD."""
    dataset, found = service.get_version(session, principal, name, version, owner)
    store = get_store()
    return serve_file(request, store, service.find_file(store, dataset, found, file), redirect)


def immutable_headers(sha256: str) -> dict[str, str]:
    """What every content-addressed download carries: its sha256 as a strong ETag."""
    return {"ETag": f'"{sha256}"', "X-Content-SHA256": sha256, "Cache-Control": "immutable"}


def not_modified(if_none_match: str | None, headers: dict[str, str]) -> bool:
    """If-None-Match names the ETag in ``headers``: the client has these bytes."""
    tags = {tag.strip() for tag in if_none_match.split(",")} if if_none_match else set()
    return headers["ETag"] in tags


def wanted_range(
    request: Request, headers: dict[str, str], size: int, what: str
) -> tuple[int, int] | None:
    """The byte range asked for (inclusive), or None for all of it: a range ignored when
    If-Range names another version of the bytes (the client's copy is stale)."""
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except UnsatisfiableRange as exc:
        raise RangeNotSatisfiable(f"range {exc} is outside {what} {size} bytes", size=size) from exc
    if_range = request.headers.get("if-range")
    if byte_range is not None and if_range is not None and if_range.strip() != headers["ETag"]:
        return None
    return byte_range


def serve_file(
    request: Request,
    store: ObjectStore,
    ref: service.FileRef,
    redirect: bool,
    media_type: str = "application/zstd",
) -> Response:
    """A stored file the way every download route serves it: Range, If-Range, ETag = sha256,
    If-None-Match, HEAD, and on S3 a presigned redirect when asked."""
    service.check_stored(store, ref)  # fail with a problem now, not mid-body
    if redirect:
        url = store.presigned_url(ref.key, get_settings().presigned_url_seconds)
        if url is not None:
            return Response(
                status_code=status.HTTP_307_TEMPORARY_REDIRECT,
                headers={
                    "Location": url,
                    "X-Content-SHA256": ref.sha256,
                    "Cache-Control": "no-store",  # the URL expires; the bytes do not
                },
            )
    headers = immutable_headers(ref.sha256) | {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{ref.name}"',
    }
    if not_modified(request.headers.get("if-none-match"), headers):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    byte_range = wanted_range(request, headers, ref.bytes, "the file's")
    start, end = byte_range if byte_range else (0, ref.bytes - 1)
    headers["Content-Length"] = str(end - start + 1 if ref.bytes else 0)
    code = status.HTTP_200_OK
    if byte_range is not None:
        code = status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {start}-{end}/{ref.bytes}"
    if request.method == "HEAD":
        return Response(status_code=code, headers=headers, media_type=media_type)
    body = store.iter_range(ref.key, start, end) if ref.bytes else iter(())
    return StreamingResponse(body, status_code=code, headers=headers, media_type=media_type)
