"""The check page in a real browser (Debian's headless Chromium via selenium), opened from file:// as a user who
downloaded the site would: URL parameters, the paste box, copy link / copy as Markdown, the home page's form, and
the same answers as the Python engine over the same data file."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from matrix.check.engine import check
from matrix.check.setup import Setup

from test_site_browser import CHROMEDRIVER, CHROMIUM, assert_nothing_injected, browser, wait  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                              "chromium-driver)"),
]


@pytest.fixture(scope="module")
def site(built_site):
    _, out = built_site
    return out


def page(site, query: str = "") -> str:
    return (site / "check" / "index.html").as_uri() + (("?" + query) if query else "")


def verdict(driver) -> str:
    return wait(driver, lambda d: d.find_element("id", "verdict").get_attribute("data-verdict"))


def test_url_parameters_answer_from_file_url(browser, site):  # noqa: F811
    browser.get(page(site, "gpu=T4&torch=2.6.0&bnb=0.45.5"))
    assert verdict(browser) == "works"
    text = browser.find_element("id", "verdict").text
    assert "libbitsandbytes_cuda124" in text and "predicted" in text
    assert browser.find_element("id", "check-gpu").get_attribute("value") == "T4"  # the form shows the inputs


def test_way_out_with_the_index_url(browser, site):  # noqa: F811
    browser.get(page(site, "gpu=V100&torch=" + quote("2.8.0+cu128") + "&bnb=0.46.1"))
    assert verdict(browser) == "fails"
    items = browser.find_elements("css selector", "#verdict .check-way-out li")
    assert [i.get_attribute("data-change") for i in items][:2] == ["bitsandbytes", "torch"]
    assert "--index-url https://download.pytorch.org/whl/cu" in items[1].text


SETUPS = [
    {"gpu": "T4", "torch": "2.6.0", "bnb": "0.45.5"},
    {"gpu": "RTX 5090", "torch": "2.15.0"},
    {"gpu": "V100", "torch": "2.8.0+cu128", "bnb": "0.46.1"},
    {"gpu": "RTX 4090", "torch": "2.8.0+cu129", "bnb": "0.45.5", "os": "windows"},
    {"gpu": "A100", "torch": "2.11.0", "bnb": "0.48.0", "driver": "550.54.15"},
    {"gpu": "sm_86", "torch": "2.6.0+cpu", "bnb": "0.45.5"},
    {"gpu": "Jetson AGX Orin", "torch": "2.5.0a0+872d972e41.nv24.08", "bnb": "0.46.1"},
    {"gpu": "A100", "torch": "2.6.0", "bnb": "0.43.0", "machine": "aarch64"},
    {"gpu": "T4", "torch": "2.0.1", "bnb": "0.39.1"},
    {"torch": "2.6.0", "bnb": "0.45.5"},
    {"gpu": "H100", "torch": "2.7.0", "bnb": "0.44.1", "env": {"BNB_CUDA_VERSION": "121"}},
    {"gpu": "P100", "torch": "2.9.0", "bnb": "0.48.2"},
    {"gpu": "V100", "torch": "2.4.0+cu124", "bnb": "0.43.3", "env": {"BNB_CUDA_VERSION": "124"}},
    {"torch": "2.7.0", "bnb": "0.45.5", "glibc": "2.31"},
    {"gpu": "RTX 5090", "torch": "2.7.0+cu128", "bnb": "0.45.2", "os": "windows"},
    {"gpu": "Jetson Orin Nano", "bnb": "0.42.0"},
    {"gpu": "GTX 1080 Ti", "bnb": "0.39.1"},
    {"gpu": "NVIDIA A100-SXM4-80GB", "torch": "2.3.1", "bnb": "0.43.1", "driver": "470.82.01"},
    {"gpu": "V100", "torch": "2.3.1", "bnb": "0.39.1", "cuda_runtime": "12.2"},
    {"gpu": "A100", "torch": "2.3.1", "bnb": "0.40.2", "cuda_runtime": "11.8"},
]


def test_page_and_command_give_the_same_answers(browser, site):  # noqa: F811
    """check.js over check/data.js and matrix.check.engine over the same facts: same verdict, source, way out."""
    text = (site / "check" / "data.js").read_text()
    facts = json.loads(text.removeprefix("window.BNB_CHECK_FACTS=").rstrip().rstrip(";"))
    measured = [dict(zip(("gpu", "torch", "bnb"), key.split("|"))) for key in sorted(facts["measured"])[:3]]
    measured += [{**m, "torch": m["torch"].partition("+")[0], "transformers": "4.0.0"} for m in measured]
    browser.get(page(site))
    for given in SETUPS + measured:
        env = tuple(given.get("env", {}).items())
        mine = check(Setup(**{k: v for k, v in given.items() if k != "env"}, env=env), facts)
        theirs = browser.execute_script("return window.bnbCheck.check(arguments[0]);", {"env": {}, **given})
        assert (theirs["verdict"], theirs["source"]) == (mine.verdict, mine.source), given
        assert [w["to"] for w in theirs["way_out"]] == [w["to"] for w in mine.way_out], given
        assert theirs["fix"] == mine.fix and theirs["resolved"] == mine.resolved, given


def test_page_and_command_agree_on_a_whole_grid(browser, site):  # noqa: F811
    """Every release read x a spread of GPUs and torch builds of each platform: the same verdicts in both."""
    text = (site / "check" / "data.js").read_text()
    facts = json.loads(text.removeprefix("window.BNB_CHECK_FACTS=").rstrip().rstrip(";"))
    setups = []
    for platform, os_, machine in (("linux-x86_64", "linux", "x86_64"), ("windows-x86_64", "windows", "x86_64"),
                                   ("linux-aarch64", "linux", "aarch64")):
        builds = sorted(facts["torch"].get(platform, {}))[::4]
        for arch in facts["platform_archs"][platform][::2]:
            for build in builds:
                setups += [{"gpu": arch, "torch": build, "bnb": r, "os": os_, "machine": machine}
                           for r in facts["releases"][::3]]
    browser.get(page(site))
    theirs = browser.execute_script("return arguments[0].map(function (s) { var v = window.bnbCheck.check(s); "
                                    "return [v.verdict, v.source, v.fix]; });", [{"env": {}, **g} for g in setups])
    mine = [[v.verdict, v.source, v.fix] for v in (check(Setup(**g), facts) for g in setups)]
    differ = [(g, a, b) for g, a, b in zip(setups, mine, theirs) if a != b]
    assert len(setups) > 300 and not differ, differ[:5]


def test_paste_box_reads_what_the_cli_reads(browser, site):  # noqa: F811
    browser.get(page(site))
    browser.find_element("css selector", "details.check-paste-box summary").click()
    paste = ("|   0  NVIDIA GeForce RTX 5090        Off |   00000000:41:00.0  On |    N/A |\n"
             "torch==2.7.0+cu128\nbitsandbytes==0.45.3\n")
    browser.find_element("id", "check-paste").send_keys(paste)
    browser.find_element("id", "check-read-paste").click()
    assert verdict(browser) == "works"
    assert browser.find_element("id", "check-bnb").get_attribute("value") == "0.45.3"
    assert "bnb=0.45.3" in browser.current_url  # the answer's URL reproduces it


def test_copy_link_and_markdown_reproduce_the_answer(browser, site):  # noqa: F811
    browser.get(page(site, "gpu=V100&torch=" + quote("2.8.0+cu128") + "&bnb=0.46.1"))
    assert verdict(browser) == "fails"
    button = browser.find_element("id", "check-copy-link")
    button.click()
    link = wait(browser, lambda d: button.get_attribute("data-copied"))
    md = browser.find_element("id", "check-copy-markdown")
    md.click()
    reply = wait(browser, lambda d: md.get_attribute("data-copied"))
    assert reply.startswith("**fails**") and "pip install bitsandbytes==" in reply and link in reply
    browser.get(page(site))
    browser.get(link)
    assert verdict(browser) == "fails"


def test_home_form_leads_to_the_answer_and_nothing_is_injected(browser, site):  # noqa: F811
    browser.get((site / "index.html").as_uri())
    hrefs = [a.get_attribute("href") for a in browser.find_elements("css selector", "article a")]
    assert any(h.endswith("gpus/index.html") for h in hrefs) and any(h.endswith("budgets/index.html") for h in hrefs)
    form = browser.find_element("css selector", "form.check-home")
    form.find_element("name", "gpu").send_keys("T4")
    form.find_element("name", "torch").send_keys("2.6.0")
    form.find_element("name", "bnb").send_keys("0.45.5")
    form.find_element("css selector", "button").click()
    assert verdict(browser) == "works"
    evil = quote("<img src=x onerror=window.__pwned=1>")
    browser.get(page(site, f"gpu={evil}&torch={evil}&bnb=0.45.5"))
    verdict(browser)
    assert_nothing_injected(browser)
