"""The HTML reports in a real browser: Debian's Chromium, headless, with no network.

Three reports (the support-tickets and support-qa examples and BANKING77's 77 intents)
are opened from file:// at desktop and at phone width. Every section must render, every
plot must draw something, no two labels of a plot may overlap and none may stick out of
its plot, no column of the results table may be lost on a phone, the page must log no
error and ask for nothing outside the file. A fourth report, of a run built by hand
(:mod:`tests.report.synthetic`), shows on screen which p-values are red and which green.
Full-page screenshots are kept in pytest's tmp folder (their paths are printed;
``pytest -s`` shows them).

Chromium is driven by Playwright with ``executable_path`` set to the system's Chromium,
so Playwright never downloads a browser of its own.
"""

from __future__ import annotations

import math
import shutil
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Three small runs (about a minute on 2 cores) and one browser for the whole module.
pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")

REPORTS = ("support-tickets", "support-qa", "banking77")
# Playwright's context options for each width; the phone is an iPhone 12-14 sized screen.
WIDTHS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },
}
EPS = 0.5  # px: overlaps (and overhangs) up to this are rounding, not a collision

Quad = Sequence[tuple[float, float]]

# Everything the checks need, measured in one pass over the laid-out page.
MEASURE = """
() => {
  const clean = (s) => (s || "").replace(/\\s+/g, " ").trim();
  const rendered = (el) => {
    const r = el.getBoundingClientRect();
    return el.checkVisibility() && r.width > 0 && r.height > 0;
  };
  const before = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
  const h2s = [...document.querySelectorAll("h2")];
  const h3s = [...document.querySelectorAll("h3")];
  const where = (el) => {
    const h2 = h2s.filter((h) => before(h, el)).pop();
    const h3 = h3s.filter((h) => before(h, el) && (!h2 || before(h2, h))).pop();
    const fig = el.closest("figure");
    const cap = fig && fig.querySelector("figcaption");
    return [h2 ? clean(h2.textContent) : "(top)", h3 ? clean(h3.textContent) : null,
            cap ? clean(cap.textContent).slice(0, 90) : null].filter(Boolean).join(" / ");
  };

  const sections = h2s.map((h) => {
    let body = 0;
    for (let el = h.nextElementSibling; el && el.tagName !== "H2"; el = el.nextElementSibling) {
      if (rendered(el)) body += 1;
    }
    return { title: clean(h.textContent), rendered: rendered(h), body };
  });

  const figures = [...document.querySelectorAll("figure")].map((f) => ({
    where: where(f), svgs: f.querySelectorAll("svg").length,
  }));

  const corners = (el) => {
    const b = el.getBBox(), m = el.getScreenCTM();
    const xs = [b.x, b.x + b.width], ys = [b.y, b.y + b.height];
    return [[xs[0], ys[0]], [xs[1], ys[0]], [xs[1], ys[1]], [xs[0], ys[1]]]
      .map(([x, y]) => { const p = new DOMPoint(x, y).matrixTransform(m); return [p.x, p.y]; });
  };
  const SHAPES = "path, line, rect, polyline, polygon, circle, ellipse, use, image";
  const drawn = (el) => { const b = el.getBBox(); return b.width > 0 || b.height > 0; };
  const svgs = [...document.querySelectorAll("svg")].filter((s) => !s.parentElement.closest("svg"))
    .map((svg) => {
      const r = svg.getBoundingClientRect();
      const shapes = [...svg.querySelectorAll(SHAPES)]
        .filter((el) => !el.closest("defs, clipPath, mask, pattern, marker, symbol"));
      // matplotlib's layout: per axes, a background patch first, then ticks and grid
      // (matplotlib.axis_*), the data, unfilled spine patches and a legend.
      const axes = [...svg.querySelectorAll("g[id]")].filter((g) => /(^|-)axes_\\d+$/.test(g.id))
        .map((ax) => ({
          id: ax.id,
          marks: shapes.filter((el) => ax.contains(el)
            && !ax.firstElementChild.contains(el)
            && !el.closest('g[id*="matplotlib.axis_"], g[id*="legend_"]')
            && !(el.closest('g[id*="patch_"]') && getComputedStyle(el).fill === "none")
            && drawn(el)).length,
        }));
      const texts = [...svg.querySelectorAll("text")]
        .filter((t) => !t.closest("defs") && clean(t.textContent) && t.checkVisibility())
        .map((t) => ({ text: clean(t.textContent), quad: corners(t) }));
      return { where: where(svg), width: r.width, height: r.height,
               box: [r.left, r.top, r.right, r.bottom],
               drawn: shapes.filter(drawn).length, axes, texts };
    });

  // The results table: each header cell readable where it is, in a sideways-scrolling
  // box, or (stacked phone layout) every cell of its column shown and labelled with it.
  const key = (s) => clean(s).toLowerCase().replace(/[^a-z0-9]/g, "");
  const table = document.getElementById("results");
  const rows = table ? [...table.querySelectorAll("tbody tr")] : [];
  const vw = document.documentElement.clientWidth;
  const scroller = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const r = a.getBoundingClientRect();
      const scrolls = /auto|scroll/.test(getComputedStyle(a).overflowX);
      if (scrolls && r.left >= -0.5 && r.right <= vw + 0.5) return true;
    }
    return false;
  };
  const columns = table ? [...table.querySelectorAll("thead th")].map((th, i) => {
    const r = th.getBoundingClientRect();
    const cells = rows.map((tr) => tr.children[i]).filter(Boolean);
    // What a stacked cell shows of its column's name: a ::before label, or its own text.
    const label = (td) => key(getComputedStyle(td, "::before").content) + key(td.innerText);
    return {
      text: clean(th.textContent),
      rendered: rendered(th),
      in_view: rendered(th) && r.left >= -0.5 && r.right <= vw + 0.5,
      in_scroller: rendered(th) && scroller(th),
      cells: cells.length,
      cells_rendered: cells.filter(rendered).length,
      // The first cell of a card is its title (the candidate), so it needs no label.
      cells_labelled: cells.filter((td) => i === 0 || label(td).includes(key(th.textContent)))
        .length,
    };
  }) : null;

  // What makes the page wider than the screen: the outermost elements that stick out
  // while their parent does not, unless a box that scrolls or clips holds them.
  const sticksOut = (el) => el.getBoundingClientRect().right > vw + 0.5;
  const held = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (/auto|scroll|hidden|clip/.test(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  const wide = [...document.body.querySelectorAll("*")]
    .filter((el) => sticksOut(el) && !sticksOut(el.parentElement) && !held(el))
    .slice(0, 5)
    .map((el) => `<${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}>`
      + ` in '${where(el)}' (right edge ${Math.round(el.getBoundingClientRect().right)} px):`
      + ` ${clean(el.textContent).slice(0, 60)}`);

  const rec = document.getElementById("recommendation");
  return {
    sections, figures, svgs, columns, rows: rows.length, wide,
    recommendation: !!rec && rendered(rec),
    page_width: document.documentElement.scrollWidth, viewport_width: vw,
  };
}
"""


# ---------------------------------------------------------------- geometry


def overlap(a: Quad, b: Quad) -> float:
    """How far two convex quadrilaterals overlap (0 when apart), by separating axes.

    Rotated labels are rotated rectangles, so the depth is the smallest overlap of the
    two shapes' projections on the normals of their edges: zero on any separating axis.
    """
    depth = math.inf
    for poly in (a, b):
        for (x1, y1), (x2, y2) in zip(poly, [*poly[1:], poly[0]], strict=True):
            nx, ny = y1 - y2, x2 - x1
            norm = math.hypot(nx, ny)
            if norm < 1e-9:
                continue
            pa = [(x * nx + y * ny) / norm for x, y in a]
            pb = [(x * nx + y * ny) / norm for x, y in b]
            depth = min(depth, min(max(pa), max(pb)) - max(min(pa), min(pb)))
            if depth <= 0:
                return 0.0
    return depth if math.isfinite(depth) else 0.0


def overhang(quad: Quad, box: Sequence[float]) -> float:
    """How far a quadrilateral sticks out of an axis-aligned box (left, top, right, bottom)."""
    left, top, right, bottom = box
    return max(
        max(left - x for x, _ in quad),
        max(top - y for _, y in quad),
        max(x - right for x, _ in quad),
        max(y - bottom for _, y in quad),
        0.0,
    )


def _rect(cx: float, cy: float, w: float, h: float, degrees: float) -> list[tuple[float, float]]:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return [
        (cx + dx * c - dy * s, cy + dx * s + dy * c)
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    ]


def test_separating_axes_tell_rotated_labels_apart() -> None:
    """Two labels rotated 45°, side by side: their bounding boxes overlap, they do not."""
    a, b = _rect(0, 0, 60, 8, 45), _rect(12, -12, 60, 8, 45)
    boxes_overlap = max(x for x, _ in a) > min(x for x, _ in b)
    assert boxes_overlap and overlap(a, b) == 0.0
    assert overlap(a, _rect(4, -4, 60, 8, 45)) > EPS  # closer: they do collide
    assert overlap(_rect(0, 0, 10, 10, 0), _rect(10.2, 0, 10, 10, 0)) == 0.0
    assert overhang(_rect(5, 5, 10, 10, 0), (0, 0, 10, 10)) == 0.0
    assert overhang(_rect(5, 5, 10, 10, 45), (0, 0, 10, 10)) == pytest.approx(5 * math.sqrt(2) - 5)


# ---------------------------------------------------------------- the browser


def _closed_port() -> int:
    """A localhost port nothing listens on: the browser's proxy, so no request goes out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def reports(request: pytest.FixtureRequest) -> dict[str, Path | str]:
    """Every report (or why it is skipped), written before the browser starts: Playwright's
    sync API keeps an asyncio loop running in this thread, and a run's asyncio.run()
    cannot start inside it."""
    out: dict[str, Path | str] = {}
    for name in REPORTS:
        try:
            out[name] = request.getfixturevalue(name.replace("-", "_") + "_report")
        except pytest.skip.Exception as skipped:
            out[name] = str(skipped.msg)
    return out


@pytest.fixture(scope="module")
def one_ahead_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a hand-built run (:data:`tests.report.synthetic.ONE_AHEAD`): ``slow``
    wins on one example of validation, ``fast`` is significantly better on test, and the
    winner significantly better than ``weak``."""
    from tests.report.conftest import write_project_report
    from tests.report.synthetic import ONE_AHEAD, write_project

    return write_project_report(write_project(tmp_path_factory.mktemp("one-ahead"), ONE_AHEAD))


@pytest.fixture(scope="module")
def browser(reports: dict[str, Path | str], one_ahead_report: Path) -> Iterator[Any]:
    """One headless Chromium for the module, the system's own, with every route out cut.

    Every report is written before it starts (see :func:`reports`)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=executable,
            args=[
                f"--proxy-server=http://127.0.0.1:{_closed_port()}",
                "--proxy-bypass-list=<-loopback>",  # localhost goes to the dead proxy too
                "--host-resolver-rules=MAP * ~NOTFOUND",  # and no name resolves
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-screenshots")


@dataclass
class Rendered:
    report: str
    width: str
    path: Path
    errors: list[str]
    outside: list[str]  # URLs the page asked for that are not file:// or data:
    page: dict[str, Any]
    screenshot: Path

    def where(self, what: str = "") -> str:
        return f"{self.report} report at {self.width} width" + (f", {what}" if what else "")


@pytest.fixture(
    scope="module",
    params=[(r, w) for r in REPORTS for w in WIDTHS],
    ids=[f"{r}-{w}" for r in REPORTS for w in WIDTHS],
)
def rendered(
    request: pytest.FixtureRequest, reports: dict[str, Path | str], browser: Any, shots: Path
) -> Rendered:
    report, width = request.param
    path = reports[report]
    if isinstance(path, str):
        pytest.skip(path)
    context = browser.new_context(offline=True, service_workers="block", **WIDTHS[width])
    errors: list[str] = []
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on(
        "console",
        lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url),
    )
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.evaluate("() => document.fonts.ready.then(() => true)")  # labels measured in their font
    measured = page.evaluate(MEASURE)
    screenshot = shots / f"{report}-{width}.png"
    page.screenshot(path=str(screenshot), full_page=True, scale="css")
    print(f"\nscreenshot of the {report} report at {width} width: {screenshot}")
    context.close()
    return Rendered(report, width, path, errors, sorted(set(outside)), measured, screenshot)


# ---------------------------------------------------------------- the checks


def test_no_errors_and_nothing_outside_the_file(rendered: Rendered) -> None:
    assert not rendered.errors, rendered.where("errors: " + "; ".join(rendered.errors))
    assert not rendered.outside, rendered.where(
        "the page asked for (blocked): " + ", ".join(rendered.outside)
    )


def test_every_section_renders(rendered: Rendered) -> None:
    page = rendered.page
    sections = page["sections"]
    assert page["recommendation"], rendered.where("the recommendation box is not rendered")
    assert len(sections) >= 3 and sections[0]["title"].startswith("Results"), rendered.where(
        f"sections: {[s['title'] for s in sections]}"
    )
    hidden = [s["title"] for s in sections if not s["rendered"]]
    empty = [s["title"] for s in sections if not s["body"]]
    assert not hidden, rendered.where(f"sections whose heading is not rendered: {hidden}")
    assert not empty, rendered.where(f"sections with nothing rendered under them: {empty}")


def test_every_plot_draws_something(rendered: Rendered) -> None:
    page = rendered.page
    assert page["figures"], rendered.where("no <figure> in the page")
    problems = [f"figure '{f['where']}' has no <svg>" for f in page["figures"] if not f["svgs"]]
    for svg in page["svgs"]:
        name = f"svg '{svg['where']}'"
        if svg["width"] <= 0 or svg["height"] <= 0:
            problems.append(f"{name} is {svg['width']:.0f}×{svg['height']:.0f} px")
        if not svg["drawn"]:
            problems.append(f"{name} draws no shape with a size")
        if not svg["axes"]:
            problems.append(f"{name} holds no matplotlib axes")
        if len(svg["texts"]) < 2:  # the label checks below would pass for want of labels
            problems.append(f"{name} shows {len(svg['texts'])} text labels")
        problems += [f"{name}: {ax['id']} draws no data" for ax in svg["axes"] if not ax["marks"]]
    assert not problems, rendered.where("\n  " + "\n  ".join(problems))


def test_no_label_overlaps_another_or_leaves_its_plot(rendered: Rendered) -> None:
    problems = []
    for svg in rendered.page["svgs"]:
        texts = svg["texts"]
        for i, a in enumerate(texts):
            out = overhang(a["quad"], svg["box"])
            if out > EPS:
                problems.append(f"svg '{svg['where']}': '{a['text']}' sticks out by {out:.1f} px")
            for b in texts[i + 1 :]:
                depth = overlap(a["quad"], b["quad"])
                if depth > EPS:
                    problems.append(
                        f"svg '{svg['where']}': '{a['text']}' overlaps '{b['text']}' "
                        f"by {depth:.1f} px"
                    )
    assert not problems, rendered.where(
        f"{len(problems)} label problems:\n  " + "\n  ".join(problems)
    )


def test_no_column_of_the_results_table_is_lost(rendered: Rendered) -> None:
    columns = rendered.page["columns"]
    assert columns, rendered.where("no table#results with header cells")
    lost = []
    for col in columns:
        if not col["text"]:
            lost.append("a header cell without text")
        elif col["rendered"]:
            if not (col["in_view"] or col["in_scroller"]):
                lost.append(f"'{col['text']}' is off screen, outside any scrolling box")
        elif not col["cells"] or col["cells_rendered"] < col["cells"]:
            hidden = col["cells"] - col["cells_rendered"]
            lost.append(f"'{col['text']}' is hidden and so are {hidden} of its cells")
        elif col["cells_labelled"] < col["cells"]:
            lost.append(f"'{col['text']}' is hidden and its cells do not carry its name")
    assert not lost, rendered.where("results table: " + "; ".join(lost))


def test_the_page_does_not_scroll_sideways(rendered: Rendered) -> None:
    page = rendered.page
    assert page["page_width"] <= page["viewport_width"], rendered.where(
        f"the page is {page['page_width']} px wide in a {page['viewport_width']} px viewport; "
        "too wide: " + "; ".join(page["wide"])
    )


def test_screenshot_is_a_non_empty_png(rendered: Rendered) -> None:
    data = rendered.screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", rendered.where(f"{rendered.screenshot} is no PNG")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    expected = WIDTHS[rendered.width]["viewport"]
    assert width >= expected["width"] and height >= expected["height"], rendered.where(
        f"{rendered.screenshot} is {width}×{height}"
    )
    assert len(data) > 20_000, rendered.where(f"{rendered.screenshot} is only {len(data)} bytes")


def test_the_served_traffic_section_is_in_the_tickets_report(support_tickets_report: Path) -> None:
    """The request log's section (checked at both widths with every other section above)."""
    html = support_tickets_report.read_text(encoding="utf-8")
    served = html[html.index('id="served"') :]
    assert "finetune-with-a-rather-long-candidate-name (shadow)" in served
    assert "<svg" in served[: served.index("</figure>")]
    assert "against its shadow finetune-with-a-rather-long-candidate-name" in served


RED, GREEN = "rgb(207, 34, 46)", "rgb(26, 127, 55)"  # the page's .sig and .sig-better


def test_a_p_value_is_red_only_where_the_winner_is_better(
    browser: Any, one_ahead_report: Path
) -> None:
    """On screen: the rival the winner beats has a red p-value, the rival that beats the
    winner on test a green one with a ▲, and the legend says which colour means what;
    the recommendation says why the better one was not chosen."""
    context = browser.new_context(offline=True, **WIDTHS["desktop"])
    page = context.new_page()
    page.goto(one_ahead_report.resolve().as_uri(), wait_until="load")

    def p_cell(name: str) -> Any:
        return page.locator(f'#results tr[data-candidate="{name}"] td[data-label*="vs winner"]')

    def colour(locator: Any) -> str:
        return str(locator.evaluate("el => getComputedStyle(el).color"))

    ink = colour(page.locator("body"))
    assert colour(p_cell("weak")) == RED
    assert colour(p_cell("fast")) == GREEN and p_cell("fast").inner_text().endswith("▲")
    assert colour(p_cell("slow")) == ink and p_cell("slow").inner_text() == "winner"
    legend = page.locator("#results-legend")
    text = " ".join(legend.inner_text().split())
    assert (
        "A p-value in red is below α = 0.05 after Holm's correction for 2 comparisons, "
        "with the winner ahead: that candidate is significantly less accurate on test than "
        "the winner"
    ) in text
    assert (
        "A p-value in green ▲ is below α too, with that candidate ahead: it is "
        "significantly more accurate on test than the winner"
    ) in text
    assert colour(legend.locator("span.sig")) == RED
    assert colour(legend.locator("span.sig-better")) == GREEN
    why = " ".join(page.locator("#recommendation .better-than-winner").inner_text().split())
    assert why.startswith("▲ fast is significantly more accurate than the winner on test")
    assert "but was not chosen: on validation, where candidates are chosen, the two were " in why
    context.close()
