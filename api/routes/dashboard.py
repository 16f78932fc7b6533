"""The dashboard page: static HTML, one script and one stylesheet, served without a key.

The page holds no data; its script reads the JSON API and the event stream with a viewer
key sent as a header (never in a URL, so no access log or Referer carries it). The key comes
from the URL fragment (``/dashboard#key=...``, which browsers never send to the server) or
from a prompt, and is kept in ``sessionStorage`` for the tab's lifetime.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH = "/dashboard/static"

# Everything the page loads comes from this origin; nothing is fetched from the internet,
# and no inline script can run even if some text were ever inserted as markup.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The page itself; public because it contains no data."""
    return FileResponse(STATIC_DIR / "dashboard.html", headers=PAGE_HEADERS)


def mount_dashboard(app: FastAPI) -> None:
    """Add the page and its static files to ``app`` (one call from the app factory)."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
