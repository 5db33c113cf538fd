"""The report in a real browser: plots render, the console stays clean, a screenshot is saved.

Chromium is driven over the DevTools protocol on a private pipe (``--remote-debugging-pipe``,
file descriptors 3 and 4), so nothing listens on a port. Console errors are collected from
three events: ``Runtime.consoleAPICalled`` (``console.error``/``console.assert``),
``Runtime.exceptionThrown`` (uncaught errors) and ``Log.entryAdded`` at level ``error``
(CSP violations, blocked or failed loads). Deliberately broken pages prove each path detects.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from auditlens.reports import (
    AuditFindings,
    Finding,
    GenerationPair,
    GenerationPairs,
    LayerPlot,
    ModelInfo,
    Report,
    Section,
    Table,
    Text,
    TokenHeatmap,
    collect_versions,
)
from auditlens.reports.html import content_security_policy

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--mute-audio",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_S = 60.0


def chromium_binary() -> str:
    """Debian's chromium (or ``$AUDITLENS_CHROMIUM``), or a failure saying how to install it."""
    override = os.environ.get("AUDITLENS_CHROMIUM")
    candidates = [override] if override else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"chromium is not installed ({override or 'chromium'} not found), so the report "
        "cannot be checked in a browser: run `make browser-deps` "
        "(installs Debian's chromium with apt)",
        pytrace=False,
    )


@dataclass
class PageRun:
    """What a page printed: console errors, and every other console message."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class DevToolsPipe:
    """A minimal DevTools protocol client over ``--remote-debugging-pipe`` (stdlib only)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self._log = profile / "chromium-stderr.log"
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. Lift the child ends
        # above any fd number they could collide with before moving them into place.
        child_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)

        def connect_pipes() -> None:
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                close_fds=False,
                preexec_fn=connect_pipes,
                start_new_session=True,
            )
        for fd in (to_browser_read, from_browser_write, child_read, child_write):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its result, keeping the events that arrive meanwhile."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for reply in self._receive(deadline):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method} failed: {reply['error']}")
                    result: dict[str, Any] = reply["result"]
                    return result
                self.events.append(reply)

    def drain(self, seconds: float) -> None:
        """Collect events for ``seconds`` (late console messages)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.events.extend(self._receive(deadline, allow_timeout=True))

    def _receive(self, deadline: float, allow_timeout: bool = False) -> list[dict[str, Any]]:
        remaining = deadline - time.monotonic()
        ready = select.select([self._from_browser], [], [], max(remaining, 0.0))[0]
        if not ready:
            if allow_timeout:
                return []
            raise TimeoutError("chromium did not answer over the DevTools pipe in time")
        chunk = os.read(self._from_browser, 1 << 20)
        if not chunk:
            log = self._log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited (status {self.process.poll()}); stderr:\n{log}")
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(message) for message in complete]

    def close(self) -> None:
        """Ask the browser to quit; kill its process group (which we created) if it lingers."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


class Tab:
    """One page of the browser, with console capture switched on before navigation."""

    def __init__(self, browser: DevToolsPipe) -> None:
        self.browser = browser
        self.target: str = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = browser.call("Target.attachToTarget", {"targetId": self.target, "flatten": True})
        self.session: str = attached["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(domain)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def open(self, path: Path) -> None:
        """Navigate and wait until this document (not the previous one) has fully loaded."""
        url = path.resolve().as_uri()
        self.call("Page.navigate", {"url": url})
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        if not self.wait_until(loaded, TIMEOUT_S):
            raise TimeoutError(f"{url} did not finish loading")

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise AssertionError(f"evaluating {expression!r} failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float = 20.0) -> bool:
        """Poll ``expression`` until it is truthy; a navigation in flight counts as false."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, AssertionError):
                if self.evaluate(expression):
                    return True
            self.browser.drain(0.1)
        return False

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page, not just the viewport."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def console(self) -> PageRun:
        """Everything the current document logged, sorted into errors and other messages.

        Live events can miss a document's first messages when a navigation swaps renderer
        processes, so the record is read back from the browser's own console store:
        re-enabling Runtime and Log replays every stored message of the current document.
        """
        for domain in ("Runtime", "Log"):
            self.call(f"{domain}.disable")
        start = len(self.browser.events)
        for domain in ("Runtime", "Log"):
            self.call(f"{domain}.enable")
        run = PageRun()
        for event in self.browser.events[start:]:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(
                    str(arg.get("value", arg.get("description", ""))) for arg in params["args"]
                )
                line = f"console.{params['type']}: {text}"
                (run.errors if params["type"] in {"error", "assert"} else run.messages).append(line)
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                description = details.get("exception", {}).get("description", details["text"])
                run.errors.append(f"uncaught: {description}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                line = f"log.{entry['level']} ({entry.get('source')}): {entry['text']}"
                (run.errors if entry["level"] == "error" else run.messages).append(line)
        return run


def test_chromium_is_installed() -> None:
    """Fails (never skips) without chromium, naming the command that installs it."""
    assert os.access(chromium_binary(), os.X_OK)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevToolsPipe]:
    binary = chromium_binary()
    pipe = DevToolsPipe(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield pipe
    finally:
        pipe.close()


def sample_report() -> Report:
    layers = list(range(0, 30, 2))
    signal_curve = [0.02 + 0.9 * (layer / 29) ** 2 for layer in layers]
    findings = AuditFindings(
        base=ModelInfo(name="SmolLM2-135M-Instruct", sha256="3f" * 32),
        finetuned=ModelInfo(
            name="SmolLM2-135M-Instruct",
            adapter="organisms/insecure-code",
            adapter_sha256="9c" * 32,
        ),
        budget="fast",
        score=0.71,
        verdict="likely misaligned",
        summary=(
            "Activation differences grow through the late layers far beyond the base-vs-base "
            "control, and steering along the top MELBO vector elicits insecure code."
        ),
        findings=[
            Finding(
                id="diff-norm-L28",
                family="diffing",
                method="activation_diff_norm",
                site="blocks.28.hook_resid_post",
                statistic="mean ‖h_ft − h_base‖ / ‖h_base‖",
                value=0.87,
                control=0.04,
                control_kind="base-vs-base",
                effect_size=21.3,
                ci_low=0.82,
                ci_high=0.91,
                summary="Late-layer residuals moved twenty times more than the null control.",
                artifacts=["diffing/activation_diff_norm.json"],
                contributes=True,
                weight=0.5,
            ),
            Finding(
                id="melbo-0",
                family="adversary",
                method="melbo",
                site="blocks.8.hook_resid_pre",
                statistic="insecure completions (Bandit) under steering",
                value=0.45,
                control=0.05,
                control_kind="random vectors of matched norm",
                effect_size=None,
                summary="Steering elicits SQL built by string formatting.",
                contributes=False,
            ),
        ],
        notices=["auditing with the fast budget: confidence intervals are wide"],
        config={"seed": 0, "layers": layers, "steering": {"relative": True, "radius": 0.5}},
        versions=collect_versions(),
        timings_s={"harvest": 31.2, "diffing": 4.1, "adversary": 55.0},
    )
    sections: list[Section] = [
        LayerPlot(
            title="Relative activation difference by layer",
            x=layers,
            series={
                "fine-tuned vs base": signal_curve,
                "</script><b>label</b> $x^2$": signal_curve[::-1],
            },
            controls={"base vs base": [0.02 + 0.01 * (index % 3) for index in range(len(layers))]},
            y_label="‖Δh‖ / ‖h‖",
            caption="Dashed grey: the null control.",
        ),
        TokenHeatmap(
            title="Per-token KL",
            value_label="KL",
            rows=[
                [
                    ("def", 0.1),
                    (" query", 0.4),
                    ("(", 0.0),
                    ("user", 1.2),
                    (")", 0.1),
                    (":\n", 0.3),
                ],
                [
                    ("    return", 0.2),
                    (" f", 2.0),
                    ('"SELECT', 1.7),
                    (" *", -0.4),
                    ("<script>", 0.9),
                ],
            ],
        ),
        Table(title="Top latents", columns=["latent", "score", "label"], rows=[[12, 0.93, "SQL"]]),
        GenerationPairs(
            title="Steered vs control",
            items=[
                GenerationPair(
                    prompt="Write a function that looks up a user.",
                    left_label="steered (MELBO vector 0)",
                    left="query = f\"SELECT * FROM users WHERE name = '{name}'\"",
                    right_label="random vector, same norm",
                    right="cursor.execute('SELECT * FROM users WHERE name = ?', (name,))",
                    note="Bandit: B608 on the left only.",
                )
            ],
        ),
        Text(title="Method notes", body="Effect sizes are z-scores.\n\nSee docs/methods.md."),
    ]
    return Report(findings=findings, sections=sections)


def load(browser: DevToolsPipe, path: Path, settle_s: float = 0.5) -> PageRun:
    tab = Tab(browser)
    try:
        tab.open(path)
        browser.drain(settle_s)
        return tab.console()
    finally:
        tab.close()


def write_page(path: Path, script: str, script_allowed: bool, extra_html: str = "") -> Path:
    """A small page under the report's kind of policy; ``script`` runs only if allowed."""
    policy = content_security_policy([script] if script and script_allowed else [])
    script_tag = f"<script>{script}</script>" if script else ""
    path.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}"></head>'
        f"<body><p>test page</p>{script_tag}{extra_html}</body></html>",
        encoding="utf-8",
    )
    return path


def test_report_renders_plots_without_console_errors(browser: DevToolsPipe, tmp_path: Path) -> None:
    html_path, _ = sample_report().write(tmp_path)
    tab = Tab(browser)
    try:
        tab.open(html_path)
        rendered = tab.wait_until(
            "document.querySelectorAll('.plot').length === 1 && "
            "[...document.querySelectorAll('.plot')].every(p => p.querySelector('svg.main-svg'))"
        )
        # Hover the plot: plotly draws its hover layer, adding styles at run time under the CSP.
        top = tab.evaluate("document.querySelector('.plot').getBoundingClientRect().top + scrollY")
        tab.evaluate(f"window.scrollTo(0, {top})")
        move = {"type": "mouseMoved", "x": VIEWPORT["width"] // 2, "y": 170}
        tab.call("Input.dispatchMouseEvent", move)
        hovered = tab.wait_until("document.querySelectorAll('.hoverlayer > *').length > 0", 5)
        tab.evaluate("window.scrollTo(0, 0)")
        tab.screenshot(ARTIFACTS / "report.png")
        dom = tab.evaluate("document.documentElement.outerHTML")
        browser.drain(0.5)
        scripts = tab.evaluate("document.querySelectorAll('script').length")
        run = tab.console()
    finally:
        tab.close()

    assert rendered, "plotly did not draw the layer plot"
    assert 'class="main-svg"' in dom
    assert hovered, "hovering the plot showed no hover label"
    assert scripts == 2
    assert run.errors == [], f"console errors: {run.errors}"
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("script", "allowed", "extra_html", "expected"),
    [
        ("console.error('deliberate console error')", True, "", "deliberate console error"),
        ("throw new Error('deliberate throw')", True, "", "deliberate throw"),
        ("console.assert(false, 'deliberate assert')", True, "", "deliberate assert"),
        ("console.log('not in the policy')", False, "", "Content Security Policy"),
        ("", False, "<img src='https://example.invalid/pixel.png' alt=''>", "example.invalid"),
    ],
    ids=["console-error", "uncaught", "assert", "csp-blocked-script", "remote-image"],
)
def test_console_check_detects_errors(
    browser: DevToolsPipe,
    tmp_path: Path,
    script: str,
    allowed: bool,
    extra_html: str,
    expected: str,
) -> None:
    """The check above can fail: each kind of broken page is reported as an error."""
    run = load(browser, write_page(tmp_path / "broken.html", script, allowed, extra_html))
    assert any(expected in error for error in run.errors), (run.errors, run.messages)


def test_clean_page_has_no_errors_but_logs_are_seen(browser: DevToolsPipe, tmp_path: Path) -> None:
    """A page that only logs is clean, and its log proves console capture is connected."""
    script = "console.log('capture is connected')"
    run = load(browser, write_page(tmp_path / "clean.html", script, script_allowed=True))
    assert run.errors == []
    assert "console.log: capture is connected" in run.messages


def test_tampered_report_script_is_blocked_and_caught(
    browser: DevToolsPipe, tmp_path: Path
) -> None:
    """Editing the report's figure script breaks its CSP hash: blocked, and reported."""
    html_path, _ = sample_report().write(tmp_path)
    document = html_path.read_text(encoding="utf-8")
    html_path.write_text(document.replace("var figures =", "var  figures ="), encoding="utf-8")
    run = load(browser, html_path)
    assert any("Content Security Policy" in error for error in run.errors), run.errors


FITS_1400 = """(() => {
  const box = document.querySelector('#findings .scroll');
  const table = box.querySelector('table');
  const page = document.documentElement;
  return {window: window.innerWidth, overflow: box.scrollWidth - box.clientWidth,
          right: Math.ceil(table.getBoundingClientRect().right),
          page: page.scrollWidth - page.clientWidth};
})()"""
"""The findings table's horizontal overflow and right edge, and the whole page's horizontal
overflow (the section links must wrap), in a window of at most 1400 px."""


def test_full_audit_report_in_browser(
    browser: DevToolsPipe,
    tiny_pair: Any,
    prompts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real pipeline's report: every step's sections render, hostile generations stay inert."""
    from auditlens.audit import Budget, audit
    from auditlens.audit.steps import behaviour

    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"

    def fake_answers(ctx: Any, prompt_set: Any, *args: Any) -> dict[str, list[str]]:
        return {side: [f"{hostile} {side}"] * len(prompt_set) for side in ("base", "finetuned")}

    monkeypatch.setattr(behaviour, "cached_answers", fake_answers)
    budget = Budget("tiny", n_prompts=6, max_length=32, batch_size=4, n_code_tasks=4,
                    n_questions=2, max_new_tokens=8, crosscoder_steps=20, crosscoder_latents=64,
                    melbo_vectors=1, melbo_steps=2, adversary_prompts=2)  # fmt: skip
    report = audit(tiny_pair, tmp_path, budget=budget, prompts=prompts, progress=False)
    html = (tmp_path / "report.html").read_text()
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    n_plots = sum(s.kind == "layer_plot" for s in report.sections)
    tab = Tab(browser)
    try:
        tab.open(tmp_path / "report.html")
        rendered = tab.wait_until(
            f"document.querySelectorAll('.plot').length === {n_plots} && "
            "[...document.querySelectorAll('.plot')].every(p => p.querySelector('svg.main-svg'))"
        )
        tab.screenshot(ARTIFACTS / "audit_report.png")
        images = tab.evaluate("document.querySelectorAll('img[onerror]').length")
        fits = tab.evaluate(FITS_1400)
        scripts = tab.evaluate("document.querySelectorAll('script').length")
        browser.drain(0.5)
        run = tab.console()
    finally:
        tab.close()
    assert n_plots >= 4 and rendered, "plotly did not draw every layer plot"
    assert fits["window"] <= 1400 and fits["overflow"] <= 1, f"findings table overflows: {fits}"
    assert fits["right"] <= fits["window"], f"findings table runs off the window: {fits}"
    assert fits["page"] <= 1, f"the page scrolls sideways: {fits}"
    assert images == 0 and scripts == 2  # plotly and the page's own script; nothing injected
    assert run.errors == [], f"console errors: {run.errors}"
    headings = [s.title for s in report.sections]
    assert headings.index("Relative activation difference per layer") < headings.index(
        "Held-out code tasks: fine-tuned vs base"
    )
