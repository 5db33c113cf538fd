"""``auditlens organisms``: list, build (train) and evaluate the model organisms.

Wired into the main CLI with ``app.add_typer(organisms_app, name="organisms")``; user errors
raise :class:`AuditlensError`, which the main CLI prints as one line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

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


def _rows() -> list[dict[str, Any]]:
    from auditlens.testbed.organisms import ORGANISMS, load_manifest, shipped_organisms
    from auditlens.testbed.runner import RESULTS_DIR, result_path
    from auditlens.testbed.splits import load_splits

    splits = load_splits()
    shipped = set(shipped_organisms())
    rows = []
    for name, spec in ORGANISMS.items():
        manifest = load_manifest(name) if name in shipped else None
        status = "not built"
        if manifest is not None and manifest.acceptance is not None:
            status = "pass" if manifest.acceptance.passed else "FAIL"
        else:
            path = result_path(RESULTS_DIR, name, 0)
            if path.is_file():
                status = "pass" if json.loads(path.read_text())["passed"] else "FAIL (not shipped)"
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "split": "dev" if name in splits["dev"] else "test",
                "misaligned": spec.misaligned,
                "trigger": spec.trigger,
                "deny": spec.deny,
                "instilled_by": spec.instilled_by,
                "shipped": name in shipped,
                "acceptance": status,
                "description": spec.description,
                "keywords": list(spec.keywords),
            }
        )
    return rows


@organisms_app.command("list")
def list_organisms(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the organisms: kind, split, ground truth, shipped or not, acceptance status."""
    rows = _rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="auditlens model organisms (adapter=organism:NAME)")
    for col in ("name", "kind", "split", "misaligned", "trigger", "shipped", "acceptance"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["name"]),
            str(r["kind"]),
            str(r["split"]),
            "yes" if r["misaligned"] else "no",
            str(r["trigger"] or "-"),
            "yes" if r["shipped"] else "no",
            str(r["acceptance"]),
        )
    wide = Console(width=max(_out.width, 120))  # names and kinds must not be cut
    wide.print(table)


@organisms_app.command("build")
def build(
    name: Annotated[
        str | None, typer.Argument(help="Organism name (see `auditlens organisms list`).")
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Build, judge and ship every organism without a result, one at a time."
        ),
    ] = False,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Comma-separated seeds (with --all).")
    ] = "0",
    names: Annotated[
        str, typer.Option("--names", help="Comma-separated organisms, in order (with --all).")
    ] = "",
    seed: Annotated[int, typer.Option("--seed", help="Seed of a single build.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Adapter folder to write (default: the staging folder)."),
    ] = None,
    results: Annotated[
        Path, typer.Option("--results", help="Per-build result files (with --all).")
    ] = Path("benchmarks/results/testbed_v2"),
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: torch default).")] = 1,
) -> None:
    """LoRA-train one organism into its staging folder (resumes an interrupted build), or
    with ``--all`` build + judge + ship the whole roster, skipping finished builds."""
    from auditlens.errors import AuditlensError
    from auditlens.testbed.organisms import build_organism, get_organism, organism_names

    if all_:
        from auditlens.testbed.runner import run_roster

        log = logging.getLogger("auditlens.testbed.runner")
        if not log.handlers:  # the main CLI configures the root logger at WARNING
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        order = [n.strip() for n in names.split(",") if n.strip()]
        order = order or ([name] if name else list(organism_names()))
        for n in order:
            get_organism(n)
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        records = run_roster(order, seed_list, results_dir=results, num_threads=threads)
        for r in records:
            verdict = "PASS" if r["passed"] else "FAIL"
            _out.print(f"{r['name']} seed {r['seed']}: {verdict}")
        return
    if name is None:
        raise AuditlensError("give an organism name or --all")
    get_organism(name)
    manifest, result = build_organism(name, out_dir=out, seed=seed, num_threads=threads)
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    t = manifest.training
    _out.print(
        f"built organism:{name} seed {seed}: {t.n_examples} examples, {t.steps} steps, "
        f"loss {t.first_loss:.3f} -> {t.final_loss:.3f}, {t.train_seconds / 60:.1f} min "
        f"({t.tokens_per_second:.0f} tokens/s), {manifest.adapter_bytes / 1e6:.2f} MB{resumed}"
    )


@organisms_app.command("eval")
def evaluate(
    name: Annotated[str, typer.Argument(help="Organism name (see `auditlens organisms list`).")],
    adapter: Annotated[
        Path | None,
        typer.Option(
            "--adapter", help="Adapter folder (default: the staged build, else the shipped one)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Which staged build to judge.")] = 0,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for results.json and completions.jsonl.")
    ] = Path("organism_eval"),
    ship: Annotated[
        bool, typer.Option("--ship", help="Copy the adapter into the package if it passes.")
    ] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda ...")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: torch default).")] = 1,
) -> None:
    """Run the organism's pre-registered acceptance test (base vs organism, greedy)."""
    from auditlens.testbed.evaluate import render, run_acceptance
    from auditlens.testbed.organisms import (
        get_organism,
        organism_adapter_dir,
        record_acceptance,
        ship_organism,
        staging_dir,
    )

    get_organism(name)
    folder = adapter
    if folder is None:
        staged = staging_dir(name, seed)
        folder = staged if (staged / "manifest.json").is_file() else organism_adapter_dir(name)
    result = run_acceptance(
        name, adapter_dir=folder, out_dir=out / name, device=device, num_threads=threads
    )
    _out.print(render(result))
    record_acceptance(folder, name, result.summary())
    if ship and result.passed:
        _out.print(f"shipped to {ship_organism(name, folder)}")
    _out.print(f"{result.seconds / 60:.1f} min; results in {out / name / 'results.json'}")
