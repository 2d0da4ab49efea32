#!/usr/bin/env python3
"""A point-to-point IP link with a fixed delay each way, between this network namespace and
another: what `tc qdisc add dev <veth> root netem delay <d>` on both ends of a veth pair gives,
for kernels built without sch_netem (this machine's: CONFIG_NET_SCH_NETEM is not set and no
modules can be loaded). benches/latency.sh runs it; standard library only.

    python3 benches/rtt_link.py --netns NAME --local DEV --remote DEV --delay-us 500

Creates the TUN device `--local` in this namespace and `--remote` inside the namespace NAME
(the process moves there after the first; both devices vanish when it exits), prints `ready`,
then passes every IP packet read from one device into the other once it has been held for the
delay, in arrival order (a FIFO, like netem without jitter). Both directions are delayed, so a
round trip takes twice the delay. The caller gives the devices their addresses and brings them
up. The devices have no offloads: TCP sends MTU-sized segments as over a real interface.

It asks for real-time priority, so that a busy benchmark and server on the same cores do not
lengthen the delay, and for the smallest timer slack, so that wake-ups come on time. On
SIGTERM it prints how many packets it passed and how late, then exits.
"""

import argparse
import collections
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
PR_SET_TIMERSLACK = 29

libc = ctypes.CDLL(None, use_errno=True)


def open_tun(name):
    """A new TUN device called `name` in the current namespace, its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    # struct ifreq is 40 bytes: the name, the flags, then a union this call does not use.
    ifreq = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifreq)
    return fd


def enter_netns(name):
    for base in ("/run/netns", "/var/run/netns"):
        path = os.path.join(base, name)
        if os.path.exists(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            return
    raise SystemExit(f"rtt_link: no network namespace named {name}")


def tune_scheduling():
    """Real-time priority and 1 ns timer slack where allowed; a plain process otherwise."""
    notes = []
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError) as e:
        notes.append(f"no real-time priority ({e})")
    if libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(1), 0, 0, 0) != 0:
        notes.append("default timer slack")
    return notes


class Direction:
    def __init__(self, name, source, sink):
        self.name, self.source, self.sink = name, source, sink
        self.queue = collections.deque()  # (due, packet), due in time.monotonic() seconds
        self.passed = 0
        self.dropped = 0
        self.late_total = 0.0
        self.late_max = 0.0

    def read_all(self, due):
        while True:
            try:
                packet = os.read(self.source, 65536)
            except BlockingIOError:
                return
            self.queue.append((due, packet))

    def write_due(self, now):
        queue = self.queue
        while queue and queue[0][0] <= now:
            due, packet = queue.popleft()
            try:
                os.write(self.sink, packet)
            except OSError:
                # As a full or downed interface would; TCP sends it again.
                self.dropped += 1
                continue
            late = now - due
            self.passed += 1
            self.late_total += late
            self.late_max = max(self.late_max, late)

    def report(self):
        mean = self.late_total / self.passed * 1e6 if self.passed else 0.0
        return (f"{self.name}: {self.passed} packets passed, {self.dropped} dropped, "
                f"released {mean:.0f} us late on average (at most {self.late_max * 1e6:.0f} us)")


def run(directions, delay):
    fds = [d.source for d in directions]
    by_fd = {d.source: d for d in directions}
    while True:
        heads = [d.queue[0][0] for d in directions if d.queue]
        timeout = None
        if heads:
            timeout = max(0.0, min(heads) - time.monotonic())
        readable, _, _ = select.select(fds, [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            by_fd[fd].read_all(now + delay)
        for d in directions:
            d.write_due(now)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--netns", required=True, help="the namespace of the far end")
    parser.add_argument("--local", required=True, help="TUN device to create here")
    parser.add_argument("--remote", required=True, help="TUN device to create in --netns")
    parser.add_argument("--delay-us", type=int, required=True, help="delay of each direction, in microseconds")
    args = parser.parse_args()

    local = open_tun(args.local)
    enter_netns(args.netns)
    remote = open_tun(args.remote)
    notes = tune_scheduling()
    directions = [
        Direction(f"{args.local} -> {args.remote}", local, remote),
        Direction(f"{args.remote} -> {args.local}", remote, local),
    ]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready" + "".join(f"; {n}" for n in notes), flush=True)
    try:
        run(directions, args.delay_us / 1e6)
    finally:
        for d in directions:
            print(d.report(), flush=True)


if __name__ == "__main__":
    main()
