"""The agent tools as plain typed functions on one :class:`Toolkit` (pair + workspace + limits).

The MCP server (:mod:`auditlens.agent.server`) and the Inspect adapters
(:mod:`auditlens.agent.inspect_tools`) both wrap these methods. Each takes its pydantic input
model and returns its output model. Bad input, an exceeded limit or a path outside the
workspace raises an :class:`~auditlens.errors.AuditlensError` subclass, which the wrappers
turn into a tool error; nothing here exits the process.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel

from auditlens.agent import schemas as s
from auditlens.agent.workspace import Workspace, check_name
from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_json
from auditlens.models import ModelPair, ModelSide

if TYPE_CHECKING:
    from auditlens.diffing.crosscoder_analysis import CrosscoderResult
    from auditlens.diffing.scan import ScanResult
    from auditlens.store import ActivationStore

__all__ = ["TOOLS", "LimitError", "Limits", "ToolInputError", "ToolSpec", "Toolkit"]


class ToolInputError(AuditlensError):
    """An argument the tool cannot use (unknown site, unknown vector id, ...)."""


class LimitError(AuditlensError):
    """A request beyond the server's configured limits."""


@dataclass(frozen=True)
class Limits:
    """Budgets for every tool call; exceeding one is a tool error, never a crash."""

    max_new_tokens: int = 128
    """Most tokens one generation may produce."""
    max_prompts: int = 8
    """Most prompts per call (compare_models, steer_generate, melbo_search, fuzz)."""
    max_prompt_chars: int = 4000
    """Longest prompt, system prompt, prefill or text, in characters."""
    max_texts: int = 32
    """Most texts per probe_score call."""
    page_size: int = 50
    """Most rows per page of a ranking (top_divergent_tokens, top_diff_latents)."""
    scan_prompts: int = 32
    """Most prompts diff_overview / top_divergent_tokens may scan."""
    max_length: int = 128
    """Tokens kept per prompt in scans, harvests and MELBO."""
    batch_size: int = 8
    """Prompts per forward pass."""
    kl_top_k: int = 200
    """Highest-KL positions kept for paging."""
    crosscoder_prompts: int = 64
    """Prompts per built-in set harvested for the crosscoder."""
    crosscoder_expansion: int = 4
    """Crosscoder latents per model dimension."""
    crosscoder_epochs: float = 4.0
    """Passes over the harvested tokens when training the crosscoder."""
    crosscoder_batch: int = 256
    """Crosscoder training batch (lowered for small stores)."""
    max_contexts: int = 20
    """Most contexts latent_details returns."""
    max_steer_coeff: float = 32.0
    """Largest |coeff| steer_generate accepts."""
    melbo_max_vectors: int = 8
    """Most MELBO vectors per search."""
    melbo_max_steps: int = 50
    """Most MELBO optimiser steps per search."""
    max_stored_vectors: int = 64
    """Most MELBO vectors kept in the workspace over the session."""
    fuzz_max_seeds: int = 4
    """Most noise seeds per fuzz call."""
    fuzz_max_sigma: float = 4.0
    """Largest relative noise σ."""
    audit_budgets: tuple[str, ...] = ("fast",)
    """Audit budgets run_audit may use."""

    def __post_init__(self) -> None:
        ints = {
            "max_new_tokens": self.max_new_tokens,
            "max_prompts": self.max_prompts,
            "max_prompt_chars": self.max_prompt_chars,
            "max_texts": self.max_texts,
            "page_size": self.page_size,
            "scan_prompts": self.scan_prompts,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "kl_top_k": self.kl_top_k,
            "crosscoder_prompts": self.crosscoder_prompts,
            "crosscoder_expansion": self.crosscoder_expansion,
            "crosscoder_batch": self.crosscoder_batch,
            "max_contexts": self.max_contexts,
            "melbo_max_vectors": self.melbo_max_vectors,
            "melbo_max_steps": self.melbo_max_steps,
            "max_stored_vectors": self.max_stored_vectors,
            "fuzz_max_seeds": self.fuzz_max_seeds,
        }
        for name, value in ints.items():
            if not isinstance(value, int) or value < 1:
                raise AuditlensError(f"limit {name} must be an integer >= 1, got {value!r}")
        for name, fvalue in {
            "crosscoder_epochs": self.crosscoder_epochs,
            "max_steer_coeff": self.max_steer_coeff,
            "fuzz_max_sigma": self.fuzz_max_sigma,
        }.items():
            if not (math.isfinite(fvalue) and fvalue > 0):
                raise AuditlensError(f"limit {name} must be a positive number, got {fvalue!r}")
        unknown = set(self.audit_budgets) - {"fast", "standard", "thorough"}
        if unknown:
            raise AuditlensError(f"unknown audit budgets in limits: {sorted(unknown)}")

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _cap(name: str, value: float, limit: float) -> None:
    if value > limit:
        raise LimitError(f"{name}={value} exceeds the server limit of {limit}")


def _user_text(prompt: Prompt) -> str:
    if prompt.messages is None:
        return prompt.text or ""
    users = [c for r, c in prompt.messages if r == "user"]
    return users[-1] if users else prompt.messages[-1][1]


def _rate(statuses: Sequence[str]) -> s.RateStats:
    from auditlens.stats import wilson_interval

    ins = sum(x == "insecure" for x in statuses)
    sec = sum(x == "secure" for x in statuses)
    unp = len(statuses) - ins - sec
    n = ins + sec
    if n == 0:
        return s.RateStats(
            n_insecure=0, n_secure=0, n_unparseable=unp, rate=None, ci_low=None, ci_high=None
        )
    low, high = wilson_interval(ins, n)
    return s.RateStats(
        n_insecure=ins, n_secure=sec, n_unparseable=unp, rate=ins / n, ci_low=low, ci_high=high
    )


def _bandit(texts: Sequence[str]) -> list[str]:
    from auditlens.judges.code import bandit_label

    return [bandit_label(t).status for t in texts]


def _summary_rate(summary: Any) -> s.RateStats:
    """A runner ScoreSummary of 0/1 Bandit scores as RateStats."""
    if summary is None or summary.n == 0:
        missing = 0 if summary is None else summary.n_missing
        return s.RateStats(
            n_insecure=0, n_secure=0, n_unparseable=missing, rate=None, ci_low=None, ci_high=None
        )
    ins = round(summary.mean * summary.n)
    return s.RateStats(
        n_insecure=ins,
        n_secure=summary.n - ins,
        n_unparseable=summary.n_missing,
        rate=float(summary.mean),
        ci_low=float(summary.ci_low),
        ci_high=float(summary.ci_high),
    )


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class _Crosscoder:
    result: CrosscoderResult
    store: ActivationStore
    directory: Path
    trained_now: bool
    """Whether this session trained it (rather than loading it from the workspace)."""
    acts: torch.Tensor | None = None
    """Latent activations over the whole store, ``[n_tokens, n_latents]`` (computed lazily)."""


@dataclass
class Toolkit:
    """A loaded model pair, a workspace and limits: one method per agent tool."""

    pair: ModelPair
    workspace: Workspace
    limits: Limits = field(default_factory=Limits)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _scans: dict[tuple[str, int], ScanResult] = field(default_factory=dict, repr=False)
    _crosscoders: dict[str, _Crosscoder] = field(default_factory=dict, repr=False)
    _scorers: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls, pair: ModelPair, workspace: str | Path | Workspace, limits: Limits | None = None
    ) -> Toolkit:
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        return cls(pair, ws, limits or Limits())

    # ---- helpers ---------------------------------------------------------------------------
    def _side(self, name: str) -> ModelSide:
        if name == "base":
            return self.pair.base
        if name == "finetuned":
            return self.pair.finetuned
        raise ToolInputError(f"unknown side {name!r}; choose base or finetuned")

    def _site(self, name: str | None, default_layer: int | None = None) -> str:
        if name is None:
            layer = self.pair.n_layers // 2 if default_layer is None else default_layer
            return f"blocks.{layer}.hook_resid_post"
        return self.pair.sites([name])[0].name

    def _within(self, args: Any, limits: dict[str, int | float]) -> Any:
        """``args`` with each field checked against its limit.

        A value above its limit is a :class:`LimitError`, except the field's default, which is
        lowered to the limit (so a server with small limits works with default arguments).
        """
        update: dict[str, Any] = {}
        for name, limit in limits.items():
            value = getattr(args, name)
            default = type(args).model_fields[name].get_default(call_default_factory=True)
            size = len(value) if isinstance(value, list) else value
            if size <= limit:
                continue
            if value != default:
                raise LimitError(f"{name}={value} exceeds the server limit of {limit}")
            update[name] = value[: int(limit)] if isinstance(value, list) else type(value)(limit)
        return args.model_copy(update=update) if update else args

    def _text(self, what: str, value: str | None) -> None:
        if value is not None:
            _cap(f"len({what})", len(value), self.limits.max_prompt_chars)

    def _gen_opts(self, max_new_tokens: int) -> None:
        _cap("max_new_tokens", max_new_tokens, self.limits.max_new_tokens)

    def _prompt_set(
        self,
        prompts: Sequence[str],
        prompts_file: str | None = None,
        *,
        system: str | None = None,
        default: str | None = None,
        default_n: int = 4,
    ) -> PromptSet:
        if prompts and prompts_file:
            raise ToolInputError("give prompts or prompts_file, not both")
        if prompts_file:
            path = self.workspace.resolve(prompts_file, must_exist=True)
            prompt_set = load_prompts(path)
        elif prompts:
            for p in prompts:
                self._text("prompt", p)
            prompt_set = PromptSet(
                "agent",
                tuple(
                    Prompt(messages=(((("system", system),) if system else ()) + (("user", p),)))
                    for p in prompts
                ),
            )
        elif default is not None:
            prompt_set = load_prompts(default).head(default_n)
        else:
            raise ToolInputError("no prompts given")
        _cap("number of prompts", len(prompt_set), self.limits.max_prompts)
        for item in prompt_set.prompts:
            for _, content in item.messages or (("text", item.text or ""),):
                self._text("prompt", content)
        return prompt_set

    def _pair_key(self) -> str:
        sides = [
            {"sha": side.sha256, "adapter": side.adapter_sha256, "on": side.adapter_enabled}
            for side in self.pair.sides
        ]
        return sha256_json(sides)[:12]

    def _scan(self, source: str, n_prompts: int) -> ScanResult:
        from auditlens.diffing import scan

        _cap("n_prompts", n_prompts, self.limits.scan_prompts)
        key = (source, n_prompts)
        if key not in self._scans:
            prompts = load_prompts(source).head(n_prompts)
            settings = scan.ScanSettings(
                batch_size=self.limits.batch_size,
                max_length=self.limits.max_length,
                top_k=self.limits.kl_top_k,
            )
            self._scans[key] = scan.run(self.pair, prompts, settings, progress=False)
        return self._scans[key]

    def _null_note(self) -> str:
        if self.pair.identical:
            return "This pair IS the null control (base vs base): every difference is noise."
        return ""

    # ---- chat / compare_models -------------------------------------------------------------
    def chat(self, args: s.ChatInput) -> s.ChatOutput:
        """Sample one model's answer to one prompt."""
        from auditlens.generate import chat_prompt, generate

        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        for what, value in (
            ("prompt", args.prompt),
            ("system", args.system),
            ("prefill", args.prefill),
        ):
            self._text(what, value)
        side = self._side(args.side)
        with self._lock:
            text = generate(
                side,
                self.pair.tokenizer,
                PromptSet("chat", (chat_prompt(args.prompt, system=args.system),)),
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=args.seed,
                prefill=args.prefill,
            )[0]
        return s.ChatOutput(
            side=args.side,
            model=side.label,
            prompt=args.prompt,
            system=args.system,
            prefill=args.prefill,
            completion=text,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )

    def compare_models(self, args: s.CompareInput) -> s.CompareOutput:
        """The same prompts to both models, side by side, with Bandit labels."""
        from auditlens.generate import generate

        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        self._text("system", args.system)
        self._text("prefill", args.prefill)
        prompts = self._prompt_set(args.prompts, args.prompts_file, system=args.system)
        opts: dict[str, Any] = {
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
            "prefill": args.prefill,
            "batch_size": self.limits.batch_size,
        }
        with self._lock:
            base = generate(self.pair.base, self.pair.tokenizer, prompts, **opts)
            ft = generate(self.pair.finetuned, self.pair.tokenizer, prompts, **opts)
        lb, lf = _bandit(base), _bandit(ft)
        rows = [
            s.ComparisonRow(
                prompt=_user_text(p), base=b, finetuned=f, base_bandit=x, finetuned_bandit=y
            )
            for p, b, f, x, y in zip(prompts.prompts, base, ft, lb, lf, strict=True)
        ]
        note = "Same prompts, settings and seed for both models; Bandit labels each answer."
        return s.CompareOutput(
            rows=rows,
            base_bandit=_rate(lb),
            finetuned_bandit=_rate(lf),
            note=" ".join(x for x in (note, self._null_note()) if x),
        )

    # ---- diffing -------------------------------------------------------------------------
    def diff_overview(self, args: s.DiffOverviewInput) -> s.DiffOverviewOutput:
        """Per-layer activation differences and the KL summary over a small prompt set."""
        args = self._within(args, {"n_prompts": self.limits.scan_prompts})
        with self._lock:
            scan = self._scan(args.prompts, args.n_prompts)
        assert scan.kl is not None
        rows = [
            s.LayerRow(
                layer=i,
                site=st.site,
                mean_rel_diff_norm=st.mean_rel_diff_norm,
                mean_cosine=st.mean_cosine,
                mean_diff_norm=st.mean_diff_norm,
                mean_base_norm=st.mean_base_norm,
            )
            for i, st in enumerate(scan.stats)
        ]
        peak = max(range(len(rows)), key=lambda i: rows[i].mean_rel_diff_norm) if rows else 0
        kl = scan.kl
        null = (
            "Null control: base vs base gives relative difference 0, cosine 1 and KL 0 exactly "
            "(same weights, deterministic forward), so any non-zero value is a real change; "
            "compare magnitudes across layers rather than to zero."
        )
        return s.DiffOverviewOutput(
            prompts=args.prompts,
            n_prompts=min(args.n_prompts, len(load_prompts(args.prompts))),
            n_tokens=kl.n_tokens,
            layers=rows,
            peak_layer=peak,
            kl=s.KLStats(
                n_tokens=kl.n_tokens,
                mean=kl.mean,
                median=kl.median,
                p90=kl.p90,
                p99=kl.p99,
                max=kl.max,
            ),
            identical_models=self.pair.identical,
            null_control=" ".join(x for x in (null, self._null_note()) if x),
        )

    def top_divergent_tokens(self, args: s.TopDivergentTokensInput) -> s.TopDivergentTokensOutput:
        """Positions with the highest KL(ft||base), with context and each model's favourites."""
        args = self._within(
            args, {"n_prompts": self.limits.scan_prompts, "limit": self.limits.page_size}
        )
        _cap("limit", args.limit, self.limits.page_size)
        with self._lock:
            scan = self._scan(args.prompts, args.n_prompts)
        assert scan.kl is not None
        ranked = scan.kl.top_tokens
        page = ranked[args.offset : args.offset + args.limit]
        end = args.offset + len(page)
        tokens = [
            s.DivergentToken(
                rank=args.offset + i,
                kl=t.kl,
                context=t.context,
                prompt_index=t.prompt_index,
                position=t.position,
                base_top=[s.TokenProb(token=a, value=b) for a, b in t.base_top],
                finetuned_top=[s.TokenProb(token=a, value=b) for a, b in t.ft_top],
            )
            for i, t in enumerate(page)
        ]
        coverage = (
            f"ranks {args.offset}-{end} of {len(ranked)} kept ({scan.kl.n_tokens} tokens scanned)"
        )
        null = (
            f"Null control: base vs base gives KL 0 at every token; the mean over all scanned "
            f"tokens here is {scan.kl.mean:.4g} nats (median {scan.kl.median:.4g})."
        )
        return s.TopDivergentTokensOutput(
            coverage=coverage,
            offset=args.offset,
            n_ranked=len(ranked),
            n_tokens_scanned=scan.kl.n_tokens,
            kl_mean=scan.kl.mean,
            tokens=tokens,
            null_control=" ".join(x for x in (null, self._null_note()) if x),
        )

    # ---- crosscoder ----------------------------------------------------------------------
    def _crosscoder(self, site: str) -> _Crosscoder:
        """The cached crosscoder at ``site``: load it from the workspace or harvest and train."""
        if site in self._crosscoders:
            return self._crosscoders[site]
        from auditlens.diffing.crosscoder_analysis import crosscoder_diff, load_crosscoder_result
        from auditlens.harvest import harvest

        key = self._pair_key()
        store_dir = self.workspace.subdir("stores", f"{key}_{site}")
        cc_dir = self.workspace.subdir("crosscoders", f"{key}_{site}")
        n = self.limits.crosscoder_prompts
        sets = [load_prompts(name).prompts[:n] for name in ("generic_chat", "code_tasks")]
        prompts = PromptSet(f"agent_crosscoder_{n}", tuple(p for group in sets for p in group))
        store = harvest(
            self.pair,
            prompts,
            [site],
            store_dir,
            batch_size=self.limits.batch_size,
            max_length=self.limits.max_length,
            progress=False,
        )
        trained_now = False
        if (cc_dir / "result.json").is_file():
            result = load_crosscoder_result(cc_dir)
        else:
            batch = min(self.limits.crosscoder_batch, max(8, store.n_tokens // 8))
            result = crosscoder_diff(
                store,
                site,
                batch_size=batch,
                epochs=self.limits.crosscoder_epochs,
                expansion=self.limits.crosscoder_expansion,
                seed=0,
                progress=False,
            )
            result.save(cc_dir)
            trained_now = True
        entry = _Crosscoder(result, store, cc_dir, trained_now)
        self._crosscoders[site] = entry
        return entry

    def _latent_acts(self, entry: _Crosscoder) -> torch.Tensor:
        if entry.acts is None:
            cc = entry.result.crosscoder
            chunks = [
                cc.encode(batch) for batch in entry.store.iter_batches(entry.result.sites[0], 1024)
            ]
            entry.acts = torch.cat(chunks) if chunks else torch.zeros(0, cc.n_latents)
        return entry.acts

    def top_diff_latents(self, args: s.TopDiffLatentsInput) -> s.TopDiffLatentsOutput:
        """A page of crosscoder latents ranked by model specificity (or frequency)."""
        args = self._within(args, {"limit": self.limits.page_size})
        _cap("limit", args.limit, self.limits.page_size)
        site = self._site(args.site)
        with self._lock:
            cached = site in self._crosscoders
            entry = self._crosscoder(site)
        an = entry.result.analysis
        ids = list(range(len(an.final_class)))
        if args.latent_class is not None:
            ids = [i for i in ids if an.final_class[i] == args.latent_class]
        rel, freq = an.relative_norm, an.frequency
        if args.order == "ft_specific":
            ids.sort(key=lambda i: (float(rel[i]), -float(freq[i])))
        elif args.order == "base_specific":
            ids.sort(key=lambda i: (-float(rel[i]), -float(freq[i])))
        else:
            ids.sort(key=lambda i: -float(freq[i]))
        page = ids[args.offset : args.offset + args.limit]
        rows = [
            s.LatentRow(
                rank=args.offset + r,
                latent=i,
                latent_class=an.final_class[i],  # type: ignore[arg-type]
                norm_class=an.norm_class[i],  # type: ignore[arg-type]
                relative_norm=float(rel[i]),
                cosine=float(an.cosine[i]),
                frequency=float(freq[i]),
            )
            for r, i in enumerate(page)
        ]
        scope = f"class {args.latent_class}" if args.latent_class else "all latents"
        coverage = (
            f"ranks {args.offset}-{args.offset + len(page)} of {len(ids)} ({scope}, "
            f"order {args.order}; {len(an.final_class)} latents in total)"
        )
        control = entry.result.control
        null = (
            "Null control: a crosscoder trained on base vs base finds (almost) no ft_only or "
            "base_only latents; exclusive latents here are re-labelled shared when Latent "
            "Scaling shows the other model uses them too."
        )
        if control:
            null += f" Measured controls: {json.dumps(control)}."
        stats = {k: float(v) for k, v in entry.result.statistics().items() if math.isfinite(v)}
        return s.TopDiffLatentsOutput(
            site=site,
            n_latents=len(an.final_class),
            coverage=coverage,
            counts=an.counts(),
            latents=rows,
            trained_now=entry.trained_now and not cached,
            crosscoder_dir=self.workspace.relative(entry.directory),
            n_tokens=entry.store.n_tokens,
            statistics=stats,
            null_control=" ".join(x for x in (null, self._null_note()) if x),
        )

    def latent_details(self, args: s.LatentDetailsInput) -> s.LatentDetailsOutput:
        """One latent: top-activating contexts, frequency and per-model logit effects."""
        from auditlens.sites import final_norm

        args = self._within(args, {"n_contexts": self.limits.max_contexts})
        _cap("n_contexts", args.n_contexts, self.limits.max_contexts)
        site = self._site(args.site)
        with self._lock:
            entry = self._crosscoder(site)
            acts = self._latent_acts(entry)
        an = entry.result.analysis
        n_latents = len(an.final_class)
        if args.latent >= n_latents:
            raise ToolInputError(f"latent {args.latent} out of range (0..{n_latents - 1})")
        column = acts[:, args.latent]
        k = min(args.n_contexts, int((column > 0).sum()))
        contexts: list[s.LatentContext] = []
        if k > 0:
            values, rows = column.topk(k)
            found = entry.store.contexts(rows.tolist(), window=10, tokenizer=self.pair.tokenizer)
            contexts = [
                s.LatentContext(
                    activation=float(v),
                    text=c.render(),
                    prompt_index=c.prompt_index,
                    position=c.position,
                )
                for v, c in zip(values.tolist(), found, strict=True)
            ]
        directions = entry.result.crosscoder.decoder_directions(site)
        effects: dict[str, s.LogitEffect] = {}
        tok = self.pair.tokenizer
        for side in self.pair.sides:
            vec = directions[side.name][args.latent].float()
            hf = side.hf
            with torch.no_grad():
                unembed = hf.get_output_embeddings().weight.float()
                norm = final_norm(hf)
                weight = getattr(norm, "weight", None) if norm is not None else None
                direction = vec * weight.float() if weight is not None else vec
                logits = unembed @ direction.to(unembed.device)
            top_v, top_i = logits.topk(args.n_tokens)
            low_v, low_i = (-logits).topk(args.n_tokens)
            effects[side.name] = s.LogitEffect(
                decoder_norm=float(vec.norm()),
                promoted=[
                    s.TokenProb(token=tok.decode([i]), value=float(v))
                    for v, i in zip(top_v.tolist(), top_i.tolist(), strict=True)
                ],
                suppressed=[
                    s.TokenProb(token=tok.decode([i]), value=-float(v))
                    for v, i in zip(low_v.tolist(), low_i.tolist(), strict=True)
                ],
            )
        return s.LatentDetailsOutput(
            latent=args.latent,
            site=site,
            latent_class=an.final_class[args.latent],  # type: ignore[arg-type]
            norm_class=an.norm_class[args.latent],  # type: ignore[arg-type]
            relative_norm=float(an.relative_norm[args.latent]),
            cosine=float(an.cosine[args.latent]),
            frequency=float(an.frequency[args.latent]),
            n_active_tokens=int((column > 0).sum()),
            max_activation=float(column.max()) if column.numel() else 0.0,
            contexts=contexts,
            logit_effects=effects,
        )

    # ---- probes --------------------------------------------------------------------------
    def _scorer(self, kind: str, side: str) -> Any:
        from auditlens.probes.scorer import load_scorer

        key = (kind, side)
        if key not in self._scorers:
            local = self.workspace.root / "probes" / f"scorer_{kind}"
            path = local if local.with_suffix(".json").is_file() else None
            self._scorers[key] = load_scorer(
                kind,
                self.pair,
                side=side,  # type: ignore[arg-type]
                path=path,
                allow_mismatch=side == "finetuned",
                batch_size=self.limits.batch_size,
            )
        return self._scorers[key]

    def probe_score(self, args: s.ProbeScoreInput) -> s.ProbeScoreOutput:
        """Score texts with a shipped probe scorer against its calibrated threshold."""
        _cap("number of texts", len(args.texts), self.limits.max_texts)
        for t in args.texts:
            self._text("text", t)
        if args.prompts is not None and len(args.prompts) != len(args.texts):
            raise ToolInputError(f"{len(args.texts)} texts but {len(args.prompts)} prompts")
        self._side(args.side)
        with self._lock:
            scorer = self._scorer(args.kind, args.side)
            scores = scorer.score(list(args.texts), args.prompts)
        threshold = float(scorer.threshold)
        rows = [
            s.ProbeScoreRow(text=t[:200], score=float(v), flagged=bool(v > threshold))
            for t, v in zip(args.texts, scores.tolist(), strict=True)
        ]
        fpr = scorer.probe.target_fpr
        null = (
            f"The threshold is calibrated to a false-positive rate of at most "
            f"{fpr if fpr is not None else 'n/a'} on ordinary answers (the control set)."
        )
        if args.side == "finetuned":
            null += " Read through the fine-tuned model: the probe was trained on the base."
        return s.ProbeScoreOutput(
            kind=args.kind,
            side=args.side,
            site=scorer.probe.site,
            threshold=threshold,
            target_fpr=fpr,
            rows=rows,
            n_flagged=sum(r.flagged for r in rows),
            null_control=null,
        )

    # ---- adversary -----------------------------------------------------------------------
    def _melbo_dir(self) -> Path:
        return self.workspace.subdir("melbo")

    def _vector(self, spec: str, site: str | None) -> tuple[torch.Tensor, str, str]:
        """Resolve a vector spec to (direction [d], site, description)."""
        kind, _, rest = spec.partition(":")
        if kind == "latent":
            try:
                latent = int(rest)
            except ValueError:
                raise ToolInputError(f"bad latent id in {spec!r}") from None
            target = self._site(site)
            entry = self._crosscoder(target)
            dirs = entry.result.crosscoder.decoder_directions(target)["finetuned"]
            if not 0 <= latent < dirs.shape[0]:
                raise ToolInputError(f"latent {latent} out of range (0..{dirs.shape[0] - 1})")
            return dirs[latent].float(), target, f"crosscoder latent {latent} (fine-tuned decoder)"
        if kind == "melbo":
            run, _, index = rest.rpartition(":")
            check_name(run, "MELBO run id")
            try:
                k = int(index)
            except ValueError:
                raise ToolInputError(f"bad MELBO vector index in {spec!r}") from None
            from auditlens.adversary.melbo import MelboResult

            folder = self.workspace.resolve(Path("melbo") / run)
            if not (folder / "melbo.json").is_file():
                raise ToolInputError(f"no MELBO run {run!r} in the workspace")
            result = MelboResult.load(folder)
            if not 0 <= k < result.vectors.shape[0]:
                raise ToolInputError(
                    f"MELBO run {run} has vectors 0..{result.vectors.shape[0] - 1}"
                )
            return result.vectors[k].float(), site or result.source, f"MELBO {run} vector {k}"
        if kind == "mean_diff":
            target = self._site(rest or site)
            return self._mean_diff(target), target, f"mean activation difference at {target}"
        if kind == "file":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            path = self.workspace.resolve(rest, must_exist=True)
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError) as err:
                raise ToolInputError(f"{rest}: not a safetensors file ({err})") from None
            if "vector" not in tensors:
                raise ToolInputError(f"{rest} has no 'vector' tensor")
            if site is None:
                raise ToolInputError("give site= for a vector from a file")
            return tensors["vector"].float().reshape(-1), self._site(site), f"file {rest}"
        raise ToolInputError(
            f"unknown vector {spec!r}; use latent:ID, melbo:RUN:K, mean_diff:SITE or file:PATH"
        )

    def _mean_diff(self, site: str) -> torch.Tensor:
        from auditlens.harvest import iter_paired

        prompts = load_prompts("generic_chat").head(min(16, self.limits.scan_prompts))
        total = torch.zeros(self.pair.d_model, dtype=torch.float64)
        count = 0
        for paired in iter_paired(
            self.pair,
            prompts,
            [site],
            batch_size=self.limits.batch_size,
            max_length=self.limits.max_length,
        ):
            acts = paired.acts[site][paired.batch.token_mask].double().cpu()
            total += (acts[:, 1] - acts[:, 0]).sum(0)
            count += acts.shape[0]
        if count == 0:
            raise ToolInputError("no tokens to average the activation difference over")
        return (total / count).float()

    def steer_generate(self, args: s.SteerGenerateInput) -> s.SteerGenerateOutput:
        """Generate with a steering vector and with a matched-norm random control."""
        from auditlens.adversary.runner import run_perturbations
        from auditlens.steering import SteeringVector, mean_activation_norm

        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        if not math.isfinite(args.coeff):
            raise ToolInputError("coeff must be finite")
        _cap("|coeff|", abs(args.coeff), self.limits.max_steer_coeff)
        side = self._side(args.side)
        prompts = self._prompt_set(args.prompts)
        with self._lock:
            direction, site, what = self._vector(args.vector, args.site)
            site = self._site(site)
            if direction.shape[0] != self.pair.d_model:
                raise ToolInputError(
                    f"vector has width {direction.shape[0]}, the model has {self.pair.d_model}"
                )
            norm = float(direction.norm())
            if not math.isfinite(norm) or norm == 0:
                raise ToolInputError("the steering vector is zero or not finite")
            mean_norm = mean_activation_norm(
                side,
                self.pair.arch,
                self.pair.tokenizer,
                prompts,
                site,
                batch_size=self.limits.batch_size,
                max_length=self.limits.max_length,
            )
            applied = args.coeff * (mean_norm if args.relative else 1.0)
            vector = SteeringVector(
                site, direction / norm * applied, name="steered", kind="steering"
            )
            table = run_perturbations(
                self.pair,
                prompts,
                [vector],
                side=args.side,
                n_controls=1,
                control_seed=args.seed,
                max_new_tokens=args.max_new_tokens,
                batch_size=self.limits.batch_size,
            )
        base_row = table.baseline
        assert base_row is not None
        steered = table.row("steered")
        control = table.controls_for("steered")[0]
        rows = [
            s.SteerRow(prompt=_user_text(p), unsteered=a, steered=b, control=c)
            for p, a, b, c in zip(
                prompts.prompts,
                base_row.generations,
                steered.generations,
                control.generations,
                strict=True,
            )
        ]
        bandit = {
            name: _summary_rate(row.scores.get("bandit_insecure"))
            for name, row in (("unsteered", base_row), ("steered", steered), ("control", control))
        }
        return s.SteerGenerateOutput(
            vector=f"{args.vector} ({what})",
            site=site,
            side=args.side,
            applied_norm=abs(applied),
            mean_activation_norm=mean_norm,
            rows=rows,
            bandit=bandit,
            kl_from_unsteered={
                "steered": _finite(steered.kl_mean),
                "control": _finite(control.kl_mean),
            },
            null_control=(
                "The control column is steered by a random direction of exactly the same norm "
                "at the same site; a behaviour the vector causes should not appear there."
            ),
        )

    def _stored_vectors(self) -> int:
        total = 0
        for meta in self._melbo_dir().glob("*/melbo.json"):
            try:
                total += int(json.loads(meta.read_text()).get("n_vectors", 0))
            except (ValueError, OSError):
                continue
        return total

    def melbo_search(self, args: s.MelboInput) -> s.MelboOutput:
        """Train K orthogonal MELBO vectors, store them with ids, return objectives and texts."""
        from auditlens.adversary.melbo import MelboConfig, train_melbo

        args = self._within(
            args,
            {
                "n_vectors": self.limits.melbo_max_vectors,
                "steps": self.limits.melbo_max_steps,
                "max_new_tokens": self.limits.max_new_tokens,
            },
        )
        _cap("n_vectors", args.n_vectors, self.limits.melbo_max_vectors)
        _cap("steps", args.steps, self.limits.melbo_max_steps)
        self._gen_opts(args.max_new_tokens)
        self._side(args.side)
        source = self._site_any(args.source)
        target = self._site_any(args.target)
        prompts = self._prompt_set(args.prompts, default="code_tasks", default_n=2)
        stored = self._stored_vectors()
        if stored + args.n_vectors > self.limits.max_stored_vectors:
            raise LimitError(
                f"the workspace holds {stored} MELBO vectors; {args.n_vectors} more would exceed "
                f"the limit of {self.limits.max_stored_vectors}"
            )
        folder_root = self._melbo_dir()
        if args.name is not None:
            run_id = check_name(args.name, "MELBO run id")
            if (folder_root / run_id).exists():
                raise ToolInputError(f"MELBO run {run_id!r} already exists; choose another name")
        else:
            n = 0
            while (folder_root / f"melbo_{n}").exists():
                n += 1
            run_id = f"melbo_{n}"
        config = MelboConfig(
            n_vectors=args.n_vectors,
            radius=args.radius,
            relative=True,
            source=source,
            target=target,
            steps=args.steps,
            seed=args.seed,
            base_weight=args.base_weight,
            max_length=self.limits.max_length,
            max_new_tokens=args.max_new_tokens,
            generation_batch_size=self.limits.batch_size,
        )
        with self._lock:
            result = train_melbo(self.pair, prompts, config, side=args.side)
        folder = result.save(self.workspace.resolve(Path("melbo") / run_id))
        rows = [
            s.MelboVectorRow(
                vector_id=f"melbo:{run_id}:{k}",
                index=k,
                initial_objective=float(result.objective[0, k]),
                final_objective=float(result.objective[-1, k]),
                generations=result.generations[k] if k < len(result.generations) else [],
                bandit=_rate(_bandit(result.generations[k]) if k < len(result.generations) else []),
            )
            for k in range(result.vectors.shape[0])
        ]
        return s.MelboOutput(
            run_id=run_id,
            side=result.side,
            source=result.source,
            target=result.target,
            radius=result.radius,
            mean_source_norm=result.mean_source_norm,
            vectors=rows,
            baseline_generations=result.baseline_generations,
            baseline_bandit=_rate(_bandit(result.baseline_generations)),
            saved_to=self.workspace.relative(folder),
            seconds=result.seconds,
            null_control=(
                "baseline_generations are the unsteered model on the same prompts; steer a "
                "vector with steer_generate to compare it with a matched-norm random vector."
            ),
        )

    def _site_any(self, name: str | None) -> str | None:
        return None if name is None else self.pair.sites([name])[0].name

    def fuzz(self, args: s.FuzzInput) -> s.FuzzOutput:
        """Relative activation noise at a site for a few seeds, with Bandit labels."""
        from auditlens.adversary.fuzz import fuzz_activations

        args = self._within(
            args,
            {"max_new_tokens": self.limits.max_new_tokens, "seeds": self.limits.fuzz_max_seeds},
        )
        self._gen_opts(args.max_new_tokens)
        _cap("sigma", args.sigma, self.limits.fuzz_max_sigma)
        if not args.seeds:
            raise ToolInputError("give at least one seed")
        _cap("number of seeds", len(args.seeds), self.limits.fuzz_max_seeds)
        if len(set(args.seeds)) != len(args.seeds):
            raise ToolInputError("seeds must be distinct")
        self._side(args.side)
        site = self._site(args.site)
        prompts = self._prompt_set(args.prompts, default="code_tasks", default_n=2)
        with self._lock:
            table = fuzz_activations(
                self.pair,
                prompts,
                site,
                sigmas=(args.sigma,),
                seeds=tuple(args.seeds),
                relative=True,
                side=args.side,
                max_new_tokens=args.max_new_tokens,
                batch_size=self.limits.batch_size,
            )

        def row(r: Any) -> s.FuzzRow:
            return s.FuzzRow(
                name=r.name,
                seed=r.seed,
                generations=list(r.generations),
                bandit=_summary_rate(r.scores.get("bandit_insecure")),
                kl_mean=_finite(r.kl_mean),
            )

        baseline = table.baseline
        assert baseline is not None
        return s.FuzzOutput(
            site=site,
            sigma=args.sigma,
            side=args.side,
            unperturbed=row(baseline),
            perturbed=[row(r) for r in table.perturbation_rows()],
            null_control=(
                "unperturbed is the same model, prompts and decoding without noise; noise that "
                "reveals hidden behaviour raises the insecure rate above it."
            ),
        )

    # ---- audit ---------------------------------------------------------------------------
    def run_audit(self, args: s.RunAuditInput) -> s.RunAuditOutput:
        """Run the full audit pipeline into workspace/audits/NAME and summarise its findings."""
        from auditlens.audit import audit

        name = check_name(args.name, "audit name")
        if args.budget not in self.limits.audit_budgets:
            raise LimitError(
                f"budget {args.budget!r} is not allowed; allowed: {list(self.limits.audit_budgets)}"
            )
        out = self.workspace.resolve(Path("audits") / name)
        with self._lock:
            report = audit(self.pair, out, budget=args.budget, progress=False)
        found = report.findings
        ranked = sorted(
            found.findings,
            key=lambda f: (not f.contributes, -abs(f.effect_size or 0.0), f.id),
        )
        top = [
            s.AuditFindingBrief(
                id=f.id,
                family=f.family,
                method=f.method,
                site=f.site,
                value=_finite(f.value),
                effect_size=_finite(f.effect_size),
                summary=f.summary,
            )
            for f in ranked[: args.n_findings]
        ]
        return s.RunAuditOutput(
            name=name,
            report_path=self.workspace.relative(out / "report.html"),
            findings_path=self.workspace.relative(out / "findings.json"),
            score=found.score,
            verdict=found.verdict or "",
            summary=found.summary,
            n_findings=len(found.findings),
            top_findings=top,
            notices=list(found.notices),
        )


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool: its name, input and output models, and the Toolkit method it calls."""

    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    method: str
    description: str

    def bind(self, toolkit: Toolkit) -> Callable[[Any], BaseModel]:
        fn: Callable[[Any], BaseModel] = getattr(toolkit, self.method)
        return fn


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "chat",
        s.ChatInput,
        s.ChatOutput,
        "chat",
        "Sample one model (side base or finetuned) with optional system prompt and prefill.",
    ),
    ToolSpec(
        "compare_models",
        s.CompareInput,
        s.CompareOutput,
        "compare_models",
        "Send the same prompts to both models; answers side by side with Bandit labels.",
    ),
    ToolSpec(
        "diff_overview",
        s.DiffOverviewInput,
        s.DiffOverviewOutput,
        "diff_overview",
        "Per-layer activation difference (relative norm, cosine) and KL(ft||base) summary.",
    ),
    ToolSpec(
        "top_divergent_tokens",
        s.TopDivergentTokensInput,
        s.TopDivergentTokensOutput,
        "top_divergent_tokens",
        "Paged list of tokens with the highest KL(ft||base), with context and each "
        "model's preferred next tokens.",
    ),
    ToolSpec(
        "top_diff_latents",
        s.TopDiffLatentsInput,
        s.TopDiffLatentsOutput,
        "top_diff_latents",
        "Paged ranking of crosscoder latents (trained and cached on first use) with their "
        "class: ft_only, shared, base_only or other.",
    ),
    ToolSpec(
        "latent_details",
        s.LatentDetailsInput,
        s.LatentDetailsOutput,
        "latent_details",
        "One crosscoder latent: top-activating contexts, frequency and logit effects.",
    ),
    ToolSpec(
        "probe_score",
        s.ProbeScoreInput,
        s.ProbeScoreOutput,
        "probe_score",
        "Score texts with a probe scorer (vulnerable_code or misaligned_answer) against "
        "its calibrated threshold.",
    ),
    ToolSpec(
        "steer_generate",
        s.SteerGenerateInput,
        s.SteerGenerateOutput,
        "steer_generate",
        "Generate with a steering vector at a site, beside a matched-norm random control.",
    ),
    ToolSpec(
        "melbo_search",
        s.MelboInput,
        s.MelboOutput,
        "melbo_search",
        "Train a few orthogonal MELBO steering vectors; returns ids for steer_generate.",
    ),
    ToolSpec(
        "fuzz",
        s.FuzzInput,
        s.FuzzOutput,
        "fuzz",
        "Add relative Gaussian noise at a site for a few seeds; generations + Bandit labels "
        "against the unperturbed model.",
    ),
    ToolSpec(
        "run_audit",
        s.RunAuditInput,
        s.RunAuditOutput,
        "run_audit",
        "Run the full audit pipeline; returns score, verdict, top findings, report path.",
    ),
)
"""Every agent tool, in the order a client lists them."""
