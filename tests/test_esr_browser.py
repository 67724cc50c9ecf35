"""The ESR report renders in a real headless browser (Debian's Chromium) with every plot decoded and visible."""

import re
import shutil
import subprocess

import pytest
from tests.test_esr_runner import private_cache, res, tiny_cfg  # noqa: F401  (shared tiny setup and fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 100 && i.getBoundingClientRect().height > 50).length;
  document.body.setAttribute('data-probe', ok + '/' + imgs.length);
});</script>"""


def render(path):
    """Load the page in headless Chromium and return (images decoded and laid out, images on the page)."""
    probe = path.with_name("probe.html")
    probe.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    r = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'data-probe="(\d+)/(\d+)"', r.stdout)
    assert m, r.stderr[-1000:]
    return int(m.group(1)), int(m.group(2))


def test_report_renders_every_plot(res, tmp_path):
    from steerlab.esr.runner import run_esr

    out = run_esr(tiny_cfg(conditions=("steered", "baseline", "boost")), tmp_path / "run", res=res, progress=False)
    ok, total = render(out.report)
    assert total >= 3 and ok == total  # conditions, calibration, boost sweep
