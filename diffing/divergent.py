"""Divergent words: what the fine-tune prefers in its own answers, against a null.

Both models' greedy answers to the probe library (:mod:`auditlens.probe_library`) are scored
by both models. Each token of the fine-tune's answers gets ``log p_ft − log p_base``; a word's
excess in one answer is the sum over its tokens. A word's ``z`` is the sum of its per-answer
excess over the answers holding it, divided by ``σ·sqrt(k)`` (``k`` answers; ``σ`` the pooled
root mean square of every word's per-answer excess in the set), so a consistent preference
across prompts counts more than one answer's repeats.

Null: the mirror image, ``log p_base − log p_ft`` on the *base's* own answers: what the base
prefers in its text, against the fine-tune. Each model prefers its own greedy text, so the
mirror has the same self-preference; only a preference the fine-tune learned is stronger than
the base's mirror. A word is a candidate when its ``z`` exceeds the ``null_quantile`` (0.99)
of the null words' ``z`` and its mean excess per occurrence reaches ``min_nats``; its strength
is its ``z`` standardised by the null words' ``z`` distribution. A word the base itself says in
at least half of its answers (``max_base_share``: function words such as "the", "it", "and",
and a domain's everyday vocabulary) is scored and shown but never a candidate: it names no
behaviour, and a mention check of it would find it in most of the base's answers too.
Candidates are grouped by the
domain where their excess concentrates, one hypothesis per domain ("in code answers the
fine-tune prefers: verify, requests, timeout"). Base vs base gives no candidate (every log
ratio is zero). Face: ``run(pair, probes, DivergentSettings(), generations=...)`` and
``evidence(result)``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.generate import chat_prompt, generate_pair
from auditlens.models import ModelPair, ModelSide
from auditlens.probe_library import ProbePrompt
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding, Hypothesis
from auditlens.reports.sections import GenerationPair, GenerationPairs, Section, Table
from auditlens.teacher_forcing import Row, answer_token_logprobs, chat_head
from auditlens.words import stem, stems

__all__ = [
    "DivergentResult",
    "DivergentSettings",
    "WordScore",
    "base_share",
    "evidence",
    "generate_answers",
    "group_words",
    "run",
    "word_excess",
]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DivergentSettings:
    """How answers are generated and words ranked."""

    max_new_tokens: int = 64
    """Tokens per greedy answer."""
    batch_size: int = 8
    """Prompts per forward pass."""
    min_prompts: int = 2
    """A word must occur in at least this many answers to be ranked."""
    min_length: int = 2
    """Shortest word ranked (characters)."""
    top_words: int = 5
    """Keywords per hypothesis."""
    null_quantile: float = 0.99
    """A candidate word's z must exceed this quantile of the null words' z (about one null
    word in a hundred passes)."""
    min_nats: float = 0.25
    """A candidate word's mean excess per occurrence must reach this many nats (a floor on
    the effect, so that a negligible but consistent change is not a finding)."""
    domain_share: float = 0.5
    """A word belongs to a domain when at least this share of its positive excess is there
    (otherwise to ``general``)."""
    max_base_share: float = 0.5
    """A candidate word must be named (by stem) in fewer than this share of the base's own
    answers (fixed a priori: at half, a mention check of the word has little room left)."""

    def __post_init__(self) -> None:
        if min(self.max_new_tokens, self.batch_size, self.min_prompts, self.top_words) < 1:
            raise AuditlensError("divergent settings need positive counts")
        if not 0.0 < self.domain_share <= 1.0:
            raise AuditlensError("domain_share must be in (0, 1]")
        if self.max_base_share <= 0.0:
            raise AuditlensError("max_base_share must be positive (above 1: no word is left out)")


@dataclass(frozen=True)
class WordScore:
    """One word's evidence on one text set."""

    word: str
    z: float
    excess: float
    count: int
    prompts: int
    domain: str
    share: float
    strength: float = 0.0
    z_null: float | None = None
    """The same word's ``z`` on the base's answers (None when it never occurs there)."""
    base_share: float = 0.0
    """The share of the base's answers that name the word (by stem)."""


@dataclass
class DivergentResult:
    """Scored words on both text sets, the null threshold and the grouped candidates."""

    probes: list[ProbePrompt]
    generations: dict[str, list[str]]
    words: list[WordScore]
    """Fine-tune answers' words, by ``z`` (top 200)."""
    null_z: list[float]
    """``z`` of every ranked word of the base's answers (the null distribution)."""
    token_mean: dict[str, float]
    """``mean_finetuned``: the mean ``log p_ft − log p_base`` per token of the fine-tune's
    answers; ``mean_base``: the mean ``log p_base − log p_ft`` of the base's answers."""
    settings: DivergentSettings
    groups: dict[str, list[WordScore]] = field(default_factory=dict)
    length_z: float = 0.0
    """Paired z over prompts of log(words_ft + 1) − log(words_base + 1) (answer length)."""
    length_ratio: float = 1.0
    """Geometric mean of the fine-tune's answer length over the base's."""

    @property
    def threshold(self) -> float:
        q = self.settings.null_quantile
        return float(np.quantile(self.null_z, q)) if self.null_z else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "token_mean": self.token_mean,
            "null_z": self.null_z,
            "words": [asdict(w) for w in self.words],
            "groups": {d: [w.word for w in ws] for d, ws in self.groups.items()},
            "length_z": self.length_z,
            "length_ratio": self.length_ratio,
            "settings": asdict(self.settings),
        }

    def save(self, directory: str | Path) -> Path:
        """``divergent.json`` and ``probe_generations.jsonl`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "divergent.json").write_text(json.dumps(self.to_json(), indent=1))
        rows = [
            {"domain": p.domain, "prompt": p.text, **{s: g[i] for s, g in self.generations.items()}}
            for i, p in enumerate(self.probes)
        ]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / "probe_generations.jsonl").write_text(text)
        return out


def generate_answers(
    pair: ModelPair, probes: Sequence[ProbePrompt], max_new_tokens: int, batch_size: int
) -> dict[str, list[str]]:
    """Greedy answers of both sides to ``probes`` (one generation when base vs base)."""
    prompts = PromptSet("probe_library", tuple(chat_prompt(p.text) for p in probes))
    return generate_pair(
        pair, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, share_prefix=True
    )


def _token_logprobs(
    side: ModelSide, rows: list[Row], pad: int, batch_size: int
) -> list[np.ndarray]:
    """Log-probability of each answer token (after its prompt) under one side."""
    lps = answer_token_logprobs(side, rows, pad=pad, batch_size=batch_size)
    return [lp.numpy().astype(np.float64) for lp in lps]


def word_excess(
    pair: ModelPair,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 8,
    *,
    reverse: bool = False,
) -> tuple[list[list[tuple[str, float, int]]], np.ndarray]:
    """Per answer: ``(word, sum of log p_ft − log p_base over its tokens, tokens)`` for each
    word occurrence (``log p_base − log p_ft`` when ``reverse``); and every token's ratio."""
    tok = pair.tokenizer
    rows: list[Row] = []
    spans = []
    for prompt, answer in zip(prompts, answers, strict=True):
        head_ids = chat_head(tok, prompt)
        enc = tok(answer, add_special_tokens=False, return_offsets_mapping=True)
        rows.append((head_ids + list(enc["input_ids"]), len(head_ids)))
        spans.append([tuple(o) for o in enc["offset_mapping"]])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    live = [i for i, (ids, start) in enumerate(rows) if len(ids) > start]
    sub = [rows[i] for i in live]
    ratio = [np.zeros(0)] * len(rows)
    if sub and not pair.identical:
        ft = _token_logprobs(pair.finetuned, sub, pad, batch_size)
        base = _token_logprobs(pair.base, sub, pad, batch_size)
        for j, i in enumerate(live):
            ratio[i] = base[j] - ft[j] if reverse else ft[j] - base[j]
    elif sub:
        for i in live:
            ratio[i] = np.zeros(len(rows[i][0]) - rows[i][1])
    every = np.concatenate([r for r in ratio if r.size] or [np.zeros(0)])
    out: list[list[tuple[str, float, int]]] = []
    for answer, offsets, r in zip(answers, spans, ratio, strict=True):
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(answer)]
        acc: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
        for t, (a, b) in enumerate(offsets[: r.size]):
            for w, (s, e, _) in enumerate(words):
                if a < e and b > s:
                    acc[w][0] += float(r[t])
                    acc[w][1] += 1
                    break
        out.append([(words[w][2], v[0], int(v[1])) for w, v in sorted(acc.items())])
    return out, every


def _rank(
    occurrences: list[list[tuple[str, float, int]]],
    mean: float,
    domains: list[str],
    s: DivergentSettings,
) -> list[WordScore]:
    n = len(occurrences)
    per_prompt: dict[str, np.ndarray] = {}
    counts: Counter[str] = Counter()
    forms: dict[str, Counter[str]] = defaultdict(Counter)
    for p, occ in enumerate(occurrences):
        for word, value, n_tok in occ:
            if len(word) < s.min_length:
                continue
            key = word.lower()
            per_prompt.setdefault(key, np.zeros(n))[p] += value - mean * n_tok
            counts[key] += 1
            forms[key][word] += 1
    scores = []
    pooled = np.concatenate([x[x != 0] for x in per_prompt.values()] or [np.zeros(0)])
    sigma = max(float(np.sqrt(np.mean(pooled**2))), 1e-6) if pooled.size else 1.0
    for key, x in per_prompt.items():
        n_prompts = int((x != 0).sum())
        if n_prompts < s.min_prompts or n < 2:
            continue
        z = float(x.sum()) / (sigma * math.sqrt(n_prompts))
        by_domain: dict[str, float] = defaultdict(float)
        for i in np.nonzero(x > 0)[0].tolist():
            by_domain[domains[i]] += float(x[i])
        positive = sum(by_domain.values())
        best = max(by_domain, key=by_domain.__getitem__) if by_domain else "general"
        share = by_domain.get(best, 0.0) / positive if positive > 0 else 0.0
        domain = best if share >= s.domain_share else "general"
        word = forms[key].most_common(1)[0][0]
        scores.append(WordScore(word, z, float(x.sum()), counts[key], n_prompts, domain, share))
    return sorted(scores, key=lambda w: -w.z)


def run(
    pair: ModelPair,
    probes: Sequence[ProbePrompt],
    settings: DivergentSettings | None = None,
    *,
    generations: dict[str, list[str]] | None = None,
) -> DivergentResult:
    """Score both models' answers to ``probes`` (generated here unless ``generations`` gives
    them, e.g. from the audit's artifact cache) and group the preferred words by domain."""
    s = settings or DivergentSettings()
    if len(probes) < 2:
        raise AuditlensError("the divergent-word instrument needs at least two probe prompts")
    gens = generations or generate_answers(pair, probes, s.max_new_tokens, s.batch_size)
    if any(len(g) != len(probes) for g in gens.values()):
        raise AuditlensError("generations and probes differ in length")
    texts = [p.text for p in probes]
    domains = [p.domain for p in probes]
    occ, means = {}, {}
    for side in ("finetuned", "base"):
        occ[side], r = word_excess(pair, texts, gens[side], s.batch_size, reverse=side == "base")
        means[f"mean_{side}"] = float(r.mean()) if r.size else 0.0
    ranked = {side: _rank(occ[side], 0.0, domains, s) for side in occ}
    null = ranked["base"]
    null_z = [w.z for w in null]
    null_centre = float(np.mean(null_z)) if null_z else 0.0
    spread = max(float(np.std(null_z)), 1e-6) if len(null_z) > 1 else 1.0
    null_by_word = {w.word.lower(): w.z for w in null}
    share = base_share(gens["base"])
    words = [
        WordScore(**{**asdict(w), "strength": (w.z - null_centre) / spread,
                     "z_null": null_by_word.get(w.word.lower()), "base_share": share(w.word)})
        for w in ranked["finetuned"][:200]
    ]  # fmt: skip
    threshold = float(np.quantile(null_z, s.null_quantile)) if null_z else 0.0
    lz, ratio = _length(gens)
    groups = group_words(words, threshold, s)
    return DivergentResult(list(probes), gens, words, null_z, means, s, groups, lz, ratio)


def base_share(answers: Sequence[str]) -> Callable[[str], float]:
    """The share of ``answers`` that name a word (by stem), as a function of the word."""
    said = Counter(st for answer in answers for st in stems(answer))
    n = max(len(answers), 1)
    return lambda word: said[stem(word)] / n


def group_words(
    words: Sequence[WordScore], threshold: float, s: DivergentSettings
) -> dict[str, list[WordScore]]:
    """The candidate words (above the null ``threshold`` and the effect floor, and rare in the
    base's answers), at most ``top_words`` per domain, strongest first."""
    groups: dict[str, list[WordScore]] = {}
    for w in words:
        if w.base_share >= s.max_base_share:
            continue
        if w.z > threshold and w.z > 0 and w.excess / max(w.count, 1) >= s.min_nats:
            group = groups.setdefault(w.domain, [])
            if len(group) < s.top_words:
                group.append(w)
    return groups


def _length(gens: dict[str, list[str]]) -> tuple[float, float]:
    diffs = np.array([math.log(len(f.split()) + 1) - math.log(len(b.split()) + 1)
                      for f, b in zip(gens["finetuned"], gens["base"], strict=True)])  # fmt: skip
    if diffs.size < 2 or not diffs.any():
        return 0.0, 1.0
    se = max(float(diffs.std(ddof=1)), 1e-3) / math.sqrt(diffs.size)
    return float(diffs.mean()) / se, math.exp(float(diffs.mean()))


LENGTH_Z = 3.0
"""|z| of the answer-length difference above which answer length is a candidate."""
LENGTH_RATIO = 1.5
"""... and the geometric-mean length ratio (or its inverse) must reach this (an effect floor)."""


def _length_evidence(result: DivergentResult) -> tuple[list[Finding], list[Hypothesis]]:
    """Answer length (verbosity) as a finding, and a candidate when it changed clearly."""
    z, ratio = result.length_z, result.length_ratio
    finding = Finding(
        id="diffing.divergent.length", family="diffing", method="divergent_words",
        statistic="paired z of log answer length (words), fine-tuned minus base",
        value=ratio, control=1.0, control_kind="equal length (the base's answers)",
        effect_size=abs(z),
        summary=f"The fine-tune's answers are {ratio:.2f}x the base's length in words "
        f"(paired z {z:.1f} over {len(result.probes)} probe prompts).",
    )  # fmt: skip
    if abs(z) < LENGTH_Z or max(ratio, 1 / ratio) < LENGTH_RATIO:
        return [finding], []
    shorter = ratio < 1
    words = ["short", "brief", "concise"] if shorter else ["long", "verbose", "detailed"]
    label = ("answers are much shorter than the base's (brief, concise sentences)" if shorter
             else "answers are much longer than the base's (verbose, detailed)")  # fmt: skip
    return [finding], [
        Hypothesis(
            rank=1,
            label=label,
            keywords=words,
            kind="format",
            source="divergent",
            evidence=[finding.id],
            strength=abs(z),
            null="equal answer length (paired z)",
        )
    ]


def _finding_id(domain: str) -> str:
    return "diffing.divergent." + re.sub(r"[^a-z0-9_]+", "_", domain.lower())


def evidence(result: DivergentResult, where: str | None = None) -> Evidence:
    """One finding and one candidate hypothesis per domain with words above the null; the
    top-word table and a few answer pairs."""
    findings: list[Finding] = []
    hypotheses: list[Hypothesis] = []
    art = [f"{where}/divergent.json"] if where else []
    q = result.settings.null_quantile
    null = f"the {q:.0%} quantile of word z on the base's own answers ({result.threshold:.2f})"
    for domain, ws in sorted(result.groups.items(), key=lambda kv: -kv[1][0].strength):
        fid = _finding_id(domain)
        names = [w.word for w in ws]
        where_words = "across domains" if domain == "general" else f"in {domain} answers"
        findings.append(
            Finding(
                id=fid, family="diffing", method="divergent_words",
                statistic="z of the top word's excess log p_ft − log p_base over prompts",
                value=ws[0].z, control=result.threshold, control_kind=null,
                effect_size=ws[0].strength,
                summary=f"{where_words.capitalize()} the fine-tune prefers: {', '.join(names)} "
                f"(z {ws[0].z:.1f} vs null max {result.threshold:.1f}).",
                artifacts=art,
            )
        )  # fmt: skip
        hypotheses.append(
            Hypothesis(
                rank=len(hypotheses) + 1, label=f"{where_words} the fine-tune prefers: "
                + ", ".join(names[:3]), keywords=names, kind="topic", source="divergent",
                evidence=[fid], strength=ws[0].strength, null=null,
                domain=None if domain == "general" else domain,
            )
        )  # fmt: skip
    findings_h = _length_evidence(result)
    findings += findings_h[0]
    hypotheses += [h.model_copy(update={"rank": len(hypotheses) + 1}) for h in findings_h[1]]
    rows: list[list[Any]] = [
        [w.word, w.count, w.prompts, w.domain, w.z, w.z_null, w.strength, w.base_share]
        for w in result.words[:25]
    ]
    table = Table(
        title="Divergent words in the fine-tune's answers",
        caption=(
            f"Both models score the fine-tune's greedy answers to {len(result.probes)} probe "
            "prompts; a word's z is its excess log p_ft − log p_base (beyond the median token) "
            f"per prompt over its standard error. Null: the same on the base's answers (max z "
            f"{result.threshold:.2f}); strength is z standardised by the null words' z. A word "
            f"in {result.settings.max_base_share:.0%} or more of the base's answers is never a "
            "candidate."
        ),
        columns=[
            "word",
            "count",
            "answers",
            "domain",
            "z",
            "z on base answers",
            "strength",
            "share of base answers",
        ],
        rows=rows,
    )
    top = {w.word.lower() for ws in result.groups.values() for w in ws}
    shown = [
        i for i, g in enumerate(result.generations["finetuned"])
        if any(m.group().lower() in top for m in _WORD.finditer(g))
    ][:4]  # fmt: skip
    pairs = GenerationPairs(
        title="Probe answers with the divergent words",
        items=[
            GenerationPair(
                prompt=result.probes[i].text, left_label="fine-tuned",
                left=result.generations["finetuned"][i], right_label="base",
                right=result.generations["base"][i], note=result.probes[i].domain,
            )
            for i in shown
        ],
    )  # fmt: skip
    sections: list[Section] = [table, pairs] if shown else [table]
    return Evidence(findings=findings, sections=sections, hypotheses=hypotheses)
