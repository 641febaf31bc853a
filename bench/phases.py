#!/usr/bin/env python3
"""phases.py [--runs N] [--interval S] -- SCANJOB run ROOT --out OUT [more arguments]

`scanjob run` by phase: runs the command N times (default 5, OUT removed before each) with
RUST_LOG=info, reads the phase ends from its log (each line's timestamp and message), and
samples the process every --interval seconds (default 0.005): its CPU time (utime + stime,
/proc/PID/stat) and its resident set (VmRSS, /proc/PID/status). At each phase end the kernel's
peak (VmHWM) is reset (`/proc/PID/clear_refs` 5), so a phase's peak RSS is the larger of VmHWM
read at its end and the samples within it. Its anonymous part (RssAnon: the heap, not the
binary's code pages mapped from the file) is the largest sample within the phase. Prints a Markdown table: per phase the median of the
runs' wall, CPU and peak RSS, then the whole run's. CPU is attributed by the time its sample
was taken, so a phase shorter than a few intervals is approximate.

Phases, each ending at a log line:
  plan            "planned"
  scan            "shard complete" (the walk, the rows, Parquet with ZSTD: one process,
                  its threads overlapping)
  read tables     "read the tables' logs" (the Delta state of every table)
  history         "history done" (first_seen join and diff, or the first night's registration)
  age and atime   "age and atime done"
  directory tree  "directory tree done"
  duplicate trees "duplicate trees done"
  rollups, duplicate files, report  "insights done"
  commit and publish  "snapshot published" (every table's commit, the manifest, latest.json)
  exit            the process's end (retention, the JSON answer)
"""
import os
import re
import statistics
import subprocess
import sys
import threading
import time

PHASES = [
    ("plan", "planned"),
    ("scan", "shard complete"),
    ("read tables", "read the tables' logs"),
    ("history", "history done"),
    ("age and atime", "age and atime done"),
    ("directory tree", "directory tree done"),
    ("duplicate trees", "duplicate trees done"),
    ("rollups, duplicate files, report", "insights done"),
    ("commit and publish", "snapshot published"),
]
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid, *keys):
    found = dict.fromkeys(keys, 0)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in found:
                found[key] = int(line.split()[1])
    return [found[k] for k in keys]


def one_run(cmd, interval):
    out = cmd[cmd.index("--out") + 1]
    subprocess.run(["rm", "-rf", out], check=True)
    env = dict(os.environ, RUST_LOG="info")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    pid = proc.pid
    # (phase index, wall at its end, CPU at its end, peak kB within it, peak anonymous kB)
    marks, lock = [], threading.Lock()
    state = {"phase": 0, "peak": 0, "anon": 0, "cpu": 0.0}

    def end_phase(index):
        with lock:
            try:
                hwm, anon = status_kb(pid, "VmHWM", "RssAnon")
                cpu = cpu_s(pid)
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                hwm, anon, cpu = 0, 0, state["cpu"]
            marks.append((index, time.monotonic() - started, cpu, max(state["peak"], hwm),
                          max(state["anon"], anon)))
            state["phase"], state["peak"], state["anon"], state["cpu"] = index + 1, 0, 0, cpu

    def read_log():
        for line in proc.stderr:
            index = state["phase"]
            for i in range(index, len(PHASES)):
                if PHASES[i][1] in line:
                    # A phase whose line never came (none is optional today) ends with the next.
                    for skipped in range(index, i + 1):
                        end_phase(skipped)
                    break

    reader = threading.Thread(target=read_log)
    reader.start()
    while proc.poll() is None:
        try:
            (rss, anon), cpu = status_kb(pid, "VmRSS", "RssAnon"), cpu_s(pid)
        except OSError:
            break
        with lock:
            state["peak"] = max(state["peak"], rss)
            state["anon"] = max(state["anon"], anon)
            state["cpu"] = cpu
        time.sleep(interval)
    proc.wait()
    reader.join()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"the run failed: {cmd}")
    rows, previous_wall, previous_cpu = {}, 0.0, 0.0
    for index, at, cpu, peak, anon in marks:
        rows[PHASES[index][0]] = (at - previous_wall, cpu - previous_cpu, peak / 1024, anon / 1024)
        previous_wall, previous_cpu = at, cpu
    # The exit phase and the whole run; CPU from the last samples (the process is reaped).
    rows["exit"] = (wall - previous_wall, max(state["cpu"] - previous_cpu, 0.0), state["peak"] / 1024,
                    state["anon"] / 1024)
    rows["whole run"] = (wall, state["cpu"], max(r[2] for r in rows.values()),
                         max(r[3] for r in rows.values()))
    return rows


def main():
    args = sys.argv[1:]
    runs, interval = 5, 0.005
    while args and args[0] != "--":
        if args[0] == "--runs":
            runs = int(args[1])
        elif args[0] == "--interval":
            interval = float(args[1])
        else:
            sys.exit(__doc__)
        args = args[2:]
    cmd = args[1:]
    results = [one_run(cmd, interval) for _ in range(runs)]
    names = [p for p, _ in PHASES] + ["exit", "whole run"]
    print("| phase | wall s | CPU s | peak RSS MiB | of it anonymous MiB |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        got = [r[name] for r in results if name in r]
        if not got:
            continue
        wall, cpu, peak, anon = (statistics.median(g[i] for g in got) for i in range(4))
        label = f"**{name}**" if name == "whole run" else name
        print(f"| {label} | {wall:.3f} | {cpu:.2f} | {peak:.0f} | {anon:.0f} |")
    print(f"\nmedian of {runs} runs; samples every {interval * 1000:g} ms; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
