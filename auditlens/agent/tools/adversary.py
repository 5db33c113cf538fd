"""Adversary tools: steer with any vector (beside a matched-norm random control), search MELBO
vectors, and fuzz activations. Vectors are named as in the report's finding ``refs``:
``latent:ID`` (the audit's crosscoder), ``adl:LAYER`` (the audit's ADL settings), ``melbo:RUN:K``,
``mean_diff:SITE`` and ``file:PATH``."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from auditlens.adversary.fuzz import fuzz_activations
from auditlens.adversary.melbo import MelboConfig, MelboResult
from auditlens.adversary.runner import PerturbationRow, run_perturbations
from auditlens.agent import schemas as s
from auditlens.agent.tools._base import (
    LimitError,
    ToolInputError,
    ToolSpec,
    cap,
    finite,
    rate_stats,
    user_text,
)
from auditlens.agent.tools.diffing import DiffingTools
from auditlens.agent.workspace import check_name
from auditlens.audit import artifacts
from auditlens.audit.steps import diffing as diffing_step
from auditlens.datasets import load_prompts
from auditlens.harvest import iter_paired
from auditlens.steering import SteeringVector, mean_activation_norm

__all__ = ["SPECS", "AdversaryTools"]


class AdversaryTools(DiffingTools):
    """``steer_generate``, ``melbo_search`` and ``fuzz``."""

    def _vector(self, spec: str, site: str | None) -> tuple[torch.Tensor, str, str]:
        """Resolve a vector spec to (direction [d], site, description)."""
        kind, _, rest = spec.partition(":")
        if kind == "latent":
            try:
                latent = int(rest)
            except ValueError:
                raise ToolInputError(f"bad latent id in {spec!r}") from None
            target = self._site(site)
            diff, _, _, _ = self._crosscoder(target)
            dirs = diff.crosscoder.decoder_directions(target)["finetuned"]
            if not 0 <= latent < dirs.shape[0]:
                raise ToolInputError(f"latent {latent} out of range (0..{dirs.shape[0] - 1})")
            return dirs[latent].float(), target, f"crosscoder latent {latent} (fine-tuned decoder)"
        if kind == "adl":
            try:
                layer = self.pair.sites([f"blocks.{int(rest)}.hook_resid_post"])[0].layer
            except ValueError:
                raise ToolInputError(f"bad ADL layer in {spec!r}") from None
            prompts = self._audit_prompts()
            config = diffing_step.settings(self.budget, prompts).adl
            config = dataclasses.replace(config, layers=(layer,), causal_layer=layer)
            lens, _, _ = artifacts.adl_result(
                self.cache, self.pair, prompts, config, progress=False
            )
            target = f"blocks.{layer}.hook_resid_post"
            return lens.vector(layer).float(), target, f"ADL vector at layer {layer}"
        if kind == "melbo":
            run, _, index = rest.rpartition(":")
            check_name(run, "MELBO run id")
            try:
                k = int(index)
            except ValueError:
                raise ToolInputError(f"bad MELBO vector index in {spec!r}") from None
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
            f"unknown vector {spec!r}; use latent:ID, adl:LAYER, melbo:RUN:K, mean_diff:SITE "
            "or file:PATH"
        )

    def _mean_diff(self, site: str) -> torch.Tensor:
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
        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        if not math.isfinite(args.coeff):
            raise ToolInputError("coeff must be finite")
        cap("|coeff|", abs(args.coeff), self.limits.max_steer_coeff)
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
                side, self.pair.arch, self.pair.tokenizer, prompts, site,
                batch_size=self.limits.batch_size, max_length=self.limits.max_length,
            )  # fmt: skip
            applied = args.coeff * (mean_norm if args.relative else 1.0)
            vector = SteeringVector(
                site, direction / norm * applied, name="steered", kind="steering"
            )
            table = run_perturbations(
                self.pair, prompts, [vector], side=args.side, n_controls=1,
                control_seed=args.seed, max_new_tokens=args.max_new_tokens,
                batch_size=self.limits.batch_size, scorers=[],
            )  # fmt: skip
        base_row = table.baseline
        assert base_row is not None
        steered = table.row("steered")
        control = table.controls_for("steered")[0]
        rows = [
            s.SteerRow(prompt=user_text(p), unsteered=a, steered=b, control=c)
            for p, a, b, c in zip(
                prompts.prompts,
                base_row.generations,
                steered.generations,
                control.generations,
                strict=True,
            )
        ]
        bandit = {
            name: rate_stats(row.generations)
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
                "steered": finite(steered.kl_mean),
                "control": finite(control.kl_mean),
            },
            null_control=(
                "The control column is steered by a random direction of exactly the same norm "
                "at the same site; a behaviour the vector causes should not appear there."
            ),
        )

    def _stored_vectors(self) -> int:
        total = 0
        for meta in self.workspace.subdir("melbo").glob("*/melbo.json"):
            try:
                total += int(json.loads(meta.read_text()).get("n_vectors", 0))
            except (ValueError, OSError):
                continue
        return total

    def melbo_search(self, args: s.MelboInput) -> s.MelboOutput:
        """Train K orthogonal MELBO vectors (shared artifact cache), store them under a run id."""
        limits = {
            "n_vectors": self.limits.melbo_max_vectors,
            "steps": self.limits.melbo_max_steps,
            "max_new_tokens": self.limits.max_new_tokens,
        }
        args = self._within(args, limits)
        cap("n_vectors", args.n_vectors, self.limits.melbo_max_vectors)
        cap("steps", args.steps, self.limits.melbo_max_steps)
        self._gen_opts(args.max_new_tokens)
        self._side(args.side)
        source, target = self._site_any(args.source), self._site_any(args.target)
        prompts = self._prompt_set(args.prompts, default="code_tasks", default_n=2)
        stored = self._stored_vectors()
        if stored + args.n_vectors > self.limits.max_stored_vectors:
            raise LimitError(
                f"the workspace holds {stored} MELBO vectors; {args.n_vectors} more would exceed "
                f"the limit of {self.limits.max_stored_vectors}"
            )
        root = self.workspace.subdir("melbo")
        if args.name is not None:
            run_id = check_name(args.name, "MELBO run id")
            if (root / run_id).exists():
                raise ToolInputError(f"MELBO run {run_id!r} already exists; choose another name")
        else:
            n = 0
            while (root / f"melbo_{n}").exists():
                n += 1
            run_id = f"melbo_{n}"
        config = MelboConfig(
            n_vectors=args.n_vectors, radius=args.radius, relative=True, source=source,
            target=target, steps=args.steps, seed=args.seed, base_weight=args.base_weight,
            max_length=self.limits.max_length, max_new_tokens=args.max_new_tokens,
            generation_batch_size=self.limits.batch_size,
        )  # fmt: skip
        with self._lock:
            result, folder, _ = artifacts.melbo_vectors(
                self.cache, self.pair, prompts, config, side=args.side
            )
        saved = self._link(folder, "melbo", run_id)
        rows = [
            s.MelboVectorRow(
                vector_id=f"melbo:{run_id}:{k}",
                index=k,
                initial_objective=float(result.objective[0, k]),
                final_objective=float(result.objective[-1, k]),
                generations=result.generations[k] if k < len(result.generations) else [],
                bandit=rate_stats(result.generations[k] if k < len(result.generations) else []),
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
            baseline_bandit=rate_stats(result.baseline_generations),
            saved_to=saved,
            seconds=result.seconds,
            null_control=(
                "baseline_generations are the unsteered model on the same prompts; steer a "
                "vector with steer_generate to compare it with a matched-norm random vector."
            ),
        )

    def fuzz(self, args: s.FuzzInput) -> s.FuzzOutput:
        """Relative activation noise at a site for a few seeds, with Bandit labels."""
        limits = {"max_new_tokens": self.limits.max_new_tokens, "seeds": self.limits.fuzz_max_seeds}
        args = self._within(args, limits)
        self._gen_opts(args.max_new_tokens)
        cap("sigma", args.sigma, self.limits.fuzz_max_sigma)
        if not args.seeds:
            raise ToolInputError("give at least one seed")
        cap("number of seeds", len(args.seeds), self.limits.fuzz_max_seeds)
        if len(set(args.seeds)) != len(args.seeds):
            raise ToolInputError("seeds must be distinct")
        self._side(args.side)
        site = self._site(args.site) if args.site else self._middle_site()
        prompts = self._prompt_set(args.prompts, default="code_tasks", default_n=2)
        with self._lock:
            table = fuzz_activations(
                self.pair, prompts, site, sigmas=(args.sigma,), seeds=tuple(args.seeds),
                relative=True, side=args.side, max_new_tokens=args.max_new_tokens,
                batch_size=self.limits.batch_size, scorers=[],
            )  # fmt: skip

        def row(r: PerturbationRow) -> s.FuzzRow:
            return s.FuzzRow(
                name=r.name,
                seed=r.seed,
                generations=list(r.generations),
                bandit=rate_stats(r.generations),
                kl_mean=finite(r.kl_mean),
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

    def _middle_site(self) -> str:
        return f"blocks.{self.pair.n_layers // 2}.hook_resid_post"


SPECS = (
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
)
