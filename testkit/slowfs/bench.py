#!/usr/bin/env python3
"""Time scanners through a slowfs mount (the commands behind README's table).

  bench.py mount LATENCY_US     # (re)mount slowfs of $TREE on $MNT
  bench.py umount
  bench.py run OUT.jsonl TOOL... [--runs 3] [--warmup 1] [--tag T]
  bench.py table OUT.jsonl...   # markdown table of medians

TOOL: floor-N (N threads), find, pdu-N, py. Each run is one JSON line: wall
seconds, files found (pdu: total apparent bytes), the slowfs requests served
during the run (from slowfs --stats; only meaningful when runs do not
overlap), scanner CPU and slowfs CPU seconds. The warm-up run (or, with
--warmup 0, the first run) writes find's output to a file and counts it.
Env: TREE (/tmp/slow-tree), MNT (/tmp/slow-mnt), SLOWFS, FLOOR, PDU, TRUTH.
"""
import json, os, resource, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.environ.get("TREE", "/tmp/slow-tree")
MNT = os.environ.get("MNT", "/tmp/slow-mnt")
# Where bench/lib.sh builds them: slowfs on its own, floor in the workspace.
CACHE = os.environ.get("SCANJOB_CACHE", os.path.expanduser("~/.cache/scanjob"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
SLOWFS = os.environ.get("SLOWFS", os.path.join(CACHE, "slowfs-target", "release", "slowfs"))
FLOOR = os.environ.get("FLOOR", os.path.join(TARGET, "release", "floor"))
PDU = os.environ.get("PDU", "/tmp/bench-tools/bin/pdu")
TRUTH = os.environ.get("TRUTH", "/tmp/slow-tree.truth.json")
STATS, PIDF, LOG = "/tmp/slowfs-stats.json", "/tmp/slowfs.pid", "/tmp/slowfs.log"
FIND_FMT = r"%h\t%f\t%s\t%U\t%G\t%C@\t%T@\t%A@\n"


def mounted():
    with open("/proc/mounts") as f:
        return any(l.split()[1] == MNT for l in f)


def umount():
    if os.path.exists(PIDF):
        pid = int(open(PIDF).read())
        try:
            os.kill(pid, 15)  # slowfs unmounts itself on SIGTERM
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            pass
        os.unlink(PIDF)
    if mounted():
        subprocess.run(["umount", MNT], check=True)


def mount(lat):
    umount()
    os.makedirs(MNT, exist_ok=True)
    p = subprocess.Popen([SLOWFS, TREE, MNT, "--latency-us", str(lat), "--stats", STATS],
                         stdout=open(LOG, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    open(PIDF, "w").write(str(p.pid))
    for _ in range(100):
        if mounted():
            os.listdir(MNT)
            time.sleep(0.3)  # let the stats file appear
            return print(f"slowfs pid {p.pid}: latency {lat} us on {MNT}")
        time.sleep(0.05)
    sys.exit("mount failed, see " + LOG)


def requests():
    time.sleep(0.25)  # the stats file is rewritten every 100 ms
    return json.load(open(STATS))


def slowfs_cpu():
    f = open(f"/proc/{int(open(PIDF).read())}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def command(tool, to_file):
    name, _, n = tool.partition("-")
    if name == "floor":
        return [FLOOR, "-j", n, MNT], None
    if name == "pdu":
        return [PDU, "--threads", n, "-q", "apparent-size", "-b", "plain", "-d", "1", MNT], None
    if name == "py":
        return [sys.executable, os.path.join(HERE, "pywalk.py"), MNT], None
    if name == "find":
        out = f"/tmp/slowfs-find-{os.getpid()}.out" if to_file else None
        return ["find", MNT, "-type", "f", "-printf", FIND_FMT], out  # find expands \t, \n
    raise SystemExit("unknown tool " + tool)


def found(tool, stdout, outfile):
    """files found (pdu: total apparent bytes of the root line)"""
    if tool.startswith(("floor", "py")):
        return json.loads(stdout.strip().splitlines()[-1])["files"]
    if tool.startswith("pdu"):
        for line in stdout.splitlines():
            if line.rstrip().split("│")[0].endswith(MNT):
                return int(line.split()[0])
    if tool == "find" and outfile:
        n = sum(1 for _ in open(outfile, "rb"))
        os.unlink(outfile)
        return n
    return None


def run(out, tools, runs, warmup, tag):
    lat = json.load(open(STATS))["latency_us"]
    with open(out, "a") as o:
        for tool in tools:
            for i in range(warmup + runs):
                count = i == 0  # the warm-up (or first) run checks the count
                cmd, outfile = command(tool, count)
                r0, c0 = requests()["total"], slowfs_cpu()
                u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                p = subprocess.run(cmd, stdout=open(outfile, "w") if outfile else
                                   (subprocess.PIPE if tool != "find" else subprocess.DEVNULL),
                                   text=True)
                wall = time.perf_counter() - t0
                u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                r1, c1 = requests()["total"], slowfs_cpu()
                rec = dict(latency_us=lat, tool=tool, run="warmup" if i < warmup else i - warmup,
                           wall=round(wall, 3), rc=p.returncode,
                           found=found(tool, p.stdout or "", outfile),
                           requests=r1 - r0, tag=tag,
                           scanner_cpu=round(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime, 2),
                           slowfs_cpu=round(c1 - c0, 2))
                print(json.dumps(rec), flush=True)
                o.write(json.dumps(rec) + "\n")
                o.flush()


def table(files):
    truth = json.load(open(TRUTH))["files"]
    recs = [json.loads(l) for f in files for l in open(f)]
    groups = {}
    for r in recs:
        if r["run"] != "warmup":
            groups.setdefault((r["latency_us"], r["tool"]), []).append(r)
    base = {lat: statistics.median(x["wall"] for x in g)
            for (lat, tool), g in groups.items() if tool == "find"}
    order = lambda k: (k[0], ["find", "py", "pdu", "floor"].index(k[1].split("-")[0]),
                       int(k[1].split("-")[1]) if "-" in k[1] else 0)
    print("| tool | threads | latency | wall s (median) | files/s | vs find | requests/run | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for k in sorted(groups, key=order):
        g = groups[k]
        wall = statistics.median(x["wall"] for x in g)
        name, _, n = k[1].partition("-")
        tags = ",".join(sorted({x.get("tag") or "solo" for x in g}))
        # overlapping runs share the slowfs counters: no per-run request count
        req = "n/a" if "concurrent" in tags else \
            f'{statistics.median(x["requests"] for x in g):,.0f}'

        sp = f"{base[k[0]] / wall:.1f}x" if k[0] in base else "-"
        print(f"| {name} | {n or 1} | {k[0]} us | {wall:.2f} | {truth / wall:,.0f} | {sp} "
              f"| {req} | {len(g)} {tags} |")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "mount":
        mount(int(a[1]))
    elif a[0] == "umount":
        umount()
    elif a[0] == "run":
        opts = {"--runs": 3, "--warmup": 1, "--tag": ""}
        rest = []
        it = iter(a[2:])
        for x in it:
            if x in opts:
                opts[x] = next(it) if x == "--tag" else int(next(it))
            else:
                rest.append(x)
        run(a[1], rest, opts["--runs"], opts["--warmup"], opts["--tag"])
    elif a[0] == "table":
        table(a[1:])
