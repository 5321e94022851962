"""The HTML report in a real browser: headless Chromium driven by Selenium.

Needs the Debian packages chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver);
the project's test script installs them. Skipped, with a message, only when they are absent.
The screenshot goes to tests/artifacts/report.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason=f"headless Chromium not installed ({CHROMIUM} / {CHROMEDRIVER} missing): "
           "apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory, cohiclust_depth3, digits_every_third):
    """A report of a tiny CoHiClust (depth 3, 2 leaves pruned) on 600 digits (conftest.py: the
    model tests/test_report.py checks)."""
    from hiclust.report import write_report

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: avoids spinning OpenMP threads on a busy 2-core machine
    try:
        data, model = digits_every_third, cohiclust_depth3
        out = write_report(model, data, tmp_path_factory.mktemp("report") / "report.html", max_images_per_node=12)
        counts = np.bincount(model.predict(data), minlength=model.hierarchy_.n_leaves)
    finally:
        torch.set_num_threads(before)
    return out, model.hierarchy_, counts


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_report_in_headless_chromium(report, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path, h, counts = report
    browser.get(path.resolve().as_uri())

    # every node of the hierarchy is an element of the page
    missing = browser.execute_script(
        "return arguments[0].filter(v => !document.getElementById('node-' + v));", list(range(h.n_nodes)))
    assert missing == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tree .node")) == h.n_nodes

    # click the largest leaf: its images, size and path appear in the detail panel
    leaf = int(np.argmax(counts))
    browser.find_element(By.ID, f"node-{leaf}").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "detail-path").text == " ".join(h.name[leaf]))
    widths = WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "const imgs = [...document.querySelectorAll('#detail-samples img')];"
        "return imgs.length && imgs.every(i => i.complete) ? imgs.map(i => i.naturalWidth) : null;"))
    assert len(widths) == min(12, counts[leaf]) and all(w > 0 for w in widths)
    assert browser.find_element(By.ID, "detail-size").text == f"{counts[leaf]:,}"
    assert "selected" in browser.find_element(By.ID, f"node-{leaf}").get_attribute("class")

    # navigating to the parent through the panel's link updates the panel
    parent = int(h.parent[leaf])
    browser.find_element(By.CSS_SELECTOR, f'#detail-body a.nav[data-node="{parent}"]').click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "detail-path").text == (" ".join(h.name[parent]) or "(root)"))

    # the embedded pictures decoded too, nothing was fetched, no script errors
    pictures = browser.execute_script(
        "return [...document.querySelectorAll('#figures img')].map(i => i.naturalWidth);")
    assert len(pictures) == 3 and all(w > 0 for w in pictures)
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));")
    assert fetched == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    browser.find_element(By.ID, f"node-{leaf}").click()
    browser.execute_script("window.scrollTo(0, 0);")  # the screenshot shows the header, tree and panel
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_report_opens_node_from_url_hash(report, browser):
    from selenium.webdriver.common.by import By

    path, h, counts = report
    browser.get(path.resolve().as_uri() + f"#node-{h.root}")
    assert browser.find_element(By.ID, "detail-path").text == "(root)"
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', path.read_text(), re.S).group(1))
    assert browser.find_element(By.ID, "detail-size").text == f"{data['nodes'][h.root]['size']:,}"
    n_img = browser.execute_script("return document.querySelectorAll('#detail-samples img').length;")
    assert n_img == min(12, int(counts.sum()))
