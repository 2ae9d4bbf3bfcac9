"""Who may call the API: this machine always; with ``ORCHARD_API_KEY`` set, whoever sends the key.

Every API router depends on :func:`require_access`. The web app's files are served without it (the page then
asks for the key); ``/docs`` and ``/openapi.json`` describe the API and are open too.
"""

from __future__ import annotations

import ipaddress
import secrets

from fastapi import Request

from backend.config import Settings
from backend.errors import RemoteAccessError, UnauthorizedError


def is_local(host: str | None) -> bool:
    """A loopback peer. Peers that are not IP addresses (Unix sockets, the test client) are local too."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key")


def require_access(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        if not settings.allow_remote_without_key and not is_local(request.client.host if request.client else None):
            raise RemoteAccessError(
                "Orchard answers other machines only with an API key: set ORCHARD_API_KEY on the server and send it "
                "as 'Authorization: Bearer <key>'.",
            )
        return
    given = presented_key(request)
    if given is None:
        raise UnauthorizedError("This Orchard needs its API key: send 'Authorization: Bearer <key>' or 'X-API-Key'.")
    if not secrets.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
        raise UnauthorizedError("Wrong API key.")
