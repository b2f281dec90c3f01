"""The playground in a real browser: Debian's chromium driven through Selenium.

Skipped cleanly unless ``chromium``, ``chromedriver`` and the ``selenium`` package are all
present (``apt-get install chromium chromium-driver``; ``pip install -e '.[browser]'``). The
test types a prompt, checks that the streamed text appears, that the surprise colouring and its
hover tips, the activation view and the gate histograms render, then translates and tags, and
saves screenshots under the test's output folder."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seqlab.serve import bind
from seqlab.serve.app import create_app
from seqlab.serve.config import ServeConfig
from seqlab.serve.runs import load_runs

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def url(serve_runs: dict[str, Path]) -> Iterator[str]:
    import uvicorn

    app = create_app(load_runs([str(p) for p in serve_runs.values()]), ServeConfig())
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1000"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=DRIVER))
    except Exception as e:  # a chromium that cannot start here (no display libraries, ...)
        pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
    yield driver
    driver.quit()


def wait(driver: Any, condition: Any, seconds: float = 30) -> Any:
    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def choose_model(driver: Any, name: str) -> None:
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#model option[value='{name}']"))
    Select(driver.find_element(By.ID, "model")).select_by_value(name)


def test_generate_colour_by_surprise_and_inspect(browser: Any, url: str,
                                                 tmp_path: Path) -> None:
    browser.get(url)
    choose_model(browser, "lm")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("the ")
    tokens = browser.find_element(By.ID, "max_tokens")
    tokens.clear()
    tokens.send_keys("60")
    browser.find_element(By.ID, "generate").click()
    output = browser.find_element(By.ID, "output")
    wait(browser, lambda d: output.get_attribute("data-state") == "scored")
    text = output.text
    assert text.startswith("the ") and len(text) > len("the ") + 20  # the streamed text
    spans = output.find_elements(By.CSS_SELECTOR, "span.tok")
    assert len(spans) == 64  # prompt and generation, one span per character token
    colours = {s.value_of_css_property("background-color") for s in spans}
    assert len(colours) > 5  # coloured by surprise, not one flat colour
    ActionChains(browser).move_to_element(spans[10]).perform()
    tip = browser.find_element(By.ID, "tooltip")
    wait(browser, lambda d: tip.is_displayed() and "bits" in tip.text)
    assert tip.text.count("%") == 5  # the top five alternatives with their probabilities
    browser.save_screenshot(str(tmp_path / "playground-generate.png"))

    activations = browser.find_element(By.ID, "activations")
    wait(browser, lambda d: activations.get_attribute("data-state") == "rendered")
    assert len(activations.find_elements(By.CSS_SELECTOR, "span.tok")) == 64
    Select(browser.find_element(By.ID, "layer")).select_by_value("2")
    Select(browser.find_element(By.ID, "signal")).select_by_value("c")
    browser.find_element(By.ID, "unit-next").click()
    wait(browser, lambda d: d.find_element(By.ID, "unit").get_attribute("value") == "1")
    canvases = browser.find_elements(By.CSS_SELECTOR, "#gates canvas")
    assert len(canvases) == 6  # 2 layers x gates i, f, o
    browser.save_screenshot(str(tmp_path / "playground-activations.png"))
    assert (tmp_path / "playground-generate.png").stat().st_size > 10_000
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_translate_heatmap_and_tags_with_marginals(browser: Any, url: str,
                                                   tmp_path: Path) -> None:
    browser.get(url)
    choose_model(browser, "rev")
    browser.find_element(By.ID, "source").send_keys("1 2 3")
    browser.find_element(By.ID, "translate").click()
    table = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#attention table.heat"))
    rows = len(table[0].find_elements(By.CSS_SELECTOR, "tr")) - 1  # one per target token
    cells = table[0].find_elements(By.CSS_SELECTOR, "td")
    assert rows >= 1 and len(cells) == 1 + 3 * rows  # a corner, then 3 source columns a row
    choose_model(browser, "tagger")
    browser.find_element(By.ID, "sentence").send_keys("xx ab yy")
    browser.find_element(By.ID, "tag").click()
    tagged = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tags .tagged"))
    assert [t.find_element(By.CSS_SELECTOR, ".word").text for t in tagged] == ["xx", "ab", "yy"]
    assert all(t.find_element(By.CSS_SELECTOR, ".label").text.split()[0] in ("O", "B-X")
               for t in tagged)
    browser.save_screenshot(str(tmp_path / "playground-tag.png"))
