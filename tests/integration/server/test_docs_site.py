"""The docs site (docs/, mkdocs-material): it builds strictly (every link and
anchor resolves), its generated pages are what the generator makes now, the
code points into it by stable names, and a real browser renders it offline."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from face_recognition_service.config import SETTING_DOCS, Settings
from tests.support.helpers import ROOT, chromium


def make_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "infra" / "make_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file() and (site / "api.html").is_file()


def test_generated_pages_are_fresh() -> None:
    """Run `.venv/bin/python infra/make_docs.py` after changing a setting, an
    error code, a route, a benchmark result, BENCHMARKS.md or CHANGELOG.md."""
    for path, text in make_docs().pages().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run infra/make_docs.py"


def test_every_setting_is_documented() -> None:
    assert set(SETTING_DOCS) == set(Settings.model_fields)
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert all(f"`{name.upper()}`" in page for name in Settings.model_fields)


def test_code_points_into_the_docs_by_stable_names(site: Path) -> None:
    """No comment cites a section number; each docs/<page>.md#<heading> the code
    names is a heading of the built site."""
    cited = []
    for path in (ROOT / "function").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"section \d", text), path
        cited += re.findall(r"docs/([\w-]+)\.md#([\w-]+)", text)
    assert cited
    for page, anchor in cited:
        html = (site / f"{page}.html").read_text()
        assert f'id="{anchor}"' in html, (page, anchor)


@pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium on this machine (apt-get install chromium; .ci/run installs it); "
    "test_the_site_builds_strictly still builds the site",
)
def test_a_real_browser_renders_the_site_offline(site: Path) -> None:
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()

            def block_outside(route: object) -> None:  # offline: only the built files
                request = route.request  # type: ignore[attr-defined]
                if request.url.startswith("file://"):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    outside.append(request.url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", block_outside)
            page.goto((site / "index.html").as_uri())
            page.wait_for_selector("h1", timeout=20_000)
            home = page.locator("article h1").first.inner_text()
            page.goto((site / "api.html").as_uri())
            page.wait_for_selector("article h1", timeout=20_000)
            api = page.locator("article h1").first.inner_text()
            sections = page.locator("article h2").all_inner_texts()
            styled = page.evaluate("getComputedStyle(document.querySelector('.md-header')).position")
        finally:
            browser.close()
    assert home.startswith("Face Recognition Service") and api.startswith("API guide")
    assert any("Limits" in s for s in sections)
    assert styled in ("sticky", "fixed", "relative")  # the theme's stylesheet loaded
    assert outside == []
