#!/usr/bin/env python3
"""CPython multiprocessing's side of the bench/ workloads (standard library only).

Same command line and output as bench_mproc and bench_raw (see bench_common.h):

    python3 bench_python.py [--quick] [--list] [WORKLOAD ...]

prints one JSON object per line with "impl": "cpython". The fork context is used
throughout, except where a workload names spawn. Sizes match the C programs.
"""

import json
import multiprocessing as mp
import statistics
import sys
import time

IMPL = "cpython"
MiB = 1024 * 1024


def now():
    return time.perf_counter()


def emit(workload, value, unit, better, params=""):
    print(json.dumps({"workload": workload, "impl": IMPL, "value": float("%.6g" % value),
                      "unit": unit, "better": better, "params": params}), flush=True)


def size(quick, full, small):
    return small if quick else full


# Children (top level, so that spawn can find them by name). -------------------

def trivial():
    pass


def inc(x):
    return x + 1


def burn(ms):
    """Spends ms milliseconds of this process's CPU time, whatever the language."""
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        pass
    return ms


def echo(conn, other):
    other.close()  # the parent's end, inherited through fork: else no EOF
    buf = bytearray(64)
    try:
        while True:
            n = conn.recv_bytes_into(buf)
            conn.send_bytes(buf, 0, n)
    except EOFError:
        pass


def sender(conn, other, count):
    other.close()
    data = b"y" * MiB
    for _ in range(count):
        conn.send_bytes(data)
    conn.close()


def mpmc_producer(q, ready, go, count):
    data = b"q" * 64
    ready.release()
    go.wait()
    for _ in range(count):
        q.put(data)
    q.close()
    q.join_thread()


def mpmc_consumer(q, done, ready):
    ready.release()
    n = 0
    get = q.get
    while get():  # b"" stops
        n += 1
    done.put(n)


def producer(q, count, nbytes):
    data = b"q" * nbytes
    for _ in range(count):
        q.put(data)
    q.close()
    q.join_thread()


# Workloads. --------------------------------------------------------------------

def start_join(name, method, n, warm):
    ctx = mp.get_context(method)
    times = []
    for i in range(warm + n):
        t0 = now()
        p = ctx.Process(target=trivial)
        p.start()
        p.join()
        dt = now() - t0
        if p.exitcode != 0:
            raise RuntimeError("child exited with %s" % p.exitcode)
        if i >= warm:
            times.append(dt * 1e6)
    emit(name, statistics.median(times), "us", "lower", "n=%d, median" % n)


def w_start_fork(quick):
    start_join("start_fork", "fork", size(quick, 200, 20), 5)


def w_start_spawn(quick):
    start_join("start_spawn", "spawn", size(quick, 50, 10), 3)


def w_pipe_pingpong_64(quick):
    n, warm = size(quick, 50000, 5000), 1000
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe(duplex=True)
    p = ctx.Process(target=echo, args=(b, a))
    p.start()
    b.close()
    msg = b"x" * 64
    buf = bytearray(64)
    send, recv = a.send_bytes, a.recv_bytes_into
    for _ in range(warm):
        send(msg)
        recv(buf)
    t0 = now()
    for _ in range(n):
        send(msg)
        if recv(buf) != 64:
            raise RuntimeError("short echo")
    us = (now() - t0) * 1e6 / n
    a.close()
    p.join()
    emit("pipe_pingpong_64", us, "us", "lower", "n=%d round trips, Pipe(duplex=True)" % n)


def w_pipe_oneway_1m(quick):
    count = size(quick, 2048, 256)
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe(duplex=False)  # a receives, b sends
    p = ctx.Process(target=sender, args=(b, a, count))
    p.start()
    b.close()
    buf = bytearray(MiB)
    t0 = 0.0
    for i in range(count):
        if a.recv_bytes_into(buf) != MiB:
            raise RuntimeError("short message")
        if i == 0:
            t0 = now()  # process start is not timed
    gbs = (count - 1) * MiB / (now() - t0) / 1e9
    a.close()
    p.join()
    emit("pipe_oneway_1m", gbs, "GB/s", "higher",
         "%d x 1 MiB, Pipe(duplex=False), recv_bytes_into" % count)


def queue_run(count, nbytes):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, count, nbytes))
    p.start()
    get = q.get
    t0 = 0.0
    for i in range(count):
        if len(get()) != nbytes:
            raise RuntimeError("bad item")
        if i == 0:
            t0 = now()
    dt = now() - t0
    p.join()
    return dt


def w_queue_64(quick):
    count = size(quick, 200000, 20000)
    dt = queue_run(count, 64)
    emit("queue_64", (count - 1) / dt, "msg/s", "higher", "%d x 64 B, Queue" % count)


def w_queue_1m(quick):
    count = size(quick, 256, 64)
    dt = queue_run(count, MiB)
    emit("queue_1m", (count - 1) * MiB / dt / 1e9, "GB/s", "higher", "%d x 1 MiB, Queue" % count)


def w_queue_4x4(quick):
    per, qn = size(quick, 100000, 10000), 4
    ctx = mp.get_context("fork")
    q, done, ready, go = ctx.Queue(), ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    ps = [ctx.Process(target=mpmc_producer, args=(q, ready, go, per)) for _ in range(qn)]
    ps += [ctx.Process(target=mpmc_consumer, args=(q, done, ready)) for _ in range(qn)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    t0 = now()
    go.set()
    for p in ps[:qn]:
        p.join()
    for _ in range(qn):
        q.put(b"")  # one stop message each
    total = sum(done.get() for _ in range(qn))
    dt = now() - t0
    for p in ps:
        p.join()
    if total != qn * per:
        raise RuntimeError("%d messages got, %d put" % (total, qn * per))
    emit("queue_4x4", total / dt, "msg/s", "higher",
         "4 producers x %d x 64 B, 4 consumers, one Queue" % per)


def warm_pool(method="fork"):
    pool = mp.get_context(method).Pool(2)
    pool.map(inc, range(100), chunksize=1)  # both workers up and running
    return pool


def close_pool(pool):
    pool.close()
    pool.join()


def w_pool_apply_async_rtt(quick):
    n = size(quick, 10000, 1000)
    pool = warm_pool()
    t0 = now()
    for i in range(n):
        if pool.apply_async(inc, (i,)).get() != i + 1:
            raise RuntimeError("bad result")
    us = (now() - t0) * 1e6 / n
    close_pool(pool)
    emit("pool_apply_async_rtt", us, "us", "lower", "n=%d, Pool(2), apply_async().get()" % n)


def pool_map(name, n, chunksize, unordered=False):
    pool = warm_pool()

    def run():
        if unordered:
            return sum(1 for _ in pool.imap_unordered(inc, range(n), chunksize=chunksize or 1))
        out = pool.map(inc, range(n), chunksize=chunksize)
        if out[-1] != n:
            raise RuntimeError("bad result")
        return len(out)

    run()  # the same call once untimed: buffers and pages warm, as in bench_mproc
    t0 = now()
    got = run()
    dt = now() - t0
    close_pool(pool)
    if got != n:
        raise RuntimeError("missing results")
    what = "imap_unordered" if unordered else "map"
    cs = "chunksize %d" % chunksize if chunksize else "default chunksize"
    emit(name, n / dt, "tasks/s", "higher", "n=%d, Pool(2).%s, %s" % (n, what, cs))


def w_pool_map_100k_cs1(quick):
    pool_map("pool_map_100k_cs1", size(quick, 100000, 10000), 1)


def w_pool_map_100k(quick):
    pool_map("pool_map_100k", size(quick, 100000, 10000), None)


def w_pool_imap_unordered_100k_cs1(quick):
    pool_map("pool_imap_unordered_100k_cs1", size(quick, 100000, 10000), 1, unordered=True)


def w_pool_map_cpu(quick):
    n, ms = size(quick, 200, 40), 5
    pool = warm_pool()
    t0 = now()
    if sum(pool.map(burn, [ms] * n)) != n * ms:
        raise RuntimeError("bad result")
    dt = now() - t0
    close_pool(pool)
    emit("pool_map_cpu", dt * 1e3, "ms", "lower",
         "%d tasks x %d ms CPU, Pool(2).map, default chunksize; ideal %d ms"
         % (n, ms, n * ms // 2))


def pool_start(name, method, n):
    ctx = mp.get_context(method)
    times = []
    for _ in range(n):
        t0 = now()
        pool = ctx.Pool(2)
        if pool.apply(inc, (1,)) != 2:
            raise RuntimeError("bad result")
        pool.close()
        pool.join()
        times.append((now() - t0) * 1e3)
    emit(name, statistics.median(times), "ms", "lower",
         "n=%d, median, Pool(2) + apply + close + join" % n)


def w_pool_start_fork(quick):
    pool_start("pool_start_fork", "fork", size(quick, 20, 5))


def w_pool_start_spawn(quick):
    pool_start("pool_start_spawn", "spawn", size(quick, 10, 3))


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def w_pool_imap_mem_10m(quick):
    n, chunksize = size(quick, 10000000, 200000), 100
    pool = warm_pool()
    with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) starts again here
        f.write("5")
    base = status_kb("VmRSS")
    total = got = 0
    for y in pool.imap(inc, (i for i in range(n)), chunksize=chunksize):
        total += y
        got += 1
    peak = status_kb("VmHWM")
    close_pool(pool)
    if got != n or total != n * (n + 1) // 2:
        raise RuntimeError("wrong results")
    emit("pool_imap_mem_10m", (peak - base) / 1024.0, "MB", "lower",
         "n=%d, Pool(2).imap over a generator, chunksize %d; peak RSS - start" % (n, chunksize))


WORKLOADS = {
    "start_fork": w_start_fork,
    "start_spawn": w_start_spawn,
    "pipe_pingpong_64": w_pipe_pingpong_64,
    "pipe_oneway_1m": w_pipe_oneway_1m,
    "queue_64": w_queue_64,
    "queue_1m": w_queue_1m,
    "queue_4x4": w_queue_4x4,
    "pool_apply_async_rtt": w_pool_apply_async_rtt,
    "pool_map_100k_cs1": w_pool_map_100k_cs1,
    "pool_map_100k": w_pool_map_100k,
    "pool_imap_unordered_100k_cs1": w_pool_imap_unordered_100k_cs1,
    "pool_map_cpu": w_pool_map_cpu,
    "pool_start_fork": w_pool_start_fork,
    "pool_start_spawn": w_pool_start_spawn,
    "pool_imap_mem_10m": w_pool_imap_mem_10m,
}


def main(argv):
    quick = False
    chosen = []
    for a in argv[1:]:
        if a == "--quick":
            quick = True
        elif a == "--list":
            print("\n".join(WORKLOADS))
            return 0
        elif a.startswith("-"):
            print("usage: %s [--quick] [--list] [WORKLOAD ...]" % argv[0], file=sys.stderr)
            return 2
        elif a not in WORKLOADS:
            print("%s: unknown workload '%s' (--list shows them)" % (argv[0], a), file=sys.stderr)
            return 2
        else:
            chosen.append(a)
    failed = 0
    for name, fn in WORKLOADS.items():
        if chosen and name not in chosen:
            continue
        try:
            fn(quick)
        except Exception as e:  # report and go on with the others
            print("%s: workload %s failed: %r" % (argv[0], name, e), file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
