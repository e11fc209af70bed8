"""Searching registries: Docker Hub's search API, or another registry's catalog filtered by
the words asked for (shared by ``moor search`` and the API's ``GET /images/search``)."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.distribution import credentials as stored
from moorage.distribution.client import RegistryClient, RegistryUnavailable


@dataclass(frozen=True)
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


def split_term(term: str) -> tuple[str, str]:
    """``[REGISTRY/]WORDS`` -> (registry domain, words); Docker Hub when no registry is named."""
    first, slash, rest = term.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", term


def search(
    term: str,
    limit: int = 25,
    *,
    tls_verify: bool | None = None,
    credentials: tuple[str, str] | None = None,
    stored_credentials: bool = True,
) -> list[SearchResult]:
    domain, words = split_term(term)
    if domain == "docker.io":
        return _hub_search(words, limit)
    if credentials is None and stored_credentials:
        credentials = stored.lookup(domain)
    client = RegistryClient(domain, tls_verify=tls_verify, credentials=credentials)
    try:
        names = client.catalog()
    finally:
        client.close()
    return [SearchResult(f"{domain}/{n}") for n in names if words.lower() in n.lower()][:limit]


def _hub_search(term: str, limit: int) -> list[SearchResult]:
    """Docker Hub's search API (``index.docker.io/v1/search``): Docker Hub has no catalog."""
    import httpx

    try:
        resp = httpx.get(
            "https://index.docker.io/v1/search", params={"q": term, "n": limit}, timeout=15
        )
        resp.raise_for_status()
        results = resp.json().get("results") or []
    except (httpx.HTTPError, ValueError) as e:
        raise RegistryUnavailable(f"cannot search Docker Hub: {e}") from None
    return [
        SearchResult(
            name=str(r.get("name", "")),
            description=str(r.get("description") or ""),
            star_count=int(r.get("star_count") or 0),
            is_official=bool(r.get("is_official")),
            is_automated=bool(r.get("is_automated")),
        )
        for r in results[:limit]
        if isinstance(r, dict)
    ]
