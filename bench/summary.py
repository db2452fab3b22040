#!/usr/bin/env python3
"""Combine the benchmarks' results (bench/out/*.json) into one table.

    python3 bench/summary.py [--out DIR] [--status FILE] [--quick] [--started ISO] [--load LOADAVG]

Reads bundle.json, plan.json, apply.json, serve.json, report.json and, when there is one,
moodle.json (the real-site benchmark) from DIR (default bench/out), prints one markdown
table (benchmark | measurement | ours | baseline | ratio | goal | result) and a last line
"N of M goals met", and writes DIR/TABLE.md (the same table, with a caption) and
DIR/all.json (machine, date, git commit, settings, every row, and each benchmark's own JSON
under "results").

bench/run.sh calls it with --status: a tab-separated file, one line per script run
(name, exit status, start and end in epoch seconds, log file). With it, a result file older
than the start of its script's run is not used (a failed script leaves the previous
run's file behind), and a failed script shows as FAILED. Without it, whatever files are in
DIR are used as they are (to redo the table of an earlier run).

Exit status: 0 when the table was written, whatever the PASS/MISS count; 1 when a file
could not be read as expected.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

BENCHES = ["bundle", "plan", "apply", "serve", "report", "moodle"]
# Benchmarks that only run where what they need is there (moodle.sh: a Moodle source): without
# a run status, no result file means they did not run, not that they failed.
OPTIONAL = {"moodle"}
KNOBS = ["RUNS", "FILES", "BYTES", "SMALL_FILES", "SMALL_BYTES", "BIG_FILES", "BIG_BYTES", "DURATION", "ROUNDS",
         "CONNECTIONS", "THREADS", "WORKERS", "AGENTS", "CONCURRENCY", "DEADLINE", "CARGO_TARGET_DIR"]


# --- formatting ---------------------------------------------------------------------------
def num(x, unit):
    if x is None:
        return "-"
    if unit == "s":
        return f"{x * 1000:.0f} ms" if x < 0.1 else f"{x:.2f} s"
    if unit == "ms":
        return f"{x:.1f} ms"
    if unit == "MiB":
        return f"{x:.1f} MiB"
    if unit == "MB":
        return f"{x:.2f} MB"
    if unit == "req/s":
        return f"{x:,.0f} req/s"
    return f"{x:g} {unit}".strip()


def decimals(goal):
    """Digits for a ratio: one more than its goal has, at least two (1.02 -> 3, 0.6 -> 2)."""
    text = f"{goal:g}"
    return max(2, len(text.split(".")[1]) + 1) if "." in text else 2


def goal_text(op, value, unit=None):
    return f"{op} {value:g}" + (f" {unit}" if unit else "")


def row(bench, measurement, unit, ours, baseline, ratio, goal, ok, ours_text=None, baseline_text=None, ratio_digits=2,
        **extra):
    """One line of the table. goal: its text or None (an information line); ok: True/False/None."""
    return dict(benchmark=bench, measurement=measurement, unit=unit, ours=ours, baseline=baseline, ratio=ratio,
                goal=goal, result="info" if goal is None else ("PASS" if ok else "MISS"),
                ours_text=ours_text if ours_text is not None else num(ours, unit),
                baseline_text=baseline_text if baseline_text is not None else num(baseline, unit),
                ratio_text="-" if ratio is None else f"{ratio:.{ratio_digits}f}", **extra)


# --- one reader per benchmark -----------------------------------------------------------------
def rows_of_results(bench, data):
    """bundle.json and apply.json: a "results" list of name/unit/ours/baseline/ratio/goal/pass."""
    out = []
    for r in data["results"]:
        if r.get("goal") is None:
            goal = None
        elif r.get("ratio") is not None:
            goal = goal_text("<" if r.get("strict") else "<=", r["goal"])
        else:
            goal = goal_text("<" if r.get("strict") else "<=", r["goal"], r["unit"])
        digits = decimals(r["goal"]) if r.get("goal") is not None else 2
        out.append(row(bench, r["name"], r["unit"], r.get("ours"), r.get("baseline"), r.get("ratio"), goal, r.get("pass"),
                       ratio_digits=digits))
    return out


def settings_bundle(d):
    return f"tree of {d['tree']['files']:,} files, {d['tree']['bytes'] / 1e6:.0f} MB; median of {d['runs']} run(s)"


def settings_apply(d):
    return (f"tree of {d['tree']['files']:,} files, {d['tree']['bytes'] / 1e6:.0f} MB; bundle of {d['bundle']['files']} files, "
            f"{d['bundle']['bytes'] / 1e6:.1f} MB; memory figure with {d['big_bundle']['files']:,} files, "
            f"{d['big_bundle']['bytes'] / 1e6:.0f} MB; median of {d['runs']} run(s)")


def rows_plan(data):
    # One line: the slowest of the stability levels' medians (each level's figure is in plan.json).
    res = data["results"]
    worst = max(res, key=lambda r: r["ours"])
    goal = worst["goal"]
    levels = ", ".join(f"{r['ours']:.1f}" for r in res)
    return [row("plan", f"policy::plan, {data['bundles']:,} bundles (median; slowest of stability "
                        f"{', '.join(str(r['stability']) for r in res)}: {levels} ms)",
                "ms", worst["ours"], None, None, goal_text("<=", goal, "ms"), all(r["pass"] for r in res))]


def settings_moodle(d):
    m = d["moodle"]
    return (f"real Moodle {m['release']}, code root of {m['files']:,} files, {m['bytes'] / 1e6:.0f} MB; "
            f"bundle of {d['bundle']['files']} files; median of {d['runs']} run(s)")


def settings_plan(d):
    return f"{d['bundles']:,} bundles, {d['runs']} runs per stability level, CPU time of one plan"


def rows_serve(data):
    goal = data["goal_ratio"]
    out = []
    for key, label in [("plain", "GET timestamp.json (200), req/s vs nginx"),
                       ("if_none_match", "same with If-None-Match (304), req/s vs nginx")]:
        d = data[key]
        out.append(row("serve", label, "req/s", d["palier_rps"], d["nginx_rps"], d["ratio"], goal_text(">=", goal),
                       d["ratio"] >= goal, ratio_digits=decimals(goal)))
    return out


def settings_serve(d):
    return (f"{d['rounds']} round(s) of {d['duration_s']} s per measurement, {d['connections']} connections, "
            f"{d['wrk_threads']} wrk thread(s), nginx {d['nginx_version']} with {d['nginx_workers']} workers; "
            f"ratio: median of the rounds' ratios")


def rows_report(data):
    lat = data["latency_ms"]
    agents = data["agents"]
    return [
        row("report", f"{agents:,} agents each sending one receipt: stored (all answered 201)", "receipts",
            data["stored"], None, None, "all stored", data["all_stored"],
            ours_text=f"{data['stored']:,} / {agents:,}"),
        row("report", "latency p99 (p50), connect to last byte", "ms", lat["p99"], None, None, None, None,
            ours_text=f"{lat['p99']:.1f} ms ({lat['p50']:.1f} ms)"),
        row("report", "receipts per second", "req/s", data["requests_per_s"], None, None, None, None),
    ]


def settings_report(d):
    return (f"{d['agents']:,} agents, concurrency {d['concurrency']}, {d['elapsed_s']} s; "
            f"p99 has no goal (report.sh checks that every receipt is stored)")


READERS = {
    "bundle": (lambda d: rows_of_results("bundle", d), settings_bundle),
    "plan": (rows_plan, settings_plan),
    "apply": (lambda d: rows_of_results("apply", d), settings_apply),
    "serve": (rows_serve, settings_serve),
    "report": (rows_report, settings_report),
    "moodle": (lambda d: rows_of_results("moodle", d), settings_moodle),
}


# --- the machine and the commit ------------------------------------------------------------------
def machine(load_start):
    info = dict(hostname=platform.node(), cpus=os.cpu_count(), kernel=platform.release(), arch=platform.machine())
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                info["memory_mib"] = int(line.split()[1]) // 1024
                break
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip().strip('"')
        info["load_average_start"] = load_start
        info["load_average_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        pass
    return info


def git(root):
    def run(*args):
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    changed = run("status", "--porcelain", "--untracked-files=no")   # "XY path" lines
    return dict(commit=(run("rev-parse", "HEAD") or "").strip() or None,
                short=(run("rev-parse", "--short", "HEAD") or "").strip() or None,
                branch=(run("rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None,
                dirty=None if changed is None else bool(changed.strip()),
                changed_files=[l[3:] for l in (changed or "").splitlines() if l.strip()])


# --- the table ---------------------------------------------------------------------------------------
COLUMNS = ["benchmark", "measurement", "ours", "baseline", "ratio", "goal", "result"]


def cells(r, first):
    return [r["benchmark"] if first else "", r["measurement"], r["ours_text"], r["baseline_text"], r["ratio_text"],
            r["goal"] or "-", r["result"]]


def markdown(rows):
    lines = []
    prev = None
    body = []
    for r in rows:
        body.append([c.replace("|", "\\|") for c in cells(r, r["benchmark"] != prev)])
        prev = r["benchmark"]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(COLUMNS)]
    right = {2, 3, 4}
    def fmt(cs):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cs, widths))) + " |"
    lines.append(fmt(COLUMNS))
    lines.append("| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)) + " |")
    lines.extend(fmt(b) for b in body)
    return lines


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(here, "out"))
    p.add_argument("--status")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--started")
    p.add_argument("--load", default=None)
    args = p.parse_args()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    status = {}
    if args.status:
        for line in open(args.status):
            if line.strip():
                name, code, start, end, log = line.rstrip("\n").split("\t")
                status[name] = dict(exit=int(code), start=float(start), end=float(end), seconds=round(float(end) - float(start), 1),
                                    log=os.path.relpath(log, os.path.dirname(here)))
    def ran(b):
        if status:
            return b in status
        return b not in OPTIONAL or os.path.exists(os.path.join(args.out, f"{b}.json"))
    names = [b for b in BENCHES if ran(b)]

    rows, settings, raw, problems, failed = [], {}, {}, [], []
    for b in names:
        path = os.path.join(args.out, f"{b}.json")
        st = status.get(b)
        fresh = os.path.exists(path) and (st is None or os.path.getmtime(path) >= st["start"] - 1)
        if st is not None and st["exit"] != 0:
            failed.append(f"{b} (exit {st['exit']}, log {st['log']})")
        if not fresh:
            why = "no result" if not os.path.exists(path) else "no new result (the file is from an earlier run)"
            if st and st["exit"]:
                text = f"script failed, exit {st['exit']}: {why}; see {st['log']}"
            elif st:
                text = f"script exited 0 but left {why}; see {st['log']}"
                problems.append(f"{path}: {b} exited 0 but left {why}")
            else:
                text = why
            rows.append(dict(benchmark=b, measurement=text, unit=None, ours=None, baseline=None, ratio=None, goal=None,
                             result="FAILED" if st else "missing", ours_text="-", baseline_text="-", ratio_text="-"))
            continue
        try:
            data = json.load(open(path))
            raw[b] = data
            to_rows, to_settings = READERS[b]
            rows.extend(to_rows(data))
            settings[b] = to_settings(data)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            problems.append(f"{path}: unexpected content ({type(e).__name__}: {e})")
            rows.append(dict(benchmark=b, measurement=f"unreadable result: {type(e).__name__}: {e}", unit=None, ours=None,
                             baseline=None, ratio=None, goal=None, result="FAILED", ours_text="-", baseline_text="-",
                             ratio_text="-"))

    met = sum(r["result"] == "PASS" for r in rows)
    total = sum(r["result"] in ("PASS", "MISS") for r in rows)
    verdict = f"{met} of {total} goals met"
    if failed:
        verdict += f"; {len(failed)} benchmark script(s) failed: " + ", ".join(failed)
    if problems:
        verdict += f"; {len(problems)} result problem(s), see above"

    mach = machine(args.load)
    g = git(os.path.dirname(here))
    started = args.started or now
    kind = "QUICK smoke run (`bench/run.sh --quick`: small trees, one run, short loads; not comparable to a full run)" \
        if args.quick else "full run (`bench/run.sh`)"
    caption = [
        f"Benchmarks, {kind}.",
        f"{started[:16].replace('T', ' ')} UTC, commit {g['short'] or 'unknown'}{' + uncommitted changes' if g['dirty'] else ''}; "
        f"{mach.get('cpus')} CPUs ({mach.get('cpu_model', '?')}), {mach.get('memory_mib', 0) / 1024:.0f} GiB, "
        f"load average {mach.get('load_average_start') or '?'} at the start.",
    ]
    table = markdown(rows)
    notes = [f"- {b}: {s}" for b, s in settings.items()]
    if status:
        notes.append("- time: " + ", ".join(f"{b} {st['seconds']:.0f} s" for b, st in status.items())
                     + f"; total {sum(st['seconds'] for st in status.values()):.0f} s")

    doc = "\n".join(caption) + "\n\n" + "\n".join(table) + "\n\n" + "\n".join(notes + ["", verdict]) + "\n"
    with open(os.path.join(args.out, "TABLE.md"), "w") as f:
        f.write(doc)
    combined = dict(
        quick=args.quick,
        date=started,
        finished=now,
        machine=mach,
        git=g,
        settings={k: os.environ[k] for k in KNOBS if k in os.environ},
        scripts=status,
        goals=dict(met=met, total=total),
        failed_scripts=failed,
        rows=rows,
        benchmark_settings=settings,
        results=raw,
    )
    with open(os.path.join(args.out, "all.json"), "w") as f:
        json.dump(combined, f, indent=2)
        f.write("\n")

    print()
    if args.quick:
        print("QUICK RUN: small trees, one run, short loads; the figures are a smoke check, not results.")
    print("\n".join(table))
    print()
    print("\n".join(notes))
    print(f"\nwrote {os.path.join(args.out, 'TABLE.md')} and {os.path.join(args.out, 'all.json')}")
    sys.stdout.flush()
    for pr in problems:
        print(f"summary: {pr}", file=sys.stderr)
    sys.stderr.flush()
    print(verdict)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
