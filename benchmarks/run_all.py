"""Run every benchmark, save its JSON and rewrite its table in ``docs/benchmarks.md``.

    python benchmarks/run_all.py                   # full run (make bench), ~20-35 min, 2 cores
    python benchmarks/run_all.py --quick           # smoke run, tiny sizes, 1 thread (~4 min)
    python benchmarks/run_all.py --only melbo,rss  # some of them
    python benchmarks/run_all.py --render-only     # re-render the tables from saved JSON
    python benchmarks/run_all.py --device cuda     # every benchmark on a GPU (--device passed on)

Each benchmark runs as a subprocess, so one that fails (or times out) is reported and the
others still run. A full run writes ``benchmarks/results/NAME.json`` and rewrites the text
between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->`` in
``docs/benchmarks.md``. ``--quick`` writes to ``build/bench-quick/`` (results and a copy of
the doc) so a smoke run never overwrites measured numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, cpu_name, markdown_table, run_streaming

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "benchmarks.md"
QUICK_DIR = ROOT / "build" / "bench-quick"
Row = tuple[str, str, str, bool | None]
"""One line of a summary table: metric, measured, target, met (None: no target)."""


@dataclass(frozen=True)
class Bench:
    """One benchmark script, its arguments for a full and a quick run, and its table."""

    script: str
    full: list[str]
    quick: list[str]
    estimate_s: float
    """Rough duration of the full run on a quiet 2-core CPU."""
    timeout_s: float
    summary: Callable[[dict[str, Any]], list[Row]]
    details: Callable[[dict[str, Any]], str | None] = lambda r: None


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _harvest(r: dict[str, Any]) -> list[Row]:
    return [
        ("harvest ÷ plain throughput (tokens/s)", _f(r["ratio"]), "≥ 0.9", r["ratio"] >= 0.9),
        ("harvest, both models, 4 sites (tokens/s)", _f(r["harvest_tokens_per_s"]), "", None),
        ("plain forward of both models (tokens/s)", _f(r["plain_tokens_per_s"]), "", None),
    ]  # fmt: skip


def _harvest_details(r: dict[str, Any]) -> str:
    return (
        f"Pair: {r['pair']}; {r['n_prompts']} prompts ({r['tokens']} tokens), batch "
        f"{r['batch_size']}, max length {r['max_length']}, best of {r['rounds']} round(s); "
        f"sites {', '.join(f'`{s}`' for s in r['sites'])}."
    )


def _crosscoder(r: dict[str, Any]) -> list[Row]:
    ours = r["ours"]
    rows: list[Row] = []
    if "speedup_vs_sae_lens" in r:
        s = r["speedup_vs_sae_lens"]
        rows.append(("speed-up vs sae-lens BatchTopK SAE (step time)", f"{s:.2f}×", "≥ 1×", s >= 1))
    frac = ours["fraction_of_matmul"]
    rows += [
        ("executed GFLOP/s ÷ fp32 matmul GFLOP/s", f"{frac:.0%}", "≥ 50%", frac >= 0.5),
        ("ours: tokens/s", f"{ours['tokens_per_second']:.0f}", "", None),
        ("ours: executed GFLOP/s", f"{ours['executed_gflops']:.1f}", "", None),
        ("fp32 matmul GFLOP/s (same run)", f"{r['matmul_gflops']:.1f}", "", None),
    ]
    if "sae_lens" in r:
        rows.append(("sae-lens: tokens/s", f"{r['sae_lens']['tokens_per_second']:.0f}", "", None))
    return rows


def _crosscoder_details(r: dict[str, Any]) -> str:
    s = r["shape"]
    return (
        f"Shape: batch {s['batch']}, d_in {s['d_in']}, {s['n_latents']} latents, k {s['k']}; "
        f"data: {r['data']}; medians of {r['timed_steps_per_method']} interleaved steps each."
    )


def _melbo(r: dict[str, Any]) -> list[Row]:
    s = r["speedup"]
    return [
        ("speed-up, batched vs one vector at a time (wall)", f"{s:.2f}×", "≥ 4×", s >= 4),
        ("speed-up in process CPU time", f"{r['cpu_time_speedup']:.2f}×", "", None),
        ("batched / one at a time (s, wall)",
         f"{r['seconds_batched']:.1f} / {r['seconds_one_at_a_time']:.1f}", "", None),
        ("max relative gap of the objective curves", f"{r['max_relative_objective_gap']:.1e}",
         "", None),
    ]  # fmt: skip


def _melbo_details(r: dict[str, Any]) -> str:
    return (
        f"{r['n_vectors']} vectors × {r['steps']} steps on {r['prompts']} prompts "
        f"({r['prompt_tokens']} tokens); source `{r['source']}`, target `{r['target']}`."
    )


def _rss(r: dict[str, Any]) -> list[Row]:
    mib = 2**20
    ratio = r["peak_ratio"]
    rows: list[Row] = [
        (f"peak RSS, {r['factor']}× ÷ 1× the prompts", _f(ratio), f"≤ {r['target']}",
         ratio <= r["target"]),
        ("peak RSS 1× / 10× (MiB)", f"{r['small']['peak_rss_bytes'] / mib:.0f} / "
         f"{r['large']['peak_rss_bytes'] / mib:.0f}", "", None),
        ("stored 1× / 10× (MiB)", f"{r['small']['stored_bytes'] / mib:.0f} / "
         f"{r['large']['stored_bytes'] / mib:.0f}", "", None),
    ]  # fmt: skip
    working = r.get("harvest_working_set_bytes") or []
    if len(working) == 2:
        rows.append(("harvest peak above warm RSS 1× / 10× (MiB)",
                     f"{working[0] / mib:.0f} / {working[1] / mib:.0f}", "", None))  # fmt: skip
    return [
        *rows,
        ("retained fraction (peak growth ÷ stored growth)", _f(r["retained_fraction"]), "", None),
    ]  # fmt: skip


def _rss_details(r: dict[str, Any]) -> str:
    small, large = r["small"], r["large"]
    return (
        f"Pair: {r['pair']}; {small['prompts']} vs {large['prompts']} prompts "
        f"({small['tokens']} vs {large['tokens']} tokens), batch {r['batch_size']}, max length "
        f"{r['max_length']}, shards of {r['shard_prompts']} prompts; sites "
        f"{', '.join(f'`{s}`' for s in r['sites'])}. RSS after loading the models "
        f"{small['rss_after_load_bytes'] / 2**20:.0f} MiB, after one warm-up forward pass "
        f"{small.get('rss_after_warmup_bytes', 0) / 2**20:.0f} MiB (the weights are "
        "memory-mapped and become resident when first used)."
    )


def _generation(r: dict[str, Any]) -> list[Row]:
    v = r["variants"]
    same_work = [k for k in v if k != "old" and v[k]["generations"] == v["old"]["generations"]]
    best = max(same_work, key=lambda k: v[k]["cpu_speedup_vs_old"])
    rows: list[Row] = [
        (f"speed-up of `{best}` over the old path (CPU time)",
         f"{v[best]['cpu_speedup_vs_old']:.2f}×", "≥ 2×", v[best]["cpu_speedup_vs_old"] >= 2),
        (f"speed-up of `{best}` (wall)", f"{v[best]['speedup_vs_old']:.2f}×", "", None),
        ("greedy texts changed vs the old path",
         str(sum(x["changed_vs_old"] for k, x in v.items() if k != "merged_ft")), "0",
         r["identical"]),
    ]  # fmt: skip
    return rows


def _generation_details(r: dict[str, Any]) -> str:
    rows = [
        [name, x["generations"], x["new_tokens"], x["median_wall_s"], x["median_cpu_s"],
         f"{x['cpu_speedup_vs_old']:.2f}×", x["changed_vs_old"]]
        for name, x in r["variants"].items()
    ]  # fmt: skip
    what = (f"{r['prompts']['code_tasks']} code tasks + {r['prompts']['questions']} questions"
            if r.get("workload", "behaviour") == "behaviour"
            else f"{r['prompts']['code_tasks']} code tasks × {r['steering_variants']} steering "
            "variants")  # fmt: skip
    return (
        f"Pair: {r['pair']}; {what}, both sides, greedy, {r['max_new_tokens']} new tokens; "
        f"rounds {r['rounds']} (order {', '.join(r['order'])}).\n\n"
        + markdown_table(
            [
                "variant",
                "generations",
                "new tokens",
                "wall s",
                "CPU s",
                "CPU vs old",
                "texts changed",
            ],
            rows,
        )
    )


def _teacher_forcing(r: dict[str, Any]) -> list[Row]:
    w = r["workloads"]
    scan = w["triggers"]["speedup"]["prefix"]
    gap = max(max(x["max_abs_logprob_gap"].values()) for x in w.values())
    return [
        ("speed-up of the trigger scan (answer window + shared prefix, wall)", f"{scan:.2f}×",
         "≥ 1.3×", scan >= 1.3),
        *[(f"speed-up of `{name}` (wall)", f"{x['speedup']['prefix']:.2f}×", "", None)
          for name, x in w.items() if name != "triggers"],
        ("largest absolute Δ log p vs the full-logits path", f"{gap:.1e}", "≤ 1e-3", gap <= 1e-3),
    ]  # fmt: skip


def _teacher_forcing_details(r: dict[str, Any]) -> str:
    from teacher_forcing import table

    return (
        f"Pair: {r['pair']}; batches of {r['batch_size']}, both sides, rounds {r['rounds']} "
        f"(order {', '.join(r['order'])}).\n\n" + table(r)
    )


def _judge(r: dict[str, Any]) -> list[Row]:
    return [
        ("time saved by the judge pool (serial − overlapped, s)", f"{r['saved_s']:.2f}", "",
         None),
        ("the judge alone, in-process (s)", f"{r['judge_in_process_s']:.3f}", "", None),
        ("judge per completion (ms)", f"{r['judge_ms_per_text']:.2f}", "", None),
        ("pool start-up: spawn + imports (s)", f"{r['pool_startup_s']:.2f}", "", None),
        ("labels identical", str(r["labels_identical"]), "True", r["labels_identical"]),
    ]  # fmt: skip


def _judge_details(r: dict[str, Any]) -> str:
    return (
        f"{r['generations']} generations ({r['new_tokens']} new tokens, token budget "
        f"{r['token_budget']} per batch, so several batches), {r['rounds']} interleaved rounds: "
        f"serial {r['serial_s']} s, overlapped {r['pool_s']} s."
    )


def _audit(r: dict[str, Any]) -> list[Row]:
    if "error" in r:
        return [("wall time", "failed", "≤ 600 s", False)]
    met = None if r.get("tiny") else r["wall_s"] <= r["target_s"]
    return [("wall time, `auditlens audit --budget fast`", f"{r['wall_s']:.0f} s", "≤ 600 s", met)]


def _audit_details(r: dict[str, Any]) -> str | None:
    if "error" in r:
        return f"Error: {r['error']}"
    steps = [[name, f"{s:.1f}"] for name, s in r.get("steps_s", {}).items()]
    steps.append(["outside the steps (start-up, model loading, report)", r["outside_steps_s"]])
    return f"Pair: {r.get('pair')}; {r.get('n_findings')} findings.\n\n" + markdown_table(
        ["part", "seconds"], steps
    )


BENCHES: dict[str, Bench] = {
    "harvest": Bench(
        "harvest.py", ["--adapter", "organism:insecure"],
        ["--adapter", "organism:insecure", "--prompts", "8", "--rounds", "1",
         "--max-length", "32", "--batch-size", "4"],
        120, 900, _harvest, _harvest_details,
    ),
    "crosscoder": Bench(
        "crosscoder.py", [],
        ["--n-latents", "512", "--batch", "256", "--steps", "2", "--rounds", "1", "--warmup", "1",
         "--pool", "2"],
        120, 900, _crosscoder, _crosscoder_details,
    ),
    "melbo": Bench(
        "melbo.py", [], ["--vectors", "2", "--steps", "3"], 600, 1500, _melbo, _melbo_details
    ),
    "rss": Bench(
        "rss.py", [], ["--prompts", "4", "--max-length", "32"], 180, 1200, _rss, _rss_details
    ),
    "generation": Bench(
        "generation.py", ["--threads", "1", "--rounds", "2"], ["--quick", "--threads", "1"],
        900, 2400, _generation, _generation_details,
    ),
    "generation_adversary": Bench(
        "generation.py", ["--workload", "adversary", "--threads", "1"],
        ["--workload", "adversary", "--quick", "--threads", "1"],
        600, 1800, _generation, _generation_details,
    ),
    "teacher_forcing": Bench(
        "teacher_forcing.py", ["--threads", "1"], ["--quick", "--threads", "1"],
        1150, 2400, _teacher_forcing, _teacher_forcing_details,
    ),
    "judge": Bench(
        "judge.py", ["--threads", "1", "--tasks", "8", "--new-tokens", "48"],
        ["--tasks", "2", "--new-tokens", "8", "--rounds", "1"],
        120, 900, _judge, _judge_details,
    ),
    "audit_fast": Bench(
        "audit_fast.py", ["--timeout", "1500"], ["--tiny", "--timeout", "600"],
        600, 1600, _audit, _audit_details,
    ),
}  # fmt: skip


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def facts(r: dict[str, Any]) -> dict[str, Any]:
    """CPU, cores, torch threads, date and load, from whichever fields a result has."""
    m: dict[str, Any] = r["machine"] if isinstance(r.get("machine"), dict) else {}
    ra = r.get("run_all", {})
    before = _first(
        m.get("load_avg_1m_before"),
        (m.get("load_average_before") or [None])[0],
        (r.get("loadavg_before") or [None])[0],
    )
    load, when = (before, "start") if before is not None else (m.get("load_avg_1m"), "end")
    cpu = m.get("cpu") or ra.get("cpu") or "a CPU (model not recorded)"
    date = m.get("date") or str(r.get("date", ""))[:10] or ra.get("date")
    return {
        "cpu": cpu if cpu not in ("x86_64", "aarch64") else f"an {cpu} CPU (model not recorded)",
        "cores": _first(m.get("cores"), m.get("logical_cpus"), r.get("cpu_count"), ra.get("cores")),
        "torch_threads": _first(m.get("torch_threads"), r.get("torch_threads")),
        "date": date or "(date not recorded)",
        "load": load,
        "load_when": when,
    }


def render(name: str, path: Path) -> str:
    """The markdown between the benchmark's markers, from its result JSON."""
    bench = BENCHES[name]
    if not path.is_file():
        return f"_Not measured yet: run `python benchmarks/run_all.py --only {name}`._"
    r = json.loads(path.read_text())
    f = facts(r)
    rows = [
        [metric, measured, target or "—", "" if met is None else ("yes" if met else "**no**")]
        for metric, measured, target, met in bench.summary(r)
    ]
    parts = [markdown_table(["metric", "measured", "target", "met?"], rows), ""]
    details = bench.details(r)
    if details:
        parts += [details, ""]
    line = (
        f"Measured {f['date']} on {f['cpu']}, {f['cores']} cores, "
        f"{f['torch_threads']} torch thread(s)"
    )
    if f["load"] is not None:
        line += f", load average {f['load']:.1f} at the {f['load_when']}"
    line += f" (`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`)."
    cores = f["cores"] or 1
    smoke = r.get("run_all", {}).get("quick") or r.get("tiny")
    if f["load"] is not None and f["load"] > 0.5 * cores and not smoke:
        line += (
            f" **Measured under load** (load average {f['load']:.1f} on {cores} cores, other "
            "jobs running): treat the figures as noisy; `make bench` on a quiet machine "
            "replaces them."
        )
    if smoke:
        line += " **Smoke run with tiny sizes (`--quick`): not a measurement.**"
    if r.get("run_all", {}).get("failed") and "error" not in r:
        line += f" **The last run failed:** {r['run_all']['failed']}."
    parts.append(line)
    return "\n".join(parts)


def result_path(results: Path, name: str) -> Path:
    """``results/NAME.json``, else the first ``results/NAME_*.json`` (e.g. ``melbo_1thread``)."""
    main = results / f"{name}.json"
    if main.is_file():
        return main
    others = sorted(results.glob(f"{name}_*.json"))
    return others[0] if others else main


def replace_block(text: str, name: str, body: str) -> str:
    """Replace the text between ``<!-- bench:NAME:start -->`` and its end marker."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    block = f"{start}\n{body}\n{end}"
    if not pattern.search(text):
        print(f"warning: no {start} marker in the doc; appending a section", file=sys.stderr)
        return text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    return pattern.sub(lambda _: block, text, count=1)


def run_one(
    name: str, quick: bool, results: Path, device: str | None = None
) -> tuple[bool, str, float]:
    """Run one benchmark; return (ok, message, wall seconds)."""
    bench = BENCHES[name]
    out = results / f"{name}.json"
    stamp = out.stat().st_mtime if out.exists() else None
    cmd = [sys.executable, str(HERE / bench.script), *(bench.quick if quick else bench.full)]
    cmd += ["--out", str(out)]
    if device:
        cmd += ["--device", device]
    env = {"OMP_NUM_THREADS": "1", "AUDITLENS_PROGRESS": "0"} if quick else {}
    timeout = 900.0 if quick else bench.timeout_s
    done = run_streaming(cmd, timeout=timeout, prefix=f"  {name}| ", env=env)
    fresh = out.exists() and out.stat().st_mtime != stamp
    try:
        r = json.loads(out.read_text()) if fresh else {}
    except (OSError, json.JSONDecodeError) as err:
        fresh, r = False, {}
        done.tail.append(f"unreadable {out.name}: {err}")
    ok = done.returncode == 0 and fresh
    message = "ok" if ok else r.get("error") or done.last_error
    if done.returncode == 0 and not fresh:
        message = f"exited 0 but wrote no {out.name}"
    if fresh:  # add what run_all knows to the benchmark's own JSON
        r["run_all"] = {
            "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd),
            "quick": quick,
            "wall_s": round(done.wall_s, 1),
            "returncode": done.returncode,
            "date": time.strftime("%Y-%m-%d"),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            **({} if ok else {"failed": message}),
        }
        out.write_text(json.dumps(r, indent=1) + "\n")
    return ok, message, done.wall_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 thread")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {list(BENCHES)}")
    parser.add_argument("--render-only", action="store_true", help="only rewrite the doc tables")
    parser.add_argument("--results", default=None, help="results folder")
    parser.add_argument("--docs", default=None, help="markdown file whose tables are rewritten")
    parser.add_argument("--device", default=None, help="passed to every benchmark (cpu, cuda)")
    args = parser.parse_args()
    names = list(BENCHES) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    results = (
        Path(args.results) if args.results else (QUICK_DIR / "results" if args.quick else RESULTS)
    )
    docs = Path(args.docs) if args.docs else (QUICK_DIR / "benchmarks.md" if args.quick else DOCS)
    results.mkdir(parents=True, exist_ok=True)
    if args.quick and not args.docs:  # a fresh copy of the doc for the smoke run's tables
        shutil.copyfile(DOCS, docs)
    status: dict[str, tuple[bool, str, float]] = {}
    if not args.render_only:
        total = sum(BENCHES[n].estimate_s for n in names)
        kind = "quick smoke run" if args.quick else "full run"
        print(f"{kind}: {', '.join(names)}; results -> {results}, tables -> {docs}")
        if not args.quick:
            print(f"estimated ~{total / 60:.0f} min on a quiet 2-core CPU", flush=True)
        t0 = time.perf_counter()
        for i, name in enumerate(names, 1):
            est = "" if args.quick else f", est. ~{BENCHES[name].estimate_s / 60:.0f} min"
            elapsed = (time.perf_counter() - t0) / 60
            print(f"[{i}/{len(names)}] {name} (elapsed {elapsed:.1f} min{est})", flush=True)
            status[name] = run_one(name, args.quick, results, args.device)
            ok, message, wall = status[name]
            print(f"[{i}/{len(names)}] {name}: {'ok' if ok else 'FAILED: ' + message} "
                  f"({wall:.0f} s)", flush=True)  # fmt: skip
    text = docs.read_text() if docs.exists() else ""
    for name in names:
        text = replace_block(text, name, render(name, result_path(results, name)))
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)
    print(f"tables rewritten in {docs}")
    if status:
        print("\nsummary:")
        for name, (ok, message, wall) in status.items():
            word = "ok    " if ok else "FAILED"
            print(f"  {name:<11} {word} {wall:7.0f} s  {'' if ok else message}")
    return 0 if all(ok for ok, _, _ in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
