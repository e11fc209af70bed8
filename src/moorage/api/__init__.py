"""The Docker Engine API service (``moor system service``): aiohttp handlers that translate
requests into engine calls, one module per resource; nothing here shells out to ``moor``."""

from __future__ import annotations

MIN_API_VERSION = "1.24"
MAX_API_VERSION = "1.50"  # what the docker 28 CLI asks for
