"""Latent inspection: top-activating contexts, activation frequency and a short label per latent.

Writes a self-contained HTML dashboard (firing tokens highlighted) and a labels CSV (`index,label`)
that other suites read. Offline labels summarise a latent's top firing tokens; an optional
`labeler` (e.g. an LLM endpoint) writes labels from the contexts instead. Neuronpedia exports and
labels CSVs can be imported.
"""

from __future__ import annotations

import csv
import html
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from steerlab.data.corpus import Document
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import write_json, write_text
from steerlab.report.html import Section, write_page
from steerlab.sae.core import Sae
from steerlab.sae.harvest import SiteCapture, harvest_batch, no_grad_model, special_ids, token_rows


@dataclass
class Context:
    """A window of tokens around one top activation, with the latent's activation on each token."""

    tokens: list[str]
    acts: list[float]
    peak: int  # index into tokens of the top activation

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass
class LatentReport:
    """What a latent responds to."""

    index: int
    frequency: float
    max_act: float
    mean_act: float
    top_tokens: list[tuple[str, int]] = field(default_factory=list)
    contexts: list[Context] = field(default_factory=list)
    label: str = ""


@dataclass
class LatentStats:
    """Top activations per latent over a text sample, and the tokens to show them in context."""

    sae_source: str
    n_tokens: int
    freq: torch.Tensor  # [d_sae]
    max_act: torch.Tensor  # [d_sae]
    sum_act: torch.Tensor  # [d_sae]
    top_vals: torch.Tensor  # [top_n, d_sae]
    top_token: torch.Tensor  # [top_n, d_sae] global token index (-1 = none)
    token_window: torch.Tensor  # [n_tokens]
    token_pos: torch.Tensor  # [n_tokens]
    windows: list[list[int]]
    sparse_tok: torch.Tensor  # nonzero activations: token index
    sparse_lat: torch.Tensor  # latent
    sparse_val: torch.Tensor  # value
    _by_window: dict[int, dict[int, int]] | None = None

    def position_index(self) -> dict[int, dict[int, int]]:
        """window -> {position -> global token index} for the kept tokens (built once)."""
        if self._by_window is None:
            table: dict[int, dict[int, int]] = {}
            for g, (w, p) in enumerate(zip(self.token_window.tolist(), self.token_pos.tolist())):
                table.setdefault(w, {})[p] = g
            self._by_window = table
        return self._by_window


def collect_latent_stats(
    model: Model,
    sae: Sae,
    docs: Sequence[Document],
    *,
    n_tokens: int = 20_000,
    top_n: int = 8,
    context_len: int = 128,
    batch_rows: int = 8,
) -> LatentStats:
    """Run the model (up to the SAE's layer) over docs and keep each latent's top activations."""
    sae.check_fits(model)
    specials = special_ids(model)
    windows: list[list[int]] = []
    top_vals = torch.zeros(top_n, sae.d_sae)
    top_token = torch.full((top_n, sae.d_sae), -1, dtype=torch.long)
    freq = torch.zeros(sae.d_sae)
    max_act = torch.zeros(sae.d_sae)
    sum_act = torch.zeros(sae.d_sae)
    tw, tp, st, sl, sv = [], [], [], [], []
    seen = 0
    rows_iter = token_rows(model, docs, context_len)
    with no_grad_model(model), SiteCapture(model, sae.layer, sae.site, stop=True) as capture:
        while seen < n_tokens:
            batch = [ids for _, ids in itertools.islice(rows_iter, batch_rows)]
            if not batch:
                break
            h = harvest_batch(capture, batch, specials)
            with torch.no_grad():
                z = sae.encode(h.acts).float()
            n = z.shape[0]
            gidx = torch.arange(seen, seen + n)
            tw.append(h.row + len(windows))
            tp.append(h.position)
            windows.extend(batch)
            nz = z.nonzero()
            st.append(gidx[nz[:, 0]])
            sl.append(nz[:, 1])
            sv.append(z[nz[:, 0], nz[:, 1]])
            freq += (z > 0).sum(0)
            sum_act += z.sum(0)
            max_act = torch.maximum(max_act, z.max(0).values)
            k = min(top_n, n)
            bv, bi = z.topk(k, dim=0)
            merged_v = torch.cat([top_vals, bv])
            merged_t = torch.cat([top_token, gidx[bi]])
            order = merged_v.topk(top_n, dim=0).indices
            top_vals = merged_v.gather(0, order)
            top_token = merged_t.gather(0, order)
            seen += n
    if seen == 0:
        raise SteerlabError("The text yielded no usable tokens to inspect latents on.")
    top_token = torch.where(top_vals > 0, top_token, torch.full_like(top_token, -1))
    return LatentStats(
        sae_source=sae.source,
        n_tokens=seen,
        freq=freq / seen,
        max_act=max_act,
        sum_act=sum_act,
        top_vals=top_vals,
        top_token=top_token,
        token_window=torch.cat(tw),
        token_pos=torch.cat(tp),
        windows=windows,
        sparse_tok=torch.cat(st),
        sparse_lat=torch.cat(sl),
        sparse_val=torch.cat(sv),
    )


_DECODED: dict[tuple[int, int], str] = {}


def _tok(model: Model, token_id: int) -> str:
    """A token's text, memoised per tokenizer (dashboards decode the same ids hundreds of thousands of times)."""
    key = (id(model.tokenizer), int(token_id))
    if key not in _DECODED:
        _DECODED[key] = model.tokenizer.decode([int(token_id)])
    return _DECODED[key]


def latent_report(model: Model, stats: LatentStats, latent: int, *, before: int = 12, after: int = 4) -> LatentReport:
    """Frequency, top tokens and top contexts of one latent."""
    if not 0 <= latent < stats.freq.shape[0]:
        raise SteerlabError(f"Latent {latent} is out of range: this SAE has latents 0 to {stats.freq.shape[0] - 1}.")
    on = stats.sparse_lat == latent
    acts_by_token = dict(zip(stats.sparse_tok[on].tolist(), stats.sparse_val[on].tolist()))
    contexts: list[Context] = []
    peaks: list[str] = []
    for g in stats.top_token[:, latent].tolist():
        if g < 0:
            continue
        w, p = int(stats.token_window[g]), int(stats.token_pos[g])
        ids = stats.windows[w]
        lo, hi = max(0, p - before), min(len(ids), p + after + 1)
        by_pos = stats.position_index().get(w, {})
        tokens = [_tok(model, t) for t in ids[lo:hi]]
        acts = [acts_by_token.get(by_pos.get(q, -1), 0.0) for q in range(lo, hi)]
        contexts.append(Context(tokens=tokens, acts=acts, peak=p - lo))
        peaks.append(tokens[p - lo])
    count = int(round(float(stats.freq[latent]) * stats.n_tokens))
    firing = [stats.windows[int(stats.token_window[g])][int(stats.token_pos[g])] for g in acts_by_token]
    top_tokens = [(_tok(model, t), c) for t, c in Counter(firing).most_common(5)]
    mean = float(stats.sum_act[latent]) / count if count else 0.0
    report = LatentReport(
        index=latent,
        frequency=float(stats.freq[latent]),
        max_act=float(stats.max_act[latent]),
        mean_act=mean,
        top_tokens=top_tokens,
        contexts=contexts,
    )
    report.label = offline_label(report, peaks)
    return report


def offline_label(report: LatentReport, peaks: Sequence[str]) -> str:
    """A short label from the tokens a latent fires on most (no model, no network)."""
    if report.frequency == 0:
        return "dead"
    peak_counts = Counter(t.strip() or repr(t) for t in peaks).most_common(3)
    fire_counts = [(t.strip() or repr(t), c) for t, c in report.top_tokens[:3]]
    total = sum(c for _, c in report.top_tokens) or 1
    if fire_counts and fire_counts[0][1] / total >= 0.6:
        return f"token '{fire_counts[0][0]}'"
    names = [t for t, _ in peak_counts] or [t for t, _ in fire_counts]
    label = " / ".join(f"'{t}'" for t in names[:3])
    if report.frequency > 0.1:
        label += " (dense)"
    return label


def llm_label(report: LatentReport, complete: Callable[[str], str]) -> str:
    """A label written by a language model from the top contexts (complete: prompt -> reply)."""
    shown = "\n".join(
        f"- {''.join(f'[[{t}]]' if i == c.peak else t for i, t in enumerate(c.tokens))!r}" for c in report.contexts[:6]
    )
    prompt = (
        "Below are text snippets where one feature of a language model fires most strongly; the token where it "
        f"peaks is in [[double brackets]].\n{shown}\nIn at most six words, what does this feature detect? Reply with the label only."
    )
    reply = complete(prompt).strip().splitlines()
    return (reply[0] if reply else "").strip().strip('"')[:80] or report.label


def http_labeler(
    base_url: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0
) -> Callable[[str], str]:
    """An OpenAI-compatible chat endpoint as a `complete(prompt) -> text` labeler (the key is read from the environment, never logged)."""
    import os

    from steerlab.judges.http import HttpError, request_json

    def complete(prompt: str) -> str:
        headers = {"Authorization": f"Bearer {os.environ[api_key_env]}"} if os.environ.get(api_key_env) else {}
        body = {
            "model": model or "default",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 24,
            "temperature": 0,
        }
        try:
            reply = request_json("POST", base_url.rstrip("/") + "/chat/completions", headers, body, timeout)
            return str(reply["choices"][0]["message"]["content"])
        except HttpError as exc:
            raise SteerlabError(f"The label endpoint failed: {exc}") from exc
        except (KeyError, IndexError, TypeError) as exc:
            raise SteerlabError(f"The label endpoint {base_url} did not return an OpenAI chat completion.") from exc

    return complete


def import_labels(path: str | Path) -> dict[int, str]:
    """Labels from a Neuronpedia explanations export (JSON) or a labels CSV (index,label)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SteerlabError(f"Labels file {path} not found.")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and not {"index", "label"} <= set(rows[0]):
            raise SteerlabError(f"{path} needs the columns index,label.")
        return {int(r["index"]): r["label"] for r in rows}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SteerlabError(f"{path} is not valid JSON ({exc.msg}).") from exc
    if isinstance(data, dict):
        data = data.get("explanations") or data.get("features") or []
    labels: dict[int, str] = {}
    for item in data:
        if not isinstance(item, dict) or "index" not in item:
            continue
        text = item.get("description") or item.get("explanation") or item.get("label")
        if text is None and isinstance(item.get("explanations"), list) and item["explanations"]:
            text = item["explanations"][0].get("description")
        if text:
            labels[int(item["index"])] = str(text)
    if not labels:
        raise SteerlabError(f"{path} holds no labels (expected Neuronpedia entries with 'index' and 'description').")
    return labels


def write_labels_csv(reports: Sequence[LatentReport], path: str | Path) -> Path:
    """index,label rows, one per latent."""
    import io

    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["index", "label"])
    for r in reports:
        writer.writerow([r.index, r.label])
    return write_text(path, handle.getvalue())


def _span(token: str, act: float, top: float, peak: bool) -> str:
    alpha = 0.0 if top <= 0 else min(1.0, act / top)
    style = f"background: rgba(255,120,0,{alpha:.2f});" + ("outline: 1px solid #a40;" if peak else "")
    title = f' title="{act:.3f}"' if act > 0 else ""
    return f'<span style="{style}"{title}>{html.escape(token).replace(chr(10), "⏎")}</span>'


def write_dashboard(reports: Sequence[LatentReport], path: str | Path, *, title: str = "SAE latents") -> Path:
    """One self-contained HTML page: per latent, label, frequency, top tokens and highlighted contexts."""
    sections = []
    for r in reports:
        tops = ", ".join(f"{html.escape(repr(t))}×{c}" for t, c in r.top_tokens)
        markup = [
            f"<p>frequency {r.frequency:.4%} · max {r.max_act:.2f} · mean when active {r.mean_act:.2f} · top tokens: {tops}</p>"
        ]
        for c in r.contexts:
            top = max(c.acts) if c.acts else 0.0
            markup.append(
                "<div class='ctx'>"
                + "".join(_span(t, a, top, i == c.peak) for i, (t, a) in enumerate(zip(c.tokens, c.acts)))
                + "</div>"
            )
        sections.append(Section(f"latent {r.index}: {r.label}", markup="".join(markup), anchor=f"latent-{r.index}"))
    style = ".ctx{font-family:monospace;white-space:pre-wrap;margin:2px 0;padding:2px;border-bottom:1px solid #eee}"
    return write_page(path, title, sections, style=style)


def inspect_sae(
    model: Model,
    sae: Sae,
    docs: Sequence[Document],
    out_dir: str | Path,
    *,
    latents: Sequence[int] | None = None,
    n_tokens: int = 20_000,
    top_n: int = 8,
    max_html_latents: int = 300,
    labeler: Callable[[str], str] | None = None,
    imported: dict[int, str] | None = None,
) -> list[LatentReport]:
    """Collect stats, label every latent (or the given ones), write dashboard.html and labels.csv."""
    stats = collect_latent_stats(model, sae, docs, n_tokens=n_tokens, top_n=top_n)
    chosen = list(latents) if latents is not None else list(range(sae.d_sae))
    for latent in chosen:
        sae.check_latent(latent)
    reports = [latent_report(model, stats, i) for i in chosen]
    for n, r in enumerate(reports):
        if imported and r.index in imported:
            r.label = imported[r.index]
        elif labeler is not None and r.frequency > 0 and (latents is not None or n < max_html_latents):
            r.label = llm_label(r, labeler)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_labels_csv(reports, out / "labels.csv")
    shown = [r for r in reports if r.frequency > 0]
    if latents is None:  # the most frequent alive latents first would hide rare ones; order by index
        shown = shown[:max_html_latents]
    write_dashboard(shown, out / "dashboard.html", title=f"{sae.source} — {stats.n_tokens} tokens")
    write_json(
        out / "frequencies.json",
        {"n_tokens": stats.n_tokens, "freq": [round(float(f), 6) for f in stats.freq]},
        indent=None,
    )
    return reports
