"""Swagger UI on /docs with no request leaving the service: its script and stylesheet from
the installed `swagger-ui-py` package, its start-up script ours, under a Content-Security-
Policy that admits exactly them (docs/decisions/0040, "Offline /docs")."""

import html
import importlib.util
import json
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from contracts.auth import DOCS_REDIRECT_PATH
from kit.openapi import SWAGGER_UI_OAUTH

DOCS_PATH: Final = "/docs"
DOCS_ASSETS_PATH: Final = "/docs/assets/{name}"
_ASSETS_PREFIX: Final = "/docs/assets/"
_OWN_STATIC: Final = Path(__file__).parent / "static"


def _swagger_ui_static() -> Path:
    """swagger-ui-py's copy of Swagger UI's dist, found without importing the package (whose
    `__init__` loads its framework adapters and PyYAML, none of which /docs needs)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None, "swagger-ui-py is a runtime dependency"
    assert spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


# Only what the page loads; anything else under /docs/assets/ is a 404.
_ASSETS: Final = {
    "swagger-ui-bundle.js": (_swagger_ui_static() / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (_swagger_ui_static() / "swagger-ui.css", "text/css"),
    "favicon-32x32.png": (_swagger_ui_static() / "favicon-32x32.png", "image/png"),
    "swagger-init.js": (_OWN_STATIC / "swagger-init.js", "text/javascript"),
    "oauth2-redirect.js": (_OWN_STATIC / "oauth2-redirect.js", "text/javascript"),
}
# The redirect page runs one script of ours in the sign-in popup and loads nothing else.
REDIRECT_PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; form-action 'none'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def docs_page_policy(issuer_url: str | None) -> str:
    """The /docs page's Content-Security-Policy: scripts and styles from this origin only
    (data: images are Swagger UI's stylesheet's icons); requests to this origin (the spec,
    "Try it out") and to the issuer's (the token endpoint, for Authorize)."""
    connect = "'self'"
    if issuer_url is not None:
        issuer = urlsplit(issuer_url)
        connect = f"'self' {issuer.scheme}://{issuer.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def install_docs_page(app: FastAPI, *, issuer_url: str | None) -> None:
    """Serve /docs, its OAuth2 redirect page and their assets; the app must have been built
    with FastAPI's own /docs off (`docs_url=None`, `swagger_ui_oauth2_redirect_url=None`)."""
    page_policy = docs_page_policy(issuer_url)
    title = html.escape(f"{app.title} - Swagger UI")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs_page(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "").rstrip("/")
        settings = {
            "openapiUrl": f"{root_path}{app.openapi_url}",
            "oauth2RedirectPath": f"{root_path}{DOCS_REDIRECT_PATH}",
            "initOAuth": SWAGGER_UI_OAUTH,
        }
        page = _PAGE.format(
            title=title, assets=f"{root_path}{_ASSETS_PREFIX}", settings=_json_for_html(settings)
        )
        return HTMLResponse(page, headers={"content-security-policy": page_policy})

    @app.get(DOCS_REDIRECT_PATH, include_in_schema=False)
    async def docs_oauth2_redirect(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "").rstrip("/")
        page = _REDIRECT_PAGE.format(assets=f"{root_path}{_ASSETS_PREFIX}")
        return HTMLResponse(page, headers={"content-security-policy": REDIRECT_PAGE_POLICY})

    @app.get(DOCS_ASSETS_PATH, include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        asset = _ASSETS.get(name)
        if asset is None:
            raise HTTPException(status_code=404)
        path, media_type = asset
        # Revalidated by ETag rather than the shell's no-store: the bundle is 1.5 MB.
        return FileResponse(path, media_type=media_type, headers={"cache-control": "no-cache"})


def _json_for_html(value: object) -> str:
    """JSON safe inside a <script type="application/json"> element: no `</script>` in it."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script id="swagger-settings" type="application/json">{settings}</script>
<script src="{assets}swagger-ui-bundle.js"></script>
<script src="{assets}swagger-init.js"></script>
</body>
</html>
"""
_REDIRECT_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Signing in</title>
</head>
<body>
<script src="{assets}oauth2-redirect.js"></script>
</body>
</html>
"""
