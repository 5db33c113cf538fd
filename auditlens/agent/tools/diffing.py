"""Diffing tools: the per-layer scan, the most divergent tokens, and the crosscoder's latents.

The crosscoder is the audit's (:func:`auditlens.audit.artifacts.crosscoder_diff` with the
diffing step's settings for the toolkit's budget and prompts, at the layer the audit's layers
step finds most changed, unless a site is given), so latent ids agree with the report's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from auditlens.agent import schemas as s
from auditlens.agent.tools._base import ToolInputError, ToolkitBase, ToolSpec, cap
from auditlens.audit import artifacts
from auditlens.audit.steps import diffing as diffing_step
from auditlens.audit.steps import layers as layers_step
from auditlens.datasets import load_prompts
from auditlens.diffing import scan
from auditlens.diffing.crosscoder import CrosscoderDiff
from auditlens.lens import logit_effects
from auditlens.store import ActivationStore

__all__ = ["SPECS", "DiffingTools"]


class DiffingTools(ToolkitBase):
    """``diff_overview``, ``top_divergent_tokens``, ``top_diff_latents``, ``latent_details``."""

    def diff_overview(self, args: s.DiffOverviewInput) -> s.DiffOverviewOutput:
        """Per-layer activation differences and the KL summary over a small prompt set."""
        args = self._within(args, {"n_prompts": self.limits.scan_prompts})
        with self._lock:
            result = self._scan(args.prompts, args.n_prompts)
        assert result.kl is not None
        rows = [
            s.LayerRow(
                layer=i,
                site=st.site,
                mean_rel_diff_norm=st.mean_rel_diff_norm,
                mean_cosine=st.mean_cosine,
                mean_diff_norm=st.mean_diff_norm,
                mean_base_norm=st.mean_base_norm,
            )
            for i, st in enumerate(result.stats)
        ]
        kl = result.kl
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
            peak_layer=result.peak if rows else 0,
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
        cap("limit", args.limit, self.limits.page_size)
        with self._lock:
            result = self._scan(args.prompts, args.n_prompts)
        assert result.kl is not None
        ranked = result.kl.top_tokens
        page = ranked[args.offset : args.offset + args.limit]
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
        n_tokens = result.kl.n_tokens
        coverage = (
            f"ranks {args.offset}-{args.offset + len(page)} of {len(ranked)} kept "
            f"({n_tokens} tokens scanned)"
        )
        null = (
            f"Null control: base vs base gives KL 0 at every token; the mean over all scanned "
            f"tokens here is {result.kl.mean:.4g} nats (median {result.kl.median:.4g})."
        )
        return s.TopDivergentTokensOutput(
            coverage=coverage,
            offset=args.offset,
            n_ranked=len(ranked),
            n_tokens_scanned=n_tokens,
            kl_mean=result.kl.mean,
            tokens=tokens,
            null_control=" ".join(x for x in (null, self._null_note()) if x),
        )

    # ---- the audit's crosscoder ----------------------------------------------------------
    def _peak_site(self) -> str:
        """The audit's crosscoder site: the most-changed ``resid_post`` of its layers scan."""
        key = ("peak", self.budget)
        if key not in self._memo:
            prompts = self._audit_prompts()
            settings = layers_step.settings(self.budget, prompts)
            result = scan.run(self.pair, prompts, settings, progress=False)
            self._memo[key] = result.stats[result.peak].site
        site: str = self._memo[key]
        return site

    def _site(self, name: str | None) -> str:
        return self._peak_site() if name is None else self.pair.sites([name])[0].name

    def _crosscoder(self, site: str) -> tuple[CrosscoderDiff, ActivationStore, Path, bool]:
        """The shared crosscoder at ``site`` (trained on first use, then read from the cache)."""
        key = ("crosscoder", site)
        if key not in self._memo:
            prompts = self._audit_prompts()
            opts = diffing_step.settings(self.budget, prompts)
            harvest = {"batch_size": opts.batch_size, "max_length": opts.max_length}
            diff, folder, built = artifacts.crosscoder_diff(
                self.cache, self.pair, prompts, site, opts.crosscoder, progress=False, **harvest
            )
            store, _, _ = artifacts.harvested(
                self.cache, self.pair, prompts, [site], progress=False, **harvest
            )
            self._memo[key] = (diff, store, folder, built)
        entry: tuple[CrosscoderDiff, ActivationStore, Path, bool] = self._memo[key]
        return entry

    def _latent_acts(self, site: str) -> torch.Tensor:
        key = ("latent_acts", site)
        if key not in self._memo:
            diff, store, _, _ = self._crosscoder(site)
            cc = diff.crosscoder
            chunks = [cc.encode(batch) for batch in store.iter_batches(site, 1024)]
            self._memo[key] = torch.cat(chunks) if chunks else torch.zeros(0, cc.n_latents)
        acts: torch.Tensor = self._memo[key]
        return acts

    def top_diff_latents(self, args: s.TopDiffLatentsInput) -> s.TopDiffLatentsOutput:
        """A page of crosscoder latents ranked by model specificity (or frequency)."""
        args = self._within(args, {"limit": self.limits.page_size})
        cap("limit", args.limit, self.limits.page_size)
        with self._lock:
            site = self._site(args.site)
            seen = ("crosscoder", site) in self._memo
            diff, store, folder, built = self._crosscoder(site)
            linked = self._link(folder, "crosscoders", folder.name)
        result = diff.result
        an = result.analysis
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
        null = (
            "Null control: a crosscoder trained on base vs base finds (almost) no ft_only or "
            "base_only latents; exclusive latents here are re-labelled shared when Latent "
            "Scaling shows the other model uses them too."
        )
        if result.control:
            null += f" Measured controls: {json.dumps(result.control)}."
        stats = {k: float(v) for k, v in result.statistics().items() if math.isfinite(v)}
        return s.TopDiffLatentsOutput(
            site=site,
            n_latents=len(an.final_class),
            coverage=coverage,
            counts=an.counts(),
            latents=rows,
            trained_now=built and not seen,
            crosscoder=folder.name,
            crosscoder_dir=linked,
            n_tokens=store.n_tokens,
            statistics=stats,
            null_control=" ".join(x for x in (null, self._null_note()) if x),
        )

    def latent_details(self, args: s.LatentDetailsInput) -> s.LatentDetailsOutput:
        """One latent: top-activating contexts, frequency and per-model logit effects."""
        args = self._within(args, {"n_contexts": self.limits.max_contexts})
        cap("n_contexts", args.n_contexts, self.limits.max_contexts)
        with self._lock:
            site = self._site(args.site)
            diff, store, folder, _ = self._crosscoder(site)
            acts = self._latent_acts(site)
        an = diff.result.analysis
        n_latents = len(an.final_class)
        if args.latent >= n_latents:
            raise ToolInputError(f"latent {args.latent} out of range (0..{n_latents - 1})")
        column = acts[:, args.latent]
        k = min(args.n_contexts, int((column > 0).sum()))
        contexts: list[s.LatentContext] = []
        if k > 0:
            values, rows = column.topk(k)
            found = store.contexts(rows.tolist(), window=10, tokenizer=self.pair.tokenizer)
            contexts = [
                s.LatentContext(
                    activation=float(v),
                    text=c.render(),
                    prompt_index=c.prompt_index,
                    position=c.position,
                )
                for v, c in zip(values.tolist(), found, strict=True)
            ]
        directions = diff.crosscoder.decoder_directions(site)
        effects: dict[str, s.LogitEffect] = {}
        for side in self.pair.sides:
            vec = directions[side.name][args.latent].float()
            ((promoted, suppressed),) = logit_effects(
                side, self.pair.tokenizer, vec[None], args.n_tokens
            )
            effects[side.name] = s.LogitEffect(
                decoder_norm=float(vec.norm()),
                promoted=[s.TokenProb(token=t, value=v) for t, v in promoted],
                suppressed=[s.TokenProb(token=t, value=v) for t, v in suppressed],
            )
        return s.LatentDetailsOutput(
            latent=args.latent,
            site=site,
            crosscoder=folder.name,
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


SPECS = (
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
        "Paged ranking of the audit's crosscoder latents (trained on first use, shared with "
        "the audit report) with their class: ft_only, shared, base_only or other.",
    ),
    ToolSpec(
        "latent_details",
        s.LatentDetailsInput,
        s.LatentDetailsOutput,
        "latent_details",
        "One crosscoder latent: top-activating contexts, frequency and logit effects.",
    ),
)
