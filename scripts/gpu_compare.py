#!/usr/bin/env python3
"""Compares two smoke runs' summary.json (CPU fast path vs a device, or vs --backend candle):
result rows and final metrics, same tolerances as tests/integration/backends_smoke.rs (relative
5e-3, or 4 percentage points for percentages of a small test set; the paths differ by f32
summation order only). Prints a JSON report; exit status 1 when anything is beyond tolerance."""
import json
import sys

RTOL, PCT_ATOL = 5e-3, 4.0
TIME_UNITS = {"ms", "×"}


def numbers(summary):
    out = {}
    for r in summary.get("rows", []):
        unit = r.get("unit", "")
        if unit in TIME_UNITS:
            continue
        for i, v in enumerate(r.get("ours", {}).get("per_seed", [])):
            out[f"row {r['name']} [{i}]"] = (v, unit.startswith("%"))
    for k, m in summary.get("metrics", {}).items():
        for i, v in enumerate(m.get("per_seed", []) if isinstance(m, dict) else []):
            out[f"metric {k} [{i}]"] = (v, "_pct" in k)
    return out


def main(ref_path, dev_path):
    ref, dev = (numbers(json.load(open(p))) for p in (ref_path, dev_path))
    bad, worst = [], (0.0, "")
    for k in sorted(set(ref) | set(dev)):
        if k not in ref or k not in dev:
            bad.append(f"{k}: only in {'device' if k in dev else 'cpu'}")
            continue
        (a, pct), (b, _) = ref[k], dev[k]
        if a is None or b is None:
            if a != b:
                bad.append(f"{k}: cpu {a} vs device {b}")
            continue
        d = abs(a - b)
        if pct:
            ok = d <= PCT_ATOL
        else:
            rel = d / max(abs(a), abs(b), 1e-6)
            if rel > worst[0]:
                worst = (rel, k)
            ok = rel <= RTOL or d <= 1e-6
        if not ok:
            bad.append(f"{k}: cpu {a} vs device {b}")
    print(json.dumps({"compared": len(ref), "beyond_tolerance": bad,
                      "worst": f"largest relative difference {worst[0]:.2e} at {worst[1]}"},
                     indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: gpu_compare.py CPU_SUMMARY.json DEVICE_SUMMARY.json")
    sys.exit(main(sys.argv[1], sys.argv[2]))
