"""Who may do what: htpasswd (bcrypt) basic auth, and the token flow with a built-in issuer.

Tokens are JWTs signed with HMAC-SHA256 by the key given to ``--token-issuer``. Verification
accepts exactly that algorithm and that key: whatever key or algorithm a token's header names
(``jwk``, ``x5c``, ``kid``, ``alg: none``, RS256...) is never trusted. The stdlib's hmac does
the signing; a JWT library would add a dependency for three lines of code.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moorage.errors import InvalidArgument
from moorage.registry.errors import RegistryError

SERVICE = "moorage-registry"
TOKEN_TTL = 300


@dataclass(frozen=True)
class Access:
    """One requested right: ``repository:<name>:<action>`` (or ``registry:catalog:*``)."""

    type: str
    name: str
    action: str

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


class Unauthorized(RegistryError):
    def __init__(self, challenge: str, message: str | None = None, detail: Any = None) -> None:
        super().__init__("UNAUTHORIZED", message, detail)
        self.challenge = challenge


def load_htpasswd(path: Path) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidArgument(f"cannot read htpasswd file {path}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            raise InvalidArgument(f"{path}:{n}: only bcrypt entries (user:$2y$...) are supported")
        users[user] = hashed.encode()
    return users


def load_acl(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{user: {repository-glob: [pull, push, delete]}}`` from a JSON or YAML file."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InvalidArgument(f"cannot read access file {path}: {e}") from None
    if not isinstance(doc, dict) or not all(
        isinstance(rules, dict)
        and all(isinstance(a, list) and all(x in ("pull", "push", "delete", "*") for x in a)
                for a in rules.values())
        for rules in doc.values()
    ):  # fmt: skip
        raise InvalidArgument(
            f"{path}: expected {{user: {{repository-pattern: [pull, push, delete]}}}}"
        )
    return {str(u): {str(k): [str(x) for x in v] for k, v in r.items()} for u, r in doc.items()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(key: bytes, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def verify_token(key: bytes, token: str, service: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a token signed with ``key``; ValueError for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("malformed token")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except (ValueError, TypeError):
        raise ValueError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise ValueError("token not signed with the configured key")
    want = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, sig):
        raise ValueError("token not signed with the configured key")
    if not isinstance(claims, dict):
        raise ValueError("malformed token claims")
    t = time.time() if now is None else now
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < t:
        raise ValueError("token expired")
    if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > t + 60:
        raise ValueError("token not yet valid")
    if claims.get("iss") != SERVICE or claims.get("aud") != service:
        raise ValueError("token issued for another service")
    return claims


@dataclass
class Authorizer:
    """The registry's access policy (no htpasswd: everyone may do everything)."""

    users: dict[str, bytes] | None = None
    acl: dict[str, dict[str, list[str]]] | None = None
    token_key: bytes | None = None
    realm: str | None = None
    service: str = SERVICE
    _verified: dict[bytes, str] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.users is None

    def allowed(self, user: str, access: Access) -> bool:
        if access.type == "registry":
            return access.name == "catalog"
        if self.acl is None:
            return True
        for pattern, actions in self.acl.get(user, {}).items():
            if fnmatch.fnmatchcase(access.name, pattern) and (
                access.action in actions or "*" in actions
            ):
                return True
        return False

    def check_password(self, user: str, password: str) -> bool:
        import bcrypt

        assert self.users is not None
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if self._verified.get(key) == user:
            return True
        hashed = self.users.get(user)
        if hashed is None or not bcrypt.checkpw(
            password.encode(), hashed.replace(b"$2y$", b"$2b$", 1)
        ):
            return False
        if len(self._verified) > 1000:
            self._verified.clear()
        self._verified[key] = user
        return True

    def basic_user(self, header: str | None) -> str | None:
        """The user a ``Basic`` Authorization header proves, or None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if self.check_password(user, password) else None

    def challenge(self, host_url: str, wanted: list[Access]) -> str:
        if self.token_key is None:
            return f'Basic realm="{self.service}"'
        realm = self.realm or f"{host_url}/token"
        scope = _scope_string(wanted)
        out = f'Bearer realm="{realm}",service="{self.service}"'
        return out + (f',scope="{scope}"' if scope else "")

    def authorize(self, header: str | None, host_url: str, wanted: list[Access]) -> None:
        """Raise Unauthorized (401) or DENIED (403) unless ``header`` grants ``wanted``."""
        if self.open:
            return
        challenge = self.challenge(host_url, wanted)
        detail = [{"Type": a.type, "Name": a.name, "Action": a.action} for a in wanted]
        if self.token_key is not None:
            if not header or not header.lower().startswith("bearer "):
                raise Unauthorized(challenge, detail=detail)
            try:
                claims = verify_token(self.token_key, header[7:].strip(), self.service)
            except ValueError as e:
                raise Unauthorized(challenge, f"authentication required: {e}", detail) from None
            granted = {
                (g.get("type"), g.get("name"), act)
                for g in claims.get("access") or []
                if isinstance(g, dict)
                for act in g.get("actions") or []
            }
            for a in wanted:
                if (a.type, a.name, a.action) not in granted:
                    raise Unauthorized(challenge, "insufficient scope", detail)
            return
        user = self.basic_user(header)
        if user is None:
            raise Unauthorized(challenge, detail=detail)
        for a in wanted:
            if not self.allowed(user, a):
                raise RegistryError("DENIED", detail=detail)

    def issue(self, header: str | None, scopes: list[str], service: str) -> dict[str, Any]:
        """The token endpoint: a JWT granting the requested scopes this user is allowed."""
        assert self.token_key is not None
        user = self.basic_user(header)
        if user is None:
            raise Unauthorized(f'Basic realm="{self.service}"', "invalid username or password")
        if service and service != self.service:
            raise RegistryError("DENIED", f"unknown service {service!r}")
        access: list[dict[str, Any]] = []
        for scope in scopes:
            for a in parse_scope(scope):
                if self.allowed(user, a):
                    for entry in access:
                        if entry["type"] == a.type and entry["name"] == a.name:
                            entry["actions"].append(a.action)
                            break
                    else:
                        access.append({"type": a.type, "name": a.name, "actions": [a.action]})
        now = int(time.time())
        claims = {
            "iss": SERVICE,
            "sub": user,
            "aud": self.service,
            "exp": now + TOKEN_TTL,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(12).hex(),
            "access": access,
        }
        token = sign_token(self.token_key, claims)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": TOKEN_TTL, "issued_at": issued}


def parse_scope(scope: str) -> list[Access]:
    """``repository:name:pull,push`` -> one Access per action (malformed parts ignored)."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not typ or not name:
        return []
    return [Access(typ, name, a) for a in actions.split(",") if a]


def _scope_string(wanted: list[Access]) -> str:
    by: dict[tuple[str, str], list[str]] = {}
    for a in wanted:
        by.setdefault((a.type, a.name), []).append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in by.items())


def load_token_key(path: Path) -> bytes:
    """The signing key in ``path``, created (32 random bytes, mode 0600) when absent."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    except OSError as e:
        raise InvalidArgument(f"cannot read token key {path}: {e.strerror}") from None
    if len(key) < 16:
        raise InvalidArgument(f"token key {path} is shorter than 16 bytes")
    return key
