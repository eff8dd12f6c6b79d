"""/docs and /redoc render without internet: every asset their HTML names is
served by the service itself (over HTTP and through the Lambda handler), and a
real headless browser renders the operations list."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from face_recognition_service.testing import FakeLambdaContext, http_api_event
from tests.support.helpers import chromium
from tests.support.server_support import running_server

EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def asset_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    urls += re.findall(r"""url: ["']([^"']+)["']""", html)
    urls += re.findall(r"""spec-url=["']([^"']+)["']""", html)
    return [u for u in urls if not u.startswith("#")]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_is_served_locally(client: TestClient, page: str) -> None:
    html = client.get(page).text
    urls = asset_urls(html)
    assert urls, html[:500]
    for url in urls:
        assert not url.startswith(("http://", "https://", "//")), f"{page} loads {url} from outside"
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = Path(url).suffix
        if suffix in EXPECTED_TYPES:
            assert EXPECTED_TYPES[suffix] in response.headers["content-type"], (
                url,
                response.headers["content-type"],
            )


def test_docs_assets_through_the_lambda_handler(lambda_module: ModuleType) -> None:
    result = lambda_module.handler(http_api_event("GET", "/docs"), FakeLambdaContext())
    assert result["statusCode"] == 200
    for url in asset_urls(result["body"]):
        if url.endswith("/openapi.json") or url.endswith(".js") or url.endswith(".css"):
            asset = lambda_module.handler(http_api_event("GET", url), FakeLambdaContext())
            assert asset["statusCode"] == 200, url
    spec = lambda_module.handler(http_api_event("GET", "/openapi.json"), FakeLambdaContext())
    assert "/api/v1/verify" in json.loads(spec["body"])["paths"]


@pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium on this machine (apt-get install chromium); "
    "test_every_asset_is_served_locally still checks the page's assets",
)
def test_a_real_browser_renders_the_operations_offline(model_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with running_server(model_dir, tmp_path) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            outside: list[str] = []

            def block_outside(route: object) -> None:  # the host is "offline": nothing beyond localhost
                request = route.request  # type: ignore[attr-defined]
                if "127.0.0.1" in request.url or "localhost" in request.url:
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    outside.append(request.url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", block_outside)
            page.goto(f"http://127.0.0.1:{server.port}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    assert {"/api/v1/health", "/api/v1/embed", "/api/v1/compare", "/api/v1/verify"} <= {
        p.strip() for p in paths
    }
    assert outside == []
