"""GET /: the search page (one HTML file, inline CSS and JS, no external assets).

The page is served with a strict Content-Security-Policy: the inline <script>
and <style> are allowed by their SHA-256 hashes only, fetches go to the same
origin only, and the page has no inline event handler attributes. Its fetches
use URLs relative to the page, so it works at the site root behind the load
balancer's HTTPS as well as under a path prefix.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

_INLINE_RE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@lru_cache(maxsize=1)
def page() -> tuple[str, str]:
    """The HTML and its Content-Security-Policy."""
    html = resources.files("searchplat_app").joinpath("static/index.html").read_text("utf-8")
    scripts = [_sha256(body) for tag, body in _INLINE_RE.findall(html) if tag == "script"]
    styles = [_sha256(body) for tag, body in _INLINE_RE.findall(html) if tag == "style"]
    csp = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(scripts),
        "style-src " + " ".join(styles),
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])
    return html, csp


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    html, csp = page()
    return HTMLResponse(html, headers={
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    })
