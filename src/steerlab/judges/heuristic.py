"""The offline default judge: attempt splitting at restarts plus embedding relevance to the prompt.

An approximation of an LLM judge, not a replacement: it cannot tell a correct answer from a fluent
wrong one on the same topic. Attempts are split where a restart begins, found two ways: the restart
phrase list (`judges.restarts`, high precision) and, unless `restarts="phrases"` (today's judge), a
list-free probe on the embedder's fragment states (`judges.restart_probe`) that sees self-corrections
in any words. Each attempt's score maps the cosine similarity between prompt and attempt (packaged
all-MiniLM-L6-v2, mean pooling) linearly from [LOW, HIGH] onto [0, 100], clipped. LOW/HIGH were set
on `judges.calibration` (on-topic cosines 0.48-0.76, wrong-task 0.00-0.45, unrelated-topic
-0.09-0.17); `steerlab judge calibrate` re-measures the separation. A response is embedded once
(fragment states and the whole-answer vector come from the same pass); only answers split into
several attempts embed their attempts again.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from steerlab.errors import SteerlabError
from steerlab.judges.base import BaseJudge
from steerlab.judges.embedder import Embedder, packaged_embedder
from steerlab.judges.restarts import restart_positions, split_attempts, strip_restart
from steerlab.judges.types import Attempt, Grade, GradeRequest

LOW = 0.20  # cosine at or below which an attempt scores 0
HIGH = 0.60  # cosine at or above which an attempt scores 100
HEURISTIC_VERSION = "heuristic-minilm-v1"  # phrase list only (today's judge)
PROBE_VERSION = "heuristic-minilm-v2"  # phrase list + restart probe
RESTART_MODES = ("probe", "phrases")


def cosine_to_score(cos: float, low: float = LOW, high: float = HIGH) -> float:
    """Linear map of a cosine similarity onto 0-100, clipped at both ends."""
    return float(round(100.0 * min(1.0, max(0.0, (cos - low) / (high - low))), 1))


def _has_words(text: str) -> bool:
    return bool(re.search(r"\w", text))


def cut_attempts(text: str, phrase_cuts: Sequence[int], probe_cuts: Sequence[tuple[int, int]]) -> list[tuple[str, str]]:
    """(attempt text, text to score) for each attempt, from phrase-list cuts and probe cuts ((start, end) of the restart fragment).

    An attempt is scored without its opening restart. A restart with nothing after it, or before any
    attempt, opens no attempt: it joins the attempt that follows it, or is dropped at the end.
    """
    marks = {c: None for c in phrase_cuts}
    for a, b in probe_cuts:
        if not any(a - 2 <= c <= b for c in phrase_cuts):  # the phrase list already cut inside this fragment
            marks.setdefault(a, b)
    cuts = sorted(marks)
    bounds = [0, *cuts, len(text)]
    pieces = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        piece = text[a:b].strip()
        if i == 0:
            body = piece
        elif marks[a] is None:
            body = strip_restart(piece)
        else:
            body = text[marks[a] : b].strip()
        pieces.append([piece, body])
    out: list[tuple[str, str]] = []
    carry = ""
    for i, (piece, body) in enumerate(pieces):
        if not _has_words(body):
            if i > 0 and _has_words(piece):
                carry = f"{carry} {piece}".strip()
            continue
        out.append((f"{carry} {piece}".strip() if carry else piece, body))
        carry = ""
    return out


class HeuristicJudge(BaseJudge):
    """Splits attempts at restarts (phrase list, plus the restart probe) and scores each by relevance to the prompt."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        low: float = LOW,
        high: float = HIGH,
        restarts: str = "probe",
        probe=None,
    ):
        if restarts not in RESTART_MODES:
            raise SteerlabError(f"Unknown restart mode '{restarts}'; choose one of: {', '.join(RESTART_MODES)}.")
        self._embedder = embedder
        self.low, self.high = low, high
        self.restarts = restarts
        self._probe = probe
        if restarts == "phrases":
            self.rubric_version = HEURISTIC_VERSION
            self.judge_id = f"heuristic:all-MiniLM-L6-v2:{low:g}-{high:g}"
        else:
            self.rubric_version = PROBE_VERSION
            self.judge_id = f"heuristic:all-MiniLM-L6-v2+restart-probe:{low:g}-{high:g}"

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = packaged_embedder()
        return self._embedder

    @property
    def probe(self):
        if self._probe is None:
            from steerlab.judges.restart_probe import packaged_probe

            self._probe = packaged_probe()
        return self._probe

    def check(self) -> None:
        self.embedder  # loads the packaged model now, so a missing package fails before any generation

    def _grade(self, prompt: str, response: str, steering_label: str) -> Grade:
        return self._grade_batch([GradeRequest(prompt, response, steering_label)])[0]

    def _score(self, pairs: list[tuple[int, str]], prompt_vecs) -> list[float]:
        if not pairs:
            return []
        vecs = self.embedder.embed([t for _, t in pairs])
        return [cosine_to_score(float(prompt_vecs[i] @ v), self.low, self.high) for (i, _), v in zip(pairs, vecs)]

    def _grade_batch(self, items: Sequence[GradeRequest]) -> list[Grade]:
        prompts = list(dict.fromkeys(it.prompt for it in items))
        pvec = dict(zip(prompts, self.embedder.embed(prompts)))
        prompt_vecs = [pvec[it.prompt] for it in items]
        if self.restarts == "phrases":
            split = [[(a, strip_restart(a) or a) for a in split_attempts(it.response)] for it in items]
            wholes = None
        else:
            from steerlab.judges.restart_probe import featurize

            feats = featurize(self.embedder, [it.response for it in items])
            split, wholes = [], []
            for it, f, pv in zip(items, feats, prompt_vecs):
                probe_cuts = [f.spans[k] for k in self.probe.boundaries(f, pv)]
                split.append(cut_attempts(it.response, [s for s, _ in restart_positions(it.response)], probe_cuts))
                wholes.append(f.whole)
        # Single attempts equal to the whole response reuse its vector from the fragment pass.
        todo = [
            (i, body)
            for i, atts in enumerate(split)
            for k, (text, body) in enumerate(atts)
            if wholes is None or len(atts) > 1 or body != items[i].response.strip()
        ]
        scores = iter(self._score(todo, prompt_vecs))
        out = []
        for i, atts in enumerate(split):
            scored = []
            for text, body in atts:
                if wholes is not None and len(atts) == 1 and body == items[i].response.strip():
                    score = cosine_to_score(float(prompt_vecs[i] @ wholes[i]), self.low, self.high)
                else:
                    score = next(scores)
                scored.append(Attempt(text, score))
            out.append(Grade(tuple(scored)))
        return out

    def grade_many(self, items: Sequence[GradeRequest], progress: bool = False) -> list[Grade]:
        """Batched embedding of all items at once; a failure is recorded on every item of the batch."""
        items = list(items)
        out: list[Grade] = []
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            try:
                grades = self._grade_batch(chunk)
            except Exception as exc:  # noqa: BLE001 - recorded, never raised
                grades = [Grade.failed(f"{type(exc).__name__}: {exc}") for _ in chunk]
            out += [Grade(g.attempts, g.error, g.raw, self.judge_id, self.rubric_version) for g in grades]
        return out

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "kind": "heuristic",
            "embedder": "all-MiniLM-L6-v2 (packaged)",
            "low": self.low,
            "high": self.high,
            "restarts": self.restarts,
        }


def calibration_report(judge: HeuristicJudge | None = None) -> dict[str, float]:
    """Mean scores on the hand-written on-topic vs off-topic sets, their gap, and the ROC AUC."""
    from steerlab.judges.calibration import calibration_set

    judge = judge or HeuristicJudge()
    pairs = calibration_set().pairs
    grades = judge.grade_many([GradeRequest(p, a) for p, a, _ in pairs])
    on = [g.first_score for g, (_, _, t) in zip(grades, pairs) if t]
    off = [g.first_score for g, (_, _, t) in zip(grades, pairs) if not t]
    wins = sum((a > b) + 0.5 * (a == b) for a in on for b in off)
    return {
        "n_on": len(on),
        "n_off": len(off),
        "mean_on": sum(on) / len(on),
        "mean_off": sum(off) / len(off),
        "min_on": min(on),
        "max_off": max(off),
        "gap": sum(on) / len(on) - sum(off) / len(off),
        "auc": wins / (len(on) * len(off)),
    }
