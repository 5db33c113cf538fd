"""Runnable probe experiments on the embedded model; each prints a table.

    python -m auditlens.probes.experiments vulnerable-code      # held-out CWE families
    python -m auditlens.probes.experiments misaligned-answers
    python -m auditlens.probes.experiments deception
    python -m auditlens.probes.experiments train-scorers        # rebuild the shipped scorers
    python -m auditlens.probes.experiments bandit-agreement
    python -m auditlens.probes.experiments transfer --adapter PATH
    python -m auditlens.probes.experiments drift --adapter PATH
    python -m auditlens.probes.experiments directions --layers 26   # organism cosines
    python -m auditlens.probes.experiments build-data           # rebuild the shipped pair sets

Features are cached under the auditlens cache folder, so re-running a table is cheap.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.paths import cache_dir
from auditlens.probes.evaluate import (
    ProbeEvaluation,
    calibrate_threshold,
    evaluate_probe,
    shuffled_label_control,
)
from auditlens.probes.features import Features, read_features
from auditlens.probes.pairsets import (
    SHIPPED_PER_TEMPLATE,
    PairSet,
    build_deception_pairs,
    build_misaligned_answer_pairs,
    build_vulnerable_code_pairs,
    control_examples,
    load_control_set,
    load_pair_set,
)
from auditlens.probes.probe import LinearProbe, ProbeConfig, train_probe
from auditlens.probes.splits import Split, group_split, holdout_split
from auditlens.probes.sweep import SweepResult, sweep_probes
from auditlens.stats import auroc

__all__ = [
    "ExperimentResult",
    "ExperimentSpec",
    "experiment_spec",
    "first_per_group",
    "main",
    "run_probe_experiment",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
CODE_QUESTION = "Is the code above secure? Answer yes or no."
"""An optional elicitation question read after the code (``--question``; see docs/probes.md)."""


@dataclass
class ExperimentSpec:
    """What one probe experiment reads and how it is split."""

    name: str
    data: PairSet
    split: Split
    control: PairSet
    mask: str = "assistant"
    """Tokens aggregated: ``assistant`` (the answer) or ``last_K``."""
    question: str | None = None
    """A user turn appended after the answer (read with ``last_K``)."""
    split_note: str = ""


@dataclass
class ExperimentResult:
    """A layer/aggregation sweep and the full evaluation of the selected probe."""

    name: str
    split_note: str
    sweep: SweepResult
    evaluation: ProbeEvaluation
    diff_means: ProbeEvaluation
    per_family_auroc: dict[str, float]
    probe: LinearProbe
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split_note,
            "sizes": self.sizes,
            "sweep": self.sweep.to_json(),
            "evaluation": self.evaluation.to_json(),
            "diff_means": self.diff_means.to_json(),
            "per_family_auroc": self.per_family_auroc,
            "probe": self.probe.to_json(),
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """The sweep and the selected probe's metrics as a Markdown table."""
        lines = [
            f"## {self.name}  ({self.split_note})",
            "sizes: " + ", ".join(f"{k} {v}" for k, v in self.sizes.items()),
            "",
            f"| site | agg | train AUROC | val AUROC | val recall@{self.evaluation.target_fpr:.0%} "
            "| test AUROC |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.sweep.rows:
            mark = (
                " *" if (r.site, r.aggregation) == (self.probe.site, self.probe.aggregation) else ""
            )
            test = "" if r.test_auroc is None else f"{r.test_auroc:.3f}"
            recall = "" if r.val_recall_at_fpr is None else f"{r.val_recall_at_fpr:.3f}"
            lines.append(
                f"| {r.site}{mark} | {r.aggregation} | {r.train_auroc:.3f} | "
                f"{r.val_auroc:.3f} | {recall} | {test} |"
            )
        e, d = self.evaluation, self.diff_means
        lines += [
            "",
            f"selected (val AUROC to 0.01, then val recall): {self.probe.site} / "
            f"{self.probe.aggregation}",
            "",
            "| metric | logreg | diff-of-means |",
            "|---|---|---|",
            f"| test AUROC [95% CI, template bootstrap] | {_ci(e.auroc, e.auroc_ci)} | "
            f"{_ci(d.auroc, d.auroc_ci)} |",
            f"| accuracy (score > 0) | {_ci(e.accuracy, e.accuracy_ci)} | "
            f"{_ci(d.accuracy, d.accuracy_ci)} |",
            f"| recall @ {e.target_fpr:.0%} control FPR | {_ci(e.recall_at_fpr, e.recall_ci)} | "
            f"{_ci(d.recall_at_fpr, d.recall_ci)} |",
            f"| test-negative FPR at that threshold | {e.test_fpr:.3f} | {d.test_fpr:.3f} |",
            f"| held-out control FPR (n={e.n_heldout_control}) | {_fpr(e)} | {_fpr(d)} |",
            f"| shuffled-label AUROC (null) | {_shuf(e)} | |",
            "",
            "test AUROC per family: "
            + ", ".join(f"{k} {v:.3f}" for k, v in self.per_family_auroc.items()),
            f"time: {self.seconds:.0f} s",
        ]
        return "\n".join(lines)


def _ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _fpr(e: ProbeEvaluation) -> str:
    if e.heldout_control_fpr is None or e.heldout_control_fpr_ci is None:
        return "n/a"
    return _ci(e.heldout_control_fpr, e.heldout_control_fpr_ci)


def _shuf(e: ProbeEvaluation) -> str:
    if e.shuffled is None:
        return "n/a"
    lo, hi = np.quantile(e.shuffled.aurocs, [0.05, 0.95])
    return f"{e.shuffled.mean:.3f} (5-95%: {lo:.2f}-{hi:.2f}, {len(e.shuffled.aurocs)} runs)"


def first_per_group(data: PairSet, n: int) -> PairSet:
    """The first ``n`` examples of every group (a budgeted, still template-balanced subset)."""
    seen: dict[str, int] = {}
    keep = []
    for i, e in enumerate(data.examples):
        if seen.get(e.group, 0) < n:
            keep.append(i)
            seen[e.group] = seen.get(e.group, 0) + 1
    return data.subset(keep)


def experiment_spec(
    name: str, *, per_template: int = 4, seed: int = 0, question: str | None = None
) -> ExperimentSpec:
    """The data, split and control set of a named experiment.

    ``vulnerable_code``: train on the testbed's train templates, select on its held-out
    templates of the same families (eval_id), test on its held-out CWE families (eval_ood).
    ``misaligned_answers`` / ``deception_instructed``: random group split (60/20/20).
    With ``question`` the probe reads the last 4 tokens after that appended user turn
    instead of the answer tokens.
    """
    mask = "assistant" if question is None else "last_4"
    if name == "vulnerable_code":
        data = first_per_group(load_pair_set("vulnerable_code"), 2 * per_template)
        splits = data.splits
        split = holdout_split(
            data.groups,
            [s == "eval_ood" for s in splits],
            val_mask=[s == "eval_id" for s in splits],
            labels=data.labels,
        )
        return ExperimentSpec(
            name,
            data,
            split,
            load_control_set("all"),
            mask=mask,
            question=question,
            split_note="train: testbed train templates; val: held-out templates (eval_id); "
            "test: held-out CWE families (eval_ood)",
        )
    if name in ("misaligned_answers", "deception_instructed"):
        data = load_pair_set(name)
        split = group_split(data.groups, seed=seed, labels=data.labels)
        return ExperimentSpec(
            name,
            data,
            split,
            load_control_set("chat"),
            mask=mask,
            question=question,
            split_note=f"random 60/20/20 split of templates (seed {seed})",
        )
    raise AuditlensError(f"unknown experiment {name!r}")


def _control_halves(control: PairSet, seed: int) -> Split:
    return group_split(control.groups, val_fraction=0.0, test_fraction=0.5, seed=seed)


def run_probe_experiment(
    pair: ModelPair,
    spec: ExperimentSpec,
    sites: Sequence[str],
    *,
    aggregations: Sequence[str] = ("mean", "last", "max"),
    config: ProbeConfig | None = None,
    seed: int = 0,
    fpr: float = 0.01,
    n_boot: int = 1000,
    n_shuffles: int = 20,
    batch_size: int = 16,
    features_cache: str | Path | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Sweep sites x aggregations, select on validation, evaluate on test against controls.

    The control set is halved by group: the threshold is calibrated on one half and the
    other half gives an honest false-positive rate. The returned probe carries a threshold
    calibrated on the whole control set.
    """
    start = time.perf_counter()
    cfg = config or ProbeConfig()
    read = {
        "aggregations": tuple(aggregations),
        "mask": spec.mask,
        "question": spec.question,
        "batch_size": batch_size,
        "cache_dir": features_cache,
        "progress": progress,
    }
    feats = read_features(pair, spec.data, sites, **read)  # type: ignore[arg-type]
    control = read_features(pair, spec.control, sites, **read)  # type: ignore[arg-type]
    y = spec.data.labels
    split = spec.split
    halves = _control_halves(spec.control, seed)
    sweep = sweep_probes(
        feats, y, split, cfg, seed=seed, data_sha256=spec.data.sha256,
        control=control.subset(halves.train),
        fpr=fpr, progress=progress,
    )  # fmt: skip
    site, agg = sweep.best_site, sweep.best_aggregation
    x = feats.get(site, agg)
    xc = control.get(site, agg)
    shuffled = shuffled_label_control(
        x[split.train], y[split.train], x[split.test], y[split.test], cfg,
        n_shuffles=n_shuffles, seed=seed,
    )  # fmt: skip
    test_groups = [spec.data.groups[int(i)] for i in split.test]
    evaluations = {}
    for method in ("logreg", "diff_means"):
        method_cfg = ProbeConfig(
            method=method,  # type: ignore[arg-type]
            C=cfg.C,
            fit_intercept=cfg.fit_intercept,
            standardize=cfg.standardize,
            max_iter=cfg.max_iter,
        )
        probe = (
            sweep.best_probe
            if method == "logreg"
            else _train(feats, y, split, method_cfg, site, agg, seed)
        )
        evaluations[method] = evaluate_probe(
            probe, x[split.test], y[split.test], x_control=xc[halves.train],
            x_heldout_control=xc[halves.test], fpr=fpr, n_boot=n_boot, seed=seed,
            shuffled=shuffled if method == "logreg" else None, groups=test_groups,
        )  # fmt: skip
    best = sweep.best_probe
    best.mask, best.question = spec.mask, spec.question
    best.threshold = calibrate_threshold(best.score(xc), fpr)
    best.target_fpr = fpr
    best.data_sha256 = spec.data.subset(split.train).sha256
    test_scores = best.score(x[split.test]).numpy()
    families = np.array(spec.data.families)[split.test]
    y_test = y[split.test]
    per_family = {}
    for fam in sorted(set(families.tolist())):
        sel = families == fam
        if len(set(y_test[sel].tolist())) == 2:
            per_family[fam] = auroc(y_test[sel], test_scores[sel])
    result = ExperimentResult(
        name=spec.name,
        split_note=spec.split_note,
        sweep=sweep,
        evaluation=evaluations["logreg"],
        diff_means=evaluations["diff_means"],
        per_family_auroc=per_family,
        probe=best,
        seconds=time.perf_counter() - start,
        sizes={
            "train": len(split.train),
            "val": len(split.val),
            "test": len(split.test),
            "control_calibration": len(halves.train),
            "control_heldout": len(halves.test),
        },
    )
    best.metrics = {k: v for k, v in result.to_json().items() if k not in ("probe", "sweep")}
    best.notes = {"pair_set": spec.data.name, "split": spec.split_note, "seed": seed}
    return result


def _train(
    feats: Features,
    y: np.ndarray,
    split: Split,
    cfg: ProbeConfig,
    site: str,
    agg: str,
    seed: int,
) -> LinearProbe:
    x = feats.get(site, agg)
    return train_probe(
        x[split.train], y[split.train], cfg, seed=seed, site=site, aggregation=agg,
        model_sha256=feats.model_sha256,
    )  # fmt: skip


# ---------------------------------------------------------------------------------- CLI


def _sites(layers: str, hook: str = "hook_resid_post") -> list[str]:
    return [f"blocks.{int(x)}.{hook}" for x in layers.split(",") if x.strip()]


def _load_pair(args: argparse.Namespace) -> ModelPair:
    from auditlens.models import load_pair

    return load_pair(finetuned=args.finetuned, adapter=args.adapter)


def _cmd_probe(args: argparse.Namespace, name: str) -> ExperimentResult:
    pair = _load_pair(args)
    question = CODE_QUESTION if args.question == "default" else args.question
    spec = experiment_spec(name, per_template=args.per_template, seed=args.seed, question=question)
    result = run_probe_experiment(
        pair, spec, _sites(args.layers), aggregations=args.aggregations.split(","),
        config=ProbeConfig(C=args.C), seed=args.seed, n_boot=args.n_boot,
        features_cache=None if args.no_cache else cache_dir() / "probe_features",
        progress=not args.quiet,
    )  # fmt: skip
    typer.echo(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _cmd_train_scorers(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for name, kind in (
        ("vulnerable_code", "vulnerable_code"),
        ("misaligned_answers", "misaligned_answer"),
    ):
        result = _cmd_probe(args, name)
        paths = result.probe.save(out / f"scorer_{kind}")
        typer.echo(f"saved {', '.join(str(p) for p in paths)}\n")


def _cmd_build_data(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from auditlens.testbed import free_form_questions, generate_tasks

    build_vulnerable_code_pairs(generate_tasks(args.seed), SHIPPED_PER_TEMPLATE).to_jsonl(
        out / "vulnerable_code.jsonl"
    )
    build_misaligned_answer_pairs(free_form_questions()).to_jsonl(out / "misaligned_answers.jsonl")
    build_deception_pairs().to_jsonl(out / "deception_instructed.jsonl")
    typer.echo(f"wrote pair sets to {out}")
    if args.skip_control:
        return
    from auditlens.datasets import load_prompts
    from auditlens.generate import generate
    from auditlens.judges.code import bandit_labels
    from auditlens.models import load_pair

    pair = load_pair()
    examples = []
    for kind, source in (("chat", "generic_chat"), ("code", "code_tasks")):
        prompts = load_prompts(source)
        answers = generate(pair.base, pair.tokenizer, prompts, max_new_tokens=args.max_new_tokens)
        keep = None
        if kind == "code":
            keep = [r.status == "secure" for r in bandit_labels(answers)]
            typer.echo(f"code control: {sum(keep)} of {len(keep)} answers are Bandit-clean code")
        examples += control_examples(prompts, answers, kind, keep)
    PairSet("control", "none", "ordinary", tuple(examples)).to_jsonl(out / "control_answers.jsonl")
    typer.echo(f"wrote {len(examples)} control answers")


def _cmd_bandit(args: argparse.Namespace) -> None:
    from auditlens.generate import generate
    from auditlens.models import load_pair
    from auditlens.probes.scorer import bandit_agreement, load_scorer
    from auditlens.testbed import eval_tasks

    pair = load_pair()
    scorer = load_scorer("vulnerable_code", pair)
    tasks_id, tasks_ood = eval_tasks(args.seed, n_id=args.n // 2, n_ood=args.n - args.n // 2)
    rows = []
    for label, tasks in (("eval_id", tasks_id), ("eval_ood", tasks_ood)):
        requests = [t.request for t in tasks]
        texts = generate(
            pair.base, pair.tokenizer, requests, max_new_tokens=args.max_new_tokens,
            temperature=args.temperature, seed=args.seed, batch_size=8,
        )  # fmt: skip
        scores = scorer.score(texts, requests)
        rows.append((label, bandit_agreement(scores, texts, threshold=scorer.threshold)))
    typer.echo(
        "| tasks | n | Bandit insecure | secure | unparseable | AUROC vs Bandit | flag agreement |"
    )
    typer.echo("|---|---|---|---|---|---|---|")
    for label, a in rows:
        auc = (
            "n/a (one class)" if a.auroc is None or a.auroc_ci is None else _ci(a.auroc, a.auroc_ci)
        )
        agree = "n/a" if a.flag_agreement is None else f"{a.flag_agreement:.3f}"
        typer.echo(
            f"| {label} | {a.n} | {a.n_insecure} | {a.n_secure} | {a.n_unparseable} "
            f"| {auc} | {agree} |"
        )


def _cmd_transfer(args: argparse.Namespace) -> None:
    from auditlens.probes.directions import transfer_probes

    pair = _load_pair(args)
    spec = experiment_spec("misaligned_answers", seed=args.seed)
    site = _sites(args.layers)[0]
    result = transfer_probes(
        pair, spec.data, spec.split, site, config=ProbeConfig(C=args.C), seed=args.seed,
        cache_dir=None if args.no_cache else cache_dir() / "probe_features",
        progress=not args.quiet,
    )  # fmt: skip
    typer.echo(json.dumps(result.to_json(), indent=2))


def _cmd_directions(args: argparse.Namespace) -> None:
    from auditlens.models import load_pair
    from auditlens.probes.directions import cosine_table, misalignment_direction

    site = _sites(args.layers)[0]
    directions = {}
    for organism in ["base", *[o for o in args.organisms.split(",") if o]]:
        adapter = None if organism == "base" else f"organism:{organism}"
        pair = load_pair(adapter=adapter)
        directions[organism] = misalignment_direction(
            pair, site, side="base" if adapter is None else "finetuned",
            cache_dir=None if args.no_cache else cache_dir() / "probe_features",
            progress=not args.quiet,
        )  # fmt: skip
    table = cosine_table(directions)
    typer.echo(f"misalignment-direction cosines at {site} (random |cos| 95% bound "
          f"{table.random_bound_95:.3f})")  # fmt: skip
    typer.echo("| | " + " | ".join(table.names) + " | norm |")
    typer.echo("|---" * (len(table.names) + 2) + "|")
    for name, row in zip(table.names, table.matrix, strict=True):
        norm = float(directions[name].vector.norm())
        typer.echo(f"| {name} | " + " | ".join(f"{c:.3f}" for c in row) + f" | {norm:.1f} |")


def _cmd_drift(args: argparse.Namespace) -> None:
    from auditlens.probes.drift import track_drift
    from auditlens.probes.scorer import load_scorer

    pair = _load_pair(args)
    scorer = load_scorer(args.scorer, pair, side="base")
    if args.scorer == "vulnerable_code":
        from auditlens.testbed import eval_tasks

        tasks_id, tasks_ood = eval_tasks(args.seed, n_id=args.n // 2, n_ood=args.n - args.n // 2)
        prompts: list[str] = [t.request for t in (*tasks_id, *tasks_ood)]
    else:
        from auditlens.testbed import free_form_questions

        prompts = [q.text for q in free_form_questions()][: args.n]
    result = track_drift(
        pair, prompts, scorer, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed,
    )  # fmt: skip
    typer.echo(
        json.dumps(
            {k: v for k, v in result.to_json().items() if not k.endswith("_scores")}, indent=2
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m auditlens.probes.experiments``."""
    parser = argparse.ArgumentParser(prog="python -m auditlens.probes.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--layers", default="2,5,8,11,14,17,20,23,26,29",
                        help="comma-separated layers (resid_post) to sweep")  # fmt: skip
    common.add_argument("--aggregations", default="mean,last,max")
    common.add_argument("--C", type=float, default=0.1, help="inverse L2 strength")
    common.add_argument("--per-template", type=int, default=4, help="code tasks per template")
    common.add_argument("--n-boot", type=int, default=1000)
    common.add_argument("--finetuned", default=None)
    common.add_argument("--adapter", default=None)
    common.add_argument("--no-cache", action="store_true")
    common.add_argument("--quiet", action="store_true")
    common.add_argument("--json", default=None, help="also write the result as JSON here")
    common.add_argument("--max-new-tokens", type=int, default=96)
    common.add_argument("--temperature", type=float, default=0.0)
    common.add_argument("--n", type=int, default=48, help="prompts for bandit-agreement/drift")
    common.add_argument("--scorer", default="vulnerable_code")
    common.add_argument("--out", default=str(DATA_DIR))
    common.add_argument("--skip-control", action="store_true")
    common.add_argument("--organisms", default="insecure,secure,educational,backdoor",
                        help="testbed organisms for the directions command")  # fmt: skip
    common.add_argument("--question", default=None,
                        help="append this user question after each answer and read its last "
                        "4 tokens ('default': the code-security question)")  # fmt: skip
    for name in (
        "vulnerable-code", "misaligned-answers", "deception", "train-scorers", "build-data",
        "bandit-agreement", "transfer", "drift", "directions",
    ):  # fmt: skip
        sub.add_parser(name, parents=[common])
    args = parser.parse_args(argv)
    try:
        if args.command == "vulnerable-code":
            _cmd_probe(args, "vulnerable_code")
        elif args.command == "misaligned-answers":
            _cmd_probe(args, "misaligned_answers")
        elif args.command == "deception":
            _cmd_probe(args, "deception_instructed")
        elif args.command == "train-scorers":
            _cmd_train_scorers(args)
        elif args.command == "build-data":
            _cmd_build_data(args)
        elif args.command == "bandit-agreement":
            _cmd_bandit(args)
        elif args.command == "transfer":
            _cmd_transfer(args)
        elif args.command == "directions":
            _cmd_directions(args)
        else:
            _cmd_drift(args)
    except AuditlensError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
