#!/usr/bin/env python3
"""Sender CPU per GiB over loopback TCP for the kernel's ways of sending file
bytes: sendfile (what gomodproxy and nginx use for zips), send() from a
mapping (a copy into the socket), and send() with MSG_ZEROCOPY from the same
mapping (pages pinned, completions read from the error queue). Issue 14 asks
to try what the kernel offers beyond sendfile and keep only what wins; this
measures the sender's side alone, without either server, in alternating
rounds.

    python3 benches/send-paths.py [GIB_PER_TURN] [ROUNDS]

The sender runs on CPU 1, a receiver that discards on CPU 0; the sender's
CPU time (user + system, getrusage) per GiB is what is printed, as markdown.
DIR=path puts the file elsewhere (default /dev/shm; a disk-backed
directory reads from the page cache as a store's segments do). Loopback only.
"""

import mmap
import os
import resource
import socket
import statistics
import sys
import tempfile

SO_ZEROCOPY = 60
MSG_ZEROCOPY = 0x4000000
CHUNK = 1 << 20
FILE_LEN = 64 << 20


def receiver(listener):
    os.sched_setaffinity(0, {0})
    buf = bytearray(CHUNK)
    while True:
        conn, _ = listener.accept()
        with conn:
            while conn.recv_into(buf):
                pass


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def drain_completions(sock):
    # Zero-copy completions arrive on the error queue; left there they
    # fill the socket's option memory and later sends fail.
    while True:
        try:
            sock.recvmsg(0, 4096, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


def turn(port, how, fd, mapped, total):
    sock = socket.create_connection(("127.0.0.1", port))
    if how == "zerocopy":
        sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    view = memoryview(mapped)
    sent, offset = 0, 0
    before = cpu()
    while sent < total:
        if how == "sendfile":
            n = os.sendfile(sock.fileno(), fd, offset, CHUNK)
        elif how == "copy":
            n = sock.send(view[offset:offset + CHUNK])
        else:
            n = sock.send(view[offset:offset + CHUNK], MSG_ZEROCOPY)
            drain_completions(sock)
        sent += n
        offset = (offset + n) % FILE_LEN
    used = cpu() - before
    sock.close()
    return used / (total / (1 << 30))


def main():
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 4
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        receiver(listener)
        os._exit(0)
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryFile(dir=os.environ.get("DIR", "/dev/shm")) as f:
        f.write(os.urandom(FILE_LEN))
        f.flush()
        mapped = mmap.mmap(f.fileno(), FILE_LEN, prot=mmap.PROT_READ)
        results = {how: [] for how in ("sendfile", "copy", "zerocopy")}
        try:
            for _ in range(rounds):
                for how in results:
                    results[how].append(turn(port, how, f.fileno(), mapped, int(gib * (1 << 30))))
        finally:
            os.kill(child, 9)
    base = statistics.median(results["sendfile"])
    print(f"### Sender CPU per GiB over loopback ({rounds} alternating rounds of {gib:g} GiB, 1 MiB sends)")
    print()
    print("| how | CPU ms per GiB, per round | median | vs sendfile |")
    print("|---|---|---:|---:|")
    for how, v in results.items():
        m = statistics.median(v)
        print(f"| {how} | {', '.join(f'{x * 1000:.0f}' for x in v)} | {m * 1000:.0f} | **{m / base:.2f}** |")


if __name__ == "__main__":
    main()
