#!/usr/bin/env python3
"""Per-step overhead of orch, before vs after, side by side with xargs, GNU parallel and ninja.

    benches/spawn.py BEFORE AFTER [rounds]     (benches/run.sh spawn wraps it)

BEFORE and AFTER are two orch binaries (e.g. a release build of main and of the branch). Every
case runs each contender once per round, in an order that rotates from round to round, and the
tables show medians of the rounds: compare ratios, the machine is shared.

  fanout  1,000 steps of `true` at -P 2, 8 and 64; state (orch's state folder, ninja's build
          folder) on tmpfs (/dev/shm) and on disk (/tmp), reported separately.
  chain   10,000 steps of `true`, each needing the one before; ms per step vs ninja.
  cpu     orch's own CPU per step (results.json `orch_cpu_seconds`) at 1,000 and 10,000 steps, -P 8.
  idle    1,000 simulated agents that wait: orch's RSS and CPU per second while they wait.
  phases  where a chain's time per step goes (2,000 steps, state on tmpfs), from the kernel's own
          fork, exec and exit events (`perf record` of three sched tracepoints; needs perf and
          root or perf_event_paranoid <= -1): fork to exec (the child's setup and the exec), exec
          to exit (the program), exit to the next fork (the runner's turn-around).
"""
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BEFORE, AFTER = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
WHAT = os.environ.get("SPAWN_BENCH", "fanout chain cpu idle").split()


def manifest(path, n, parallel, chain=False):
    with open(path, "w") as f:
        f.write(f'[settings]\nstartup_delay = "0s"\nmax_parallel = {parallel}\n\n')
        for i in range(n):
            f.write(f'[jobs.t{i}]\nrun = ["true"]\n')
            if chain and i:
                f.write(f'needs = ["t{i - 1}"]\n')
            f.write("\n")


def ninja_file(path, n, chain=False):
    with open(path, "w") as f:
        f.write("rule r\n  command = true\n")
        for i in range(n):
            dep = f" o{i - 1}" if chain and i else ""
            f.write(f"build o{i}: r{dep}\n")


def timed(argv, cwd=None, env=None):
    """Wall seconds of one run (output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def orch_run(binary, toml, base, cgroups=True):
    """Wall seconds and orch's own CPU seconds of one run in a fresh state folder under `base`;
    `cgroups=False` sets ORCH_CGROUP=off (steps contained by group and token only)."""
    state = tempfile.mkdtemp(dir=base)
    env = None if cgroups else dict(os.environ, ORCH_CGROUP="off")
    try:
        wall = timed([binary, "run", toml, "--quiet", "--state-dir", state], env=env)
        (results,) = glob.glob(f"{state}/runs/*/results.json")
        cpu = json.load(open(results))["metadata"]["orch_cpu_seconds"]
        return wall, cpu
    finally:
        shutil.rmtree(state, ignore_errors=True)


def ninja_run(n, parallel, base, chain=False):
    build = tempfile.mkdtemp(dir=base)
    try:
        ninja_file(f"{build}/build.ninja", n, chain)
        return timed(["ninja", "-j", str(parallel), "-C", build])
    finally:
        shutil.rmtree(build, ignore_errors=True)


def rounds(contenders):
    """Runs each (name, fn) once per round, rotating the order; returns {name: [results]}."""
    out = {name: [] for name, _ in contenders}
    for r in range(ROUNDS):
        k = r % len(contenders)
        for name, fn in contenders[k:] + contenders[:k]:
            out[name].append(fn())
    return out


def med(values):
    return statistics.median(values)


def fanout(work):
    print("== fan-out: 1,000 steps of `true` (median wall ms of", ROUNDS, "interleaved rounds)")
    print("cgroups: where orch can use them (as root here); no cg: ORCH_CGROUP=off, both binaries")
    print("| state | -P | before | after | before, no cg | after, no cg | xargs | parallel | ninja |"
          " before/xargs | after/xargs | before no cg/xargs | after no cg/xargs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for fs, base in (("tmpfs", "/dev/shm"), ("disk", "/tmp")):
        for p in [int(p) for p in os.environ.get("SPAWN_P", "2 8 64").split()]:
            toml = f"{work}/fan-{p}.toml"
            manifest(toml, 1000, p)
            r = rounds([
                ("before", lambda: orch_run(BEFORE, toml, base)[0]),
                ("after", lambda: orch_run(AFTER, toml, base)[0]),
                ("before-nocg", lambda: orch_run(BEFORE, toml, base, cgroups=False)[0]),
                ("after-nocg", lambda: orch_run(AFTER, toml, base, cgroups=False)[0]),
                ("xargs", lambda: timed(["bash", "-c", f"seq 1000 | xargs -P {p} -I{{}} true"])),
                ("parallel", lambda: timed(["bash", "-c", f"seq 1000 | parallel -j {p} true"])),
                ("ninja", lambda: ninja_run(1000, p, base)),
            ])
            m = {k: med(v) * 1000 for k, v in r.items()}
            x = m["xargs"]
            print(f"| {fs} | {p} | {m['before']:.0f} | {m['after']:.0f} | {m['before-nocg']:.0f} |"
                  f" {m['after-nocg']:.0f} | {x:.0f} | {m['parallel']:.0f} | {m['ninja']:.0f} |"
                  f" {m['before'] / x:.2f}x | {m['after'] / x:.2f}x |"
                  f" {m['before-nocg'] / x:.2f}x | {m['after-nocg'] / x:.2f}x |", flush=True)


def chain(work):
    n = 10_000
    print(f"== chain: {n:,} steps of `true`, each needing the one before (state on tmpfs)")
    toml = f"{work}/chain.toml"
    manifest(toml, n, 1, chain=True)
    r = rounds([
        ("before", lambda: orch_run(BEFORE, toml, "/dev/shm")[0]),
        ("after", lambda: orch_run(AFTER, toml, "/dev/shm")[0]),
        ("ninja", lambda: ninja_run(n, 1, "/dev/shm", chain=True)),
    ])
    m = {k: med(v) / n * 1000 for k, v in r.items()}
    print("| | orch before | orch after | ninja |\n|---|---|---|---|")
    print(f"| ms per step | {m['before']:.2f} | {m['after']:.2f} | {m['ninja']:.2f} |")
    print(f"| vs ninja | {m['before'] / m['ninja']:.2f}x | {m['after'] / m['ninja']:.2f}x | 1x |",
          flush=True)


def traced_phases(argv, program):
    """Median ms of fork->exec, exec->exit and exit->next fork over the processes that exec
    `program` while `argv` runs (its steps: nothing else here runs that program), from one traced
    run."""
    fd, data = tempfile.mkstemp(suffix=".perf")
    os.close(fd)
    try:
        # System-wide (-a): following the command instead would copy perf's counters into every
        # child it forks, which costs more than the forks measured.
        subprocess.run(["perf", "record", "-q", "-a", "-o", data, "-e",
                        "sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit",
                        "--", *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run(["perf", "script", "-i", data, "-F", "tid,time,event,trace"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        if os.path.exists(data):
            os.unlink(data)
    fork, exe, end, order = {}, {}, {}, []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+):\s+\S*?(fork|exec|exit):\s*(.*)", line)
        if not m:
            continue
        tid, t, what, rest = int(m[1]), float(m[2]), m[3], m[4]
        if what == "fork":
            child = int(re.search(r"child_pid=(\d+)", rest)[1])
            fork[child] = t
            order.append(child)
        elif what == "exec" and f"filename={program}" in rest:
            exe[tid] = t
        elif what == "exit":
            end[tid] = t
    kids = [c for c in order if c in exe and c in end]
    ms = lambda v: statistics.median(v) * 1000
    return (ms([exe[c] - fork[c] for c in kids]), ms([end[c] - exe[c] for c in kids]),
            ms([fork[b] - end[a] for a, b in zip(kids, kids[1:])]))


def phases(work):
    n = 2000
    print(f"== phases of a chain of {n:,} steps (median ms per step; median of", ROUNDS, "traced runs)")
    if shutil.which("perf") is None:
        print("skipped: no perf")
        return
    # Whether perf may record sched tracepoints here, asked once, so that a later failure is the
    # runner's and stops the benchmark.
    probe = subprocess.run(["perf", "record", "-q", "-o", "/dev/null", "-e",
                            "sched:sched_process_exec", "--", "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        print("skipped: perf cannot record sched tracepoints here (root or perf_event_paranoid)")
        return
    toml = f"{work}/phases.toml"
    manifest(toml, n, 1, chain=True)
    build = tempfile.mkdtemp(dir="/dev/shm")
    ninja_file(f"{build}/build.ninja", n, chain=True)

    def orch(binary):
        state = tempfile.mkdtemp(dir="/dev/shm")
        try:
            return traced_phases([binary, "run", toml, "--quiet", "--state-dir", state],
                                 shutil.which("true"))
        finally:
            shutil.rmtree(state, ignore_errors=True)

    def ninja():
        for f in (".ninja_log", ".ninja_deps"):
            if os.path.exists(f"{build}/{f}"):
                os.unlink(f"{build}/{f}")
        return traced_phases(["ninja", "-j", "1", "-C", build], "/bin/sh")

    try:
        r = rounds([("before", lambda: orch(BEFORE)), ("after", lambda: orch(AFTER)),
                    ("ninja", ninja)])
    finally:
        shutil.rmtree(build, ignore_errors=True)
    print("| | fork → exec | exec → exit | exit → next fork | sum |\n|---|---|---|---|---|")
    for name in ("before", "after", "ninja"):
        p = [med([x[i] for x in r[name]]) for i in range(3)]
        print(f"| {name} | {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} | {sum(p):.3f} |", flush=True)


def cpu(work):
    print("== orch's own CPU per step, -P 8, state on tmpfs (median ms)")
    print("| steps | before | after |\n|---|---|---|")
    per = {}
    for n in (1000, 10_000):
        toml = f"{work}/cpu-{n}.toml"
        manifest(toml, n, 8)
        r = rounds([
            ("before", lambda: orch_run(BEFORE, toml, "/dev/shm")[1]),
            ("after", lambda: orch_run(AFTER, toml, "/dev/shm")[1]),
        ])
        per[n] = {k: med(v) / n * 1000 for k, v in r.items()}
        print(f"| {n:,} | {per[n]['before']:.3f} | {per[n]['after']:.3f} |", flush=True)
    g = {k: per[10_000][k] / per[1000][k] for k in ("before", "after")}
    print(f"| growth 1k→10k | {g['before']:.2f}x | {g['after']:.2f}x |", flush=True)


def idle(work):
    n = 1000
    print(f"== idle: {n:,} simulated agents waiting (RSS and CPU over 5 s once all are up)")
    print("| | RSS MB | CPU ms/s |\n|---|---|---|")
    toml = f"{work}/idle.toml"
    with open(toml, "w") as f:
        f.write('[settings]\nstartup_delay = "0s"\n\n')
        for i in range(n):
            f.write(f'[jobs.a{i}]\nprompt = "wait"\nenv = {{ ORCH_SIM_HANG = "1" }}\n\n')
    tick = os.sysconf("SC_CLK_TCK")
    for name, binary in (("before", BEFORE), ("after", AFTER)):
        state = tempfile.mkdtemp(dir="/dev/shm")
        env = dict(os.environ, ORCH_SIM_STATE_DIR=f"{state}/sim", ORCH_GRACE_INT="5s")
        proc = subprocess.Popen([binary, "run", toml, "--simulate", "--quiet", "--state-dir", state],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def children():
            # Every thread's children (a spawn from a worker thread is listed under that thread).
            return sum(len(open(c).read().split())
                       for c in glob.glob(f"/proc/{proc.pid}/task/*/children"))

        def cpu_ticks():
            fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        deadline = time.time() + 300
        # The agents and the guardian are orch's children.
        while children() < n + 1 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        t1, s1 = cpu_ticks(), time.time()
        time.sleep(5)
        t2, s2 = cpu_ticks(), time.time()
        rss = next(int(l.split()[1]) for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS"))
        proc.send_signal(2)
        proc.wait()
        shutil.rmtree(state, ignore_errors=True)
        print(f"| {name} | {rss / 1024:.1f} | {(t2 - t1) / tick * 1000 / (s2 - s1):.1f} |", flush=True)


work = tempfile.mkdtemp()
try:
    for what in WHAT:
        globals()[what](work)
finally:
    shutil.rmtree(work, ignore_errors=True)
