"""Who may call the service (`AccessPolicy`) and the ASGI middleware that asks it of every request (`Guard`).

Any web page the user visits can send requests to a local server, so ``/extract`` takes only ``Content-Type:
application/json`` (415; a cross-site page cannot send that without a CORS preflight, which this server never
grants); a request whose ``Host`` is not an allowed name (DNS rebinding) or whose ``Origin`` is another site gets
403; with an API key, every path but the page at ``/`` needs ``Authorization: Bearer KEY`` (401; Label Studio's
Basic auth carries it as the password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .options import API_KEY_ENV, ServeOptions


class RequestError(Exception):
    """A request the service refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _host_name(netloc: str) -> str | None:
    """The lower-case host name of ``name``, ``name:port``, ``[v6]:port`` or a bare IPv6 address."""
    netloc = netloc.strip()
    if netloc.count(":") > 1 and not netloc.startswith("["):
        return netloc.lower()  # a bare IPv6 address
    try:
        name = urlsplit("//" + netloc).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


@dataclass(frozen=True)
class AccessPolicy:
    """Who may call the service: the host names a request's ``Host`` may name (any port), the
    origins (exact ``scheme://host:port``) or host names its ``Origin`` may come from, the API key."""

    hosts: frozenset = frozenset(LOCAL_HOSTS)
    origins: frozenset = frozenset()
    any_host: bool = False  # '*': no Host or Origin check
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():  # "Bearer " would match it
            raise ValueError("the API key is empty: give a key, or None for no key")

    @classmethod
    def from_options(cls, allowed: str, bound_host: str = "127.0.0.1", api_key: str | None = None) -> AccessPolicy:
        """The policy of ``--allowed-origins`` (comma-separated names or origins, '*'), the bound
        ``--host`` (accepted too; for a wildcard address, this machine's name) and the key."""
        hosts, origins, any_host = set(LOCAL_HOSTS), set(), False
        bound = bound_host.strip("[]").lower()
        hosts.add(socket.gethostname().lower() if bound in WILDCARD_HOSTS else bound)
        for entry in filter(None, (part.strip() for part in allowed.split(","))):
            if entry == "*":
                any_host = True
            elif "://" in entry:
                origin = _origin(entry)
                if origin is None:
                    raise ValueError(f"--allowed-origins: not an origin such as http://name:8000: {entry!r}")
                origins.add(origin)
            else:
                name = _host_name(entry)
                if not name:
                    raise ValueError(f"--allowed-origins: not a host name: {entry!r}")
                hosts.add(name)
        return cls(frozenset(hosts), frozenset(origins), any_host, api_key)

    def refusal(self, path: str, headers) -> tuple[int, str] | None:
        """(status, reason) when the request with these headers may not have ``path``; None if it may."""
        if not self.any_host:
            host = headers.get("host")
            if host is not None and _host_name(host) not in self.hosts:  # no Host: not a browser
                return 403, f"host {host!r} is not allowed (serve --allowed-origins)"
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin):
                return 403, f"origin {origin!r} is not allowed (serve --allowed-origins)"
        if self.api_key is not None and path != "/" and not self.key_matches(headers.get("authorization")):
            return 401, "missing or wrong API key: send 'Authorization: Bearer KEY'"
        return None

    def origin_allowed(self, origin: str) -> bool:
        """An ``Origin`` header listed, or on an allowed host name (``null``, from a sandbox or a file, is not)."""
        normal = _origin(origin)
        if normal is None:
            return False
        return normal in self.origins or _host_name(urlsplit(normal).netloc) in self.hosts

    def key_matches(self, authorization: str | None) -> bool:
        """``Bearer KEY``, or ``Basic`` with the key as password (any user name: Label Studio's ML
        backend authentication is HTTP Basic), with this policy's key, compared in constant time."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "basic":  # base64 of "user:password"
            try:
                sent = base64.b64decode(token.strip(), validate=True).partition(b":")[2]
            except ValueError:  # binascii.Error, or characters outside ASCII
                return False
        elif scheme.lower() == "bearer":
            sent = token.strip().encode("latin-1", "replace")
        else:
            return False
        # Digests first: compare_digest of equal-length values, so the time tells nothing of the length either.
        return hmac.compare_digest(hashlib.sha256(sent).digest(), hashlib.sha256(self.api_key.encode("utf-8")).digest())


def _origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None for anything that is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip().rstrip("/").lower())
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        return None
    return f"{parts.scheme}://{parts.netloc}"


class Guard:
    """ASGI middleware: every HTTP request passes `AccessPolicy.refusal` before it reaches the app."""

    def __init__(self, app, policy: AccessPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            refusal = self.policy.refusal(scope["path"], Headers(scope=scope))
            if refusal is not None:
                status, message = refusal
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def api_key(options: ServeOptions) -> str | None:
    """The key of ``--api-key``, else of LLM_NER_SERVE_API_KEY; None when neither is given. ValueError for an
    empty or blank one: given on purpose but empty (an unset ``$KEY``), it would serve with no key at all."""
    for source, key in (("--api-key", options.api_key), (API_KEY_ENV, os.environ.get(API_KEY_ENV))):
        if key is None:
            continue
        if not key.strip():
            raise ValueError(
                f"{source} is {'empty' if not key else 'blank'}: give the key, or leave it out entirely to serve "
                "without one"
            )
        return key
    return None


def access_policy(options: ServeOptions) -> AccessPolicy:
    """The `AccessPolicy` of ``options``, with `api_key`."""
    return AccessPolicy.from_options(options.allowed_origins, options.host, api_key(options))
