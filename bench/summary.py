"""Turn the cells of a run into its result: medians over repeats, ratios against the
baselines measured in the same run, notes about noise, and the JSON file."""

from __future__ import annotations

import statistics
from pathlib import Path

import orjson

from bench.scenarios import Scenario

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def _median_cell(samples: list[dict]) -> dict:
    if len(samples) == 1:
        return dict(samples[0])
    out: dict = {}
    for key in samples[0]:
        vals = [s.get(key) for s in samples]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out[key] = round(statistics.median(nums), 4) if len(nums) == len(vals) else vals[-1]
    errs = [s["errors"] for s in samples if s.get("errors")]
    if errs:
        out["errors"] = "; ".join(errs)
    return out


# Metrics divided by the same metric of direct / nginx / floor ("x" ratios), and latency metrics
# from which their value is subtracted ("added" milliseconds).
RATIO_KEYS = ("rps", "streams_per_s", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_us_per_chunk",
              "ttfb_p50_ms", "ttfb_p99_ms", "frame_delay_p50_ms", "frame_delay_p99_ms",
              "total_p50_ms")
ADDED_KEYS = ("p50_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p99_ms", "ttff_p50_ms",
              "frame_delay_p50_ms", "frame_delay_p99_ms", "gap_excess_p99_ms", "total_p50_ms")
BASELINES = ("direct", "nginx", "floor")


def add_ratios(sc: Scenario, per_target: dict[str, dict]) -> None:
    for cell in per_target.values():
        ratios: dict[str, dict[str, float]] = {}
        added: dict[str, dict[str, float]] = {}
        for base in BASELINES:
            ref = per_target.get(base)
            if not ref:
                continue
            for key in RATIO_KEYS:
                a, b = cell.get(key), ref.get(key)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
                    ratios.setdefault(key, {})[base] = round(a / b, 4)
            if sc.driver in ("sse", "load", "rate"):
                for key in ADDED_KEYS:
                    a, b = cell.get(key), ref.get(key)
                    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                        added.setdefault(key, {})[base] = round(a - b, 4)
        cell["ratio"] = ratios
        if added:
            cell["added_ms"] = added


def add_ref_ratios(scenarios: list[dict]) -> None:
    """For scenarios with a `ref` (the same target's cell in a sibling scenario: the
    passthrough path for translated ones, the plain route for failover and weighted, the
    small streams alone for head-of-line, valid requests alone for the key flood), add
    `vs_ref`: ratios and added milliseconds against that cell. In the key flood the valid
    requests are the companion driver, so that is what is compared."""
    by_id = {sc["id"]: sc for sc in scenarios}
    for sc in scenarios:
        ref_sc = by_id.get(sc.get("ref") or "")
        if ref_sc is None:
            continue
        for name, cell in sc["results"].items():
            ref = ref_sc["results"].get(name)
            if not ref:
                continue
            mine = cell.get("companion") if sc["group"] == "authflood" else cell
            if not mine:
                continue
            ratio, added = {}, {}
            for key in RATIO_KEYS:
                a, b = mine.get(key), ref.get(key)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
                    ratio[key] = round(a / b, 4)
            for key in ADDED_KEYS:
                a, b = mine.get(key), ref.get(key)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                    added[key] = round(a - b, 4)
            cell["vs_ref"] = {"ref": ref_sc["id"], "ratio": ratio, "added_ms": added}


# Above this many busy cores that belong to none of our processes, a cell is flagged.
NOISE_OTHER_CORES = 0.15


# A cell whose target read this many pages back from disk, or during which the machine
# stalled this long on memory, ran under memory pressure from other processes.
NOISE_MAJOR_FAULTS = 50
NOISE_MEMORY_STALL_MS = 100.0


def noise_notes(result: dict) -> list[str]:
    flagged, memory = [], []
    for sc in result["scenarios"]:
        for name, cell in sc["results"].items():
            other = cell.get("other_cores")
            if isinstance(other, (int, float)) and other > NOISE_OTHER_CORES:
                flagged.append(f"{sc['id']}/{name} ({other:.2f})")
            faults, stall = cell.get("major_faults") or 0, cell.get("memory_stall_ms") or 0
            if faults > NOISE_MAJOR_FAULTS or stall > NOISE_MEMORY_STALL_MS:
                memory.append(f"{sc['id']}/{name} ({faults} major faults, "
                              f"{stall:.0f} ms stalled)")
    notes = []
    dropped = [f"{sc['id']}/{name} ({cell['ledger_dropped']})"
               for sc in result["scenarios"] for name, cell in sc["results"].items()
               if (cell.get("ledger_dropped") or 0) > 0]
    if dropped:
        notes.append("ledger rows dropped (/health ledger.dropped during the cell, "
                     "warm-up included): " + ", ".join(dropped[:12])
                     + (" ..." if len(dropped) > 12 else ""))
    if memory:
        notes.append("memory pressure from other processes (pages read back from disk; CPU "
                      "figures of these cells are inflated by fault handling): "
                      + ", ".join(memory[:12]) + (" ..." if len(memory) > 12 else ""))
    if flagged:
        notes.append(f"background load above {NOISE_OTHER_CORES} cores from other processes "
                     "during: " + ", ".join(flagged[:12]) + (" ..." if len(flagged) > 12 else ""))
    return notes


def save(result: dict, out: Path | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if out is None:
        stamp = result["timestamp"].replace("-", "").replace(":", "")
        commit = (result.get("git") or {}).get("commit") or "nogit"
        out = RESULTS_DIR / f"{stamp}-{result['mode']}-{commit[:7]}.json"
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(out)
    return out
