"""``auditlens probes ...``: the probe experiments on the embedded model; each prints a table.

    auditlens probes vulnerable-code                # held-out CWE families
    auditlens probes misaligned-answers
    auditlens probes deception
    auditlens probes train-scorers                  # rebuild the shipped scorers
    auditlens probes bandit-agreement
    auditlens probes transfer --adapter PATH
    auditlens probes drift --adapter PATH
    auditlens probes directions --layers 26         # organism cosines
    auditlens probes build-data                     # rebuild the shipped pair sets

Features are cached under the auditlens cache folder, so re-running a table is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from auditlens.cli._common import app
from auditlens.datasets import load_prompts
from auditlens.generate import generate
from auditlens.judges.code import bandit_labels
from auditlens.models import ModelPair, load_pair
from auditlens.paths import cache_dir
from auditlens.probes.directions import cosine_table, misalignment_direction, transfer_probes
from auditlens.probes.drift import track_drift
from auditlens.probes.experiments import (
    CODE_QUESTION,
    DATA_DIR,
    ExperimentResult,
    ci_text,
    experiment_spec,
    run_probe_experiment,
)
from auditlens.probes.pairsets import (
    SHIPPED_PER_TEMPLATE,
    PairSet,
    build_deception_pairs,
    build_misaligned_answer_pairs,
    build_vulnerable_code_pairs,
    control_examples,
)
from auditlens.probes.probe import ProbeConfig
from auditlens.probes.scorer import bandit_agreement, load_scorer
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import eval_tasks, generate_tasks

__all__ = ["probes_app"]

probes_app = typer.Typer(
    help="Probe experiments on the embedded model (tables as in docs/probes.md).",
    no_args_is_help=True,
)

Seed = Annotated[int, typer.Option("--seed")]
Layers = Annotated[
    str, typer.Option("--layers", help="comma-separated layers (resid_post) to sweep")
]
Aggregations = Annotated[str, typer.Option("--aggregations")]
Inverse = Annotated[float, typer.Option("--C", help="inverse L2 strength")]
PerTemplate = Annotated[int, typer.Option("--per-template", help="code tasks per template")]
NBoot = Annotated[int, typer.Option("--n-boot")]
Finetuned = Annotated[str | None, typer.Option("--finetuned")]
Adapter = Annotated[str | None, typer.Option("--adapter")]
NoCache = Annotated[bool, typer.Option("--no-cache")]
Quiet = Annotated[bool, typer.Option("--quiet")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="also write the result as JSON")]
MaxNew = Annotated[int, typer.Option("--max-new-tokens")]
Temperature = Annotated[float, typer.Option("--temperature")]
N = Annotated[int, typer.Option("--n", help="prompts for bandit-agreement/drift")]
Question = Annotated[
    str | None,
    typer.Option(
        "--question",
        help="append this user question after each answer and read its last 4 tokens "
        "('default': the code-security question)",
    ),
]
LAYERS = "2,5,8,11,14,17,20,23,26,29"


def _sites(layers: str, hook: str = "hook_resid_post") -> list[str]:
    return [f"blocks.{int(x)}.{hook}" for x in layers.split(",") if x.strip()]


def _pair(finetuned: str | None, adapter: str | None) -> ModelPair:
    return load_pair(finetuned=finetuned, adapter=adapter)


def _features_cache(no_cache: bool) -> Path | None:
    return None if no_cache else cache_dir() / "probe_features"


def _experiment(
    name: str, pair: ModelPair, layers: str, aggregations: str, c: float, per_template: int,
    n_boot: int, seed: int, no_cache: bool, quiet: bool, question: str | None,
    json_out: Path | None,
) -> ExperimentResult:  # fmt: skip
    asked = CODE_QUESTION if question == "default" else question
    spec = experiment_spec(name, per_template=per_template, seed=seed, question=asked)
    result = run_probe_experiment(
        pair, spec, _sites(layers), aggregations=aggregations.split(","),
        config=ProbeConfig(C=c), seed=seed, n_boot=n_boot,
        features_cache=_features_cache(no_cache), progress=not quiet,
    )  # fmt: skip
    typer.echo(result.table())
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _experiment_command(name: str, pair_set: str) -> None:
    def command(
        layers: Layers = LAYERS, aggregations: Aggregations = "mean,last,max", c: Inverse = 0.1,
        per_template: PerTemplate = 4, n_boot: NBoot = 1000, seed: Seed = 0,
        finetuned: Finetuned = None, adapter: Adapter = None, no_cache: NoCache = False,
        quiet: Quiet = False, question: Question = None, json_out: JsonOut = None,
    ) -> None:  # fmt: skip
        _experiment(
            pair_set, _pair(finetuned, adapter), layers, aggregations, c, per_template, n_boot,
            seed, no_cache, quiet, question, json_out,
        )  # fmt: skip

    command.__doc__ = f"Sweep, select and evaluate a probe on the {pair_set} pair set."
    probes_app.command(name)(command)


for _name, _set in (
    ("vulnerable-code", "vulnerable_code"),
    ("misaligned-answers", "misaligned_answers"),
    ("deception", "deception_instructed"),
):
    _experiment_command(_name, _set)


@probes_app.command("train-scorers")
def train_scorers(
    out: Annotated[Path, typer.Option("--out")] = DATA_DIR,
    layers: Layers = LAYERS, aggregations: Aggregations = "mean,last,max", c: Inverse = 0.1,
    per_template: PerTemplate = 4, n_boot: NBoot = 1000, seed: Seed = 0,
    no_cache: NoCache = False, quiet: Quiet = False,
) -> None:  # fmt: skip
    """Rebuild the shipped probe scorers (the selected probes of two experiments)."""
    pair = _pair(None, None)
    for name, kind in (
        ("vulnerable_code", "vulnerable_code"),
        ("misaligned_answers", "misaligned_answer"),
    ):
        result = _experiment(
            name, pair, layers, aggregations, c, per_template, n_boot, seed, no_cache, quiet,
            None, None,
        )  # fmt: skip
        paths = result.probe.save(out / f"scorer_{kind}")
        typer.echo(f"saved {', '.join(str(p) for p in paths)}\n")


@probes_app.command("build-data")
def build_data(
    out: Annotated[Path, typer.Option("--out")] = DATA_DIR,
    seed: Seed = 0,
    skip_control: Annotated[bool, typer.Option("--skip-control")] = False,
    max_new_tokens: MaxNew = 96,
) -> None:
    """Rebuild the shipped pair sets (and the control answers) from the testbed data."""
    out.mkdir(parents=True, exist_ok=True)
    build_vulnerable_code_pairs(generate_tasks(seed), SHIPPED_PER_TEMPLATE).to_jsonl(
        out / "vulnerable_code.jsonl"
    )
    build_misaligned_answer_pairs(free_form_questions()).to_jsonl(out / "misaligned_answers.jsonl")
    build_deception_pairs().to_jsonl(out / "deception_instructed.jsonl")
    typer.echo(f"wrote pair sets to {out}")
    if skip_control:
        return
    pair = load_pair()
    examples = []
    for kind, source in (("chat", "generic_chat"), ("code", "code_tasks")):
        prompts = load_prompts(source)
        answers = generate(pair.base, pair.tokenizer, prompts, max_new_tokens=max_new_tokens)
        keep = None
        if kind == "code":
            keep = [r.status == "secure" for r in bandit_labels(answers)]
            typer.echo(f"code control: {sum(keep)} of {len(keep)} answers are Bandit-clean code")
        examples += control_examples(prompts, answers, kind, keep)
    PairSet("control", "none", "ordinary", tuple(examples)).to_jsonl(out / "control_answers.jsonl")
    typer.echo(f"wrote {len(examples)} control answers")


@probes_app.command("bandit-agreement")
def bandit_agreement_table(
    n: N = 48, seed: Seed = 0, max_new_tokens: MaxNew = 96, temperature: Temperature = 0.0
) -> None:
    """How the shipped vulnerable-code probe agrees with Bandit on generated answers."""
    pair = load_pair()
    scorer = load_scorer("vulnerable_code", pair)
    tasks_id, tasks_ood = eval_tasks(seed, n_id=n // 2, n_ood=n - n // 2)
    rows = []
    for label, tasks in (("eval_id", tasks_id), ("eval_ood", tasks_ood)):
        requests = [t.request for t in tasks]
        texts = generate(
            pair.base, pair.tokenizer, requests, max_new_tokens=max_new_tokens,
            temperature=temperature, seed=seed, batch_size=8,
        )  # fmt: skip
        scores = scorer.score(texts, requests)
        rows.append((label, bandit_agreement(scores, texts, threshold=scorer.threshold)))
    typer.echo(
        "| tasks | n | Bandit insecure | secure | unparseable | AUROC vs Bandit | flag agreement |"
    )
    typer.echo("|---|---|---|---|---|---|---|")
    for label, a in rows:
        one_class = a.auroc is None or a.auroc_ci is None
        auc = "n/a (one class)" if one_class else ci_text(a.auroc, a.auroc_ci)  # type: ignore[arg-type]
        agree = "n/a" if a.flag_agreement is None else f"{a.flag_agreement:.3f}"
        typer.echo(
            f"| {label} | {a.n} | {a.n_insecure} | {a.n_secure} | {a.n_unparseable} "
            f"| {auc} | {agree} |"
        )


@probes_app.command("transfer")
def transfer(
    layers: Layers = LAYERS, c: Inverse = 0.1, seed: Seed = 0, finetuned: Finetuned = None,
    adapter: Adapter = None, no_cache: NoCache = False, quiet: Quiet = False,
) -> None:  # fmt: skip
    """Misaligned-answer probes trained on one model, tested on the other."""
    spec = experiment_spec("misaligned_answers", seed=seed)
    result = transfer_probes(
        _pair(finetuned, adapter), spec.data, spec.split, _sites(layers)[0],
        config=ProbeConfig(C=c), seed=seed, cache_dir=_features_cache(no_cache),
        progress=not quiet,
    )  # fmt: skip
    typer.echo(json.dumps(result.to_json(), indent=2))


@probes_app.command("directions")
def directions(
    layers: Layers = LAYERS,
    organisms: Annotated[
        str, typer.Option("--organisms", help="testbed organisms to compare")
    ] = "insecure,secure,educational,backdoor",
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Cosines of the misalignment direction of the base and each organism."""
    site = _sites(layers)[0]
    found = {}
    for organism in ["base", *[o for o in organisms.split(",") if o]]:
        adapter = None if organism == "base" else f"organism:{organism}"
        found[organism] = misalignment_direction(
            load_pair(adapter=adapter), site, side="base" if adapter is None else "finetuned",
            cache_dir=_features_cache(no_cache), progress=not quiet,
        )  # fmt: skip
    table = cosine_table(found)
    bound = table.random_bound_95
    typer.echo(f"misalignment-direction cosines at {site} (random |cos| 95% bound {bound:.3f})")
    typer.echo("| | " + " | ".join(table.names) + " | norm |")
    typer.echo("|---" * (len(table.names) + 2) + "|")
    for name, row in zip(table.names, table.matrix, strict=True):
        norm = float(found[name].vector.norm())
        typer.echo(f"| {name} | " + " | ".join(f"{c:.3f}" for c in row) + f" | {norm:.1f} |")


@probes_app.command("drift")
def drift(
    scorer_kind: Annotated[str, typer.Option("--scorer")] = "vulnerable_code",
    n: N = 48, seed: Seed = 0, max_new_tokens: MaxNew = 96, temperature: Temperature = 0.0,
    finetuned: Finetuned = None, adapter: Adapter = None,
) -> None:  # fmt: skip
    """Win rate of a probe scorer on the fine-tuned model's generations over the base's."""
    pair = _pair(finetuned, adapter)
    scorer = load_scorer(scorer_kind, pair, side="base")
    if scorer_kind == "vulnerable_code":
        tasks_id, tasks_ood = eval_tasks(seed, n_id=n // 2, n_ood=n - n // 2)
        prompts: list[str] = [t.request for t in (*tasks_id, *tasks_ood)]
    else:
        prompts = [q.text for q in free_form_questions()][:n]
    result = track_drift(
        pair, prompts, scorer, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    summary = {k: v for k, v in result.to_json().items() if not k.endswith("_scores")}
    typer.echo(json.dumps(summary, indent=2))


app.add_typer(probes_app, name="probes")
