/* mproc's side of the bench/ workloads. Same command line and output as bench_raw
 * (see bench_common.h), with "impl": "mproc".
 *
 * Only what the library has today is here: Process (fork, spawn) and Pipe.
 * run.py knows the names of the workloads still to come, as bench_python.py and
 * bench_raw.c have them; add each here, under the same name and with the same
 * sizes, when the library gets what it needs:
 *   queue_64, queue_1m                      Queue put/get, child puts, parent gets
 *   pool_apply_async_rtt                    Pool(2): apply_async(...).get() in a loop
 *   pool_map_100k_cs1, pool_map_100k        Pool(2).map of 100k trivial tasks
 *   pool_imap_unordered_100k_cs1            Pool(2).imap_unordered, chunksize 1
 *   pool_map_cpu                            Pool(2).map of 200 tasks of 5 ms CPU each
 *   pool_start_fork, pool_start_spawn       Pool(2) start + one task + close + join
 *
 * Children are started with the share list (opts.share / mproc_shared), never
 * through globals, so each workload runs the same under fork and spawn. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <stdint.h>

#include <mproc.h>

#include "bench_common.h"

#define IMPL "mproc"

#define CHECK(call)                                                                            \
  do {                                                                                         \
    int r_ = (call);                                                                           \
    if (r_ != 0)                                                                               \
      BENCH_FAIL("%s:%d: %s: %s (%s)", __FILE__, __LINE__, #call, mproc_err_name(r_),          \
                 mproc_last_error());                                                          \
  } while (0)

/* -------------------------------------------------- process start */

static int trivial(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}

static int start_join(const char *name, mproc_start_method method, size_t n, size_t warm) {
  mproc_process_opts opts = {.start_method = method};
  double *t = malloc(n * sizeof *t);
  char params[64];

  for (size_t i = 0; i < warm + n; i++) {
    mproc_process *p;
    int code = -1;
    double t0 = bench_now();
    CHECK(mproc_process_start(&p, trivial, NULL, 0, &opts));
    CHECK(mproc_process_join(p, MPROC_FOREVER));
    double dt = bench_now() - t0;
    CHECK(mproc_process_exitcode(p, &code));
    if (code != 0)
      BENCH_FAIL("%s: child exited with %d", name, code);
    mproc_process_free(p);
    if (i >= warm)
      t[i - warm] = dt * 1e6;
  }
  snprintf(params, sizeof params, "n=%zu, median", n);
  bench_emit(name, IMPL, bench_median(t, n), "us", "lower", params);
  free(t);
  return 0;
}

static int w_start_fork(const bench_opts *o) {
  return start_join("start_fork", MPROC_START_FORK, BENCH_SIZE(o, 200, 20), 5);
}

static int w_start_spawn(const bench_opts *o) {
  return start_join("start_spawn", MPROC_START_SPAWN, BENCH_SIZE(o, 50, 10), 3);
}

/* ------------------------------------------------------------ pipes */

/* Echoes every message back until the parent closes its end. */
static int echo(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  unsigned char buf[64];
  size_t got;
  int r;
  (void)arg;
  (void)len;
  while ((r = mproc_conn_recv_into(c, buf, sizeof buf, &got)) == 0)
    if (mproc_conn_send(c, buf, got) != 0)
      return 1;
  return r == MPROC_EOF ? 0 : 1;
}

static int w_pipe_pingpong_64(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 50000, 5000), warm = 1000;
  unsigned char msg[64], buf[64];
  mproc_conn *a, *b;
  mproc_process *p;
  size_t got;
  double t0 = 0;
  int code = -1;
  char params[64];

  memset(msg, 'x', sizeof msg);
  CHECK(mproc_pipe(&a, &b, true));
  void *share[] = {b};
  mproc_process_opts opts = {.share = share, .nshare = 1};
  CHECK(mproc_process_start(&p, echo, NULL, 0, &opts));
  mproc_conn_free(b); /* the child has its own */
  for (size_t i = 0; i < warm + n; i++) {
    if (i == warm)
      t0 = bench_now();
    CHECK(mproc_conn_send(a, msg, sizeof msg));
    CHECK(mproc_conn_recv_into(a, buf, sizeof buf, &got));
    if (got != sizeof msg)
      BENCH_FAIL("ping-pong: %zu bytes back", got);
  }
  double us = (bench_now() - t0) * 1e6 / (double)n;
  mproc_conn_free(a);
  CHECK(mproc_process_join(p, MPROC_FOREVER));
  CHECK(mproc_process_exitcode(p, &code));
  if (code != 0)
    BENCH_FAIL("echo child exited with %d", code);
  mproc_process_free(p);
  snprintf(params, sizeof params, "n=%zu round trips, duplex pipe", n);
  bench_emit("pipe_pingpong_64", IMPL, us, "us", "lower", params);
  return 0;
}

/* Sends *(uint64_t *)arg messages of 1 MiB. */
static int sender(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  uint64_t count;
  unsigned char *buf = malloc(MiB);
  if (buf == NULL || len != sizeof count)
    return 1;
  memcpy(&count, arg, sizeof count);
  memset(buf, 'y', MiB);
  for (uint64_t i = 0; i < count; i++)
    if (mproc_conn_send(c, buf, MiB) != 0)
      return 1;
  free(buf);
  return 0;
}

static int w_pipe_oneway_1m(const bench_opts *o) {
  uint64_t count = BENCH_SIZE(o, 2048, 256);
  unsigned char *buf = malloc(MiB);
  mproc_conn *a, *b;
  mproc_process *p;
  size_t got;
  double t0 = 0;
  int code = -1;
  char params[64];

  CHECK(mproc_pipe(&a, &b, false));
  void *share[] = {b};
  mproc_process_opts opts = {.share = share, .nshare = 1};
  CHECK(mproc_process_start(&p, sender, &count, sizeof count, &opts));
  mproc_conn_free(b);
  /* The clock starts once the first message is in: process start is not timed. */
  for (uint64_t i = 0; i < count; i++) {
    CHECK(mproc_conn_recv_into(a, buf, MiB, &got));
    if (got != MiB)
      BENCH_FAIL("one-way: a message of %zu bytes", got);
    if (i == 0)
      t0 = bench_now();
  }
  double gbs = (double)(count - 1) * (double)MiB / (bench_now() - t0) / 1e9;
  mproc_conn_free(a);
  free(buf);
  CHECK(mproc_process_join(p, MPROC_FOREVER));
  CHECK(mproc_process_exitcode(p, &code));
  if (code != 0)
    BENCH_FAIL("sender exited with %d", code);
  mproc_process_free(p);
  snprintf(params, sizeof params, "%llu x 1 MiB, simplex pipe, recv_into",
           (unsigned long long)count);
  bench_emit("pipe_oneway_1m", IMPL, gbs, "GB/s", "higher", params);
  return 0;
}

/* ------------------------------------------------------------- main */

static const bench_workload workloads[] = {
    {"start_fork", w_start_fork},
    {"start_spawn", w_start_spawn},
    {"pipe_pingpong_64", w_pipe_pingpong_64},
    {"pipe_oneway_1m", w_pipe_oneway_1m},
};

int main(int argc, char **argv) {
  /* In a child started with spawn this runs the child's function and exits. */
  int r = mproc_init(&argc, &argv);
  if (r != 0) {
    fprintf(stderr, "mproc_init: %s\n", mproc_last_error());
    return 1;
  }
  return bench_main(argc, argv, workloads, sizeof workloads / sizeof workloads[0]);
}
