"""The built site in a real browser: Debian's headless Chromium driven by selenium against http.server.

Checks the heatmap renders, a cell link reaches its page, the search box finds an error page from a pasted error
string, the All cells filter narrows rows, and no injected script ran. Screenshots go to the test's tmp dir and to
build/screenshots/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                              "chromium-driver): /usr/bin/chromium or /usr/bin/chromedriver is missing"),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server(built_site):
    """The fixture site served on 127.0.0.1 at an ephemeral port; yields the base URL."""
    _, out = built_site
    handler = functools.partial(_QuietHandler, directory=str(out))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("unhandledPromptBehavior", "ignore")  # an alert stays open, so we can see it
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 15):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Material re-renders search results as the query changes: a stale element just means "look again".
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def assert_nothing_injected(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - raises when no alert is open
    assert driver.execute_script("return typeof window.__pwned") == "undefined"


def shoot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


def test_heatmap_and_cell_link(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    heatmaps = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.heatmap"))
    assert len(heatmaps) == 2
    works = browser.find_element(By.CSS_SELECTOR, "table.heatmap td.verdict-works")
    colour = browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", works)
    assert colour == "rgb(46, 125, 50)", colour  # site/assets/matrix.css is applied
    assert "last measured 2026-11-20" in browser.find_element(By.CSS_SELECTOR, "article").text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", heatmaps[0])
    shoot(browser, tmp_path, "home.png")
    link = browser.find_element(By.CSS_SELECTOR, 'table.heatmap a[href*="bnb-0.47.0"]')
    link.click()
    wait(browser, lambda d: "bnb-0.47.0" in d.current_url)
    heading = browser.find_element(By.CSS_SELECTOR, "article h1").text
    assert "0.47.0" in heading and "cpu-x86_64" in heading
    text = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "<script>window.__pwned=1</script>" in text  # shown as text, readable
    assert "{{ config }}" in text and "[31m" not in text
    assert_nothing_injected(browser)
    shoot(browser, tmp_path, "cell.png")


def test_search_finds_error_page_by_message(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    box = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[data-md-component=search-query]"))
    wait(browser, lambda d: box.is_enabled())
    browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
    box.send_keys("4-bit quantization requires bitsandbytes")

    def result_links(driver):
        links = [a.get_attribute("href") or "" for a in
                 driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
        return links if any("errors/bnb-too-old/" in href for href in links) else None

    links = wait(browser, result_links, timeout=20)
    assert "errors/bnb-too-old/" in links[0], links  # error pages are boosted: the pasted message finds it first
    shoot(browser, tmp_path, "search.png")
    # Search results render record text too: the hostile record must stay inert there as well.
    box.clear()
    box.send_keys("unbalanced fence")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item"), timeout=20)
    assert_nothing_injected(browser)


def test_all_cells_filter(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "cells/")
    box = wait(browser, lambda d: d.find_element(By.ID, "cell-filter"))

    def visible() -> int:
        rows = browser.find_elements(By.CSS_SELECTOR, "article table tbody tr")
        return sum(1 for row in rows if row.is_displayed())

    assert visible() == 5
    box.send_keys("0.47")
    wait(browser, lambda d: visible() == 1)
    box.clear()
    box.send_keys("H100")
    wait(browser, lambda d: visible() == 2)
    assert "2 of 5 cells" in browser.find_element(By.ID, "cell-filter-count").text
    assert_nothing_injected(browser)


def test_palette_toggle_switches_to_dark(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    def scheme(driver) -> str:
        return driver.find_element(By.TAG_NAME, "body").get_attribute("data-md-color-scheme")

    before = wait(browser, scheme)
    toggle = [label for label in browser.find_elements(By.CSS_SELECTOR, "form[data-md-component=palette] label")
              if label.is_displayed()]
    toggle[0].click()
    wait(browser, lambda d: scheme(d) != before)
    assert {before, scheme(browser)} == {"default", "slate"}
    heatmap = browser.find_element(By.CSS_SELECTOR, "table.heatmap")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", heatmap)
    shoot(browser, tmp_path, "home-dark.png")
    toggle = [label for label in browser.find_elements(By.CSS_SELECTOR, "form[data-md-component=palette] label")
              if label.is_displayed()]
    toggle[0].click()  # leave the light palette for the other tests
