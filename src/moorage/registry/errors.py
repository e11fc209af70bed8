"""The OCI distribution spec's error codes, each with its message and HTTP status, in one table."""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, message)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (404, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
}


class RegistryError(Exception):
    """An error answered as ``{"errors": [{"code", "message", "detail"}]}`` with its status."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None) -> None:
        status, default = ERROR_CODES[code]
        super().__init__(message or default)
        self.code = code
        self.status = status
        self.message = message or default
        self.detail = detail

    def body(self) -> bytes:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode()
