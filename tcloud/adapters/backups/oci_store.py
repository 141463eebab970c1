"""OCI Object Storage through the ``oci`` SDK: one PUT for small objects, the multipart API for large ones.

The SDK is synchronous (``requests``); every call runs in a thread. Object metadata is fixed when an object
is created, so a multipart object (whose sha256 is known only at the end) carries ``sha256``/``size`` in its
metadata only when it fits one part; the backup manifest records both for every object either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import oci
from oci.object_storage.models import (
    CommitMultipartUploadDetails,
    CommitMultipartUploadPartDetails,
    CreateMultipartUploadDetails,
)

from tcloud.adapters.backups.store import CHUNK_BYTES, Digest, ObjectNotFoundError, StoredObject, check_key
from tcloud.settings import Settings

# The SDK's own default for streamed uploads (oci.object_storage.transfer.constants.STREAMING_DEFAULT_PART_SIZE).
DEFAULT_PART_BYTES = 10 * 1024 * 1024
META_PREFIX = "opc-meta-"


def object_storage_client(settings: Settings) -> oci.object_storage.ObjectStorageClient:
    """A client authenticated by the configured OCI config file or the instance principal.

    Region and endpoint come from ``settings.oci_region`` / ``settings.oci_endpoint`` when set.
    """
    kwargs: dict[str, Any] = {}
    if settings.oci_endpoint:
        kwargs["service_endpoint"] = settings.oci_endpoint
    if settings.oci_auth == "instance_principal":
        signer = oci.auth.signers.InstancePrincipalsSecurityTokenSigner()
        config: dict[str, Any] = {"region": settings.oci_region or signer.region}
        return oci.object_storage.ObjectStorageClient(config, signer=signer, **kwargs)
    config = oci.config.from_file(str(settings.oci_config_file.expanduser()), settings.oci_profile)
    if settings.oci_region:
        config["region"] = settings.oci_region
    oci.config.validate_config(config)
    return oci.object_storage.ObjectStorageClient(config, **kwargs)


class OciObjectStore:
    """A bucket of OCI Object Storage as a backup store."""

    name = "oci"

    def __init__(self, client: oci.object_storage.ObjectStorageClient, namespace: str, bucket: str, *,
                 part_bytes: int = DEFAULT_PART_BYTES) -> None:
        self._client = client
        self._namespace = namespace
        self._bucket = bucket
        self._part_bytes = part_bytes

    @classmethod
    async def from_settings(cls, settings: Settings, *, part_bytes: int = DEFAULT_PART_BYTES) -> OciObjectStore:
        client = await asyncio.to_thread(object_storage_client, settings)
        namespace = settings.oci_namespace or (await asyncio.to_thread(client.get_namespace)).data
        return cls(client, namespace, settings.oci_bucket, part_bytes=part_bytes)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self._client, method)
        return await asyncio.to_thread(fn, self._namespace, self._bucket, *args, **kwargs)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], metadata: dict[str, str]) -> StoredObject:
        check_key(key)
        digest = Digest()
        pending: list[bytes] = []  # chunks not uploaded yet; joined once per part (one copy, no slicing)
        pending_size = 0
        upload_id: str | None = None
        parts: list[CommitMultipartUploadPartDetails] = []
        # One part uploads while the next fills, so pg_dump never waits on the network.
        in_flight: asyncio.Task[CommitMultipartUploadPartDetails] | None = None
        try:
            async for chunk in chunks:
                digest.update(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= self._part_bytes:
                    if upload_id is None:
                        upload_id = await self._create_upload(key, metadata)
                    if in_flight is not None:
                        parts.append(await in_flight)
                    data = b"".join(pending)
                    pending.clear()
                    pending_size = 0
                    in_flight = asyncio.create_task(self._upload_part(key, upload_id, len(parts) + 1, data))
                    del data
            if in_flight is not None:
                parts.append(await in_flight)
                in_flight = None
            rest = b"".join(pending)
            if upload_id is None:
                # It fitted one part: a single PUT, with sha256 and size in the object's metadata.
                full = {**metadata, "sha256": digest.hexdigest, "size": str(digest.size)}
                await self._call("put_object", key, rest, content_length=len(rest), opc_meta=full)
                return StoredObject(key, digest.size, digest.hexdigest, full)
            if rest:
                parts.append(await self._upload_part(key, upload_id, len(parts) + 1, rest))
            await self._call("commit_multipart_upload", key, upload_id,
                             CommitMultipartUploadDetails(parts_to_commit=parts))
        except BaseException:
            if in_flight is not None:
                in_flight.cancel()
                await asyncio.gather(in_flight, return_exceptions=True)
            if upload_id is not None:
                await asyncio.shield(self._abort(key, upload_id))
            raise
        return StoredObject(key, digest.size, digest.hexdigest, dict(metadata))

    async def _create_upload(self, key: str, metadata: dict[str, str]) -> str:
        details = CreateMultipartUploadDetails(
            object=key, metadata={f"{META_PREFIX}{k}": v for k, v in metadata.items()})
        response = await asyncio.to_thread(self._client.create_multipart_upload, self._namespace, self._bucket,
                                           details)
        return str(response.data.upload_id)

    async def _upload_part(self, key: str, upload_id: str, number: int,
                           data: bytes) -> CommitMultipartUploadPartDetails:
        response = await self._call("upload_part", key, upload_id, number, data, content_length=len(data))
        return CommitMultipartUploadPartDetails(part_num=number, etag=response.headers["etag"])

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", key, upload_id)
        except oci.exceptions.ServiceError:
            pass  # the upload expires on its own; the original error matters more

    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str]) -> StoredObject:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), metadata)

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            response = await self._call("get_object", key)
        except oci.exceptions.ServiceError as err:
            if err.status == 404:
                raise ObjectNotFoundError(key) from err
            raise
        body = response.data
        it: Iterator[bytes] = body.iter_content(chunk_size=CHUNK_BYTES)
        try:
            while chunk := await asyncio.to_thread(next, it, b""):
                yield chunk
        finally:
            body.close()

    async def get_bytes(self, key: str) -> bytes:
        out = bytearray()
        async for chunk in self.get_stream(key):
            out += chunk
        return bytes(out)

    async def head(self, key: str) -> StoredObject | None:
        check_key(key)
        try:
            response = await self._call("head_object", key)
        except oci.exceptions.ServiceError as err:
            if err.status == 404:
                return None
            raise
        headers = {k.lower(): v for k, v in response.headers.items()}
        metadata = {k[len(META_PREFIX):]: v for k, v in headers.items() if k.startswith(META_PREFIX)}
        return StoredObject(key, int(headers.get("content-length", 0)), metadata.get("sha256"), metadata)

    async def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"prefix": prefix, "fields": "name,size"}
            if start:
                kwargs["start"] = start
            response = await self._call("list_objects", **kwargs)
            keys += [o.name for o in response.data.objects]
            start = response.data.next_start_with
            if not start:
                return sorted(keys)

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await self._call("delete_object", key)
        except oci.exceptions.ServiceError as err:
            if err.status != 404:
                raise
