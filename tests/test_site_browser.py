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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every network request, for 15.9
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
        # results re-render as each key is typed: wait for the whole query's ranking, not a prefix's
        return links if links and "errors/bnb-too-old/" in links[0] else None

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


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log)."""
    import json

    return [json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in driver.get_log("performance")
            if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]


def search(driver, words: str) -> list[str]:
    """Type `words` into Material's search box and return the result links once an error page shows up."""
    from selenium.webdriver.common.by import By

    box = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[data-md-component=search-query]"))
    wait(driver, lambda d: box.is_displayed() or d.find_element(By.CSS_SELECTOR, "label.md-search__icon"))
    driver.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
    box.send_keys(words)

    def links(d):
        found = [a.get_attribute("href") or "" for a in d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
        return found if found and "errors/bnb-too-old/" in found[0] else None  # the whole query's ranking

    return wait(driver, links, timeout=20)


def test_search_works_opened_from_disk(browser, built_site, tmp_path):
    """public/index.html opened as a file: the search box is there and typing shows results (offline plugin)."""
    _, out = built_site
    browser.get((out / "index.html").as_uri())
    links = search(browser, "4-bit quantization requires bitsandbytes")
    assert links[0].startswith("file://") and "errors/bnb-too-old/index.html" in links[0], links
    shoot(browser, tmp_path, "search-file.png")
    # a grid square opened from disk is a page, not a folder listing
    browser.get((out / "index.html").as_uri())
    href = browser.find_element("css selector", 'table.heatmap a[href*="bnb-0.47.0"]').get_attribute("href")
    assert href.endswith("/index.html")


def test_no_request_leaves_the_site(browser, server, built_site):
    """Over http and from disk, pages load nothing from anywhere else (no fonts, no CDN, no unpkg shim)."""
    _, out = built_site
    requested_urls(browser)  # drop what earlier tests asked for
    for path in ("", "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.45.5/transformers-5.24.0/", "errors/bnb-too-old/"):
        browser.get(server + path)
        wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    search(browser, "4-bit quantization requires bitsandbytes")
    browser.get((out / "index.html").as_uri())
    search(browser, "4-bit quantization requires bitsandbytes")
    urls = requested_urls(browser)
    assert any(u.startswith(server) for u in urls) and any(u.startswith("file://") for u in urls)
    elsewhere = [u for u in urls if not u.startswith((server, "file://", "data:", "blob:", "about:"))]
    assert not elsewhere, elsewhere


def test_tables_sort_and_budgets_sort_by_number(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "cells/h100-sm90/torch-2.11.0-cu130/bnb-0.50.2/transformers-5.24.0/")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "article table:not([class])"))
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "article table:not([class]) thead th")
                  if th.text == "Budget")  # the Results table
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", header)
    header.click()
    assert header.get_attribute("aria-sort") in ("ascending", "descending")
    # the same markup the budget macro writes, more budgets than the fixture has: 12 GiB sorts after 8 GiB
    browser.execute_script("""
        var t = document.createElement('table');
        t.innerHTML = '<thead><tr><th>Budget</th></tr></thead><tbody>' +
          ['<span data-sort="1000000">whole card</span>', '<span data-sort="12.0">12.0 GiB</span>',
           '<span data-sort="8.0">8.0 GiB</span>', '<span data-sort="24.0">24.0 GiB</span>']
          .map(function (c) { return '<tr><td>' + c + '</td></tr>'; }).join('') + '</tbody>';
        t.id = 'budget-test';
        document.querySelector('article').appendChild(t);
        window.bnbMatrixSortTables();""")
    th = browser.find_element(By.CSS_SELECTOR, "#budget-test th")
    th.click()
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#budget-test tbody td")]
    if th.get_attribute("aria-sort") == "descending":
        cells.reverse()
    assert cells == ["8.0 GiB", "12.0 GiB", "24.0 GiB", "whole card"], cells


def test_wide_tables_scroll_in_their_own_box(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.set_window_size(800, 1000)
    try:
        browser.get(server + "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.45.5/transformers-5.24.0/")
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "article table:not([class])"))
        table = next(t for t in browser.find_elements(By.CSS_SELECTOR, "article table:not([class])")
                     if "Error or reason" in t.text)  # the Results table, twelve columns
        box = browser.execute_script("return arguments[0].closest('.md-typeset__scrollwrap')", table)
        assert browser.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", box)
        assert browser.execute_script("return getComputedStyle(arguments[0]).overflowX", box) == "auto"
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        shoot(browser, tmp_path, "cell-failing.png")
        browser.get(server + "errors/bnb-too-old/")
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "article h1"))
        shoot(browser, tmp_path, "error-page.png")
        browser.get(server + "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.47.0/transformers-5.24.0/badge.svg")
        shoot(browser, tmp_path, "badge.png")
    finally:
        browser.set_window_size(1400, 1000)


def test_home_grid_above_the_fold_at_400px(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.set_window_size(400, 800)
    try:
        browser.get(server)
        grid = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "table.heatmap"))
        form = browser.find_element(By.CSS_SELECTOR, "form.check-home")  # issue 22: the check form comes first
        top, form_top = (browser.execute_script("return arguments[0].getBoundingClientRect().top", e)
                         for e in (grid, form))
        fold = browser.execute_script("return window.innerHeight")
        assert form_top < fold - 60 and top < 2 * fold - 60, (form_top, top)  # the form shows, the grid one swipe on
        shoot(browser, tmp_path, "home-400.png")
    finally:
        browser.set_window_size(1400, 1000)


def test_gpu_grid_sticky_tap_reason_scroll_cue_and_search_by_gpu_name(browser, server, tmp_path):
    """Issue 22.5 on a predicted GPU grid at 400 px and at desktop width: coloured squares, the header row and the
    first column stay put while the grid scrolls, a tap opens the square's reason (a native <details>, no script
    of ours), a scroll cue shows on the narrow screen only, and searching a card's name lands on its arch page."""
    from selenium.webdriver.common.by import By

    js = browser.execute_script
    browser.set_window_size(400, 860)
    try:
        browser.get(server + "gpus/sm-89/")
        grid = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "table.predicted-grid"))
        box = js("return arguments[0].closest('.heatmap-wrap')", grid)
        assert js("return document.documentElement.scrollWidth <= window.innerWidth")  # the page itself never widens
        assert js("return arguments[0].scrollWidth > arguments[0].clientWidth", box)  # the grid scrolls in its box
        assert browser.find_element(By.CSS_SELECTOR, ".scroll-cue").is_displayed()
        loads = grid.find_element(By.CSS_SELECTOR, "td.verdict-works")  # "loads" coloured as the home grid's works
        assert js("return getComputedStyle(arguments[0]).backgroundColor", loads) == "rgb(46, 125, 50)"
        js("arguments[0].scrollIntoView({block: 'start'})", box)
        row_head = grid.find_element(By.CSS_SELECTOR, "tbody tr:nth-child(3) th")
        col_head = grid.find_element(By.CSS_SELECTOR, "thead th:nth-child(4)")
        left, top = js("return arguments[0].getBoundingClientRect().left", row_head), \
            js("return arguments[0].getBoundingClientRect().top", col_head)
        js("arguments[0].scrollBy(250, 300)", box)
        assert js("return arguments[0].scrollLeft", box) > 0 and js("return arguments[0].scrollTop", box) > 0
        # stuck (a scrolled cell moves 250 px; a sticky one only by the border spacing it gives up)
        assert abs(js("return arguments[0].getBoundingClientRect().left", row_head) - left) < 5  # first column
        assert abs(js("return arguments[0].getBoundingClientRect().top", col_head) - top) < 5  # header row
        js("arguments[0].scrollTo(0, 0)", box)  # back, so the squares tapped next are not under the stuck column
        square = grid.find_element(By.CSS_SELECTOR, "tbody tr:nth-child(6) td:nth-child(3)")
        pop = square.find_element(By.CSS_SELECTOR, ".why-pop")
        assert not pop.is_displayed()  # hidden until tapped, not a hover-only title
        square.find_element(By.CSS_SELECTOR, "summary").click()
        wait(browser, lambda d: pop.is_displayed())
        rect = js("return arguments[0].getBoundingClientRect().toJSON()", pop)
        assert rect["left"] >= 0 and rect["right"] <= js("return window.innerWidth")  # whole card on screen
        assert rect["bottom"] <= js("return window.innerHeight") and "bitsandbytes" in pop.text
        shoot(browser, tmp_path, "gpu-grid-400-tap.png")
        other = grid.find_element(By.CSS_SELECTOR, "tbody tr:nth-child(7) td:nth-child(3)")
        other.find_element(By.CSS_SELECTOR, "summary").click()  # opening another square closes the first
        wait(browser, lambda d: other.find_element(By.CSS_SELECTOR, ".why-pop").is_displayed())
        assert not pop.is_displayed()
        assert_nothing_injected(browser)
        browser.set_window_size(1400, 1000)
        browser.get(server + "gpus/sm-89/")
        grid = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "table.predicted-grid"))
        assert not browser.find_element(By.CSS_SELECTOR, ".scroll-cue").is_displayed()
        main = browser.find_element(By.CSS_SELECTOR, ".md-main__inner")
        assert js("return arguments[0].getBoundingClientRect().width", main) > 1300  # the window's full width
        shoot(browser, tmp_path, "gpu-grid-desktop.png")
        box = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[data-md-component=search-query]"))
        browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
        box.send_keys("4090")

        def first(d):
            found = [a.get_attribute("href") or "" for a in
                     d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
            return found[0] if found and "gpus/" in found[0] else None

        assert "gpus/sm-89/" in wait(browser, first, timeout=20)
    finally:
        browser.set_window_size(1400, 1000)
