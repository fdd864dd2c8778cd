#!/usr/bin/env python3
"""CPU time per thread of a command, read from /proc every 5 ms until it exits.

    python3 bench/thread_cpu.py target/release/ringex bench --rate max --commands 3000000 ...

Prints the command's throughput line(s), then each thread's user+system and system CPU
time (clock ticks, 10 ms) and how long it was seen alive. The pipeline's threads start after
the workload is generated, so their figures cover the run alone; the main thread's include
the generation.
"""
import os
import subprocess
import sys
import time

p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
first, last = {}, {}
while p.poll() is None:
    try:
        tasks = os.listdir(f"/proc/{p.pid}/task")
    except OSError:
        break
    for t in tasks:
        try:
            s = open(f"/proc/{p.pid}/task/{t}/stat").read()
        except OSError:
            continue
        name = s[s.index("(") + 1 : s.rindex(")")]
        f = s[s.rindex(")") + 2 :].split()
        ut, st = int(f[11]), int(f[12])
        first.setdefault((t, name), time.time())
        last[(t, name)] = (time.time(), ut, st)
    time.sleep(0.005)
out = p.stdout.read().decode()
for line in out.splitlines():
    if "throughput" in line:
        print(line)
tick = 1000 // os.sysconf("SC_CLK_TCK")
for (t, name), (at, ut, st) in sorted(last.items()):
    print(f"{name:16} cpu {(ut + st) * tick:6} ms  sys {st * tick:6} ms  alive {at - first[(t, name)]:.2f} s")
