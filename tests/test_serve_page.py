"""`nmt serve`'s web page, in a real headless Chromium (Debian's chromium and chromium-driver, which .ci/run
installs when missing): type a sentence, see its translation. Skipped, saying why, where there is no browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

from test_serve import LINES, Server  # noqa: E402

pytestmark = pytest.mark.browser
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no headless Chromium here (apt-get install chromium chromium-driver; .ci/run does that)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[Server]:
    s = Server(tiny_model_dir, "--beam", "3")
    yield s
    assert s.stop() == 0


def test_type_a_sentence_and_see_its_translation(browser: Any, server: Server, tiny_model_dir: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    status, body = server.translate(LINES[0], beam=3)
    assert status == 200
    expected = body["translations"][0]["text"]
    browser.get(f"http://127.0.0.1:{server.port}/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: len(Select(b.find_element(By.ID, "beam")).options) == 3)  # /info read: the server's beam
    browser.find_element(By.ID, "source").send_keys(LINES[0])  # as typed: translated after a pause, no button
    wait.until(lambda b: "in " in b.find_element(By.ID, "status").text and "ms" in b.find_element(By.ID, "status").text)
    shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#output .translation")]
    assert shown == [expected]
    # the n-best list, on the button
    Select(browser.find_element(By.ID, "nbest")).select_by_value("2")
    browser.find_element(By.ID, "go").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#output ol li"))
    items = browser.find_elements(By.CSS_SELECTOR, "#output ol li")
    assert 1 <= len(items) <= 2 and items[0].text.startswith(expected)
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error"
