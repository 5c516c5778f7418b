"""Which contenders of a precision group fault together: each subset in a fresh process.

    python benchmarks/precision_bisect.py --out DIR

A device fault (an illegal address) is sticky for the process, so a group that
faults loses every number; this runs one group per subset of contenders in its
own process and records which subsets finish and, for those, the timings
(JSON lines in DIR/bisect.jsonl). A diagnostic of benchmarks/precision.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SUBSETS = {
    "fp32": [
        ["gpubp"],
        ["gemm_gpubp"],
        ["gpubp", "gemm_gpubp"],
        ["gpubp", "torch_eager"],
        ["gpubp", "torch_graph"],
        ["torch_eager", "torch_graph", "gemm_torch"],
    ],
    "bf16": [["gpubp", "torch_eager", "torch_graph"], ["gemm_gpubp", "gemm_torch"]],
    "tf32": [["gpubp", "torch_eager", "torch_graph"]],
    "fp16": [["gpubp", "torch_eager", "torch_graph"]],
}


def one(precision: str, names: list[str], net_key: str) -> dict:
    """One group of ``names`` at ``precision`` on the 4096 (or 784) net, in this process."""
    from benchmarks import precision as section
    from benchmarks.mlp import init_params
    from benchmarks.precision_steps import tf32_switches

    net = section.WIDE if net_key == "wide" else section.MEDIUM
    plan = section.make_plan(True, accuracy=False)
    block = next(b for n, b in plan.nets if n.key == net.key)
    params = init_params(net.config)
    with tf32_switches(precision):
        contenders = {n: b for n, b in section._contenders(net, precision, "cuda", params).items() if n in names}
        entry = section.time_group(contenders, plan, block, True)
    return {"precision": precision, "net": net.key, "names": names, "brief": section.brief(entry), "entry": entry}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--one", nargs=3, metavar=("PRECISION", "NAMES", "NET"))
    args = parser.parse_args()
    if args.one:
        precision, names, net = args.one
        print(json.dumps(one(precision, names.split(","), net), default=str))
        return 0
    out = Path(args.out) / "bisect.jsonl"
    for precision, subsets in SUBSETS.items():
        for names in subsets:
            for net in ("wide", "medium") if names[0] == "gpubp" and len(names) == 3 else ("wide",):
                command = [sys.executable, __file__, "--out", args.out, "--one", precision, ",".join(names), net]
                done = subprocess.run(command, capture_output=True, text=True, timeout=120)
                last = done.stdout.strip().splitlines()[-1:] or [""]
                record = {"precision": precision, "net": net, "names": names, "rc": done.returncode}
                if done.returncode == 0 and last[0].startswith("{"):
                    record.update(json.loads(last[0]))
                else:
                    record["stderr"] = done.stderr[-3000:]
                print(precision, net, names, "rc", done.returncode, record.get("brief", ""), flush=True)
                with out.open("a") as f:
                    f.write(json.dumps(record, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
