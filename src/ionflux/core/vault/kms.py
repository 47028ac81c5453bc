"""AWS KMS as the master-key source: KMS generates and opens data keys; the master key never leaves it.

The credential's (workspace_id, provider, name) is the EncryptionContext, so a wrapped key copied to
another row does not decrypt, and CloudTrail shows which credential each Decrypt was for.
`rotate()` re-resolves the configured key id (an alias may now point at a new key): `Vault.rotate()`
then moves every row to it. Rotation of a key's own material is KMS's job (EnableKeyRotation).
boto3 is imported here only, when this source is chosen; its blocking calls run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ionflux.core.errors import VaultError
from ionflux.core.vault.keys import KEY_BYTES, Keyring, MasterKeyUnavailable, WrappedKey

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient


class KmsKeyring(Keyring):
    def __init__(self, key_id: str, client: KMSClient | None = None) -> None:
        self.configured_key_id = key_id
        try:
            self._client: KMSClient = client or boto3.client("kms")
        except BotoCoreError as exc:  # e.g. NoRegionError: say what to set, at start, in one line
            raise MasterKeyUnavailable(f"KMS client: {exc} (set AWS_REGION)") from None
        self._arn: str | None = None

    async def current_key_id(self) -> str:
        if self._arn is None:
            response = await self._call("DescribeKey", self._client.describe_key, KeyId=self.configured_key_id)
            self._arn = str(response["KeyMetadata"]["Arn"])
        return self._arn

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        response = await self._call(
            "GenerateDataKey", self._client.generate_data_key,
            KeyId=await self.current_key_id(), KeySpec="AES_256", EncryptionContext=dict(context),
        )
        plaintext: bytes = response["Plaintext"]
        if len(plaintext) != KEY_BYTES:
            raise VaultError("KMS GenerateDataKey returned a key of the wrong length")
        return plaintext, WrappedKey(str(response["KeyId"]), response["CiphertextBlob"])

    async def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        response = await self._call(
            "Encrypt", self._client.encrypt,
            KeyId=await self.current_key_id(), Plaintext=data_key, EncryptionContext=dict(context),
        )
        return WrappedKey(str(response["KeyId"]), response["CiphertextBlob"])

    async def unwrap(self, blob: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        # KeyId pins the key we expect: a blob made under some other key is refused, not trusted.
        response = await self._call(
            "Decrypt", self._client.decrypt,
            CiphertextBlob=blob, KeyId=key_id, EncryptionContext=dict(context),
        )
        plaintext: bytes = response["Plaintext"]
        return plaintext

    async def rotate(self) -> str:
        self._arn = None
        return await self.current_key_id()

    async def _call(self, operation: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, **kwargs)
        except ClientError as exc:
            # The error code only: AWS messages are safe, but nothing of the request is echoed anyway.
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if operation == "Decrypt" and code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise VaultError(
                    "data key does not unwrap: tampered, moved to another row, or wrong key"
                ) from None
            raise MasterKeyUnavailable(f"KMS {operation} failed: {code}") from None
        except BotoCoreError as exc:
            raise MasterKeyUnavailable(f"KMS {operation} failed: {type(exc).__name__}") from None
