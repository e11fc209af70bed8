"""The one exception tree of moorage; the CLI and the API map it to exit codes and statuses."""

from __future__ import annotations


class MoorageError(Exception):
    """Root of every error moorage raises on purpose.

    ``exit_code`` is what a plain CLI command exits with (the docker CLI uses 1 for errors);
    ``http_status`` is what the Engine API answers with.
    """

    exit_code: int = 1
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(MoorageError):
    """An image, container, network, volume, blob or other object does not exist."""

    http_status = 404


class AlreadyExists(MoorageError):
    """An object with that name or id already exists."""

    http_status = 409


class Conflict(MoorageError):
    """The operation conflicts with the object's state (e.g. removing an image in use)."""

    http_status = 409


class InvalidArgument(MoorageError):
    """Bad input from the user: a flag, a reference, a file, a key."""

    http_status = 400


class InvalidReference(InvalidArgument):
    """An image reference that does not follow Docker's grammar."""


class InvalidDigest(InvalidArgument):
    """A digest string that is not ``algorithm:hex`` with a known algorithm and length."""


class DigestMismatch(InvalidArgument):
    """Content whose digest or size is not what its descriptor says."""


class InvalidLayer(InvalidArgument):
    """A layer tarball that is corrupt, truncated or hostile."""


class InvalidArchive(InvalidArgument):
    """An image archive (docker-archive, OCI layout) that is corrupt or incomplete."""


class StoreError(MoorageError):
    """The store is damaged or cannot be used (e.g. a failed migration, a broken lock)."""


class Unsupported(MoorageError):
    """A valid request for something moorage does not do (yet)."""

    http_status = 501
