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

from helpers import LINES, Server  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.browser]
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
    s = Server(tiny_model_dir, "--beam", "3", "--max-lines", "4", "--max-body-bytes", "3000")
    yield s
    assert s.stop() == 0


def test_type_a_sentence_and_see_its_translation(browser: Any, server: Server, tiny_model_dir: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def texts(selector: str) -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]

    expected = {}
    for line in (LINES[0], LINES[2]):
        status, body = server.translate(line, beam=3)
        assert status == 200
        expected[line] = body["translations"][0]["text"]
    assert expected[LINES[0]] != expected[LINES[2]]  # so that the second answer shows
    browser.get(f"http://127.0.0.1:{server.port}/")
    # the page re-renders its output on every answer: read it inside the waits, retrying a replaced element
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda b: len(Select(b.find_element(By.ID, "beam")).options) == 3)  # /info read: the server's beam
    source = browser.find_element(By.ID, "source")
    source.send_keys(LINES[0])  # as typed: translated after a pause, no button
    wait.until(lambda b: texts("#output .translation") == [expected[LINES[0]]])
    Select(browser.find_element(By.ID, "nbest")).select_by_value("2")  # a new choice translates again
    wait.until(lambda b: 1 <= len(items := texts("#output ol li")) <= 2 and items[0].startswith(expected[LINES[0]]))
    # as-you-type off: nothing happens until the button
    browser.find_element(By.ID, "live").click()
    source.clear()
    source.send_keys(LINES[2])
    browser.find_element(By.ID, "go").click()
    wait.until(lambda b: texts("#output .translation") == [expected[LINES[2]]])
    assert "ms" in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error"


def test_a_refused_request_clears_the_last_translation_and_a_cut_line_is_said(
    browser: Any, server: Server, tiny_model_dir: Path
) -> None:
    """A request refused (by the server: a body over --max-body-bytes; by the page: over --max-lines) leaves
    its error and no translation of an earlier text; a line cut for length is said in the status line."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    status, body = server.translate(LINES[0], beam=3)
    assert status == 200
    shown_first = body["translations"][0]["text"]
    browser.get(f"http://127.0.0.1:{server.port}/")
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda b: len(Select(b.find_element(By.ID, "beam")).options) == 3)

    def ask(text: str) -> None:  # set the text at once (no typing, no input event) and press the button
        browser.execute_script("document.getElementById('source').value = arguments[0];", text)
        browser.find_element(By.ID, "go").click()

    def output() -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#output .translation")]

    def status_line() -> tuple[str, str]:
        element = browser.find_element(By.ID, "status")
        return element.text, element.get_attribute("class") or ""

    for refused, says in [("x" * 4000, "bytes"), ("\n".join(LINES[:5]), "at most 4 lines")]:
        ask(LINES[0])
        wait.until(lambda b: output() == [shown_first] and "ms" in status_line()[0])
        ask(refused)
        wait.until(lambda b: status_line()[1] == "error")
        assert says in status_line()[0] and output() == []

    ask("word " * 400)  # cut to the model's length: translated, and said
    wait.until(lambda b: len(output()) == 1 and "ms" in status_line()[0])
    text, kind = status_line()
    assert kind != "error" and "line 1: " in text and "longer than the model takes" in text


def test_document_mode_gives_the_same_shape_back(browser: Any, server: Server) -> None:
    """Choose a document format, paste a document: it comes back whole, in its format, as the API answers it;
    the n-best choice (lines only) is off meanwhile, and back on with lines."""
    pytest.importorskip("webvtt", reason="webvtt-py is not installed (pip install -e '.[dev]')")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    document = (
        "1\n00:00:01,000 --> 00:00:02,500\nHow was your day?\nThe cat\n\n"
        "2\n00:00:02,600 --> 00:00:04,000\nsleeps on the red sofa.\n"
    )
    status, body = server.translate(document, format="srt", beam=3)
    assert status == 200
    browser.get(f"http://127.0.0.1:{server.port}/")
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda b: len(Select(b.find_element(By.ID, "format")).options) == 5)  # from /info
    Select(browser.find_element(By.ID, "format")).select_by_value("srt")
    assert not browser.find_element(By.ID, "nbest").is_enabled()
    browser.execute_script("document.getElementById('source').value = arguments[0];", document)
    browser.find_element(By.ID, "go").click()

    def shown() -> str | None:
        found = browser.find_elements(By.CSS_SELECTOR, "#output pre.document")
        return found[0].get_attribute("textContent") if found else None

    wait.until(lambda b: shown() == body["document"])
    assert "SRT subtitles document in" in browser.find_element(By.ID, "status").text
    Select(browser.find_element(By.ID, "format")).select_by_value("text")  # lines again: 6, over --max-lines
    wait.until(lambda b: "at most 4 lines" in b.find_element(By.ID, "status").text and shown() is None)
    assert browser.find_element(By.ID, "nbest").is_enabled()
