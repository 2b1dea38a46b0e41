"""The web front end in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium;
CI installs it, and these tests fail, not skip, when it is missing) against `systolab serve`'s app
under uvicorn. One user's session, page by page: edit a config, compile a GEMM (the cycles shown
equal `systolab run --sim model --json`), open the timeline, run on the model and on the RTL
(traced, for the RTL Gantt), run a sweep and open its report. Screenshots go to tests/artifacts/web/.
"""

import io
import json
import socket
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from systolab.app.cli import main as cli

from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
SMALL = "array: {rows: 2, cols: 2}\nscratchpad: {depth: 256}\naccumulator: {depth: 64}\nmemory: {size_kib: 64}\n"
TINY_SWEEP = """name: browser
base: ../default.yaml
set: {memory.size_kib: 256}
axes: {array.rows: [2, 4]}
workloads: [{name: g, gemm: [16, 16, 16]}]
evaluate: [model]
objectives: {cycles: min, pes: min}
"""
TIMEOUT_MS = 60_000


def cli_json(config_text: str, tmp: Path, *args) -> dict:
    path = tmp / "cfg.yaml"
    path.write_text(config_text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(["run", str(path), *args, "--json"])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def cli_error(config_text: str, tmp: Path, source: str) -> str:
    path = tmp / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text)
    err = io.StringIO()
    import os
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with redirect_stderr(err):
            code = cli(["run", source, "--workload", "gemm:4x4x4"])
    finally:
        os.chdir(cwd)
    assert code == 2
    return err.getvalue().removeprefix("systolab: error: ").rstrip("\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from systolab.app.web import Settings, create_app

    store = tmp_path_factory.mktemp("web-store")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(Settings(store=store)), host="127.0.0.1", port=port,
                                        log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    f"(apt-get install -y chromium; .ci/run installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
        # nothing may come from outside this server
        outside = []

        def only_this_server(route):
            if route.request.url.startswith(server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()
        context.route("**/*", only_this_server)
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.outside = outside
        yield pg
        browser.close()


def shot(page, name: str, *, full_page: bool = False) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


@pytest.fixture(autouse=True)
def no_page_errors(request):
    yield
    if "page" in request.fixturenames:
        pg = request.getfixturevalue("page")
        assert pg.errors == [], pg.errors
        assert pg.outside == [], f"requests outside the server: {pg.outside}"


def test_start_page_and_config_editing(page, tmp_path):
    page.goto("/")
    for name in ("Config", "Compile", "Timeline", "Run", "Sweeps"):
        assert page.locator("main a", has_text=name).count() >= 1
    shot(page, "start")
    page.locator("main a", has_text="Config").first.click()
    page.wait_for_selector("#status.ok")
    assert "valid" in page.inner_text("#status")
    default = (ROOT / "configs/default.yaml").read_text()
    assert page.input_value("#yaml") == default
    bad = default.replace("rows: 8 ", "rows: 3 ")
    page.fill("#yaml", bad)
    page.wait_for_selector("#status.bad")
    assert page.inner_text("#status") == cli_error(bad, tmp_path, "configs/default.yaml")
    good = default.replace("rows: 8 ", "rows: 4 ").replace("cols: 8 ", "cols: 4 ")
    page.fill("#yaml", good)
    page.wait_for_selector("#status.ok")
    page.wait_for_function("document.querySelector('#facts-table') && document.querySelector('#facts-table').innerText.includes('16 (4 x 4)')")
    shot(page, "config")


def test_compile_gemm_shows_the_clis_cycles(page, tmp_path):
    page.goto("/compile")
    page.fill(".workload", "gemm:40x56x24")
    page.click("#compile")
    page.wait_for_selector("#cycles")
    shown = int(page.inner_text("#cycles"))
    config_text = page.evaluate("JSON.parse(localStorage.getItem('systolab.config')).yaml")
    assert "rows: 4" in config_text
    ref = cli_json(config_text, tmp_path, "--workload", "gemm:40x56x24", "--sim", "model")
    assert shown == ref["cycles"]
    page.wait_for_selector("#layer-chart .main-svg")
    assert page.locator("#listing-table tbody tr").count() == min(300, ref["instructions"])
    assert page.locator("#memory-map tbody tr").count() >= 5
    assert page.locator("table.alternatives tr.chosen").count() == 1
    shot(page, "compile")
    page.click("text=timeline of the queues")
    page.wait_for_selector("#model-chart .main-svg")
    page.wait_for_selector("#model-cycles")
    assert int(page.inner_text("#model-cycles").replace(",", "")) == ref["cycles"]
    assert page.locator("#model-chart .bars path").count() > 0
    shot(page, "timeline")


def test_run_on_the_model_and_traced_on_the_rtl(page, tmp_path):
    page.goto("/run")
    page.fill(".workload", "gemm:40x56x24")
    page.select_option("#sim", "model")
    page.click("#run")
    page.wait_for_selector("#result-table")
    config_text = page.evaluate("JSON.parse(localStorage.getItem('systolab.config')).yaml")
    ref = cli_json(config_text, tmp_path, "--workload", "gemm:40x56x24", "--sim", "model")
    shown = json.loads(page.text_content("#result-json"))
    assert shown.keys() == ref.keys() and shown["cycles"] == ref["cycles"]
    assert page.locator("#downloads a", has_text="systolab_top.v").count() == 1
    # the RTL on a 2x2 config, traced: the Gantt from the waveform
    page.evaluate(f"setCurrentConfig({json.dumps(SMALL)}, 'small.yaml', '')")
    page.goto("/run")
    page.fill(".workload", "gemm:8x8x8")
    page.select_option("#sim", "verilator")
    page.check("#trace")
    page.click("#run")
    page.wait_for_selector("#result-table", timeout=600_000)
    rtl = json.loads(page.text_content("#result-json"))
    assert rtl["status"] == "pass" and rtl["sim"] == "verilator" and rtl["rtl_timeline"]
    shot(page, "run")
    page.click("text=timeline: model and RTL")
    page.wait_for_selector("#rtl-chart .main-svg")
    assert int(page.inner_text("#rtl-cycles").replace(",", "")) == rtl["cycles"]
    page.wait_for_selector("#model-chart .main-svg")
    shot(page, "timeline-rtl", full_page=True)


def test_sweep_and_its_report(page):
    page.goto("/sweeps")
    page.wait_for_function("document.querySelector('#yaml').value.length > 0")
    page.fill("#yaml", TINY_SWEEP)
    page.fill("#name", "browser.yaml")
    page.click("#start")
    page.wait_for_selector("#progress.ok", timeout=180_000)
    assert "2 points" in page.inner_text("#progress")
    page.wait_for_selector("#sweep-table")
    assert page.locator("#sweep-table tbody tr").count() == 2
    assert page.locator("#sweep-table tbody tr.front").count() >= 1
    page.wait_for_selector("#pareto .main-svg")
    page.click("#compare")
    page.wait_for_selector("#compare-table")
    assert "array.rows" in page.inner_text("#compare-table")
    shot(page, "sweeps")
    with page.context.expect_page() as popup:
        page.click("#report-link")
    report = popup.value
    report.wait_for_load_state()
    assert "Pareto" in report.content()
    report.set_viewport_size({"width": 1280, "height": 900})
    shot(report, "report")
    report.close()
