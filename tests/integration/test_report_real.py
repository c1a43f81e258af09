"""The report from a real run: the session's real train-export (all six models) and a real `deploykit bench`
on its artifacts, rendered to Markdown, HTML and JSON; then the HTML opened in headless Chromium, which
must decode every embedded plot."""

import importlib.util
import io
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from deploykit.cli import main
from deploykit.manifest import ModelManifest
from deploykit.report.schema import Report
from deploykit.report.view import fmt_tail, fmt_us
from deploykit.results import read_results

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUICK = ["--min-time", "0.05", "--warmup", "0.02"]


@pytest.fixture(scope="module")
def real_run(mnist_models, tmp_path_factory):
    """A real `deploykit bench` (CPU, and the CUDA request) on the session's real artifacts."""
    if importlib.util.find_spec("deploykit.bench.run") is None:
        pytest.skip("deploykit.bench.run is not in this tree yet: no real bench results to report on")
    out = tmp_path_factory.mktemp("report-real")
    cpu, cuda = out / "bench-cpu.json", out / "bench-cuda.json"
    rc = main(["bench", str(mnist_models / "torch-mlp"), str(mnist_models / "keras-cnn"),
               "--formats", "onnx,torchscript,tflite-int8", "--batch-sizes", "1,8", *QUICK, "--no-model-files",
               "--out", str(cpu)])
    assert rc == 0
    rc = main(["bench", str(mnist_models / "torch-mlp"), "--formats", "onnx", "--batch-sizes", "1", "--device", "cuda",
               *QUICK, "--no-model-files", "--out", str(cuda)])
    assert rc == 0
    return out, cpu, cuda


@pytest.fixture(scope="module")
def real_reports(real_run, mnist_models):
    out, cpu, cuda = real_run
    for name in ("report.html", "report.md", "report.json"):
        assert main(["report", str(cpu), str(cuda), str(mnist_models), "--out", str(out / name)]) == 0
    return out


def test_real_run_in_markdown(real_run, real_reports, mnist_models):
    _out, cpu, cuda = real_run
    md = (real_reports / "report.md").read_text()
    assert socket.gethostname() in md
    for r in read_results(cpu).records:
        assert r.status == "ok", r.reason
        # every measured figure appears, formatted, in the row of its configuration; a tail the record
        # withheld (a short run on a slow machine) is shown as withheld, never as an invented figure
        assert f"| {r.model} | {r.format} | cpu | {r.batch} | {fmt_us(r.latency.p50_us)} | {fmt_tail(r.latency, 'p99_us')} |" in md
    (gpu,) = read_results(cuda).records
    if gpu.status == "unavailable":  # no GPU here: said so, with the reason, never skipped
        assert gpu.reason and f"**unavailable**: {gpu.reason[:40]}" in md
    else:
        assert f"| torch-mlp | onnx | cuda | 1 | {fmt_us(gpu.latency.p50_us)} |" in md
    # the training comparison of frameworks and Keras APIs, from the real manifests
    for model in ("keras-sequential", "keras-functional", "keras-subclass", "keras-cnn", "torch-mlp", "torch-cnn"):
        manifest = ModelManifest.read(mnist_models / model)
        assert f"| {model} | {manifest.framework} | {manifest.training.extra['api']} |" in md
        assert f"{manifest.training.accuracy * 100:.2f} %" in md
    assert "**train-export mnist**" in md
    plots = sorted(p.name for p in (real_reports / "report-plots").iterdir())
    assert plots == ["latency-b1.png", "latency-b8.png", "size-accuracy.png", "training.png"]


def test_real_run_in_json(real_run, real_reports):
    report = Report.model_validate(json.loads((real_reports / "report.json").read_text()))
    _out, cpu, _cuda = real_run
    measured = read_results(cpu)
    rows = [r for r in report.rows if r.host == measured.machine.hostname and r.target == "cpu"
            and report.source(r.source).path == str(cpu)]
    assert len(rows) == len(measured.records) == 8  # torch-mlp: onnx, torchscript; keras-cnn: onnx, tflite-int8; × 2 batches
    assert all(r.latency and r.artifact_bytes and r.accuracy is not None and r.top1_agreement for r in rows)
    assert {t.model for t in report.training} >= {"keras-sequential", "torch-cnn"} and report.train_runs


# -- the browser: does the one self-contained file render, plots included? -----------------------------
PROBE = """<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "deploykit-probe";
  out.textContent = JSON.stringify(Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  }));
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _assert_renders(html_path: Path, tmp_path: Path) -> Image.Image:
    """Open the report offline in headless Chromium; every <img> must have decoded; return a screenshot."""
    html = html_path.read_text()
    n_images = html.count("<img ")
    assert n_images >= 2
    # The report itself carries no script: the probe goes into a copy, beside it.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('<pre id="deploykit-probe">') + len('<pre id="deploykit-probe">')
    images = json.loads(dom.stdout[start:dom.stdout.index("</pre>", start)].replace("&quot;", '"'))
    assert len(images) == n_images
    for img in images:
        assert img["complete"] and img["width"] >= 600 and img["height"] >= 250, img

    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1400,2400", f"--screenshot={shot}", html_path.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "screenshot is blank or nearly so"
    white = max(colours)[0] / (image.width * image.height)
    assert white < 0.95, "screenshot is almost all background"
    return image


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_browser_renders_fixture_report_with_its_plots(tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", *(str(p) for p in sorted(FIXTURES.glob("*.json")) if "baseline" not in p.name),
                 str(FIXTURES / "models" / "mnist"), "--baseline", str(FIXTURES / "bench-cpu-baseline.json"),
                 "--out", str(out)]) == 0
    _assert_renders(out, tmp_path)


WIDTH_PROBE = """<script>
window.addEventListener("load", function () {
  var wide = Array.prototype.filter.call(document.querySelectorAll("table, figure, ul, p"), function (el) {
    return el.getBoundingClientRect().right > window.innerWidth + 1;
  }).map(function (el) { return el.tagName + " " + Math.round(el.getBoundingClientRect().right) + " " + (el.textContent || "").replace(/\s+/g, " ").slice(0, 80); });
  var out = document.createElement("pre");
  out.id = "deploykit-probe";
  out.textContent = JSON.stringify({inner: window.innerWidth, scroll: document.documentElement.scrollWidth, wide: wide});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_fits_1280_px_without_horizontal_overflow(tmp_path):
    """Issue #10: the "All measurements" table overflowed a 1400 px page. At 1280 px wide, no table,
    figure or text may reach past the window (tables wrap their cells), and the page does not scroll sideways."""
    out = tmp_path / "report.html"
    assert main(["report", *(str(p) for p in sorted(FIXTURES.glob("*.json")) if "baseline" not in p.name),
                 str(FIXTURES / "models" / "mnist"), "--out", str(out)]) == 0
    html = out.read_text()
    assert "Which one: recommendations" in html and "Pareto-optimal" in html
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", WIDTH_PROBE + "</body>"))
    dom = _chromium(tmp_path, "--window-size=1280,900", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('<pre id="deploykit-probe">') + len('<pre id="deploykit-probe">')
    seen = json.loads(dom.stdout[start:dom.stdout.index("</pre>", start)].replace("&quot;", '"'))
    assert seen["inner"] == 1280
    assert seen["wide"] == [] and seen["scroll"] <= seen["inner"], seen


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_browser_renders_real_report_with_its_plots(real_reports, tmp_path):
    image = _assert_renders(real_reports / "report.html", tmp_path)
    image.save(real_reports / "screenshot.png")  # kept beside the report for a person to look at
