"""`bertforge serve MODEL`: a local web page and JSON API to try one model (see app.py).

Needs `pip install "bertforge[serve]"` (starlette, uvicorn).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)


def _imports():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise DataError('serve needs starlette and uvicorn: pip install "bertforge[serve]"') from None
    return uvicorn


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """A one-line error now, rather than uvicorn's traceback later, when the address is taken."""
    if not 0 < port < 65536:
        raise DataError(f"--port must be between 1 and 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise DataError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port or --host") from None


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> int:
    """Load `model` and answer on http://HOST:PORT until Ctrl-C."""
    uvicorn = _imports()
    from .app import create_app

    check_port(host, port)
    app = create_app(model, device)
    if not is_loopback(host):
        log.warning("listening on %s: other machines on the network can reach this page; it has no login", host)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s on http://%s:%d (Ctrl-C stops)", model, shown, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    return 0


def create_app(model, device: str = "auto"):
    _imports()
    from .app import create_app as create

    return create(model, device)
