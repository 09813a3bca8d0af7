"""Screenshots of the real MLflow UI comparing a `main` run's variants, for README.

Starts `mlflow ui` on a tracking store, finds the newest finished `main` run of
the `rtdeploy` experiment, and drives headless Chromium (Debian's `chromium`)
through the Chrome DevTools Protocol, clicking the UI's own controls as a person would.
Both pages are searched down to that pipeline's runs (tags.mlflow.parentRunId):
  - docs/mlflow-ui-runs.png: the runs table in "Model training" mode, `main` expanded
    into its child runs, oldest first, with the metric columns that compare the variants;
  - docs/mlflow-ui-compare.png: the runs page's chart view, one bar chart per metric,
    runs sorted by gzip size so every chart lists them in the same order as the run list.

    apt-get install chromium          # once
    mlflow run . --env-manager local --experiment-name rtdeploy   # a main run to show
    python docs/screenshot.py [--tracking-uri sqlite:///mlflow.db]

The UI only reads the store, except what it writes itself (it keeps the view's
state in the browser's fresh profile, which is thrown away).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from steps import contract  # noqa: E402
from steps.release.infra import free_port  # noqa: E402

DOCS = Path(__file__).resolve().parent
WIDTH = 1600
TABLE_METRICS = (
    contract.ACCURACY,
    contract.VAL_ACCURACY_DROP,
    contract.SIZE_GZIP_BYTES,
    contract.COMPRESSION_RATIO,
    contract.LATENCY_P50_MS,
)
# accuracy, not val_accuracy_drop: a bar chart draws no bar for the many drops of 0
CHART_METRICS = (contract.SIZE_GZIP_BYTES, contract.COMPRESSION_RATIO, contract.LATENCY_P50_MS, contract.ACCURACY)
HIDDEN_COLUMNS = ("Dataset", "Source")  # wide, and the same for every variant
METRIC_COLUMN_WIDTH = 125  # MLflow's 100 px cuts "compression_ratio" short
RUN_NAME_COLUMN_WIDTH = 220  # room for "pruned80-c16-qat-int8" below its parent
TIMEOUT = 30.0  # seconds to wait for any one thing the UI should show
# Chromium as root in a container, with nothing reaching for the (closed) internet.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
)


class UIError(RuntimeError):
    """The UI did not show what the script waited for."""


class Page:
    """One Chromium tab, driven over a CDP websocket: evaluate, wait, click, type, drag, capture."""

    def __init__(self, websocket):
        self.websocket = websocket
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        message_id = next(self.ids)
        self.websocket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events (we enable none, but some come anyway) are skipped
            message = json.loads(self.websocket.recv(timeout=TIMEOUT))
            if message.get("id") == message_id:
                if "error" in message:
                    raise UIError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise UIError(f"JavaScript failed: {result['exceptionDetails']}\n{expression}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = TIMEOUT):
        """Polls until the expression is truthy: the UI renders after its REST calls answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(f"(v => v instanceof Node || v)({expression})")  # a found element: true
            if value:
                return value
            time.sleep(0.2)
        raise UIError(f"the MLflow UI did not show {what} within {timeout:.0f} s")

    def center(self, element: str, what: str) -> tuple[float, float]:
        """Where to click an element, once it exists (scrolled into view)."""
        return self.wait_for(
            f"""(() => {{ const e = {element}; if (!e) return null;
                e.scrollIntoView({{block: "nearest", inline: "nearest"}});
                const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""",
            what,
        )

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def click(self, element: str, what: str) -> None:
        # Real mouse events: the UI's menus open on pointer events that element.click() does not send.
        x, y = self.center(element, what)
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, buttons=1)
        self.mouse("mouseReleased", x, y)

    def drag(self, x: float, y: float, dx: float, dy: float) -> None:
        """Presses at (x, y) and moves in steps, as resize handles only follow a moving mouse."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, buttons=1)
        for step in range(1, 11):
            self.mouse("mouseMoved", x + dx * step / 10, y + dy * step / 10, buttons=1)
            time.sleep(0.02)
        self.mouse("mouseReleased", x + dx, y + dy)

    def type_into(self, element: str, text: str, what: str) -> None:
        """Replaces an input's text, typed as a user would (React sees real input events)."""
        self.click(element, what)
        self.evaluate("document.activeElement.select()")
        self.call("Input.insertText", text=text)

    def press(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)

    def screenshot(self, output: Path) -> None:
        time.sleep(0.5)  # let the last CSS transition (menus closing, bars growing) finish
        output.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {output}")


# JavaScript expressions that find elements
def css(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


def with_text(selector: str, text: str) -> str:
    return (
        f"[...document.querySelectorAll({json.dumps(selector)})].find(e => e.innerText.trim() === {json.dumps(text)})"
    )


def equals(expression: str, value) -> str:
    """JavaScript that is true when the expression's value is `value` (both written by JSON.stringify)."""
    return f"JSON.stringify({expression}) === JSON.stringify({json.dumps(value)})"


def header_cell(metric: str) -> str:
    return css(f'.ag-header-cell[col-id="metrics.`{metric}`"]')


def run_order() -> str:
    """The run ids of the table's rows, top to bottom."""
    return """[...document.querySelectorAll(".ag-row")]
        .filter(r => r.querySelector('a[href*="/runs/"]'))
        .sort((a, b) => a.getAttribute("row-index") - b.getAttribute("row-index"))
        .map(r => r.querySelector('a[href*="/runs/"]').getAttribute("href").split("/").pop())"""


# Steps on the runs page
def choose_model_training(page: Page) -> None:
    """A fresh browser opens MLflow 3 in GenAI mode: its side bar then lists traces, judges, prompts..."""
    page.click(with_text("[role=button]", "Model training"), 'the "Model training" toggle')
    page.wait_for(with_text("a", "Model registry"), "the model training side bar")
    close_assistant(page)  # now, as the table only lays out its columns in the width left to it


def close_assistant(page: Page) -> None:
    """A fresh browser also opens the Assistant panel, which takes a third of the page."""
    close = css('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if page.evaluate(f"!!{close}"):
        page.click(close, "the Assistant panel's close button")
        page.wait_for(f"!{close}", "the Assistant panel closed")


def filter_runs(page: Page, main_run) -> None:
    """Search box: only this pipeline's runs (the UI still lists their parent), whatever else the store holds."""
    page.type_into(
        css("[data-testid=search-box]"), f"tags.mlflow.parentRunId = '{main_run.info.run_id}'", "the search box"
    )
    page.press("Enter", 13)
    page.click(with_text("h2", "Runs"), "the page title")  # a click outside closes the search's suggestions


def expand(page: Page, main_run, children) -> None:
    link = css(f'a[href$="/runs/{main_run.info.run_id}"]')
    page.click(
        f"{link}?.closest('.ag-cell')?.querySelector('button')", f"the expander of main run {main_run.info.run_id}"
    )
    ids = [run.info.run_id for run in children]
    page.wait_for(
        f"{json.dumps(ids)}.every(id => document.querySelector(`a[href$='/runs/${{id}}']`))", "the child runs"
    )


def sort_ascending(page: Page, key: str, expected: str, what: str) -> None:
    """Sort menu: picking a key sorts descending and closes the menu; the arrow then flips it."""
    sort_menu = css("[data-testid=sort-select-dropdown]")
    if key != "Created":  # the default key
        page.click(sort_menu, "the Sort menu")
        page.click(css(f'[data-testid="sort-select-{key}"]'), f"{key} in the Sort menu")
    page.click(sort_menu, "the Sort menu")
    page.click(css("[data-testid=sort-select-asc]"), 'the Sort menu\'s "ascending" arrow')
    page.wait_for(expected, what)


def set_columns(page: Page, shown: tuple[str, ...], hidden: tuple[str, ...]) -> None:
    """Columns selector: search each column by name and tick or untick its box."""
    page.click(with_text("button", "Columns"), "the Columns selector")
    search = css('input[placeholder="Search columns"]')
    for name, wanted in [(name, True) for name in shown] + [(name, False) for name in hidden]:
        page.type_into(search, name, "the Columns selector's search box")
        node = with_text(".du-bois-light-tree-treenode", name)
        page.wait_for(node, f"the column {name!r} in the Columns selector")
        checked = f"{node}.classList.contains('du-bois-light-tree-treenode-checkbox-checked')"
        if page.evaluate(checked) != wanted:
            page.click(f"{node}.querySelector('.du-bois-light-tree-checkbox')", f"the box of column {name!r}")
            page.wait_for(
                f"{checked} === {json.dumps(wanted)}", f"column {name!r} {'ticked' if wanted else 'unticked'}"
            )
    page.press("Escape", 27)
    page.wait_for(" && ".join(header_cell(name) for name in shown), "the metric columns")


def widen(page: Page, header: str, width: int, what: str) -> None:
    """Drags the column's resize handle, at the header's right edge, until the column is `width` wide."""
    box = f"(() => {{ const r = {header}?.getBoundingClientRect(); return r && [r.x, r.y, r.width, r.height]; }})()"
    for _attempt in range(3):  # a drag that starts while the grid redraws its header is lost: try again
        left, top, current, height = page.wait_for(box, what)
        if abs(current - width) < 3:
            return
        page.drag(left + current - 2, top + height / 2, width - current, 0)
        try:
            page.wait_for(f"Math.abs({header}.getBoundingClientRect().width - {width}) < 3", what, timeout=3)
        except UIError:
            print(f"retrying to widen {what}", file=sys.stderr)
    raise UIError(f"dragging its resize handle did not make {what} {width} px wide")


def show_charts(page: Page, metrics: tuple[str, ...], runs_with: dict[str, int]) -> None:
    """Chart view, every run visible, only the charts of `metrics`, two to a row."""
    page.click(f"{css('input[value=CHART]')}?.closest('label')", "the chart view button")
    page.click(css("[data-testid=experiment-view-runs-visibility-column-header]"), "the run visibility menu")
    page.click(with_text("[role=menuitemradio]", "Show all runs"), '"Show all runs"')
    pattern = "^(" + "|".join(metrics) + ")$"  # the chart search takes a regular expression
    page.type_into(css('input[placeholder="Search metric charts"]'), pattern, "the chart search box")
    cards = '[...document.querySelectorAll("[data-testid=experiment-view-compare-runs-card]")]'
    titles = f"{cards}.map(c => c.querySelector('h4')?.innerText).sort()"
    page.wait_for(equals(titles, sorted(metrics)), f"exactly the charts {', '.join(metrics)}")
    # A card's corner handle sets the size of every card in its section: half the grid's width.
    grid = css("[data-testid=draggable-chart-cards-grid]")
    x, y, dx, dy = page.evaluate(f"""(() => {{ const h = {cards}[0].parentElement
        .querySelector("[data-testid=draggable-card-resize-handle]").getBoundingClientRect();
        const c = {cards}[0].getBoundingClientRect(), g = {grid}.getBoundingClientRect();
        return [h.x + h.width / 2, h.y + h.height / 2, g.width / 2 - c.width, 520 - c.height]; }})()""")
    page.drag(x, y, dx, dy)
    two_to_a_row = f"{cards}[0].getBoundingClientRect().width > {grid}.getBoundingClientRect().width / 3"
    page.wait_for(two_to_a_row, "the charts two to a row")
    bars = " && ".join(
        f"{cards}.find(c => c.querySelector('h4')?.innerText === {json.dumps(m)})"
        f"?.querySelectorAll('.bars .point').length === {runs_with[m]}"
        for m in metrics
    )
    page.wait_for(bars, "a bar for every run in every chart")


def fit_height(page: Page, element: str, margin: int = 40) -> None:
    """Makes the window tall enough that the element's bottom edge shows."""
    bottom = page.evaluate(f"{element}.getBoundingClientRect().bottom")
    page.resize(int(bottom) + margin)


# The tracking store and the processes
def newest_main_run(experiment_name: str):
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        sys.exit(f"no experiment {experiment_name!r} in {mlflow.get_tracking_uri()}: run the pipeline first")
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{contract.TAG_STEP}` = '{contract.MAIN}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not runs:
        sys.exit(f"experiment {experiment_name!r} has no finished main run: run the pipeline first")
    return experiment, runs[0]


def child_runs(main_run) -> list:
    """The main run's children, oldest first (the table's order once sorted by Created, ascending)."""
    return mlflow.search_runs(
        [main_run.info.experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{main_run.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )


def start_ui(tracking_uri: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            tracking_uri,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ui.poll() is not None:
            sys.exit(f"mlflow ui exited with code {ui.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return ui, base
        except OSError:
            time.sleep(0.5)
    stop(ui)
    sys.exit(f"mlflow ui did not answer at {base} within 120 s")


def start_chromium(chromium: str, profile: str) -> tuple[subprocess.Popen, str]:
    """Starts Chromium and returns it with the websocket URL of its one tab."""
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + TIMEOUT
    while not (port_file.exists() and port_file.read_text().strip()):
        if browser.poll() is not None or time.monotonic() > deadline:
            stop(browser)
            sys.exit(f"chromium did not open its DevTools port within {TIMEOUT:.0f} s")
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
        tabs = [target for target in json.load(answer) if target["type"] == "page"]
    return browser, tabs[0]["webSocketDebuggerUrl"]


def stop(process: subprocess.Popen) -> None:
    """Ends the process and the workers it started (its own session)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def take_screenshots(page: Page, base: str, experiment_id: str, main_run, children) -> None:
    page.resize(880)
    page.call("Page.navigate", url=f"{base}/#/experiments/{experiment_id}/runs")
    choose_model_training(page)
    filter_runs(page, main_run)
    expand(page, main_run, children)
    in_creation_order = [main_run.info.run_id] + [run.info.run_id for run in children]
    sort_ascending(page, "Created", equals(run_order(), in_creation_order), "only main and its children, oldest first")
    set_columns(page, TABLE_METRICS, HIDDEN_COLUMNS)
    widen(page, css('.ag-header-cell[col-id="attributes.`Run Name`"]'), RUN_NAME_COLUMN_WIDTH, "the Run Name column")
    for metric in sorted(TABLE_METRICS):  # left to right, as the UI orders them
        widen(page, header_cell(metric), METRIC_COLUMN_WIDTH, f"the {metric} column")
    close_assistant(page)
    page.screenshot(DOCS / "mlflow-ui-runs.png")

    # Sorted by a metric, the UI lists the runs flat: the smallest variant first.
    sizes = {run.info.run_id: run.data.metrics.get(contract.SIZE_GZIP_BYTES) for run in children}
    ascending = sorted(size for size in sizes.values() if size is not None)
    sizes_shown = f"{run_order()}.map(id => ({json.dumps(sizes)})[id]).filter(s => s != null)"
    sorted_by_size = equals(sizes_shown, ascending)
    sort_ascending(page, contract.SIZE_GZIP_BYTES, sorted_by_size, "the runs sorted by size_gzip_bytes")
    page.resize(1000)
    runs_with = {m: sum(m in run.data.metrics for run in children) for m in CHART_METRICS}
    show_charts(page, CHART_METRICS, runs_with)
    fit_height(page, '[...document.querySelectorAll("[data-testid=experiment-view-compare-runs-card]")].pop()')
    close_assistant(page)
    page.screenshot(DOCS / "mlflow-ui-compare.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--experiment", default=contract.EXPERIMENT)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("docs/screenshot.py needs Chromium: apt-get install chromium")
    mlflow.set_tracking_uri(args.tracking_uri)
    experiment, main_run = newest_main_run(args.experiment)
    children = child_runs(main_run)
    started = time.monotonic()
    ui, base = start_ui(args.tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as profile:
            browser, websocket_url = start_chromium(chromium, profile)
            try:
                with connect(websocket_url, max_size=None) as websocket:
                    take_screenshots(Page(websocket), base, experiment.experiment_id, main_run, children)
            finally:
                stop(browser)
    except UIError as error:
        sys.exit(f"docs/screenshot.py: {error}")
    finally:
        stop(ui)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
