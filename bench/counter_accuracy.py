#!/usr/bin/env python3
"""Counting accuracy of tellijn-counter against tellijn-scene's exact truth (bench/counter.sh).

On seeds never used for tuning (9001-9010 by default; tuning used seeds <= 200), per scenario
and direction: accuracy = 1 - sum_seeds |counted - truth| / sum_seeds truth (errors of different
seeds do not cancel; within one seed an extra count and a missed one of the same direction do),
and the per-seed minimum of 1 - |counted - truth| / truth (seeds with truth 0 in a direction are
left out of that minimum; their counts still enter the sum); both floored at 0. Each stream raw, and through a real
H.264 round trip (libx264 veryfast, CRF 23, decoded back to Y4M by ffmpeg). Plus the net drift
over a simulated hour: one 3600 s `mixed` scene (raw), |(in-out) counted - (in-out) truth| /
(in+out) truth.

Prints rows of the BENCHMARKS.md table (| benchmark | Tellijn | peer / detail | ratio | target |).
Usage: counter_accuracy.py --scene BIN --counter BIN [--seeds 9001-9010] [--seconds 60]
       [--drift-seconds 3600] [--jobs 2] [--tmp DIR]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

SCENARIOS = ["single", "groups", "counterflow", "turnback", "lighting", "mixed"]
TARGETS = {"single": 0.98, "groups": 0.95, "mixed": 0.95}
H264 = ("ffmpeg -nostdin -hide_banner -loglevel error -f yuv4mpegpipe -i - -c:v libx264 "
        "-preset veryfast -crf 23 -f h264 - | ffmpeg -nostdin -hide_banner -loglevel error "
        "-f h264 -i - -f yuv4mpegpipe -pix_fmt yuv420p -")


def run_one(a, scenario, seed, seconds, codec):
    """Renders one scene, optionally through H.264, counts it; returns truth and counts."""
    base = os.path.join(a.tmp, f"{scenario}-{seed}-{seconds}-{codec}")
    truth, conf = base + ".truth.json", base + ".toml"
    q = shlex.quote
    scene = f"{q(a.scene)} --scenario {scenario} --seconds {seconds} --seed {seed}"
    # Truth and config first: the counter reads its config as it starts, beside the renderer.
    subprocess.run(f"{scene} --truth-only --truth {q(truth)} --counter-config {q(conf)}",
                   shell=True, check=True, stdout=subprocess.DEVNULL)
    cmd = scene
    if codec == "h264":
        cmd += " | " + H264
    cmd += f" | {q(a.counter)} --replay --config {q(conf)}"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"counter_accuracy: failed ({p.returncode}): {cmd}\n{p.stderr[-2000:]}")
    counted = {"in": 0, "out": 0}
    status = None
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        ev = json.loads(line)
        if "status" in ev:
            status = ev["status"]
        elif ev.get("line") == "main" and ev.get("dir") in counted:
            counted[ev["dir"]] += 1
    t = json.load(open(truth))
    for f in (truth, conf):
        os.remove(f)
    if status is None or status.get("processed") != t["frames"]:
        sys.exit(f"counter_accuracy: {scenario} seed {seed} {codec}: processed "
                 f"{status and status.get('processed')} of {t['frames']} frames")
    return {"truth": {"in": t["in"], "out": t["out"]}, "counted": counted}


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f} %"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", required=True)
    ap.add_argument("--counter", required=True)
    ap.add_argument("--seeds", default="9001-9010")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--drift-seconds", type=int, default=3600)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    if min(seeds) <= 200:
        sys.exit("counter_accuracy: seeds <= 200 were used for tuning")
    a.tmp = a.tmp or tempfile.mkdtemp(prefix="counter-acc-")

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        drift = pool.submit(run_one, a, "mixed", seeds[0], a.drift_seconds, "raw") \
            if a.drift_seconds > 0 else None
        jobs = {(s, seed, c): pool.submit(run_one, a, s, seed, a.seconds, c)
                for c in ("raw", "h264") for s in SCENARIOS for seed in seeds}
        res = {k: f.result() for k, f in jobs.items()}
        drift = drift.result() if drift else None

    span = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    for codec in ("raw", "h264"):
        for s in SCENARIOS:
            tot = {"in": [0, 0, 0], "out": [0, 0, 0]}  # truth, counted, sum |err|
            mins = {"in": None, "out": None}
            for seed in seeds:
                r = res[(s, seed, codec)]
                for d in ("in", "out"):
                    t, c = r["truth"][d], r["counted"][d]
                    tot[d][0] += t
                    tot[d][1] += c
                    tot[d][2] += abs(c - t)
                    if t > 0:
                        acc = max(0.0, 1 - abs(c - t) / t)
                        mins[d] = acc if mins[d] is None else min(mins[d], acc)
            acc = {d: max(0.0, 1 - tot[d][2] / tot[d][0]) if tot[d][0] else None for d in ("in", "out")}
            worst = min((x for x in acc.values() if x is not None), default=None)
            target = TARGETS.get(s)
            if target is None:
                tgt = "— (reported)"
            else:
                met = worst is not None and worst >= target
                tgt = f"≥ {100 * target:.0f} % per direction: {'met' if met else 'MISSED'}"
            name = "raw" if codec == "raw" else "H.264 CRF 23 round trip"
            print(f"| accuracy, {s}, {name} ({len(seeds)} × {a.seconds} s, {span}) "
                  f"| in {pct(acc['in'])} (per-seed min {pct(mins['in'])}), "
                  f"out {pct(acc['out'])} (per-seed min {pct(mins['out'])}) "
                  f"| truth {tot['in'][0]} in / {tot['out'][0]} out; counted {tot['in'][1]} in / "
                  f"{tot['out'][1]} out; Σ abs. error {tot['in'][2]} in / {tot['out'][2]} out "
                  f"| — | {tgt} |")
    if drift:
        t, c = drift["truth"], drift["counted"]
        net = abs((c["in"] - c["out"]) - (t["in"] - t["out"])) / (t["in"] + t["out"])
        print(f"| net drift over a simulated hour (mixed, {a.drift_seconds} s, seed {seeds[0]}, raw) "
              f"| {100 * net:.2f} % of crossings "
              f"| truth {t['in']} in / {t['out']} out (net {t['in'] - t['out']}); counted "
              f"{c['in']} in / {c['out']} out (net {c['in'] - c['out']}) "
              f"| — | ≤ 1 %: {'met' if net <= 0.01 else 'MISSED'} |")


if __name__ == "__main__":
    main()
