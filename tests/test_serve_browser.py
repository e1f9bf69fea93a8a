"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver,
through Selenium): what a user sees and does, and what updates while a run goes on.

Screenshots go to ``test-artifacts/`` at the top of the repository (ignored by git;
``XHELPERS_TEST_ARTIFACTS`` names another folder); with ``XHELPERS_DOCS_SCREENSHOTS=1``
they also replace the documentation's, in ``docs/assets/``. Without chromium the tests
skip, except in CI (``CI=true``), where they fail: CI installs it (``make browser``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from serve_support import TOKEN, make_tree, serving

from xhelpers.core import results

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("XHELPERS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
DOCS_ASSETS = ROOT / "docs" / "assets"
WAIT = 30  # seconds any one thing may take to show


@pytest.fixture()
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromium-driver are needed in CI (make browser)")
        pytest.skip("chromium and chromium-driver not installed (make browser installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait for ``condition``; an element redrawn under it (the pages poll) is retried."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(condition, message=what)


def click(driver: Any, css: str, index: int = 0) -> None:
    """Click the ``index``-th element ``css`` selects, found afresh until the click lands."""
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        d.find_elements(By.CSS_SELECTOR, css)[index].click()
        return True

    until(driver, clicked, f"click {css}")


def shot(driver: Any, name: str) -> None:
    """A screenshot as a test artifact (and as the docs' image, when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    if os.environ.get("XHELPERS_DOCS_SCREENSHOTS") == "1":
        shutil.copy(ARTIFACTS / f"{name}.png", DOCS_ASSETS / f"{name}.png")


def texts(driver: Any, css: str) -> list[str]:
    """The texts of what ``css`` selects, read at one moment (in the page's own thread)."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())"
    found: list[str] = driver.execute_script(script, css)
    return found


def test_groups_table_filters_failure_plot_and_diff(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    tree = make_tree(tmp_path)
    with serving(tree) as server:
        base = server.url.split("/?")[0]
        browser.get(server.url)  # the printed URL, token and all
        until(browser, lambda d: "sweep" in texts(d, "#groups td a"), "the group listed")
        assert "12 done" in browser.find_element(By.ID, "groups").text
        assert "token" not in browser.current_url  # the cookie holds it now
        shot(browser, "dashboard-groups")

        browser.find_element(By.LINK_TEXT, "sweep").click()
        until(browser, lambda d: len(texts(d, "#experiments tbody tr")) == 13, "13 rows")
        headers = texts(browser, "#experiments thead tr:first-child th")
        own = ["name", "status", "duration", "finished", "where"]
        assert headers[1:] == [*own, "lr", "seed", "acc", "loss"]
        shot(browser, "dashboard-table")

        # sort by acc, highest first: click its header twice
        acc = browser.find_element(By.CSS_SELECTOR, "th[data-column=acc]")
        acc.click()
        until(browser, lambda d: "sorted-asc" in acc.get_attribute("class"), "sorted up")
        acc = browser.find_element(By.CSS_SELECTOR, "th[data-column=acc]")
        acc.click()
        until(
            browser,
            lambda d: texts(d, "#experiments tbody tr td:nth-child(2)")[:1] == ["lr=0.1/seed=3"],
            "the best first",
        )
        # a parameter's value, then a name pattern
        lr = browser.find_element(By.CSS_SELECTOR, "input[data-param=lr]")
        lr.send_keys("1.0\n")
        until(browser, lambda d: len(texts(d, "#experiments tbody tr")) == 4, "lr=1.0 only")
        name = browser.find_element(By.ID, "name-filter")
        name.send_keys("*seed=[01]")
        until(browser, lambda d: len(texts(d, "#experiments tbody tr")) == 2, "two seeds")
        lr = browser.find_element(By.CSS_SELECTOR, "input[data-param=lr]")
        lr.clear()
        lr.send_keys("\n")
        name.clear()
        name.send_keys(" ")
        until(browser, lambda d: len(texts(d, "#experiments tbody tr")) == 13, "all again")

        # the failed ones, by status; then the failure itself
        click(browser, "input[name=status][value=failed]")
        until(
            browser,
            lambda d: texts(d, "#experiments tbody tr td:nth-child(2)") == ["lr=10.0/seed=0"],
            "only the failed one",
        )
        click(browser, "#experiments tbody a")
        until(browser, lambda d: d.find_element(By.ID, "traceback").is_displayed(), "traceback")
        traceback = browser.find_element(By.ID, "traceback").text
        assert "FloatingPointError: loss is NaN at lr=10.0" in traceback
        assert browser.find_element(By.ID, "status").text == "failed"
        until(browser, lambda d: "is too high" in d.find_element(By.ID, "log").text, "the log")
        shot(browser, "dashboard-experiment")

        # a file's preview: a CSV as a table
        browser.get(base + "/g/sweep/x/lr=0.1/seed=0")
        browser.find_element(By.LINK_TEXT, "curve.csv").click()
        until(browser, lambda d: "0.25" in texts(d, "table.csv td"), "the CSV as a table")
        shot(browser, "dashboard-file")

        # the plot: acc against lr, one line per seed, and as the CLI computes it
        browser.get(base + "/g/sweep/plot?metric=acc&x=lr&logx=1")
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "circle.point")) == 3, "plot")
        assert len(browser.find_elements(By.CSS_SELECTOR, "polygon.band")) == 1
        assert "acc (mean ± std over seed)" in browser.find_element(By.ID, "figure").text
        shot(browser, "dashboard-plot")

        # two experiments side by side, ticked in the table
        browser.get(base + "/g/sweep")
        until(browser, lambda d: len(texts(d, "#experiments tbody tr")) == 13, "rows")
        for index in (0, 5):
            click(browser, "#experiments tbody tr input[type=checkbox]", index)
        click(browser, "#compare")
        until(browser, lambda d: "/diff?" in d.current_url, "the diff page")
        differing = texts(browser, "tr.differs th")
        assert "lr" in differing and "acc" in differing
        shot(browser, "dashboard-diff")


def test_a_run_seen_live_queued_running_done(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    tree = tmp_path / "results"
    folder = tree / "live" / "train"
    folder.mkdir(parents=True)
    where = str(folder)
    results.write_metafile(where, {"status": results.SUBMITTED, "group": "live"})
    with serving(tree) as server:
        base = server.url.split("/?")[0]
        browser.get(f"{base}/g/live?token={TOKEN}")

        def row_status(d: Any) -> list[str]:
            return texts(d, "#experiments tbody tr td:nth-child(3)")

        until(browser, lambda d: row_status(d) == ["submitted"], "queued")
        lock = results.ExperimentLock(where)
        assert lock.acquire()
        try:
            meta = {"status": results.RUNNING, "group": "live", "started": results.now()}
            results.write_metafile(where, meta)
            until(browser, lambda d: row_status(d) == ["running"], "running in the table")

            browser.get(f"{base}/g/live/x/train")
            until(browser, lambda d: d.find_element(By.ID, "status").text == "running", "running")
            with open(folder / "experiment.log", "a") as log:
                log.write("epoch 1: loss 0.9\n")
                log.flush()
                until(browser, lambda d: "epoch 1" in d.find_element(By.ID, "log").text, "line 1")
                log.write("epoch 2: loss 0.4\n")
                log.flush()
                until(browser, lambda d: "epoch 2" in d.find_element(By.ID, "log").text, "line 2")
            shot(browser, "dashboard-live")
            done = {
                **meta,
                "status": results.DONE,
                "ended": results.now(),
                "duration": 1.5,
                "host": "node7",
                "returned": {"loss": 0.4},
            }
            results.write_metafile(where, done)
        finally:
            lock.release()
        until(browser, lambda d: d.find_element(By.ID, "status").text == "done", "done")
        until(browser, lambda d: d.find_element(By.ID, "cell-where").text == "node7", "host")
        assert browser.find_element(By.ID, "log").text.count("epoch 1") == 1  # appended once
