#!/usr/bin/env python3
"""Summarise a `py-spy record --format raw` profile (collapsed stacks, one
`frame;frame;...;leaf COUNT` per line, frames as `func (file:line)`).

Prints the top self-time frames (the leaf of each sample), aggregated by function
(`--lines` keeps line numbers), with the inclusive ("total") share of the same
function, then self time per source file. py-spy drops idle samples (a thread
blocked in epoll) by default, so the shares are of the time the process was busy.

    pyspy_top.py pyspy.txt [--top 25] [--lines] [--rate 200 --seconds 12.3]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

LINE_RE = re.compile(r":\d+\)$")
FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>.*)\)$")
SITE_RE = re.compile(r"^.*/(?:site|dist)-packages/")
STDLIB_RE = re.compile(r"^.*/lib/python3\.\d+/")
# frames whose *self* time is the event loop's own C code (uvloop has no Python frames)
LOOP_FRAMES = ("Runner.run ", "run (uvloop", "BaseEventLoop.run_forever ", "_run_once ")


def shorten(frame: str, root: str | None) -> str:
    m = FRAME_RE.match(frame)
    if not m:
        return frame
    path = m.group("file")
    if root and path.startswith(root.rstrip("/") + "/"):
        path = path[len(root.rstrip("/")) + 1 :]
    path = STDLIB_RE.sub("", SITE_RE.sub("", path))
    return f"{m.group('func')} ({path})"


def file_of(frame: str) -> str:
    m = FRAME_RE.match(frame)
    if not m:
        return frame
    return m.group("file").rsplit(":", 1)[0]


def readable(frame: str) -> bool:
    """--nonblocking sampling can read a frame mid-update and return garbage names."""
    return frame.isprintable() and FRAME_RE.match(frame) is not None


def parse(path: str, keep_lines: bool, root: str | None) -> tuple[list[tuple[list[str], int]], int]:
    """-> (stacks, samples dropped because a frame was unreadable)"""
    stacks: list[tuple[list[str], int]] = []
    dropped = 0
    for raw in Path(path).read_text(errors="replace").splitlines():
        raw = raw.rstrip()
        if not raw:
            continue
        stack, _, count = raw.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        if not all(readable(f) for f in stack.split(";")):
            dropped += n
            continue
        frames = [shorten(f, root) for f in stack.split(";")]
        if not keep_lines:
            frames = [LINE_RE.sub(")", f) for f in frames]
        stacks.append((frames, n))
    return stacks, dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile", help="py-spy --format raw output")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--lines", action="store_true", help="keep line numbers (per line, not func)")
    p.add_argument("--root", help="path prefix to strip from file names (the repo)")
    p.add_argument("--rate", type=float, help="py-spy sampling rate, for the busy estimate")
    p.add_argument("--seconds", type=float, help="wall seconds under load, for the busy estimate")
    args = p.parse_args(argv)

    stacks, dropped = parse(args.profile, args.lines, args.root)
    total = sum(n for _, n in stacks)
    if not total:
        print("no samples")
        return 1
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
    for frames, n in stacks:
        leaf = frames[-1]
        self_t[leaf] += n
        per_file[file_of(leaf)] += n
        for f in set(frames):
            incl[f] += n

    busy = ""
    if args.rate and args.seconds:
        ratio = total / (args.rate * args.seconds)
        busy = f" (samples / (rate x seconds under load) = {ratio:.2f}; ~1 = never idle)"
    print(f"samples: {total}{busy}")
    if dropped:
        print(f"(dropped {dropped} samples with unreadable frames: racy --nonblocking reads)")
    print(f"top {args.top} self-time frames ({'per line' if args.lines else 'per function'}):")
    print(f"{'#':>3} {'self%':>6} {'total%':>6} {'samples':>8}  frame")
    for i, (frame, n) in enumerate(self_t.most_common(args.top), 1):
        print(f"{i:>3} {n / total * 100:>6.1f} {incl[frame] / total * 100:>6.1f} {n:>8}  {frame}")
    loop_leaf = [f for f, _ in self_t.most_common(args.top) if f.startswith(LOOP_FRAMES)]
    if loop_leaf:
        print(f"    note: self time in {loop_leaf[0]} = inside the (uv)loop's C code:")
        print("    socket syscalls, transports, callback dispatch (NATIVE=1 splits it)")
    print("self time per file:")
    for path, n in per_file.most_common(12):
        print(f"    {n / total * 100:>6.1f}%  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
