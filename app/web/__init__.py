"""`systolab serve`: the web front end (configs, compiled programs, timelines, runs, sweeps) and
the HTTP API behind it. `create_app(Settings(...))` gives the ASGI application; `serve` runs it
under uvicorn after the safety checks of `safety.py`."""

from __future__ import annotations

import os
from pathlib import Path

from .api import Settings, create_app
from .safety import TOKEN_ENV, check_bind

__all__ = ["serve", "create_app", "Settings", "TOKEN_ENV"]


def serve(*, host: str = "127.0.0.1", port: int = 8000, store: str | Path = "web-store",
          token: str | None = None, max_upload_mib: int = 64, max_jobs: int = 2,
          log=print) -> None:
    """Run the service until Ctrl-C; refuses a non-loopback `host` without a token."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    import uvicorn

    app = create_app(Settings(store=Path(store), token=token, max_upload=max_upload_mib << 20,
                              max_jobs=max_jobs))
    shown = f"[{host}]" if ":" in host else host
    log(f"systolab serve: http://{shown}:{port}/ (store {Path(store).resolve()}"
        + (", token required" if token else "") + "; API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
