#!/usr/bin/env python3
"""Runs the bench/ workloads for mproc, CPython's multiprocessing and raw syscalls
side by side, and prints one table (standard library only; builds nothing).

    python3 bench/run.py --build BUILD_DIR            # finds bench_mproc and bench_raw there
    python3 bench/run.py --mproc PATH --raw PATH      # or name them
    python3 bench/run.py --build BUILD_DIR --quick    # 1 run each, small sizes
    python3 bench/run.py --build BUILD_DIR --only pipe_pingpong_64 --only start_fork

Every run of a workload is a separate process invocation. The impls take turns
within each repetition, so that a slow spell of the machine hits them alike.
Writes bench/results/latest.json and bench/results/latest.md.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Table order. A workload an impl lists that is not here goes at the end.
WORKLOADS = [
    "start_fork",
    "start_spawn",
    "pipe_pingpong_64",
    "pipe_oneway_1m",
    "queue_64",
    "queue_1m",
    "queue_4x4",
    "pool_apply_async_rtt",
    "pool_map_100k_cs1",
    "pool_map_100k",
    "pool_imap_unordered_100k_cs1",
    "pool_map_cpu",
    "pool_start_fork",
    "pool_start_spawn",
    "pool_imap_mem_10m",
]

IMPLS = ["mproc", "cpython", "raw"]
TITLES = {"mproc": "mproc", "cpython": "CPython", "raw": "raw"}


def find_exe(build, name):
    """build/bench/NAME, build/NAME, or one level of configuration below (Release/...)."""
    if not build:
        return None
    for cand in (os.path.join(build, "bench", name), os.path.join(build, name)):
        if os.access(cand, os.X_OK) and os.path.isfile(cand):
            return cand
    for sub in ("bench", ""):
        d = os.path.join(build, sub)
        if os.path.isdir(d):
            for cfg in sorted(os.listdir(d)):
                cand = os.path.join(d, cfg, name)
                if os.access(cand, os.X_OK) and os.path.isfile(cand):
                    return cand
    return None


def list_workloads(cmd):
    out = subprocess.run(cmd + ["--list"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("%s --list failed: %s" % (shlex.join(cmd), out.stderr.strip()))
    return [w.strip() for w in out.stdout.splitlines() if w.strip()]


def run_once(cmd, workload, quick, timeout):
    """One invocation: the JSON record for workload, or raises with the reason."""
    argv = cmd + (["--quick"] if quick else []) + [workload]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after %gs" % timeout)
    rec = None
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("workload") == workload:
                rec = obj
    if out.returncode != 0 or rec is None:
        err = out.stderr.strip().splitlines()
        raise RuntimeError("exit %d%s" % (out.returncode, (": " + err[-1]) if err else ""))
    return rec


def fmt(v, unit):
    if v is None:
        return "—"
    if unit in ("msg/s", "tasks/s"):
        if v >= 1e6:
            return "%.3gM" % (v / 1e6)
        if v >= 1e3:
            return "%.3gk" % (v / 1e3)
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.3g" % v


def cell(s, unit):
    if s is None:
        return "—"
    if s.get("median") is None:
        return "failed"
    text = fmt(s["median"], unit)
    if len(s["values"]) > 1:
        text += " (%s–%s)" % (fmt(s["min"], unit), fmt(s["max"], unit))
    return text


def ratio(mine, other, better):
    """> 1 means mproc is better, whichever way the unit goes."""
    if mine is None or other is None or mine.get("median") is None or \
            other.get("median") is None or mine["median"] <= 0 or other["median"] <= 0:
        return None
    if better == "lower":
        return other["median"] / mine["median"]
    return mine["median"] / other["median"]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = " ".join((platform.system(), platform.release(), platform.machine()))
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    commit = None
    try:
        r = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            commit = r.stdout.strip()
    except OSError:
        pass
    return {
        "uname": uname,
        "cpu": cpu,
        "nproc": nproc,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
    }


def render(rows, header, markdown):
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(" --- " if i == 0 else " ---: "
                                    for i in range(len(header))) + "|")
        for r in rows:
            lines.append("| " + " | ".join(r) + " |")
    else:
        def line(r):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
        lines.append(line(header))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(line(r) for r in rows)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", help="a build directory holding bench_mproc and bench_raw "
                    "(default: build/release or build in the source tree)")
    ap.add_argument("--mproc", help="path of bench_mproc (default: found under --build)")
    ap.add_argument("--raw", help="path of bench_raw (default: found under --build)")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python running bench_python.py (default: this one)")
    ap.add_argument("-r", "--repeat", type=int, help="runs per workload and impl (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 run each and small sizes")
    ap.add_argument("--only", action="append", default=[], metavar="WORKLOAD",
                    help="run only this workload (repeatable, or comma-separated)")
    ap.add_argument("--impl", action="append", default=[], choices=IMPLS,
                    help="run only this impl (repeatable)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per invocation")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="where latest.json and latest.md go (default bench/results)")
    args = ap.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)

    if not args.build and not (args.mproc and args.raw):
        # The release preset's tree (CMakePresets.json), else build/.
        for cand in (os.path.join(REPO, "build", "release"), os.path.join(REPO, "build")):
            if find_exe(cand, "bench_mproc") or find_exe(cand, "bench_raw"):
                args.build = cand
                print("run.py: using the build in %s" % cand, file=sys.stderr)
                break
    exes = {"mproc": args.mproc or find_exe(args.build, "bench_mproc"),
            "raw": args.raw or find_exe(args.build, "bench_raw")}
    cmds = {"cpython": [args.python, os.path.join(HERE, "bench_python.py")]}
    for impl in ("mproc", "raw"):
        if exes[impl]:
            cmds[impl] = [os.path.abspath(exes[impl])]
        else:
            print("run.py: no bench_%s found (give --build or --%s); its column stays empty"
                  % (impl, impl), file=sys.stderr)
    impls = [i for i in IMPLS if i in cmds and (not args.impl or i in args.impl)]

    have = {}
    for impl in impls:
        try:
            have[impl] = set(list_workloads(cmds[impl]))
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
            print("run.py: %s: %s" % (impl, e), file=sys.stderr)
            have[impl] = set()
    known = set().union(*have.values()) if have else set()
    order = [w for w in WORKLOADS if w in known] + sorted(known - set(WORKLOADS))
    only = [w for o in args.only for w in o.split(",") if w]
    for w in only:
        if w not in known:
            ap.error("--only %s: no impl has that workload (they have: %s)"
                     % (w, ", ".join(order)))
    if only:
        order = [w for w in order if w in only]

    # results[workload][impl] = {"values": [...], "errors": [...], unit, better, params}
    results = {w: {i: {"values": [], "errors": []} for i in impls if w in have[i]}
               for w in order}
    jobs = [(w, i) for w in order for i in impls if w in have[i]]
    total, done, started = len(jobs) * repeat, 0, time.monotonic()
    load_before = loadavg()
    if load_before != "unknown" and float(load_before.split()[0]) > 0.5:
        print("run.py: load average %s before starting: something else is running, expect "
              "noisy figures" % load_before, file=sys.stderr)
    for rep in range(repeat):
        for w in order:
            # The impls take turns, starting with a different one each repetition.
            turn = [i for i in impls if w in have[i]]
            k = rep % len(turn) if turn else 0
            for impl in turn[k:] + turn[:k]:
                done += 1
                r = results[w][impl]
                try:
                    rec = run_once(cmds[impl], w, args.quick, args.timeout)
                    r["values"].append(rec["value"])
                    for key in ("unit", "better", "params"):
                        r.setdefault(key, rec.get(key))
                    msg = "%s %s" % (fmt(rec["value"], rec["unit"]), rec["unit"])
                except RuntimeError as e:
                    r["errors"].append(str(e))
                    msg = "FAILED: %s" % e
                print("[%d/%d %4.0fs] %-30s %-8s run %d/%d: %s"
                      % (done, total, time.monotonic() - started, w, impl, rep + 1, repeat, msg),
                      file=sys.stderr, flush=True)

    # Summaries and the table.
    rows, table = [], {}
    for w in order:
        per = results[w]
        unit = next((s["unit"] for s in per.values() if s.get("unit")), "?")
        better = next((s["better"] for s in per.values() if s.get("better")), "lower")
        for s in per.values():
            v = s["values"]
            s["median"] = statistics.median(v) if v else None
            s["min"] = min(v) if v else None
            s["max"] = max(v) if v else None
        r_cpy = ratio(per.get("mproc"), per.get("cpython"), better)
        r_raw = ratio(per.get("mproc"), per.get("raw"), better)
        table[w] = {"unit": unit, "better": better, "mproc_vs_cpython": r_cpy,
                    "mproc_vs_raw": r_raw, "impls": per}
        rows.append(["%s [%s, %s]" % (w, unit, better)] +
                    [cell(per.get(i), unit) for i in IMPLS] +
                    ["—" if r_cpy is None else "%.2fx" % r_cpy,
                     "—" if r_raw is None else "%.2fx" % r_raw])
    header = ["workload [unit, better]", "mproc", "CPython", "raw", "mproc/CPython", "mproc/raw"]

    info = machine_info()
    info["loadavg_before"], info["loadavg_after"] = load_before, loadavg()
    info["elapsed_s"] = round(time.monotonic() - started)
    command = shlex.join([os.path.basename(sys.executable)] + sys.argv)
    note = ("Medians of %d run%s per cell, (min–max) across runs. Ratios compare medians and "
            "read > 1 when mproc is better: CPython/mproc or raw/mproc for times, "
            "mproc/CPython or mproc/raw for rates. — : that impl has no such workload yet."
            % (repeat, "" if repeat == 1 else "s"))
    machine = ("Machine: %s; %s; nproc %s; Python %s; %s; commit %s; load average %s before, "
               "%s after; %ds." % (info["uname"], info["cpu"], info["nproc"], info["python"],
                                  info["date"], info["commit"] or "unknown",
                                  info["loadavg_before"], info["loadavg_after"],
                                  info["elapsed_s"]))

    print()
    print(note)
    print(render(rows, header, markdown=False))
    print(machine)
    print("Command: " + command)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump({"machine": info, "command": command, "repeat": repeat, "quick": args.quick,
                   "commands": {i: cmds[i] for i in impls}, "workloads": table}, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(note + "\n\n" + render(rows, header, markdown=True) + "\n\n")
        f.write(machine + "\n\nCommand: `" + command + "`\n")
    failed = any(s["errors"] for per in results.values() for s in per.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
