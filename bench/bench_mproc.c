/* mproc's side of the bench/ workloads. Same command line and output as bench_raw
 * (see bench_common.h), with "impl": "mproc". Workload names and sizes are those of
 * bench_python.py and bench_raw.c.
 *
 * Children are started with the share list (opts.share / mproc_shared), never
 * through globals, so each workload runs the same under fork and spawn. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_THREAD_CPUTIME_ID */
#endif
#include <stdint.h>
#include <stdio.h>

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

/* ------------------------------------------------------------ queues */

/* Puts count messages of size bytes: arg is {count, size}. */
static int producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  uint64_t a[2];
  unsigned char *buf;
  if (len != sizeof a)
    return 1;
  memcpy(a, arg, sizeof a);
  if ((buf = malloc(a[1] ? a[1] : 1)) == NULL)
    return 1;
  memset(buf, 'q', a[1]);
  for (uint64_t i = 0; i < a[0]; i++)
    if (mproc_queue_put(q, buf, a[1], MPROC_FOREVER) != 0)
      return 1;
  free(buf);
  return 0;
}

/* A child puts count messages of size bytes, the parent gets them into one buffer.
 * Seconds for count - 1 messages, timed from the first one in; < 0 on failure. */
static double queue_run(size_t count, size_t size) {
  mproc_queue *q;
  mproc_process *p;
  uint64_t a[2] = {count, size};
  unsigned char *buf = malloc(size);
  double t0 = 0, dt = -1;
  size_t got;
  int code = -1;

  if (buf == NULL || mproc_queue_create(&q, NULL) != 0)
    return -1;
  void *share[] = {q};
  mproc_process_opts opts = {.share = share, .nshare = 1};
  if (mproc_process_start(&p, producer, a, sizeof a, &opts) != 0)
    return -1;
  for (size_t i = 0; i < count; i++) {
    if (mproc_queue_get_into(q, buf, size, &got, MPROC_FOREVER) != 0 || got != size)
      goto out;
    if (i == 0)
      t0 = bench_now();
  }
  dt = bench_now() - t0;
out:
  if (mproc_process_join(p, MPROC_FOREVER) != 0 || mproc_process_exitcode(p, &code) != 0 ||
      code != 0)
    dt = -1;
  mproc_process_free(p);
  mproc_queue_free(q);
  free(buf);
  return dt;
}

static int w_queue_64(const bench_opts *o) {
  size_t count = BENCH_SIZE(o, 200000, 20000);
  char params[64];
  double dt = queue_run(count, 64);
  if (dt <= 0)
    BENCH_FAIL("queue_64: %s", mproc_last_error());
  snprintf(params, sizeof params, "%zu x 64 B, Queue, get_into", count);
  bench_emit("queue_64", IMPL, (double)(count - 1) / dt, "msg/s", "higher", params);
  return 0;
}

static int w_queue_1m(const bench_opts *o) {
  size_t count = BENCH_SIZE(o, 256, 64);
  char params[64];
  double dt = queue_run(count, MiB);
  if (dt <= 0)
    BENCH_FAIL("queue_1m: %s", mproc_last_error());
  snprintf(params, sizeof params, "%zu x 1 MiB, Queue (4 MiB ring), get_into", count);
  bench_emit("queue_1m", IMPL, (double)(count - 1) * (double)MiB / dt / 1e9, "GB/s", "higher",
             params);
  return 0;
}

/* queue_4x4: 4 producers and 4 consumers on one queue. Every child says it is ready
 * on a semaphore; producers wait for the go event; a consumer stops at an empty
 * message and reports how many it got on a second queue. */
enum { QN = 4 };

static int mpmc_producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_sem *ready = mproc_shared(ctx, 2);
  mproc_event *go = mproc_shared(ctx, 3);
  unsigned char buf[64];
  uint64_t count;
  if (len != sizeof count)
    return 1;
  memcpy(&count, arg, sizeof count);
  memset(buf, 'q', sizeof buf);
  if (mproc_sem_release(ready) != 0 || mproc_event_wait(go, MPROC_FOREVER) != 0)
    return 1;
  for (uint64_t i = 0; i < count; i++)
    if (mproc_queue_put(q, buf, sizeof buf, MPROC_FOREVER) != 0)
      return 1;
  return 0;
}

static int mpmc_consumer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0), *done = mproc_shared(ctx, 1);
  mproc_sem *ready = mproc_shared(ctx, 2);
  unsigned char buf[64];
  uint64_t n = 0;
  size_t got;
  (void)arg;
  (void)len;
  if (mproc_sem_release(ready) != 0)
    return 1;
  for (;;) {
    if (mproc_queue_get_into(q, buf, sizeof buf, &got, MPROC_FOREVER) != 0)
      return 1;
    if (got == 0)
      break;
    n++;
  }
  return mproc_queue_put(done, &n, sizeof n, MPROC_FOREVER) != 0;
}

static int w_queue_4x4(const bench_opts *o) {
  uint64_t per = BENCH_SIZE(o, 100000, 10000), total = 0;
  mproc_queue *q, *done;
  mproc_sem *ready;
  mproc_event *go;
  mproc_process *ps[2 * QN];
  char params[80];
  double t0, dt;

  CHECK(mproc_queue_create(&q, NULL));
  CHECK(mproc_queue_create(&done, NULL));
  CHECK(mproc_sem_create(&ready, 0, false));
  CHECK(mproc_event_create(&go));
  void *share[] = {q, done, ready, go};
  mproc_process_opts opts = {.share = share, .nshare = 4};
  for (int i = 0; i < 2 * QN; i++)
    CHECK(mproc_process_start(&ps[i], i < QN ? mpmc_producer : mpmc_consumer, &per, sizeof per,
                              &opts));
  for (int i = 0; i < 2 * QN; i++)
    CHECK(mproc_sem_acquire(ready, MPROC_FOREVER));
  t0 = bench_now();
  CHECK(mproc_event_set(go));
  for (int i = 0; i < QN; i++)
    CHECK(mproc_process_join(ps[i], MPROC_FOREVER));
  for (int i = 0; i < QN; i++)
    CHECK(mproc_queue_put(q, "", 0, MPROC_FOREVER)); /* one stop message each */
  for (int i = 0; i < QN; i++) {
    uint64_t n;
    size_t got;
    CHECK(mproc_queue_get_into(done, &n, sizeof n, &got, MPROC_FOREVER));
    total += n;
  }
  dt = bench_now() - t0;
  for (int i = 0; i < 2 * QN; i++) {
    int code = -1;
    CHECK(mproc_process_join(ps[i], MPROC_FOREVER));
    CHECK(mproc_process_exitcode(ps[i], &code));
    if (code != 0)
      BENCH_FAIL("queue_4x4: child %d exited with %d", i, code);
    mproc_process_free(ps[i]);
  }
  if (total != QN * per)
    BENCH_FAIL("queue_4x4: %llu messages got, %llu put", (unsigned long long)total,
               (unsigned long long)(QN * per));
  mproc_queue_free(q);
  mproc_queue_free(done);
  mproc_sem_free(ready);
  mproc_event_free(go);
  snprintf(params, sizeof params, "4 producers x %llu x 64 B, 4 consumers, one Queue",
           (unsigned long long)per);
  bench_emit("queue_4x4", IMPL, (double)total / dt, "msg/s", "higher", params);
  return 0;
}

/* ------------------------------------------------------------- pools */

static int inc(mproc_ctx *ctx, const void *arg, size_t len) {
  uint64_t x;
  if (len != sizeof x)
    return mproc_fail(ctx, "inc: %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  x++;
  return mproc_return(ctx, &x, sizeof x);
}

/* Spends *(uint64_t *)arg ms of this thread's CPU time. */
static int burn(mproc_ctx *ctx, const void *arg, size_t len) {
  uint64_t ms;
  struct timespec ts;
  double end;
  if (len != sizeof ms)
    return mproc_fail(ctx, "burn: %zu bytes", len);
  memcpy(&ms, arg, sizeof ms);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + (double)ms / 1e3;
  do
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  while ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 < end);
  return mproc_return(ctx, &ms, sizeof ms);
}

static uint64_t *iota(size_t n) {
  uint64_t *v = malloc((n ? n : 1) * sizeof *v);
  for (size_t i = 0; v && i < n; i++)
    v[i] = i;
  return v;
}

/* Pool(2), fork, with both workers up and running (as bench_python.py's warm_pool). */
static int warm_pool(mproc_pool **p, mproc_start_method method) {
  mproc_pool_opts opts = {.processes = 2, .start_method = method};
  uint64_t in[100], out[100];
  int r;
  for (size_t i = 0; i < 100; i++)
    in[i] = i;
  if ((r = mproc_pool_create(p, &opts)) != 0)
    return r;
  if ((r = mproc_pool_map(*p, inc, in, 100, sizeof *in, out, sizeof *out, 1)) != 0)
    mproc_pool_free(*p);
  return r;
}

static int close_pool(mproc_pool *p) {
  int r = mproc_pool_close(p);
  if (r == 0)
    r = mproc_pool_join(p);
  mproc_pool_free(p);
  return r;
}

static int w_pool_apply_async_rtt(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 10000, 1000);
  mproc_pool *p;
  char params[64];
  CHECK(warm_pool(&p, MPROC_START_FORK));
  double t0 = bench_now();
  for (uint64_t i = 0; i < n; i++) {
    mproc_result *r;
    const void *data;
    size_t len;
    uint64_t y;
    CHECK(mproc_pool_apply_async(p, inc, &i, sizeof i, NULL, &r));
    CHECK(mproc_result_get(r, MPROC_FOREVER, &data, &len));
    memcpy(&y, data, sizeof y);
    if (len != sizeof y || y != i + 1)
      BENCH_FAIL("apply_async: wrong result");
    mproc_result_free(r);
  }
  double us = (bench_now() - t0) * 1e6 / (double)n;
  CHECK(close_pool(p));
  snprintf(params, sizeof params, "n=%zu, Pool(2), apply_async + result_get", n);
  bench_emit("pool_apply_async_rtt", IMPL, us, "us", "lower", params);
  return 0;
}

/* One map (or imap_unordered) of inc over in[0..n): how many results came back. */
static size_t map_once(mproc_pool *p, const uint64_t *in, uint64_t *out, size_t n,
                       size_t chunksize, bool unordered) {
  size_t got = 0;
  if (unordered) {
    mproc_iter *it;
    size_t index, len;
    const void *data;
    int r;
    if (mproc_pool_imap_unordered(p, inc, in, n, sizeof *in, chunksize, &it) != 0)
      return 0;
    while ((r = mproc_iter_next(it, MPROC_FOREVER, &index, &data, &len)) == 0)
      got++;
    mproc_iter_free(it);
    return r == MPROC_EOF ? got : 0;
  }
  if (mproc_pool_map(p, inc, in, n, sizeof *in, out, sizeof *out, chunksize) != 0)
    return 0;
  return out[n - 1] == n ? n : 0;
}

/* map (or imap_unordered) of inc over 0..n-1 on a warm Pool(2). */
static int pool_map(const char *name, size_t n, size_t chunksize, bool unordered) {
  mproc_pool *p;
  uint64_t *in = iota(n), *out = malloc((n ? n : 1) * sizeof *out);
  size_t got;
  char params[80];
  if (in == NULL || out == NULL)
    BENCH_FAIL("%s: out of memory", name);
  CHECK(warm_pool(&p, MPROC_START_FORK));
  /* The same call once untimed: buffers and pages warm, as in bench_python.py. */
  if (map_once(p, in, out, n, chunksize, unordered) != n)
    BENCH_FAIL("%s: %s", name, mproc_last_error());
  double t0 = bench_now();
  got = map_once(p, in, out, n, chunksize, unordered);
  double dt = bench_now() - t0;
  CHECK(close_pool(p));
  free(in);
  free(out);
  if (got != n)
    BENCH_FAIL("%s: %zu results of %zu", name, got, n);
  if (chunksize)
    snprintf(params, sizeof params, "n=%zu, Pool(2).%s, chunksize %zu", n,
             unordered ? "imap_unordered" : "map", chunksize);
  else
    snprintf(params, sizeof params, "n=%zu, Pool(2).map, default chunksize", n);
  bench_emit(name, IMPL, (double)n / dt, "tasks/s", "higher", params);
  return 0;
}

static int w_pool_map_100k_cs1(const bench_opts *o) {
  return pool_map("pool_map_100k_cs1", BENCH_SIZE(o, 100000, 10000), 1, false);
}

static int w_pool_map_100k(const bench_opts *o) {
  return pool_map("pool_map_100k", BENCH_SIZE(o, 100000, 10000), 0, false);
}

static int w_pool_imap_unordered_100k_cs1(const bench_opts *o) {
  return pool_map("pool_imap_unordered_100k_cs1", BENCH_SIZE(o, 100000, 10000), 1, true);
}

static int w_pool_map_cpu(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 200, 40);
  uint64_t ms = 5, *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  mproc_pool *p;
  char params[96];
  if (in == NULL || out == NULL)
    BENCH_FAIL("pool_map_cpu: out of memory");
  for (size_t i = 0; i < n; i++)
    in[i] = ms;
  CHECK(warm_pool(&p, MPROC_START_FORK));
  double t0 = bench_now();
  CHECK(mproc_pool_map(p, burn, in, n, sizeof *in, out, sizeof *out, 0));
  double dt = bench_now() - t0;
  CHECK(close_pool(p));
  for (size_t i = 0; i < n; i++)
    if (out[i] != ms)
      BENCH_FAIL("pool_map_cpu: wrong result");
  free(in);
  free(out);
  snprintf(params, sizeof params,
           "%zu tasks x %llu ms CPU, Pool(2).map, default chunksize; ideal %llu ms", n,
           (unsigned long long)ms, (unsigned long long)(n * ms / 2));
  bench_emit("pool_map_cpu", IMPL, dt * 1e3, "ms", "lower", params);
  return 0;
}

static int pool_start(const char *name, mproc_start_method method, size_t n) {
  double *t = malloc(n * sizeof *t);
  mproc_pool_opts opts = {.processes = 2, .start_method = method};
  char params[64];
  if (t == NULL)
    BENCH_FAIL("%s: out of memory", name);
  for (size_t i = 0; i < n; i++) {
    mproc_pool *p;
    uint64_t one = 1, y = 0;
    void *out;
    size_t len;
    double t0 = bench_now();
    CHECK(mproc_pool_create(&p, &opts));
    CHECK(mproc_pool_apply(p, inc, &one, sizeof one, &out, &len));
    CHECK(close_pool(p));
    t[i] = (bench_now() - t0) * 1e3;
    if (len == sizeof y)
      memcpy(&y, out, sizeof y);
    free(out);
    if (y != 2)
      BENCH_FAIL("%s: wrong result", name);
  }
  snprintf(params, sizeof params, "n=%zu, median, Pool(2) + apply + close + join", n);
  bench_emit(name, IMPL, bench_median(t, n), "ms", "lower", params);
  free(t);
  return 0;
}

static int w_pool_start_fork(const bench_opts *o) {
  return pool_start("pool_start_fork", MPROC_START_FORK, BENCH_SIZE(o, 20, 5));
}

static int w_pool_start_spawn(const bench_opts *o) {
  return pool_start("pool_start_spawn", MPROC_START_SPAWN, BENCH_SIZE(o, 10, 3));
}

/* pool_imap_mem_10m: the parent's peak resident memory, above what it had just
 * before, during an ordered imap over lazily produced items. */

/* A field of /proc/self/status, in kB; -1 if absent. */
static long status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':')
      v = strtol(line + n + 1, NULL, 10);
  if (f)
    fclose(f);
  return v;
}

/* Resets the peak (VmHWM) to the current size (Linux >= 4.0). */
static int reset_peak(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f == NULL)
    return -1;
  int r = fputs("5", f) < 0;
  return fclose(f) != 0 || r ? -1 : 0;
}

typedef struct counter {
  uint64_t n, cur;
} counter;

static int count_up(void *user, size_t index, const void **data, size_t *len) {
  counter *c = user;
  if (index >= c->n)
    return 0;
  c->cur = index;
  *data = &c->cur;
  *len = sizeof c->cur;
  return 1;
}

static int w_pool_imap_mem_10m(const bench_opts *o) {
  counter c = {BENCH_SIZE(o, 10000000, 200000), 0};
  size_t chunksize = 100, index, len, got = 0;
  const void *data;
  uint64_t sum = 0, y;
  mproc_pool *p;
  mproc_iter *it;
  char params[96];
  int r;
  CHECK(warm_pool(&p, MPROC_START_FORK));
  if (reset_peak() != 0)
    BENCH_FAIL("pool_imap_mem_10m: cannot reset the peak in /proc/self/clear_refs");
  long base = status_kb("VmRSS");
  CHECK(mproc_pool_imap_source(p, inc, count_up, &c, chunksize, true, &it));
  while ((r = mproc_iter_next(it, MPROC_FOREVER, &index, &data, &len)) == 0) {
    memcpy(&y, data, sizeof y);
    sum += y;
    got++;
  }
  if (r != MPROC_EOF)
    BENCH_FAIL("pool_imap_mem_10m: %s", mproc_last_error());
  long peak = status_kb("VmHWM");
  mproc_iter_free(it);
  CHECK(close_pool(p));
  if (got != c.n || sum != c.n * (c.n + 1) / 2)
    BENCH_FAIL("pool_imap_mem_10m: %zu results, wrong sum", got);
  snprintf(params, sizeof params,
           "n=%llu, Pool(2).imap_source (ordered), chunksize %zu; peak RSS - start",
           (unsigned long long)c.n, chunksize);
  bench_emit("pool_imap_mem_10m", IMPL, (double)(peak - base) / 1024.0, "MB", "lower", params);
  return 0;
}

/* ------------------------------------------------------------- main */

static const bench_workload workloads[] = {
    {"start_fork", w_start_fork},
    {"start_spawn", w_start_spawn},
    {"pipe_pingpong_64", w_pipe_pingpong_64},
    {"pipe_oneway_1m", w_pipe_oneway_1m},
    {"queue_64", w_queue_64},
    {"queue_1m", w_queue_1m},
    {"queue_4x4", w_queue_4x4},
    {"pool_apply_async_rtt", w_pool_apply_async_rtt},
    {"pool_map_100k_cs1", w_pool_map_100k_cs1},
    {"pool_map_100k", w_pool_map_100k},
    {"pool_imap_unordered_100k_cs1", w_pool_imap_unordered_100k_cs1},
    {"pool_map_cpu", w_pool_map_cpu},
    {"pool_start_fork", w_pool_start_fork},
    {"pool_start_spawn", w_pool_start_spawn},
    {"pool_imap_mem_10m", w_pool_imap_mem_10m},
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
