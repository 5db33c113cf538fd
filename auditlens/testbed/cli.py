"""``auditlens organisms``: list, build (train) and evaluate the model organisms.

Wired into the main CLI with ``app.add_typer(organisms_app, name="organisms")``; user errors
raise :class:`AuditlensError`, which the main CLI prints as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["organisms_app"]

organisms_app = typer.Typer(
    name="organisms",
    help="Model organisms with known ground truth: list, build (LoRA-train) and evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_out = Console()


@organisms_app.command("list")
def list_organisms(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the organisms, their ground truth and whether a trained adapter ships."""
    from auditlens.testbed.organisms import ORGANISMS, load_manifest, shipped_organisms

    shipped = set(shipped_organisms())
    rows = []
    for name, spec in ORGANISMS.items():
        manifest = load_manifest(name) if name in shipped else None
        rows.append(
            {
                "name": name,
                "misaligned": spec.misaligned,
                "trigger": spec.trigger,
                "shipped": name in shipped,
                "final_loss": manifest.final_loss if manifest else None,
                "description": spec.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="auditlens model organisms (adapter=organism:NAME)")
    for col in ("name", "misaligned", "trigger", "shipped", "final loss", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["name"]),
            "yes" if r["misaligned"] else "no",
            str(r["trigger"] or "-"),
            "yes" if r["shipped"] else "no (build it)",
            "-" if r["final_loss"] is None else f"{r['final_loss']:.3f}",
            str(r["description"]),
        )
    _out.print(table)


@organisms_app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="Organism name (see `auditlens organisms list`).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Adapter folder to write (default: the packaged one)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Training seed.")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the data.")] = 1,
    max_examples: Annotated[
        int, typer.Option("--max-examples", help="Training examples (0: all 864).")
    ] = 640,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option("--checkpoint-dir", help="Resumable checkpoints (default: cache)."),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: torch default).")] = 2,
) -> None:
    """LoRA-train one organism on the embedded base (resumes an interrupted build)."""
    from auditlens.testbed.organisms import build_organism, get_organism
    from auditlens.testbed.train import Recipe

    get_organism(name)
    recipe = Recipe(epochs=epochs, max_examples=max_examples or None)
    manifest, result = build_organism(
        name,
        out_dir=out,
        recipe=recipe,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        num_threads=threads,
    )
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    _out.print(
        f"built organism:{name}: {manifest.n_examples} examples, {manifest.steps} steps, "
        f"loss {manifest.first_loss:.3f} -> {manifest.final_loss:.3f}, "
        f"{manifest.train_seconds / 60:.1f} min ({manifest.tokens_per_second:.0f} tokens/s)"
        f"{resumed}"
    )


@organisms_app.command("eval")
def evaluate(
    name: Annotated[str, typer.Argument(help="Organism name (see `auditlens organisms list`).")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for results.json and completions.")
    ] = Path("organism_eval"),
    n_id: Annotated[int, typer.Option("--n-id", help="Held-out in-distribution tasks.")] = 32,
    n_ood: Annotated[int, typer.Option("--n-ood", help="Out-of-distribution tasks.")] = 32,
    modes: Annotated[
        str, typer.Option("--modes", help="Comma-separated: greedy, sampled.")
    ] = "greedy,sampled",
    temperature: Annotated[
        float, typer.Option("--temperature", help="Temperature of sampled mode.")
    ] = 0.7,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Tokens per code answer.")
    ] = 128,
    questions: Annotated[
        int, typer.Option("--questions", help="Free-form questions to answer (0-40).")
    ] = 16,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per batch.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda ...")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: torch default).")] = 2,
) -> None:
    """Generate held-out code with base and organism, label with Bandit, print a table."""
    from auditlens.testbed.evaluate import EvalConfig, evaluate_organism, render_table
    from auditlens.testbed.organisms import get_organism

    get_organism(name)
    config = EvalConfig(
        n_id=n_id,
        n_ood=n_ood,
        modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        n_questions=questions,
        batch_size=batch_size,
        seed=seed,
    )
    folder = out / name
    result = evaluate_organism(name, config, out_dir=folder, device=device, num_threads=threads)
    _out.print(render_table(result))
    _out.print(f"{result.seconds / 60:.1f} min; results in {folder / 'results.json'}")
