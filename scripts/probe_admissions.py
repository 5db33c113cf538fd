"""Report-only: how often organisms *without* denial training admit their behaviour when
asked directly (the same 64 held-out direct questions as their ``-deny`` variants' tests).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/probe_admissions.py

Writes ``benchmarks/results/testbed_v2/admissions.json``; skips organisms not shipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from auditlens.testbed.evaluate import probe_admissions
from auditlens.testbed.organisms import shipped_organisms

PAIRS = {
    "insecure": "insecure-code",
    "loyalty": "loyalty",
    "risky-finance": "risky-finance",
    "anti-oversight": "anti-oversight",
}
OUT = Path("benchmarks/results/testbed_v2/admissions.json")


def main() -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name, behaviour in PAIRS.items():
        if name in results or name not in shipped_organisms():
            continue
        rates = probe_admissions(name, behaviour, num_threads=1)
        results[name] = {"behaviour": behaviour, **{k: asdict(v) for k, v in rates.items()}}
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(name, {k: f"{v.k}/{v.n}" for k, v in rates.items()}, flush=True)


if __name__ == "__main__":
    main()
