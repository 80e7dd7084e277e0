#!/usr/bin/env python3
"""Process-tree figures for peers.sh, read from /proc (no dependency).

  procs.py ticks ROOT...   one line: for each ROOT, utime+stime in clock ticks summed over
                           ROOT and every live descendant (all threads of each)
  procs.py mem ROOT...     one line per ROOT: "nprocs rss_kib hwm_kib", VmRSS and VmHWM summed
                           over the tree (shared pages count once per process that maps them)
  procs.py settle SECS ROOT...
                           waits (at most SECS) until the trees of ROOT... spend at most one
                           tick in a 0.5 s window, i.e. a server has finished the requests a
                           client left in flight; prints the seconds waited

Multi-process servers (nginx master + worker, a peer that forks) are summed; a process that
exited during a run loses its ticks (none of the servers here fork per request).
"""

import os
import sys
import time


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root, kids):
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def ticks_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0
    fields = s[s.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[11]) + int(fields[12])  # utime (14) + stime (15)


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_ticks(roots):
    kids = children_map()
    return [sum(ticks_of(p) for p in tree(r, kids)) for r in roots]


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ticks":
        print(" ".join(str(t) for t in tree_ticks([int(a) for a in args])))
    elif cmd == "mem":
        kids = children_map()
        for r in (int(a) for a in args):
            ps = [p for p in tree(r, kids) if os.path.exists(f"/proc/{p}")]
            print(len(ps), sum(status_kib(p, "VmRSS") for p in ps),
                  sum(status_kib(p, "VmHWM") for p in ps))
    elif cmd == "settle":
        limit, roots = float(args[0]), [int(a) for a in args[1:]]
        t0 = time.monotonic()
        last = sum(tree_ticks(roots))
        while time.monotonic() - t0 < limit:
            time.sleep(0.5)
            now = sum(tree_ticks(roots))
            if now - last <= 1:
                break
            last = now
        print(f"{time.monotonic() - t0:.1f}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
