"""Progress shows in logs too: without a terminal, long steps print timed lines."""

import io

from steerlab.progress import LogProgress


def test_log_progress_prints_start_each_tenth_and_the_end_once():
    out = io.StringIO()
    with LogProgress(every=1e9, out=out) as bar:
        task = bar.add_task("calibrating", total=20, info="")
        for i in range(20):
            bar.update(task, advance=1, info=f"step {i}")
        bar.advance(task, 0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[steerlab] calibrating: 0/20")
    assert lines[-1].startswith("[steerlab] calibrating: 20/20") and "step 19" in lines[-1]
    assert 10 <= len(lines) <= 12  # start, every 10%, the end once


def test_log_progress_supports_completed_and_unknown_totals():
    out = io.StringIO()
    bar = LogProgress(out=out)
    task = bar.add_task("training", total=100, completed=40, info="")
    bar.update(task, completed=100)
    other = bar.add_task("reading", total=None, info="")
    bar.advance(other, 3)
    text = out.getvalue()
    assert "training: 40/100" in text and "training: 100/100" in text and "reading: 0" in text
