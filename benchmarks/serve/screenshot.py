"""The README's playground screenshot: a run served in-process, driven by headless chromium.

    python -m benchmarks.serve.screenshot runs/my-lstm --out docs/playground.png

Needs chromium, chromedriver and selenium (see tests/serve/test_browser.py).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from seqlab.serve import bind
from seqlab.serve.app import create_app
from seqlab.serve.runs import load_runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--out", default="docs/playground.png")
    p.add_argument("--prompt", default="The ")
    p.add_argument("--unit", type=int, default=0)
    args = p.parse_args()
    import uvicorn

    app = create_app(load_runs([args.run]))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1150"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(
        executable_path=shutil.which("chromedriver")))
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys(args.prompt)
        unit = driver.find_element(By.ID, "unit")
        unit.clear()
        unit.send_keys(str(args.unit))
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "activations").get_attribute("data-state")
                   == "rendered")
        spans = driver.find_elements(By.CSS_SELECTOR, "#output span.tok")
        ActionChains(driver).move_to_element(spans[min(40, len(spans) - 1)]).perform()
        time.sleep(0.3)
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}")
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
