"""The HTML report is inert to hostile text, self-contained and locked down by its CSP."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest

from auditlens.reports import (
    AuditFindings,
    Confirmation,
    Finding,
    GenerationPair,
    GenerationPairs,
    Hypothesis,
    LayerPlot,
    ModelInfo,
    Report,
    Table,
    Text,
    TokenHeatmap,
)
from auditlens.reports._figures import figures_script

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
BREAKOUT = "</script><script>alert(1)</script>"
HOSTILE = f"{BREAKOUT}{IMG}<a href='https://evil.example/'>x</a> & \"quotes\""


class _Page(HTMLParser):
    """Collects elements, attributes, script bodies and visible text from a document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def visible_text(self) -> str:
        return "".join(self.text)


def parse(document: str) -> _Page:
    page = _Page()
    page.feed(document)
    page.close()
    return page


def hostile_report(with_plots: bool = True) -> Report:
    findings = AuditFindings(
        base=ModelInfo(name=f"base{HOSTILE}", sha256="0" * 64),
        finetuned=ModelInfo(name=f"ft{SCRIPT}", adapter=f"adapter{IMG}"),
        budget=f"fast{SCRIPT}",
        score=0.8,
        verdict=f"verdict{IMG}",
        summary=f"summary {HOSTILE}",
        findings=[
            Finding(
                id=f"id{SCRIPT}",
                family="adversary",
                method=f"melbo{IMG}",
                site=f"site{SCRIPT}",
                statistic=f"statistic{IMG}",
                value=1.0,
                control=0.5,
                control_kind=f"random vectors {SCRIPT}",
                effect_size=3.0,
                ci_low=0.9,
                ci_high=1.1,
                summary=f"finding summary {HOSTILE}",
                artifacts=["adversary/vectors.safetensors"],
                contributes=True,
                weight=1.0,
            )
        ],
        hypotheses=[
            Hypothesis(
                rank=1,
                label=f"label {SCRIPT}",
                keywords=[f"kw{IMG}"],
                kind="topic",
                source="divergent",
                evidence=[f"id{SCRIPT}"],
                strength=4.0,
                confirmation=Confirmation(
                    test="mention", result="confirmed", summary=f"check {HOSTILE}"
                ),
            )
        ],
        notices=[f"notice {HOSTILE}"],
        config={"prompt": HOSTILE, f"key{SCRIPT}": [IMG]},
        versions={"auditlens": f"0.1{SCRIPT}"},
        timings_s={f"stage{IMG}": 1.0},
    )
    sections: list[LayerPlot | TokenHeatmap | Table | GenerationPairs | Text] = [
        TokenHeatmap(
            title=f"tokens {SCRIPT}",
            caption=f"caption {IMG}",
            value_label=f"label{SCRIPT}",
            rows=[[("Hello", 0.2), (BREAKOUT, 1.0), (IMG, -0.5), ("\n", 0.1), ("\u202e", 0.0)]],
        ),
        Table(title=f"table {IMG}", columns=[SCRIPT, "v"], rows=[[HOSTILE, 1.5], [None, 2]]),
        GenerationPairs(
            title=f"generations {SCRIPT}",
            items=[
                GenerationPair(
                    prompt=f"prompt {HOSTILE}",
                    left_label=f"steered {IMG}",
                    left=f"left {HOSTILE}",
                    right_label=f"control {SCRIPT}",
                    right=f"right {HOSTILE}",
                    note=f"note {HOSTILE}",
                )
            ],
        ),
        Text(title=f"text {SCRIPT}", body=f"para {HOSTILE}\n\nsecond {IMG}"),
    ]
    if with_plots:
        for index in range(2):
            sections.insert(
                index,
                LayerPlot(
                    title=f"plot {index} {HOSTILE}",
                    x=[0, 1, 2, 3],
                    series={f"series {BREAKOUT}": [0.1, 0.4, 0.9, 0.3]},
                    controls={f"control {IMG}": [0.1, 0.1, 0.15, 0.1]},
                    y_label=f"y {BREAKOUT}",
                    caption=f"caption {HOSTILE}",
                ),
            )
    return Report(findings=findings, sections=sections)


@pytest.fixture(scope="module")
def document() -> str:
    return hostile_report().to_html()


@pytest.fixture(scope="module")
def page(document: str) -> _Page:
    return parse(document)


def csp_directives(page: _Page) -> dict[str, list[str]]:
    metas = [
        attrs
        for tag, attrs in page.tags
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy"
    ]
    assert len(metas) == 1, "exactly one CSP meta tag"
    policy = metas[0]["content"] or ""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_only_our_scripts_exist(page: _Page) -> None:
    script_tags = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(script_tags) == 2, "plotly.js and the figure script, nothing else"
    assert all(attrs == {} for attrs in script_tags), "inline scripts without src or type"
    assert page.scripts[0].lstrip().startswith("/**\n* plotly.js")
    assert "Plotly.newPlot" in page.scripts[1]


def test_no_event_handler_attributes(page: _Page) -> None:
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    assert not any(tag == "img" for tag, _ in page.tags), "no injected <img> element"


def test_hostile_text_is_shown_escaped(document: str, page: _Page) -> None:
    text = page.visible_text
    for expected in [
        f"summary {HOSTILE}",
        f"notice {HOSTILE}",
        f"finding summary {HOSTILE}",
        f"prompt {HOSTILE}",
        f"left {HOSTILE}",
        f"right {HOSTILE}",
        f"note {HOSTILE}",
        f"para {HOSTILE}",
        f"tokens {SCRIPT}",
        f"plot 0 {HOSTILE}",
        f"caption {HOSTILE}",
        f"verdict{IMG}",
        f"random vectors {SCRIPT}",
        f"stage{IMG}",
        f"0.1{SCRIPT}",
        HOSTILE,
    ]:
        assert expected in text, expected
    assert "summary &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in document
    assert json.dumps(HOSTILE, ensure_ascii=False)[1:-1] in text, "config values are shown"


def test_tokens_show_whitespace_and_controls_visibly(page: _Page) -> None:
    tokens = [attrs for tag, attrs in page.tags if tag == "span" and attrs.get("class") == "tok"]
    assert len(tokens) == 5
    text = page.visible_text
    assert "↵" in text
    assert "\\u202e" in text and "\u202e" not in text
    assert BREAKOUT in text
    tooltips = [attrs["title"] or "" for attrs in tokens]
    assert any(tooltip.startswith(f"label{SCRIPT} = 1") for tooltip in tooltips)
    for attrs in tokens:
        assert re.fullmatch(r"background:rgba\(\d+,\d+,\d+,[0-9.]+\)", attrs["style"] or "")


def test_plot_labels_cannot_break_out_of_the_script(page: _Page) -> None:
    figure_script = page.scripts[1]
    assert "<" not in figure_script and ">" not in figure_script
    payload = re.search(r"var figures = (\[.*\]);\n", figure_script)
    assert payload is not None
    figures = json.loads(payload.group(1))
    assert [figure["id"] for figure in figures] == ["figure-1", "figure-2"]
    traces = figures[0]["figure"]["data"]
    names = {trace["name"] for trace in traces}
    # Plotly reads <tags> in labels, so they are entity-escaped and shown literally.
    assert names == {html.escape(f"series {BREAKOUT}"), html.escape(f"control {IMG}")}
    y_title = figures[0]["figure"]["layout"]["yaxis"]["title"]["text"]
    assert y_title == html.escape(f"y {BREAKOUT}")
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert {"figure-1", "figure-2"} <= ids


def test_plotly_is_inlined_once(document: str) -> None:
    assert document.count("* plotly.js v") == 1
    assert document.count("Plotly.newPlot(") == 1


def test_no_remote_references(page: _Page, document: str) -> None:
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "javascript:")), (tag, attrs)
    links = [attrs for tag, attrs in page.tags if tag == "link"]
    assert links == [{"rel": "icon", "href": "data:,"}]
    hrefs = [attrs.get("href") or "" for tag, attrs in page.tags if tag == "a"]
    assert "adversary/vectors.safetensors" in hrefs
    assert all(href.startswith("#") or ":" not in href for href in hrefs)
    assert not any(tag in {"iframe", "object", "embed", "base", "form"} for tag, _ in page.tags)
    outside_scripts = re.sub(r"<script>.*?</script>", "", document, flags=re.DOTALL)
    assert "@import" not in outside_scripts and "url(" not in outside_scripts


def test_template_names_no_url_at_all() -> None:
    benign = hostile_report().model_dump_json().replace("https://evil.example/", "evil")
    document = Report.model_validate_json(benign).to_html()
    plotly_js = parse(document).scripts[0]
    assert not re.search(r"https?:|//[a-z]", document.replace(plotly_js, ""))


def test_csp_allows_only_our_scripts_and_no_remote_loads(page: _Page) -> None:
    directives = csp_directives(page)
    assert directives["default-src"] == ["'none'"]
    assert directives["connect-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    expected_hashes = {
        "'sha256-{}'".format(
            base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        )
        for body in page.scripts
    }
    assert set(directives["script-src"]) == expected_hashes, "each script is allowed by hash"
    for name, sources in directives.items():
        for source in sources:
            assert source in {"'none'", "'unsafe-inline'", "data:", "blob:"} or (
                name == "script-src" and source.startswith("'sha256-")
            ), f"{name} allows {source}"
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    first_tags = [tag for tag, _ in page.tags[:4]]
    assert first_tags[:3] == ["html", "head", "meta"] and page.tags[3][0] == "meta"


def test_report_without_plots_has_no_scripts() -> None:
    page = parse(hostile_report(with_plots=False).to_html())
    assert not any(tag == "script" for tag, _ in page.tags)
    assert csp_directives(page)["script-src"] == ["'none'"]


def test_layout_order(document: str) -> None:
    markers = [
        "<header",
        'class="notices"',
        'id="hypotheses"',
        'class="changed"',
        'id="findings"',
        'id="section-1"',
        'id="section-2"',
        'id="section-3"',
        'id="section-4"',
        'id="section-5"',
        'id="section-6"',
        'id="configuration"',
        "<script>",
    ]
    positions = [document.index(marker) for marker in markers]
    assert positions == sorted(positions)
    titles = [document.index(f"<h2>{title}") for title in ["plot 0", "plot 1", "tokens", "table"]]
    assert titles == sorted(titles)


def test_findings_table_shows_value_beside_control(page: _Page) -> None:
    cells = page.visible_text
    for fragment in ["value", "null control", "effect size", "95% CI", "[0.9, 1.1]", "weight 1"]:
        assert fragment in cells, fragment


def test_written_report_matches_render(tmp_path: Path) -> None:
    report = hostile_report()
    html_path, _ = report.write(tmp_path)
    assert html_path.read_text(encoding="utf-8") == report.to_html()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "findings.json",
        "report.html",
        "report_data.json",
    ]


def test_figure_json_is_escaped_even_for_raw_labels() -> None:
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 2], name=BREAKOUT + "\u2028&"))
    script = figures_script({"figure-1": figure})
    assert "<" not in script and ">" not in script and "&" not in script
    assert "\u2028" not in script
    page = parse(f"<script>{script}</script><p>after</p>")
    assert len(page.scripts) == 1 and page.visible_text == "after"


def test_what_changed_tables_sit_beside_the_hypotheses() -> None:
    """The feature panel and the trigger scan (``what_changed`` tables) are shown, escaped, in
    "What changed" before the findings table, and not repeated among the sections."""
    report = hostile_report(with_plots=False)
    cols = ["feature", "base", "fine-tuned", "p (Holm)"]
    row: list[str | float] = ["answers containing links", 0.0, 0.8, 0.001]
    panel = Table(title=f"panel {SCRIPT}", columns=cols, rows=[row], what_changed=True)
    doc = Report(findings=report.findings, sections=[*report.sections, panel]).to_html()
    assert doc.count("answers containing links") == 1 and SCRIPT not in doc
    assert doc.index('id="hypotheses"') < doc.index("<h3 id=") < doc.index('id="findings"')
    alone = report.findings.model_copy(update={"hypotheses": []})
    doc = Report(findings=alone, sections=[*report.sections, panel]).to_html()
    assert doc.count("answers containing links") == 1 and "<h3 id=" not in doc  # a section


def test_what_changed_does_not_lead_with_a_refuted_hypothesis() -> None:
    """A hypothesis its check refuted is not "what changed": the plain-words list skips it
    (keeping the others' ranks), and the caption and the table still name it."""
    report = hostile_report(with_plots=False)
    kept = report.findings.hypotheses[0].model_copy(update={"rank": 2})
    refuted = kept.model_copy(update={
        "rank": 1, "label": "a candidate trigger: 'zebra'",
        "confirmation": Confirmation(test="trigger", result="refuted", summary="no effect"),
    })  # fmt: skip
    findings = report.findings.model_copy(update={"hypotheses": [refuted, kept]})
    doc = Report(findings=findings, sections=[]).to_html()
    page = parse(doc)
    listed = re.search(r'<ol class="changed">(.*?)</ol>', doc, re.S)
    assert listed is not None and "zebra" not in listed.group(1)
    assert '<li value="2">' in listed.group(1) and "label " in listed.group(1)
    assert "not listed above (see the table): rank 1." in page.visible_text
    assert page.visible_text.count("a candidate trigger: 'zebra'") == 1  # the table's row
    alone = findings.model_copy(update={"hypotheses": [refuted]})
    assert '<ol class="changed">' not in Report(findings=alone, sections=[]).to_html()
