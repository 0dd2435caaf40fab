"""Object store on S3 or an S3-compatible server (``s3://bucket/prefix``), through boto3.

Every write is create-only (``If-None-Match: *``) and carries its SHA-256, which the server
checks before it stores anything: an object is never overwritten and never half-written.
Files above ``MULTIPART_THRESHOLD`` go up in parts, uploaded in parallel, each with its own
checksum; an upload that fails midway is aborted, so no parts are left behind.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.core.errors import ConfigurationError
from app.storage.base import ObjectExists, ObjectInfo, ObjectNotFound, check_key

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - exercised by installs without the extra
    raise ConfigurationError(
        "PRIORFORGE_STORAGE_URL is an s3:// URL but boto3 is not installed: install "
        "PriorForge with its S3 extra (pip install 'priorforge[s3]')"
    ) from exc

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 32 * 1024 * 1024
UPLOAD_THREADS = 8
NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=32,
                # The SDK would add a CRC32 of its own to every request; we send SHA-256.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ChecksumSHA256=_b64_sha256(body),
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _code(exc) in EXISTS:
                raise ObjectExists(key) from exc
            raise

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        size = source.stat().st_size
        if size <= MULTIPART_THRESHOLD:
            self._put(key, source.read_bytes())
        else:
            self._put_multipart(key, source, size)
        return ObjectInfo(key=key, size=size)

    def _put_multipart(self, key: str, source: Path, size: int) -> None:
        full = self._key(key)
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256"
        )["UploadId"]

        def send(number: int) -> dict[str, Any]:
            with source.open("rb") as handle:
                handle.seek((number - 1) * PART_SIZE)
                data = handle.read(PART_SIZE)
            checksum = _b64_sha256(data)
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        try:
            with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
                parts = list(pool.map(send, range(1, -(-size // PART_SIZE) + 1)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
            if _code(exc) in EXISTS:
                raise ObjectExists(key) from exc
            raise
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
            raise

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        self._put(key, data)
        return ObjectInfo(key=key, size=len(data))

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._put(key, data)
        except ObjectExists:
            return False
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise
        return bytes(response["Body"].read())

    def stat(self, key: str) -> ObjectInfo:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise
        return ObjectInfo(key=key, size=int(response["ContentLength"]))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self.client.get_object(**request)
        except ClientError as exc:
            if _code(exc) in NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_s,
            )
        )

    def check(self) -> None:
        """Write and delete a probe object; raise ConfigurationError naming the fix."""
        probe = f".priorforge-probe/{uuid.uuid4()}"
        try:
            self.put_bytes(probe, b"ok")
        except ClientError as exc:
            raise ConfigurationError(self._explain(exc)) from exc
        except BotoCoreError as exc:
            raise ConfigurationError(
                f"cannot use the object store {self.url} ({exc}): check PRIORFORGE_S3_ENDPOINT_URL"
                f" ({self.endpoint_url or 'unset: AWS'}) and the AWS_* credentials and region"
            ) from exc
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(probe))
        except (ClientError, BotoCoreError):
            # Writing is what the service needs; a key without s3:DeleteObject leaves probes.
            log.warning("could not delete the probe object %s from %s", probe, self.url)

    def _explain(self, exc: ClientError) -> str:
        code = _code(exc)
        if code == "NoSuchBucket":
            return (
                f"the bucket {self.bucket!r} of PRIORFORGE_STORAGE_URL ({self.url}) does not exist"
                f" at {self.endpoint_url or 'AWS'}: create it, or fix the URL"
            )
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return (
                f"the object store {self.url} refused to let this process write ({code}): give "
                "its AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY s3:PutObject and s3:GetObject on "
                "the bucket"
            )
        return f"the object store {self.url} failed a test write: {exc}"
