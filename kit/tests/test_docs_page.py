"""/docs served from the installed Swagger UI under a policy admitting exactly its assets
(kit.docs_page); the page in a browser is tests/test_docs_browser.py."""

import json
import re
from collections.abc import AsyncIterator
from typing import Final

import httpx
import pytest
from fastapi import FastAPI

from contracts.auth import DOCS_CLIENT_ID
from kit.app import RequestContextMiddleware
from kit.docs_page import REDIRECT_PAGE_POLICY, docs_page_policy, install_docs_page
from kit.problems import install_problem_handlers
from kit.testing import assert_problem

ISSUER_URL: Final = "https://issuer.example:8443/"
PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' https://issuer.example:8443; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A service shell's /docs: FastAPI's own off, the shell's headers around it."""
    app = FastAPI(title="Transfers </script>", docs_url=None, swagger_ui_oauth2_redirect_url=None)
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, body_max_bytes=1024)
    install_docs_page(app, issuer_url=ISSUER_URL)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


def settings_of(page: str) -> dict[str, object]:
    found = re.search(r'<script id="swagger-settings" type="application/json">(.*?)</script>', page)
    assert found is not None, page
    settings: dict[str, object] = json.loads(found.group(1))
    return settings


class TestDocsPage:
    async def test_loads_only_this_origins_scripts_under_its_own_policy(
        self, http: httpx.AsyncClient
    ) -> None:
        response = await http.get("/docs")

        assert response.status_code == 200
        # The page's policy, not the shell's `frame-ancestors 'none'` alone.
        assert response.headers.get_list("content-security-policy") == [PAGE_POLICY]
        assert response.headers["x-frame-options"] == "DENY"
        sources = re.findall(r'(?:src|href)="([^"]*)"', response.text)
        assert sources == [
            "/docs/assets/swagger-ui.css",
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-init.js",
        ]
        # Every script element loads a file, but the settings (data, never run).
        scripts = re.findall(r"<script([^>]*)>", response.text)
        assert [attributes for attributes in scripts if "src=" not in attributes] == [
            ' id="swagger-settings" type="application/json"'
        ]

    async def test_carries_the_spec_redirect_and_docs_client_as_data(
        self, http: httpx.AsyncClient
    ) -> None:
        response = await http.get("/docs")

        assert settings_of(response.text) == {
            "openapiUrl": "/openapi.json",
            "oauth2RedirectPath": "/docs/oauth2-redirect",
            "initOAuth": {"clientId": DOCS_CLIENT_ID, "usePkceWithAuthorizationCodeGrant": True},
        }
        assert "Transfers &lt;/script&gt; - Swagger UI" in response.text

    async def test_redirect_page_runs_only_its_script(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/docs/oauth2-redirect", params={"code": "c", "state": "s"})

        assert response.status_code == 200
        assert response.headers.get_list("content-security-policy") == [REDIRECT_PAGE_POLICY]
        assert re.findall(r"<script[^>]*>", response.text) == [
            '<script src="/docs/assets/oauth2-redirect.js">'
        ]


class TestDocsAssets:
    @pytest.mark.parametrize(
        ("name", "media_type"),
        [
            ("swagger-ui-bundle.js", "text/javascript"),
            ("swagger-ui.css", "text/css"),
            ("swagger-init.js", "text/javascript"),
            ("oauth2-redirect.js", "text/javascript"),
            ("favicon-32x32.png", "image/png"),
        ],
    )
    async def test_served_from_the_installed_package_or_ours(
        self, http: httpx.AsyncClient, name: str, media_type: str
    ) -> None:
        response = await http.get(f"/docs/assets/{name}")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        assert response.content
        # Revalidated by its ETag, not fetched whole on every visit (the bundle is 1.5 MB).
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["etag"]

    async def test_swagger_ui_is_version_5_which_renders_openapi_3_1(
        self, http: httpx.AsyncClient
    ) -> None:
        bundle = (await http.get("/docs/assets/swagger-ui-bundle.js")).text

        assert "OpenAPI 3.1" in bundle or "openapi31" in bundle.lower()

    @pytest.mark.parametrize(
        "name", ["swagger-editor-bundle.js", "LICENSE", "..%2F__init__.py", "index.css"]
    )
    async def test_anything_else_is_not_found(self, http: httpx.AsyncClient, name: str) -> None:
        response = await http.get(f"/docs/assets/{name}")

        assert_problem(response, 404, "not-found")


class TestDocsPagePolicy:
    def test_without_an_issuer_url_requests_go_to_this_origin_only(self) -> None:
        assert "connect-src 'self';" in docs_page_policy(None)

    def test_names_the_issuers_origin_not_its_path(self) -> None:
        assert "connect-src 'self' http://127.0.0.1:8001;" in docs_page_policy(
            "http://127.0.0.1:8001/base"
        )
