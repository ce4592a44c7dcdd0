/* Pool: creation and bad input, apply / apply_async / map / map_v / imap /
 * imap_unordered / imap_source, callbacks, workers that crash or are killed, task
 * timeouts, cancel, maxtasksperchild and the initializer, the share list, close /
 * terminate / join, and worker replacement while other threads allocate, under the
 * run's start method (--start=fork or --start=spawn).
 *
 * Task functions run in the workers: they never use cmocka's assertions (runner.h).
 * They report through their result or mproc_fail(), and through a "board" of counters
 * in shared memory handed to the pool as share[0]. Nothing here asserts on elapsed
 * time: timeouts are checked through their error codes, and every wait is bounded so
 * that a hang fails the test instead of the run. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ------------------------------------------------------------ the board */

#define MAX_PIDS 1024

/* Counters the tasks and the parent share (a SharedMemory block, share[0]). */
typedef struct board {
  int release;             /* set by the parent: blocked tasks may finish */
  int started;             /* tasks that began */
  int finished;            /* tasks that ran to their end */
  int init_runs;           /* initializer runs (index into init_pids) */
  long pids[MAX_PIDS];     /* every worker pid that ran a recording task, once each */
  long init_pids[MAX_PIDS]; /* the pid of each initializer run, one entry per run */
} board;

/* Adds pid to a table of distinct pids (lock-free, several processes at once). */
static void pid_insert(long *tab, long pid) {
  for (size_t i = 0; i < MAX_PIDS; i++) {
    long expected = 0;
    if (test_load_long(&tab[i]) == pid)
      return;
    if (test_cas_long(&tab[i], &expected, pid) || expected == pid)
      return;
  }
}

static size_t pid_count(const long *tab) {
  size_t n = 0;
  while (n < MAX_PIDS && test_load_long(&tab[n]) != 0)
    n++;
  return n;
}

/* Polls *p until it reaches want, for up to seconds; returns the last value seen. */
static int wait_int(const int *p, int want, double seconds) {
  int v = test_load(p);
  for (double t = 0; v < want && t < seconds; t += 0.005) {
    sleep_seconds(0.005);
    v = test_load(p);
  }
  return v;
}

/* ------------------------------------------------------------ task side */

/* Once per worker: cmocka's signal handlers (inherited under fork) must not catch a
 * task's crash. */
static void task_enter(void) {
  static bool entered;
  if (!entered) {
    child_enter();
    entered = true;
  }
}

static board *board_of(mproc_ctx *ctx) {
  mproc_shm *m = mproc_shared(ctx, 0);
  return m ? mproc_shm_buf(m) : NULL;
}

static int return_pid(mproc_ctx *ctx) {
  int64_t pid = (int64_t)test_getpid();
  return mproc_return(ctx, &pid, sizeof pid);
}

static int get_i32(mproc_ctx *ctx, const void *arg, size_t len, int32_t *v) {
  if (len != sizeof *v)
    return mproc_fail(ctx, "expected a 4-byte argument, got %zu bytes", len);
  memcpy(v, arg, sizeof *v);
  return 0;
}

/* Returns its argument. */
static int task_echo(mproc_ctx *ctx, const void *arg, size_t len) {
  task_enter();
  return mproc_return(ctx, arg, len);
}

/* arg: u64 size, u32 seed. Returns size bytes of the pattern seed. */
static int task_gen(mproc_ctx *ctx, const void *arg, size_t len) {
  uint64_t size;
  uint32_t seed;
  unsigned char *buf;
  int r;
  task_enter();
  if (len != sizeof size + sizeof seed)
    return mproc_fail(ctx, "task_gen: bad argument length %zu", len);
  memcpy(&size, arg, sizeof size);
  memcpy(&seed, (const unsigned char *)arg + sizeof size, sizeof seed);
  buf = malloc(size ? (size_t)size : 1);
  if (buf == NULL)
    return mproc_fail(ctx, "task_gen: out of memory");
  fill_pattern(buf, (size_t)size, seed);
  r = mproc_return(ctx, buf, (size_t)size);
  free(buf);
  return r;
}

/* arg: u32 seed, then the pattern seed. Returns "intact", or fails naming the offset
 * of the first wrong byte. */
static int task_check_arg(mproc_ctx *ctx, const void *arg, size_t len) {
  uint32_t seed;
  size_t bad;
  task_enter();
  if (len < sizeof seed)
    return mproc_fail(ctx, "task_check_arg: %zu bytes", len);
  memcpy(&seed, arg, sizeof seed);
  bad = check_pattern((const unsigned char *)arg + sizeof seed, len - sizeof seed, seed);
  if (bad != SIZE_MAX)
    return mproc_fail(ctx, "argument differs at offset %zu of %zu", bad, len);
  return mproc_return(ctx, "intact", 6);
}

static int task_fail_msg(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  task_enter();
  return mproc_fail(ctx, "refused on purpose, code %d", 42);
}

static int task_return_7(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  task_enter();
  return 7;
}

static int task_return_negative(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  task_enter();
  return MPROC_EINVAL;
}

/* int32 x -> int64 x * x + 1. */
static int task_square(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x = 0;
  int64_t y;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &x)) != 0)
    return r;
  y = (int64_t)x * x + 1;
  return mproc_return(ctx, &y, sizeof y);
}

static int64_t square_of(int32_t x) { return (int64_t)x * x + 1; }

/* task_square, counting its runs on the board. */
static int task_count_square(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  task_enter();
  if (b == NULL)
    return mproc_fail(ctx, "no board");
  test_add(&b->finished, 1);
  return task_square(ctx, arg, len);
}

/* Items with x % 10 == 3 return 4 bytes instead of 8. */
static int task_wrong_size(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x = 0;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &x)) != 0)
    return r;
  if (x % 10 == 3)
    return mproc_return(ctx, &x, sizeof x);
  return task_square(ctx, arg, len);
}

/* Item 777 returns 4 bytes; items with x % 1000 == 500 fail. */
static int task_mixed(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x = 0;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &x)) != 0)
    return r;
  if (x == 777)
    return mproc_return(ctx, &x, sizeof x);
  if (x % 1000 == 500)
    return mproc_fail(ctx, "item %d refused", (int)x);
  return task_square(ctx, arg, len);
}

/* Items with x % 100 == 13 fail; others give int64 3x. */
static int task_iter(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x = 0;
  int64_t y;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &x)) != 0)
    return r;
  if (x % 100 == 13)
    return mproc_fail(ctx, "item %d refused", (int)x);
  y = 3 * (int64_t)x;
  return mproc_return(ctx, &y, sizeof y);
}

typedef struct pair {
  int32_t a, b;
} pair;

/* starmap: (a, b) -> int64 a * b. */
static int task_pair_mul(mproc_ctx *ctx, const void *arg, size_t len) {
  pair pr;
  int64_t y;
  task_enter();
  if (len != sizeof pr)
    return mproc_fail(ctx, "expected a pair, got %zu bytes", len);
  memcpy(&pr, arg, sizeof pr);
  y = (int64_t)pr.a * pr.b;
  return mproc_return(ctx, &y, sizeof y);
}

/* Returns the item twice over (0 bytes for an empty one). */
static int task_twice(mproc_ctx *ctx, const void *arg, size_t len) {
  unsigned char *buf;
  int r;
  task_enter();
  buf = malloc(len ? 2 * len : 1);
  if (buf == NULL)
    return mproc_fail(ctx, "out of memory");
  if (len) {
    memcpy(buf, arg, len);
    memcpy(buf + len, arg, len);
  }
  r = mproc_return(ctx, buf, 2 * len);
  free(buf);
  return r;
}

static int task_getpid(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  task_enter();
  return return_pid(ctx);
}

/* Records its pid, counts itself started, and waits (60 s at most) for the board's
 * release; returns its pid. */
static int task_wait_release(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  (void)arg;
  (void)len;
  task_enter();
  if (b == NULL)
    return mproc_fail(ctx, "no board");
  pid_insert(b->pids, test_getpid());
  test_add(&b->started, 1);
  if (wait_int(&b->release, 1, 60) < 1)
    return mproc_fail(ctx, "never released");
  test_add(&b->finished, 1);
  return return_pid(ctx);
}

/* arg: int32 n. Counts itself started and waits until n tasks have (15 s at most). */
static int task_barrier(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  int32_t n = 0;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &n)) != 0)
    return r;
  if (b == NULL)
    return mproc_fail(ctx, "no board");
  pid_insert(b->pids, test_getpid());
  test_add(&b->started, 1);
  if (wait_int(&b->started, n, 15) < n)
    return mproc_fail(ctx, "only %d of %d tasks ran at once", test_load(&b->started), (int)n);
  return return_pid(ctx);
}

/* Records its pid, counts itself, sleeps 200 us; returns its argument. */
static int task_slowish(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  task_enter();
  if (b == NULL)
    return mproc_fail(ctx, "no board");
  pid_insert(b->pids, test_getpid());
  sleep_seconds(0.0002);
  test_add(&b->finished, 1);
  return mproc_return(ctx, arg, len);
}

/* Crashes in a way chosen by x % 1000; others give int64 2x + 1. */
static int task_crashy(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x = 0;
  int64_t y;
  int r;
  task_enter();
  if ((r = get_i32(ctx, arg, len, &x)) != 0)
    return r;
  switch (x % 1000) {
  case 7:
    crash_now();
    return mproc_fail(ctx, "survived a fault");
  case 107:
    abort();
  case 207:
    _Exit(3);
  case 307:
    kill_hard(test_getpid());
    sleep_forever();
  default:
    break;
  }
  y = 2 * (int64_t)x + 1;
  return mproc_return(ctx, &y, sizeof y);
}

/* task_crashy on an int32 followed by x % 13 bytes of padding (items of many sizes). */
static int task_crashy_v(mproc_ctx *ctx, const void *arg, size_t len) {
  int32_t x;
  if (len < sizeof x)
    return mproc_fail(ctx, "expected at least 4 bytes, got %zu", len);
  memcpy(&x, arg, sizeof x);
  if (len != sizeof x + (size_t)(x % 13))
    return mproc_fail(ctx, "item %d came with %zu bytes", (int)x, len);
  return task_crashy(ctx, arg, sizeof x);
}

static bool crashes(int32_t x) {
  int m = x % 1000;
  return m == 7 || m == 107 || m == 207 || m == 307;
}

/* What the message of a worker that faulted or called abort() mentions: the signal on
 * POSIX; on Windows the exception code, and abort()'s exit status 3. */
#ifdef _WIN32
#define CRASH_WORDS_FAULT "status 0xc0000005"
#define CRASH_WORDS_ABORT "status 3"
#else
#define CRASH_WORDS_FAULT "signal 11"
#define CRASH_WORDS_ABORT "signal 6"
#endif

/* What a crashing item's message must mention. */
static const char *crash_words(int32_t x) {
  switch (x % 1000) {
  case 7:
    return CRASH_WORDS_FAULT;
  case 107:
    return CRASH_WORDS_ABORT;
  case 207:
    return "status 3";
  default:
    return "signal 9";
  }
}

static int task_segv(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  task_enter();
  crash_now();
  return mproc_fail(ctx, "survived a fault");
}

/* Sends its pid over share[0] (the sending end of a Pipe), then sleeps (60 s at most)
 * until it is killed. */
static int task_report_pid_and_sleep(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  long pid = test_getpid();
  (void)arg;
  (void)len;
  task_enter();
  if (c == NULL || mproc_conn_send(c, &pid, sizeof pid) != 0)
    return mproc_fail(ctx, "cannot report the pid: %s", mproc_last_error());
  for (int i = 0; i < 6000; i++)
    sleep_seconds(0.01);
  return mproc_fail(ctx, "was not killed");
}

/* Puts its int32 argument on share[0] (a Queue) and releases share[1] (a Semaphore). */
static int task_put_and_release(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_sem *s = mproc_shared(ctx, 1);
  int r;
  task_enter();
  if (mproc_shared_count(ctx) != 2 || q == NULL || s == NULL || mproc_shared(ctx, 2) != NULL)
    return mproc_fail(ctx, "share list: %zu objects", mproc_shared_count(ctx));
  if ((r = mproc_queue_put(q, arg, len, 10)) != 0)
    return mproc_fail(ctx, "put: %s", mproc_last_error());
  if ((r = mproc_sem_release(s)) != 0)
    return mproc_fail(ctx, "release: %s", mproc_last_error());
  return mproc_return(ctx, arg, len);
}

/* uint64 x -> uint64 3x + 1. */
static int task_u64(mproc_ctx *ctx, const void *arg, size_t len) {
  uint64_t x;
  task_enter();
  if (len != sizeof x)
    return mproc_fail(ctx, "expected 8 bytes, got %zu", len);
  memcpy(&x, arg, sizeof x);
  x = 3 * x + 1;
  return mproc_return(ctx, &x, sizeof x);
}

#define INITARG "init-arg"

/* The initializer: checks its argument, records its run and pid. */
static int task_init(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  int k;
  task_enter();
  if (b == NULL)
    return mproc_fail(ctx, "initializer: no board");
  if (len != strlen(INITARG) || memcmp(arg, INITARG, len) != 0)
    return mproc_fail(ctx, "initializer: wrong initarg (%zu bytes)", len);
  k = test_add(&b->init_runs, 1) - 1;
  if (k >= 0 && k < MAX_PIDS)
    test_store_long(&b->init_pids[k], test_getpid());
  return 0;
}

static int task_init_fail(mproc_ctx *ctx, const void *arg, size_t len) {
  board *b = board_of(ctx);
  (void)arg;
  (void)len;
  task_enter();
  if (b != NULL)
    test_add(&b->init_runs, 1);
  return mproc_fail(ctx, "the initializer refuses to start");
}

/* ------------------------------------------------------------ parent side */

#define MAX_TRACKED_POOLS 8
static mproc_pool *tracked_pools[MAX_TRACKED_POOLS];
static mproc_shm *tracked_shms[MAX_TRACKED_POOLS];

/* Creates a pool with the run's start method (unless opts names one); the teardown
 * frees it if the test fails. */
static mproc_pool *make_pool(const mproc_pool_opts *opts) {
  mproc_pool_opts o = {0};
  mproc_pool *p = NULL;
  if (opts != NULL)
    o = *opts;
  if (o.start_method == MPROC_START_DEFAULT)
    o.start_method = test_start_method;
  assert_ok(mproc_pool_create(&p, &o));
  assert_non_null(p);
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++)
    if (tracked_pools[i] == NULL) {
      tracked_pools[i] = p;
      break;
    }
  return p;
}

static void untrack_pool(mproc_pool *p) {
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++)
    if (tracked_pools[i] == p)
      tracked_pools[i] = NULL;
}

static void free_pool(mproc_pool *p) {
  untrack_pool(p);
  mproc_pool_free(p);
}

/* A zeroed board in an unnamed (at once unlinked) SharedMemory block. */
static board *make_board(mproc_shm **m) {
  board *b;
  assert_ok(mproc_shm_create(m, NULL, sizeof(board)));
  assert_ok(mproc_shm_unlink(*m));
  b = mproc_shm_buf(*m);
  assert_non_null(b);
  memset(b, 0, sizeof *b);
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++)
    if (tracked_shms[i] == NULL) {
      tracked_shms[i] = *m;
      break;
    }
  return b;
}

static void free_board(mproc_shm *m) {
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++)
    if (tracked_shms[i] == m)
      tracked_shms[i] = NULL;
  mproc_shm_free(m);
}

/* A pool whose share[0] is a fresh board. */
static mproc_pool *make_board_pool(mproc_pool_opts *o, mproc_shm **m, board **b,
                                   void **share) {
  *b = make_board(m);
  share[0] = *m;
  o->share = share;
  o->nshare = 1;
  return make_pool(o);
}

/* Frees what a failed test left: pools (terminated and joined), then boards. */
static int pool_teardown(void **state) {
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++) {
    if (tracked_pools[i] != NULL) {
      mproc_pool_free(tracked_pools[i]);
      tracked_pools[i] = NULL;
    }
  }
  for (size_t i = 0; i < MAX_TRACKED_POOLS; i++) {
    if (tracked_shms[i] != NULL) {
      mproc_shm_free(tracked_shms[i]);
      tracked_shms[i] = NULL;
    }
  }
  return test_teardown(state);
}

#define TP(f) cmocka_unit_test_teardown(f, pool_teardown)

static void assert_mentions(const char *text, const char *needle) {
  if (text == NULL || strstr(text, needle) == NULL)
    fail_msg("\"%s\" does not mention \"%s\"", text ? text : "(null)", needle);
}

static int64_t get_i64(const void *data, size_t len) {
  int64_t v;
  if (len != sizeof v)
    fail_msg("a result of %zu bytes, expected 8", len);
  memcpy(&v, data, sizeof v);
  return v;
}

/* mproc_pool_apply, expecting an int64 result. */
static int64_t apply_i64(mproc_pool *p, mproc_fn fn, const void *arg, size_t len) {
  void *out = NULL;
  size_t outlen = 0;
  int64_t v;
  assert_ok(mproc_pool_apply(p, fn, arg, len, &out, &outlen));
  v = get_i64(out, outlen);
  free(out);
  return v;
}

/* The result's int64 (waiting 60 s at most). */
static int64_t result_i64(mproc_result *r) {
  const void *data = NULL;
  size_t len = 0;
  assert_ok(mproc_result_get(r, 60, &data, &len));
  return get_i64(data, len);
}

/* Waits up to seconds for this process to have no child at all (no worker, no fork
 * server, no zombie). */
static void assert_no_children(double seconds) {
  int n = 0, z = 0;
  for (double t = 0; t < seconds; t += 0.02) {
    if ((n = count_children(&z)) == 0)
      return;
    sleep_seconds(0.02);
  }
  n = count_children(&z);
  if (n != 0)
    fail_msg("%d child process(es) left after the pool was joined, %d of them zombies", n, z);
}

/* Within seconds the process is gone and reaped (pid_reaped). */
static void assert_pid_reaped(long pid, double seconds) {
  for (double t = 0; t < seconds; t += 0.02) {
    if (pid_reaped(pid))
      return;
    sleep_seconds(0.02);
  }
  if (pid_reaped(pid))
    return;
  fail_msg("worker pid %ld still exists (state '%c') after the pool was joined", pid,
           proc_state(pid) ? proc_state(pid) : '?');
}

/* What callbacks saw; written on the pool's thread, read after `calls` or
 * `error_calls` (atomic) says they ran. */
typedef struct cb_log {
  int calls, error_calls;
  void *user;
  mproc_result *r;
  int successful;
  int get_rc;
  const void *data;
  size_t len;
  char message[256];
} cb_log;

static void log_call(cb_log *l, mproc_result *r, int *counter) {
  l->user = l;
  l->r = r;
  l->successful = mproc_result_successful(r);
  l->get_rc = mproc_result_get(r, 0, &l->data, &l->len);
  snprintf(l->message, sizeof l->message, "%s", mproc_result_message(r));
  test_add(counter, 1);
}

static void on_success(void *user, mproc_result *r) {
  cb_log *l = user;
  log_call(l, r, &l->calls);
}

static void on_error(void *user, mproc_result *r) {
  cb_log *l = user;
  log_call(l, r, &l->error_calls);
}

/* ------------------------------------------------------------------ tests */

static void test_create_bad_args(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p = NULL;
  mproc_conn *a, *b;
  int not_a_handle = 0;
  void *share[2];
  (void)state;

  assert_mproc(mproc_pool_create(NULL, NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_pool_create");

  o.processes = -1;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);
  assert_last_error_mentions("mproc_pool_create");

  memset(&o, 0, sizeof o);
  o.task_timeout = -1;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);

  memset(&o, 0, sizeof o);
  o.share = NULL;
  o.nshare = 1;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);

  share[0] = &not_a_handle;
  o.share = share;
  o.nshare = 1;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);
  assert_last_error_mentions("not an mproc handle");

  share[0] = NULL;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);

  /* A good handle, then a bad one: refused as a whole. */
  make_pipe(&a, &b, false);
  share[0] = b;
  share[1] = &not_a_handle;
  o.nshare = 2;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);
  mproc_conn_free(a);
  mproc_conn_free(b);

  memset(&o, 0, sizeof o);
  o.initializer = task_init;
  o.initarg = NULL;
  o.initarg_len = 4;
  assert_mproc(mproc_pool_create(&p, &o), MPROC_EINVAL);
  assert_null(p);

  /* Nothing was started by the refused calls. */
  assert_no_children(5);
  mproc_pool_free(NULL);
}

static void test_call_bad_args(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r = NULL;
  mproc_iter *it = NULL;
  void *out = NULL;
  size_t outlen = 0;
  int32_t v = 3, in[4] = {1, 2, 3, 4};
  int64_t res[4];
  unsigned char *heap = malloc(64);
  (void)state;
  assert_non_null(heap);
  o.processes = 1;
  p = make_pool(&o);

  assert_mproc(mproc_pool_apply(NULL, task_square, &v, sizeof v, &out, &outlen), MPROC_EINVAL);
  assert_mproc(mproc_pool_apply(p, NULL, &v, sizeof v, &out, &outlen), MPROC_EINVAL);
  assert_last_error_mentions("fn");
  assert_mproc(mproc_pool_apply(p, task_square, &v, sizeof v, NULL, &outlen), MPROC_EINVAL);
  assert_mproc(mproc_pool_apply(p, task_square, &v, sizeof v, &out, NULL), MPROC_EINVAL);
  assert_mproc(mproc_pool_apply(p, task_square, NULL, 4, &out, &outlen), MPROC_EINVAL);
  assert_null(out);

  assert_mproc(mproc_pool_apply_async(p, task_square, &v, sizeof v, NULL, NULL), MPROC_EINVAL);
  assert_mproc(mproc_pool_apply_async(p, NULL, &v, sizeof v, NULL, &r), MPROC_EINVAL);
  assert_null(r);
  assert_mproc(mproc_pool_map(p, NULL, in, 4, sizeof *in, res, sizeof *res, 0), MPROC_EINVAL);
  assert_mproc(mproc_pool_map(p, task_square, NULL, 4, sizeof *in, res, sizeof *res, 0),
               MPROC_EINVAL);
  assert_mproc(mproc_pool_map(p, task_square, in, 4, sizeof *in, NULL, sizeof *res, 0),
               MPROC_EINVAL);
  assert_mproc(mproc_pool_map_async(p, task_square, in, 4, sizeof *in, res, sizeof *res, 0, NULL,
                                    NULL),
               MPROC_EINVAL);
  assert_mproc(mproc_pool_map_v(p, task_twice, NULL, 3, 0, NULL, &r), MPROC_EINVAL);
  assert_mproc(mproc_pool_imap(p, task_square, in, 4, sizeof *in, 0, NULL), MPROC_EINVAL);
  assert_mproc(mproc_pool_imap(p, NULL, in, 4, sizeof *in, 0, &it), MPROC_EINVAL);
  assert_null(it);
  assert_mproc(mproc_pool_imap_source(p, task_u64, NULL, NULL, 1, true, &it), MPROC_EINVAL);
  assert_null(it);
  {
    size_t index;
    const void *data;
    size_t len;
    assert_mproc(mproc_iter_next(NULL, 0, &index, &data, &len), MPROC_EINVAL);
  }
  mproc_iter_free(NULL);
  mproc_result_free(NULL);
  assert_false(mproc_result_ready(NULL));
  assert_mproc(mproc_result_successful(NULL), MPROC_EINVAL);
  assert_mproc(mproc_result_get(NULL, 0, NULL, NULL), MPROC_EINVAL);

  /* A function no module holds cannot travel: refused at submission, in both modes. */
  assert_mproc(mproc_pool_apply(p, (mproc_fn)(void *)(heap + 16), NULL, 0, &out, &outlen),
               MPROC_ENOTFOUND);
  free(heap);

  /* The pool is unharmed. */
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 10);
  free_pool(p);
}

/* n tasks that each wait until all n run, on n distinct workers: n workers at once. */
static void expect_at_once(mproc_pool *p, board *b, int n) {
  mproc_result **r = calloc((size_t)n, sizeof *r);
  int32_t target = n;
  assert_non_null(r);
  for (int i = 0; i < n; i++)
    assert_ok(mproc_pool_apply_async(p, task_barrier, &target, sizeof target, NULL, &r[i]));
  for (int i = 0; i < n; i++) {
    (void)result_i64(r[i]);
    mproc_result_free(r[i]);
  }
  free(r);
  assert_int_equal(pid_count(b->pids), (size_t)n);
}

/* processes 0: mproc_cpu_count() workers, at once, and no more. */
static void test_processes_zero_is_cpu_count(void **state) {
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  int ncpu = mproc_cpu_count();
  mproc_result **r;
  (void)state;
  assert_true(ncpu >= 1);
  if (ncpu > 64)
    skip();
  p = make_board_pool(&o, &m, &b, share);
  r = calloc((size_t)ncpu + 1, sizeof *r);
  assert_non_null(r);

  /* At least ncpu workers. */
  expect_at_once(p, b, ncpu);

  /* ncpu + 1 tasks that block: only ncpu start. */
  memset(b, 0, sizeof *b);
  for (int i = 0; i <= ncpu; i++)
    assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r[i]));
  assert_int_equal(wait_int(&b->started, ncpu, 30), ncpu);
  sleep_seconds(0.3);
  assert_int_equal(test_load(&b->started), ncpu);
  test_store(&b->release, 1);
  for (int i = 0; i <= ncpu; i++) {
    (void)result_i64(r[i]);
    mproc_result_free(r[i]);
  }
  assert_int_equal(test_load(&b->started), ncpu + 1);
  free(r);
  free_pool(p);
  free_board(m);
}

/* More workers than one WaitForMultipleObjects can watch (64 handles on Windows): all
 * run at once, and a map over them comes back whole. */
static void test_more_than_64_workers(void **state) {
  enum { W = 70, N = 7000 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  int32_t *in = malloc(N * sizeof *in);
  int64_t *out = malloc(N * sizeof *out);
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  assert_true(raise_nofile(16 * W));
  o.processes = W;
  p = make_board_pool(&o, &m, &b, share);
  expect_at_once(p, b, W);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_map(p, task_square, in, N, sizeof *in, out, sizeof *out, 1));
  for (int32_t i = 0; i < N; i++)
    if (out[i] != (int64_t)i * i + 1)
      fail_msg("item %d: %" PRId64, (int)i, out[i]);
  free(in);
  free(out);
  free_pool(p);
  free_board(m);
}

/* Tasks that can run at once do: while one worker is busy, an idle one gets the next
 * task, as Python's workers, which all take from one task queue. */
static void test_blocking_tasks_spread_over_workers(void **state) {
  enum { N = 4 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r[N];
  int32_t target[2] = {2, 2};
  int64_t out[2];
  int started, rc;
  char why[512] = "";
  (void)state;
  o.processes = 2;

  /* Right after creation: N tasks that block, on 2 workers. Two must start. */
  p = make_board_pool(&o, &m, &b, share);
  for (int i = 0; i < N; i++)
    assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r[i]));
  started = wait_int(&b->started, 2, 15);
  test_store(&b->release, 1);
  for (int i = 0; i < N; i++) {
    (void)result_i64(r[i]);
    mproc_result_free(r[i]);
  }
  if (started != 2)
    snprintf(why, sizeof why,
             "%d blocking apply_async tasks on a new pool of 2: only %d ran at once (the other "
             "worker stayed idle). ",
             N, started);

  /* A map of two one-item chunks whose items wait for each other. */
  memset(b, 0, sizeof *b);
  rc = mproc_pool_map(p, task_barrier, target, 2, sizeof *target, out, sizeof *out, 1);
  if (rc != 0)
    snprintf(why + strlen(why), sizeof why - strlen(why),
             "A map of 2 one-item chunks on 2 idle workers did not run them at once: %s (%s)",
             mproc_err_name(rc), mproc_last_error());
  free_pool(p);
  free_board(m);
  if (why[0] != '\0')
    fail_msg("%s", why);
}

/* Results and arguments arrive byte for byte: 0 B, 1 B, 1 MiB. */
static void test_apply_bytes_exact(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  void *out = NULL;
  size_t outlen = 99;
  unsigned char arg[sizeof(uint64_t) + sizeof(uint32_t)];
  (void)state;
  o.processes = 2;
  p = make_pool(&o);

  /* 0 bytes, with and without an argument pointer. */
  assert_ok(mproc_pool_apply(p, task_echo, NULL, 0, &out, &outlen));
  assert_non_null(out);
  assert_int_equal(outlen, 0);
  free(out);
  outlen = 99;
  assert_ok(mproc_pool_apply(p, task_echo, "x", 0, &out, &outlen));
  assert_int_equal(outlen, 0);
  free(out);

  /* 1 byte. */
  assert_ok(mproc_pool_apply(p, task_echo, "\xa5", 1, &out, &outlen));
  assert_int_equal(outlen, 1);
  assert_int_equal(((unsigned char *)out)[0], 0xa5);
  free(out);

  /* Generated results of 0 B, 1 B and 1 MiB. */
  static const uint64_t sizes[] = {0, 1, MiB, MiB + 3};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint32_t seed = (uint32_t)(100 + i);
    memcpy(arg, &sizes[i], sizeof sizes[i]);
    memcpy(arg + sizeof sizes[i], &seed, sizeof seed);
    assert_ok(mproc_pool_apply(p, task_gen, arg, sizeof arg, &out, &outlen));
    assert_int_equal(outlen, sizes[i]);
    assert_int_equal(check_pattern(out, outlen, seed), SIZE_MAX);
    free(out);
  }

  /* A 1 MiB argument arrives whole, and comes back whole. */
  {
    size_t len = MiB;
    uint32_t seed = 7;
    unsigned char *big = malloc(len + sizeof seed);
    assert_non_null(big);
    memcpy(big, &seed, sizeof seed);
    fill_pattern(big + sizeof seed, len, seed);
    assert_ok(mproc_pool_apply(p, task_check_arg, big, len + sizeof seed, &out, &outlen));
    assert_int_equal(outlen, 6);
    assert_memory_equal(out, "intact", 6);
    free(out);
    assert_ok(mproc_pool_apply(p, task_echo, big, len + sizeof seed, &out, &outlen));
    assert_int_equal(outlen, len + sizeof seed);
    assert_memory_equal(out, big, len + sizeof seed);
    free(out);
    free(big);
  }
  free_pool(p);
}

static void test_apply_failures(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  void *out = NULL;
  size_t outlen = 0;
  const void *data;
  size_t len;
  int rc;
  (void)state;
  o.processes = 1;
  p = make_pool(&o);

  /* mproc_fail: MPROC_EFAILED with the task's text. */
  assert_mproc(mproc_pool_apply(p, task_fail_msg, NULL, 0, &out, &outlen), MPROC_EFAILED);
  assert_last_error_mentions("refused on purpose, code 42");
  assert_null(out);

  assert_ok(mproc_pool_apply_async(p, task_fail_msg, NULL, 0, NULL, &r));
  assert_mproc(mproc_result_get(r, 60, &data, &len), MPROC_EFAILED);
  assert_last_error_mentions("refused on purpose, code 42");
  assert_true(mproc_result_ready(r));
  assert_int_equal(mproc_result_successful(r), 0);
  assert_mentions(mproc_result_message(r), "refused on purpose, code 42");
  mproc_result_free(r);

  /* A non-zero return value without mproc_fail is a failure too. */
  assert_mproc(mproc_pool_apply(p, task_return_7, NULL, 0, &out, &outlen), MPROC_EFAILED);
  assert_last_error_mentions("7");
  rc = mproc_pool_apply(p, task_return_negative, NULL, 0, &out, &outlen);
  if (rc == 0)
    fail_msg("a task returning %d (without mproc_fail) succeeded", MPROC_EINVAL);
  assert_true(rc < 0);

  /* The worker survived all that. */
  assert_ok(mproc_pool_apply(p, task_echo, "ok", 2, &out, &outlen));
  assert_int_equal(outlen, 2);
  free(out);
  free_pool(p);
}

/* get with timeout 0 on a task that cannot be done yet; ready and successful. */
static void test_apply_async_states(void **state) {
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r;
  const void *data = NULL;
  size_t len = 0;
  (void)state;
  o.processes = 1;
  p = make_board_pool(&o, &m, &b, share);

  assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r));
  assert_mproc(mproc_result_get(r, 0, &data, &len), MPROC_ETIMEDOUT);
  assert_mproc(mproc_result_wait(r, 0), MPROC_ETIMEDOUT);
  assert_false(mproc_result_ready(r));
  assert_mproc(mproc_result_successful(r), MPROC_ESTATE);
  assert_string_equal(mproc_result_message(r), "");
  /* Still not ready once it certainly runs. */
  assert_int_equal(wait_int(&b->started, 1, 30), 1);
  assert_mproc(mproc_result_wait(r, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_result_get(r, 0, &data, &len), MPROC_ETIMEDOUT);
  assert_false(mproc_result_ready(r));
  assert_mproc(mproc_result_successful(r), MPROC_ESTATE);

  test_store(&b->release, 1);
  assert_ok(mproc_result_wait(r, 60));
  assert_true(mproc_result_ready(r));
  assert_int_equal(mproc_result_successful(r), 1);
  assert_ok(mproc_result_get(r, 0, &data, &len));
  assert_int_equal(get_i64(data, len), (int64_t)b->pids[0]);
  assert_string_equal(mproc_result_message(r), "");
  mproc_result_free(r);
  free_pool(p);
  free_board(m);
}

/* A lone apply_async goes straight to an idle worker, and the thread that waits for
 * it reads the reply itself. Every other way of treating that result still works:
 * freeing it unread, other work needing the worker, polling it, closing the pool. */
static void test_lone_apply_handoffs(void **state) {
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r, *r2;
  int32_t in[50];
  int64_t out[50];
  int32_t seven = 7;
  (void)state;
  o.processes = 1;
  p = make_board_pool(&o, &m, &b, share);

  /* Freed unread: the worker goes on serving. */
  assert_ok(mproc_pool_apply_async(p, task_getpid, NULL, 0, NULL, &r));
  mproc_result_free(r);
  assert_true(apply_i64(p, task_getpid, NULL, 0) > 0);

  /* Unread while a map needs the only worker: both complete. */
  for (int i = 0; i < 50; i++)
    in[i] = i;
  assert_ok(mproc_pool_apply_async(p, task_square, &seven, sizeof seven, NULL, &r));
  assert_ok(mproc_pool_map(p, task_square, in, 50, sizeof *in, out, sizeof *out, 1));
  for (int i = 0; i < 50; i++)
    assert_int_equal(out[i], square_of(i));
  assert_int_equal(result_i64(r), square_of(7));
  mproc_result_free(r);

  /* A waiter that gives up, then polling only: the reply is read all the same. */
  assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r));
  assert_int_equal(wait_int(&b->started, 1, 30), 1);
  assert_mproc(mproc_result_wait(r, 0.02), MPROC_ETIMEDOUT);
  test_store(&b->release, 1);
  for (int i = 0; i < 6000 && !mproc_result_ready(r); i++)
    sleep_seconds(0.01);
  assert_true(mproc_result_ready(r));
  assert_int_equal(result_i64(r), (int64_t)b->pids[0]);
  mproc_result_free(r);

  /* Unread when the pool closes: close waits for it, and it has its value. */
  assert_ok(mproc_pool_apply_async(p, task_square, &seven, sizeof seven, NULL, &r));
  assert_ok(mproc_pool_apply_async(p, task_square, &seven, sizeof seven, NULL, &r2));
  assert_ok(mproc_pool_close(p));
  assert_ok(mproc_pool_join(p));
  assert_true(mproc_result_ready(r));
  assert_int_equal(result_i64(r), square_of(7));
  assert_int_equal(result_i64(r2), square_of(7));
  mproc_result_free(r);
  mproc_result_free(r2);
  free_pool(p);
  free_board(m);
}

/* callback on success, error_callback on failure, each exactly once, with the user
 * pointer and the result. */
static void test_callbacks_once(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *ok_r, *bad_r, *map_r;
  cb_log ok_log = {0}, bad_log = {0}, map_log = {0};
  mproc_callbacks ok_cb = {on_success, on_error, &ok_log};
  mproc_callbacks bad_cb = {on_success, on_error, &bad_log};
  mproc_callbacks map_cb = {on_success, on_error, &map_log};
  int32_t v = 6, in[100];
  int64_t out[100];
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  for (int i = 0; i < 100; i++)
    in[i] = i;

  assert_ok(mproc_pool_apply_async(p, task_square, &v, sizeof v, &ok_cb, &ok_r));
  assert_ok(mproc_pool_apply_async(p, task_fail_msg, NULL, 0, &bad_cb, &bad_r));
  assert_ok(mproc_pool_map_async(p, task_square, in, 100, sizeof *in, out, sizeof *out, 7,
                                 &map_cb, &map_r));
  assert_int_equal(result_i64(ok_r), 37);
  assert_mproc(mproc_result_get(bad_r, 60, NULL, NULL), MPROC_EFAILED);
  assert_ok(mproc_result_get(map_r, 60, NULL, NULL));
  assert_int_equal(wait_int(&ok_log.calls, 1, 30), 1);
  assert_int_equal(wait_int(&bad_log.error_calls, 1, 30), 1);
  assert_int_equal(wait_int(&map_log.calls, 1, 30), 1);
  assert_ok(mproc_pool_close(p));
  assert_ok(mproc_pool_join(p));

  /* Exactly once, and only the right one. */
  assert_int_equal(test_load(&ok_log.calls), 1);
  assert_int_equal(test_load(&ok_log.error_calls), 0);
  assert_int_equal(test_load(&bad_log.calls), 0);
  assert_int_equal(test_load(&bad_log.error_calls), 1);
  assert_int_equal(test_load(&map_log.calls), 1);
  assert_int_equal(test_load(&map_log.error_calls), 0);

  assert_ptr_equal(ok_log.user, &ok_log);
  assert_ptr_equal(ok_log.r, ok_r);
  assert_int_equal(ok_log.successful, 1);
  assert_int_equal(ok_log.get_rc, 0);
  assert_int_equal(ok_log.len, sizeof(int64_t));

  assert_ptr_equal(bad_log.r, bad_r);
  assert_int_equal(bad_log.successful, 0);
  assert_int_equal(bad_log.get_rc, MPROC_EFAILED);
  assert_mentions(bad_log.message, "refused on purpose, code 42");

  assert_ptr_equal(map_log.r, map_r);
  assert_int_equal(map_log.get_rc, 0);
  assert_ptr_equal(map_log.data, out);
  assert_int_equal(map_log.len, sizeof out);
  for (int i = 0; i < 100; i++)
    assert_int_equal(out[i], square_of(i));

  mproc_result_free(ok_r);
  mproc_result_free(bad_r);
  mproc_result_free(map_r);
  free_pool(p);
}

static void test_apply_async_many(void **state) {
  enum { N = 1000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result **r = calloc(N, sizeof *r);
  (void)state;
  assert_non_null(r);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    assert_ok(mproc_pool_apply_async(p, task_square, &i, sizeof i, NULL, &r[i]));
  /* Collected in reverse: completion order does not matter. */
  for (int i = N - 1; i >= 0; i--) {
    assert_int_equal(result_i64(r[i]), square_of(i));
    assert_int_equal(mproc_result_successful(r[i]), 1);
    mproc_result_free(r[i]);
  }
  free(r);
  free_pool(p);
}

typedef struct nest_log {
  mproc_pool *pool;
  int outer_calls;
  int apply_rc, map_rc, wait_rc, async_rc;
  mproc_result *nested;
  cb_log nested_log;
} nest_log;

/* A callback submits more work (fine) and tries blocking calls (MPROC_ESTATE). */
static void on_outer(void *user, mproc_result *r) {
  nest_log *l = user;
  void *out = NULL;
  size_t outlen = 0;
  int32_t v = 11, in[2] = {1, 2};
  int64_t res[2];
  mproc_result *n = NULL;
  mproc_callbacks cb = {on_success, on_error, &l->nested_log};
  l->apply_rc = mproc_pool_apply(l->pool, task_square, &v, sizeof v, &out, &outlen);
  if (l->apply_rc == 0)
    free(out);
  l->map_rc = mproc_pool_map(l->pool, task_square, in, 2, sizeof *in, res, sizeof *res, 1);
  l->wait_rc = mproc_result_wait(r, 1);
  l->async_rc = mproc_pool_apply_async(l->pool, task_square, &v, sizeof v, &cb, &n);
  l->nested = n; /* published by the atomic add below */
  test_add(&l->outer_calls, 1);
}

static void test_callback_submits_and_blocking_is_estate(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r, *n;
  nest_log l;
  mproc_callbacks cb = {on_outer, NULL, &l};
  int32_t v = 2;
  (void)state;
  memset(&l, 0, sizeof l);
  o.processes = 2;
  p = make_pool(&o);
  l.pool = p;
  l.apply_rc = l.map_rc = l.wait_rc = l.async_rc = 1;

  assert_ok(mproc_pool_apply_async(p, task_square, &v, sizeof v, &cb, &r));
  assert_int_equal(result_i64(r), 5);
  assert_int_equal(wait_int(&l.outer_calls, 1, 30), 1);
  assert_int_equal(l.apply_rc, MPROC_ESTATE);
  assert_int_equal(l.map_rc, MPROC_ESTATE);
  assert_int_equal(l.wait_rc, MPROC_ESTATE);
  assert_int_equal(l.async_rc, 0);
  n = l.nested; /* written before outer_calls, which wait_int read */
  assert_non_null(n);
  /* The nested task completes: the pool's thread was not blocked. */
  assert_int_equal(result_i64(n), 122);
  assert_int_equal(wait_int(&l.nested_log.calls, 1, 30), 1);
  assert_ptr_equal(l.nested_log.r, n);
  mproc_result_free(n);
  mproc_result_free(r);
  /* And the pool goes on. */
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 5);
  free_pool(p);
}

/* map over 10,000 items with chunksize 1, 0 (Python's rule) and 37; out_size 0. */
static void test_map_chunksizes(void **state) {
  enum { N = 10000 };
  static const size_t chunks[] = {1, 0, 37};
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  int32_t *in = malloc(N * sizeof *in);
  int64_t *out = malloc(N * sizeof *out);
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    for (int i = 0; i < N; i++)
      out[i] = -1;
    test_store(&b->finished, 0);
    assert_ok(mproc_pool_map(p, task_count_square, in, N, sizeof *in, out, sizeof *out,
                             chunks[c]));
    for (int i = 0; i < N; i++)
      if (out[i] != square_of(i))
        fail_msg("chunksize %zu: out[%d] is %" PRId64 ", expected %" PRId64, chunks[c], i,
                 out[i], square_of(i));
    assert_int_equal(test_load(&b->finished), N);
  }

  /* out_size 0: results discarded (out may be NULL), every task still ran. */
  test_store(&b->finished, 0);
  assert_ok(mproc_pool_map(p, task_count_square, in, N, sizeof *in, NULL, 0, 0));
  assert_int_equal(test_load(&b->finished), N);

  free(in);
  free(out);
  free_pool(p);
  free_board(m);
}

/* A result of the wrong size fails its item with MPROC_EMSGSIZE; map returns the first
 * failure; mproc_result_item tells each item's status. */
static void test_map_failures_per_item(void **state) {
  enum { N = 2000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  int32_t *in = malloc(N * sizeof *in);
  int64_t *out = malloc(N * sizeof *out);
  const void *data;
  size_t len;
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  /* Wrong sizes. */
  assert_mproc(mproc_pool_map(p, task_wrong_size, in, N, sizeof *in, out, sizeof *out, 13),
               MPROC_EMSGSIZE);
  assert_ok(mproc_pool_map_async(p, task_wrong_size, in, N, sizeof *in, out, sizeof *out, 13,
                                 NULL, &r));
  assert_mproc(mproc_result_get(r, 60, NULL, NULL), MPROC_EMSGSIZE);
  assert_int_equal(mproc_result_successful(r), 0);
  assert_mentions(mproc_result_message(r), "item 3");
  for (size_t i = 0; i < N; i++) {
    int rc = mproc_result_item(r, i, &data, &len);
    if (i % 10 == 3) {
      if (rc != MPROC_EMSGSIZE)
        fail_msg("item %zu: %s, expected MPROC_EMSGSIZE", i, mproc_err_name(rc));
    } else {
      if (rc != 0)
        fail_msg("item %zu: %s (%s)", i, mproc_err_name(rc), mproc_last_error());
      assert_int_equal(len, sizeof(int64_t));
      assert_int_equal(get_i64(data, len), square_of((int32_t)i));
      assert_int_equal(out[i], square_of((int32_t)i));
    }
  }
  assert_mproc(mproc_result_item(r, N, &data, &len), MPROC_EINVAL);
  mproc_result_free(r);

  /* The first failing item (500, mproc_fail) wins over a later one (777, size). */
  assert_mproc(mproc_pool_map(p, task_mixed, in, N, sizeof *in, out, sizeof *out, 0),
               MPROC_EFAILED);
  assert_last_error_mentions("item 500 refused");
  assert_ok(mproc_pool_map_async(p, task_mixed, in, N, sizeof *in, out, sizeof *out, 0, NULL,
                                 &r));
  assert_mproc(mproc_result_get(r, 60, NULL, NULL), MPROC_EFAILED);
  assert_mentions(mproc_result_message(r), "item 500 refused");
  for (size_t i = 0; i < N; i++) {
    int rc = mproc_result_item(r, i, &data, &len);
    int want = i == 777 ? MPROC_EMSGSIZE : i % 1000 == 500 ? MPROC_EFAILED : 0;
    if (rc != want)
      fail_msg("item %zu: %s, expected %s", i, mproc_err_name(rc), mproc_err_name(want));
    if (want == 0)
      assert_int_equal(out[i], square_of((int32_t)i));
  }
  mproc_result_free(r);

  /* The pool goes on. */
  assert_ok(mproc_pool_map(p, task_square, in, N, sizeof *in, out, sizeof *out, 0));
  assert_int_equal(out[N - 1], square_of(N - 1));
  free(in);
  free(out);
  free_pool(p);
}

/* starmap: map over an array of argument structs. */
static void test_starmap(void **state) {
  enum { N = 1000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  pair in[N];
  int64_t out[N];
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++) {
    in[i].a = i;
    in[i].b = i - 500;
  }
  assert_ok(mproc_pool_map(p, task_pair_mul, in, N, sizeof *in, out, sizeof *out, 0));
  for (int32_t i = 0; i < N; i++)
    assert_int_equal(out[i], (int64_t)i * (i - 500));
  free_pool(p);
}

/* Empty inputs: ready at once, nothing to do. */
static void test_empty_inputs(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  mproc_iter *it;
  int32_t in[1] = {0};
  int64_t out[1] = {-1};
  const void *data;
  size_t len = 99, index;
  (void)state;
  o.processes = 1;
  p = make_pool(&o);

  assert_ok(mproc_pool_map(p, task_square, in, 0, sizeof *in, out, sizeof *out, 0));
  assert_ok(mproc_pool_map(p, task_square, NULL, 0, sizeof *in, NULL, sizeof *out, 0));
  assert_int_equal(out[0], -1);

  assert_ok(mproc_pool_map_async(p, task_square, in, 0, sizeof *in, out, sizeof *out, 0, NULL,
                                 &r));
  assert_true(mproc_result_ready(r));
  assert_int_equal(mproc_result_successful(r), 1);
  assert_ok(mproc_result_get(r, 0, &data, &len));
  assert_int_equal(len, 0);
  mproc_result_free(r);

  assert_ok(mproc_pool_map_v(p, task_twice, NULL, 0, 0, NULL, &r));
  assert_true(mproc_result_ready(r));
  assert_int_equal(mproc_result_successful(r), 1);
  mproc_result_free(r);

  assert_ok(mproc_pool_imap(p, task_square, in, 0, sizeof *in, 0, &it));
  assert_mproc(mproc_iter_next(it, 10, &index, &data, &len), MPROC_EOF);
  mproc_iter_free(it);
  assert_ok(mproc_pool_imap_unordered(p, task_square, NULL, 0, sizeof *in, 0, &it));
  assert_mproc(mproc_iter_next(it, 10, &index, &data, &len), MPROC_EOF);
  mproc_iter_free(it);
  free_pool(p);
}

/* map_v: items of 0 B to 100 KiB, results of twice their size. */
static void test_map_v_sizes(void **state) {
  static const size_t sizes[] = {0, 1, 7, 100, 4096, 65535, 65536, 100 * KiB};
  enum { N = 48 };
  static const size_t chunks[] = {0, 1, 5};
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_item items[N];
  unsigned char *bufs[N];
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  for (size_t i = 0; i < N; i++) {
    size_t len = sizes[(i * 5) % (sizeof sizes / sizeof sizes[0])];
    bufs[i] = pattern_alloc(len, (uint32_t)i);
    items[i].data = len ? bufs[i] : NULL;
    items[i].len = len;
  }
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    mproc_result *r;
    assert_ok(mproc_pool_map_v(p, task_twice, items, N, chunks[c], NULL, &r));
    assert_ok(mproc_result_wait(r, 60));
    assert_int_equal(mproc_result_successful(r), 1);
    for (size_t i = 0; i < N; i++) {
      const void *data = NULL;
      size_t len = 0, l = items[i].len;
      assert_ok(mproc_result_item(r, i, &data, &len));
      if (len != 2 * l)
        fail_msg("chunksize %zu: item %zu gave %zu bytes, expected %zu", chunks[c], i, len,
                 2 * l);
      assert_non_null(data);
      assert_int_equal(check_pattern(data, l, (uint32_t)i), SIZE_MAX);
      assert_int_equal(check_pattern((const unsigned char *)data + l, l, (uint32_t)i), SIZE_MAX);
    }
    assert_mproc(mproc_result_item(r, N, NULL, NULL), MPROC_EINVAL);
    mproc_result_free(r);
  }
  for (size_t i = 0; i < N; i++)
    free(bufs[i]);
  free_pool(p);
}

/* imap: in order, failures in place with their index, then MPROC_EOF. */
static void test_imap_ordered(void **state) {
  enum { N = 2000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_iter *it;
  int32_t *in = malloc(N * sizeof *in);
  (void)state;
  assert_non_null(in);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_imap(p, task_iter, in, N, sizeof *in, 7, &it));
  for (size_t k = 0; k < N; k++) {
    size_t index = SIZE_MAX, len = 0;
    const void *data = NULL;
    int rc = mproc_iter_next(it, 60, &index, &data, &len);
    if (index != k)
      fail_msg("result %zu has index %zu (rc %s)", k, index, mproc_err_name(rc));
    if (k % 100 == 13) {
      assert_mproc(rc, MPROC_EFAILED);
      char want[64];
      snprintf(want, sizeof want, "item %zu refused", k);
      assert_last_error_mentions(want);
    } else {
      if (rc != 0)
        fail_msg("item %zu: %s (%s)", k, mproc_err_name(rc), mproc_last_error());
      assert_int_equal(get_i64(data, len), 3 * (int64_t)k);
    }
  }
  {
    size_t index, len;
    const void *data;
    assert_mproc(mproc_iter_next(it, 10, &index, &data, &len), MPROC_EOF);
    assert_mproc(mproc_iter_next(it, 0, &index, &data, &len), MPROC_EOF);
  }
  mproc_iter_free(it);
  free(in);
  free_pool(p);
}

/* imap_unordered: every index exactly once, failures with their index. */
static void test_imap_unordered(void **state) {
  enum { N = 2000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_iter *it;
  int32_t *in = malloc(N * sizeof *in);
  unsigned char *seen = calloc(N, 1);
  size_t failures = 0;
  (void)state;
  assert_non_null(in);
  assert_non_null(seen);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_imap_unordered(p, task_iter, in, N, sizeof *in, 0, &it));
  for (size_t k = 0; k < N; k++) {
    size_t index = SIZE_MAX, len = 0;
    const void *data = NULL;
    int rc = mproc_iter_next(it, 60, &index, &data, &len);
    if (rc != 0 && rc != MPROC_EFAILED)
      fail_msg("result %zu: %s (%s)", k, mproc_err_name(rc), mproc_last_error());
    if (index >= N)
      fail_msg("result %zu has index %zu", k, index);
    if (seen[index]++)
      fail_msg("index %zu delivered twice", index);
    if (index % 100 == 13) {
      assert_mproc(rc, MPROC_EFAILED);
      char want[64];
      snprintf(want, sizeof want, "item %zu refused", index);
      assert_last_error_mentions(want);
      failures++;
    } else {
      assert_mproc(rc, 0);
      assert_int_equal(get_i64(data, len), 3 * (int64_t)index);
    }
  }
  assert_int_equal(failures, N / 100);
  {
    size_t index, len;
    const void *data;
    assert_mproc(mproc_iter_next(it, 10, &index, &data, &len), MPROC_EOF);
  }
  mproc_iter_free(it);
  free(seen);
  free(in);
  free_pool(p);
}

/* Freeing an iterator in the middle: it returns, items not started are dropped, the pool
 * goes on. */
static void test_iter_free_midway(void **state) {
  enum { N = 100000 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_iter *it;
  int32_t *in = malloc(N * sizeof *in), v = 4;
  (void)state;
  assert_non_null(in);
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_imap(p, task_slowish, in, N, sizeof *in, 1, &it));
  for (size_t k = 0; k < 20; k++) {
    size_t index, len;
    const void *data;
    assert_ok(mproc_iter_next(it, 60, &index, &data, &len));
    assert_int_equal(index, k);
  }
  mproc_iter_free(it);
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 17);
  assert_ok(mproc_pool_close(p));
  assert_ok(mproc_pool_join(p));
  /* Most of the input was never run. */
  if (test_load(&b->finished) >= N / 10)
    fail_msg("%d of %d items ran after the iterator was freed at item 20",
             test_load(&b->finished), N);
  free(in);
  free_pool(p);
  free_board(m);
}

typedef struct source_state {
  uint64_t n;      /* items to give */
  uint64_t fail_at; /* return fail_code at this index (UINT64_MAX: never) */
  int fail_code;
  uint64_t cur;
  uint64_t expected; /* next index the pool should ask for */
  bool out_of_order;
} source_state;

static int counting_source(void *user, size_t index, const void **data, size_t *len) {
  source_state *s = user;
  if (index != s->expected)
    s->out_of_order = true;
  s->expected = index + 1;
  if (index == s->fail_at)
    return s->fail_code;
  if (index >= s->n)
    return 0;
  s->cur = index;
  *data = &s->cur;
  *len = sizeof s->cur;
  return 1;
}

/* 1,000,000 lazily generated items summed through the pool in bounded memory. */
static void test_imap_source_bounded_memory(void **state) {
  const uint64_t n = 1000000;
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_iter *it;
  source_state s = {n, UINT64_MAX, 0, 0, 0, false};
  unsigned char *seen = calloc((size_t)n / 8 + 1, 1);
  uint64_t count = 0, sum = 0, want_sum = 3 * (n * (n - 1) / 2) + n;
  long base, peak;
  int rc;
  (void)state;
  assert_non_null(seen);
  o.processes = 2;
  p = make_pool(&o);
  base = peak = resident_kib();
  assert_true(base > 0);
  assert_ok(mproc_pool_imap_source(p, task_u64, counting_source, &s, 1000, false, &it));
  for (;;) {
    size_t index = SIZE_MAX, len = 0;
    const void *data = NULL;
    uint64_t v;
    rc = mproc_iter_next(it, 60, &index, &data, &len);
    if (rc == MPROC_EOF)
      break;
    if (rc != 0)
      fail_msg("after %" PRIu64 " results: %s (%s)", count, mproc_err_name(rc),
               mproc_last_error());
    if (index >= n || (seen[index / 8] & (1u << (index % 8))))
      fail_msg("index %zu out of range or delivered twice", index);
    seen[index / 8] |= (unsigned char)(1u << (index % 8));
    assert_int_equal(len, sizeof v);
    memcpy(&v, data, sizeof v);
    if (v != 3 * (uint64_t)index + 1)
      fail_msg("item %zu gave %" PRIu64, index, v);
    sum += v;
    if (++count % 4096 == 0) {
      long now = resident_kib();
      if (now > peak)
        peak = now;
    }
  }
  assert_int_equal(count, n);
  assert_int_equal(sum, want_sum);
  assert_false(s.out_of_order);
  mproc_iter_free(it);
  free(seen);
  free_pool(p);
  print_message("imap_source: %" PRIu64 " items, parent RSS %ld KiB -> peak %ld KiB (+%ld)\n", n,
                base, peak, peak - base);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  /* The sanitizers' allocators keep freed memory (ASan's quarantine is 256 MiB): the
   * bound says nothing there. */
#else
  if (peak - base >= 50 * 1024)
    fail_msg("the parent's RSS grew by %ld KiB summing %" PRIu64 " items (bound: 50 MiB)",
             peak - base, n);
#endif
}

/* A source returning a negative code ends the iteration with that error reported. */
static void test_imap_source_error(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_iter *it;
  source_state s = {UINT64_MAX, 500, MPROC_EINVAL, 0, 0, false};
  size_t ok = 0;
  int err = 0;
  int32_t v = 3;
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  assert_ok(mproc_pool_imap_source(p, task_u64, counting_source, &s, 10, true, &it));
  for (int guard = 0; guard < 1000; guard++) {
    size_t index = SIZE_MAX, len = 0;
    const void *data = NULL;
    int rc = mproc_iter_next(it, 60, &index, &data, &len);
    if (rc == MPROC_EOF)
      break;
    if (rc == MPROC_ETIMEDOUT)
      fail_msg("the iteration hung after %zu results", ok);
    if (rc != 0) {
      err = rc;
      continue;
    }
    assert_int_equal(index, ok);
    ok++;
  }
  assert_int_equal(ok, 500);
  if (err == 0)
    fail_msg("the source returned %s at item 500, but the iteration just ended (MPROC_EOF "
             "after %zu results): the error was not reported",
             mproc_err_name(MPROC_EINVAL), ok);
  assert_int_equal(err, MPROC_EINVAL);
  mproc_iter_free(it);
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 10);
  free_pool(p);
}

/* The core promise: workers that crash fail exactly their own items. */
static void test_crashing_workers_in_map(void **state) {
  enum { N = 10000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  int32_t *in = malloc(N * sizeof *in), v = 5;
  int64_t *out = malloc(N * sizeof *out);
  size_t nfailed = 0;
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  assert_ok(mproc_pool_map_async(p, task_crashy, in, N, sizeof *in, out, sizeof *out, 0, NULL,
                                 &r));
  assert_mproc(mproc_result_get(r, 90, NULL, NULL), MPROC_EWORKER);
  /* The first failure, item 7, died of a fault. */
  assert_mentions(mproc_result_message(r), CRASH_WORDS_FAULT);
  for (int32_t i = 0; i < N; i++) {
    int rc = mproc_result_item(r, (size_t)i, NULL, NULL);
    if (crashes(i)) {
      if (rc != MPROC_EWORKER)
        fail_msg("crashing item %d: %s, expected MPROC_EWORKER", i, mproc_err_name(rc));
      nfailed++;
    } else {
      if (rc != 0)
        fail_msg("item %d: %s (%s)", i, mproc_err_name(rc), mproc_last_error());
      if (out[i] != 2 * (int64_t)i + 1)
        fail_msg("item %d: %" PRId64, i, out[i]);
    }
  }
  assert_int_equal(nfailed, 40);
  mproc_result_free(r);
  /* The pool still works. */
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 26);
  free(in);
  free(out);
  free_pool(p);
}

/* The same with items of many sizes (map_v): the items a dead worker held but had not
 * run are sent again whole, from the middle of its chunk. */
static void test_crashing_workers_in_map_v(void **state) {
  enum { N = 2000, PAD = 13 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  unsigned char(*bufs)[4 + PAD] = malloc(N * sizeof *bufs);
  mproc_item *items = malloc(N * sizeof *items);
  size_t nfailed = 0;
  (void)state;
  assert_non_null(bufs);
  assert_non_null(items);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++) {
    memcpy(bufs[i], &i, sizeof i);
    memset(bufs[i] + sizeof i, 0xa5, PAD);
    items[i] = (mproc_item){bufs[i], sizeof i + (size_t)(i % PAD)};
  }
  assert_ok(mproc_pool_map_v(p, task_crashy_v, items, N, 9, NULL, &r));
  assert_mproc(mproc_result_get(r, 90, NULL, NULL), MPROC_EWORKER);
  for (int32_t i = 0; i < N; i++) {
    const void *data = NULL;
    size_t len = 0;
    int64_t y;
    int rc = mproc_result_item(r, (size_t)i, &data, &len);
    if (crashes(i)) {
      if (rc != MPROC_EWORKER)
        fail_msg("crashing item %d: %s, expected MPROC_EWORKER", i, mproc_err_name(rc));
      nfailed++;
      continue;
    }
    if (rc != 0)
      fail_msg("item %d: %s (%s)", i, mproc_err_name(rc), mproc_last_error());
    assert_int_equal(len, sizeof y);
    memcpy(&y, data, sizeof y);
    if (y != 2 * (int64_t)i + 1)
      fail_msg("item %d: %" PRId64, i, y);
  }
  assert_int_equal(nfailed, 8);
  mproc_result_free(r);
  free(items);
  free(bufs);
  free_pool(p);
}

/* Each crashing item's own message names the signal or the exit status. */
static void test_crash_messages_in_imap(void **state) {
  enum { N = 2000 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_iter *it;
  int32_t *in = malloc(N * sizeof *in), v = 5;
  unsigned char *seen = calloc(N, 1);
  size_t nfailed = 0;
  (void)state;
  assert_non_null(in);
  assert_non_null(seen);
  o.processes = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_imap_unordered(p, task_crashy, in, N, sizeof *in, 16, &it));
  for (size_t k = 0; k < N; k++) {
    size_t index = SIZE_MAX, len = 0;
    const void *data = NULL;
    int rc = mproc_iter_next(it, 60, &index, &data, &len);
    if (index >= N || seen[index]++)
      fail_msg("result %zu: index %zu (rc %s)", k, index, mproc_err_name(rc));
    if (crashes((int32_t)index)) {
      if (rc != MPROC_EWORKER)
        fail_msg("crashing item %zu: %s, expected MPROC_EWORKER", index, mproc_err_name(rc));
      assert_last_error_mentions(crash_words((int32_t)index));
      assert_last_error_mentions("worker pid");
      nfailed++;
    } else {
      if (rc != 0)
        fail_msg("item %zu: %s (%s)", index, mproc_err_name(rc), mproc_last_error());
      assert_int_equal(get_i64(data, len), 2 * (int64_t)index + 1);
    }
  }
  assert_int_equal(nfailed, 8);
  {
    size_t index, len;
    const void *data;
    assert_mproc(mproc_iter_next(it, 10, &index, &data, &len), MPROC_EOF);
  }
  mproc_iter_free(it);
  assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 26);
  free(seen);
  free(in);
  free_pool(p);
}

/* A worker SIGKILLed from outside while it runs a long task fails that task. */
static void test_worker_killed_from_outside(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_result *r;
  mproc_conn *a, *b;
  void *share[1];
  void *data = NULL;
  size_t len = 0;
  long pid;
  (void)state;
  make_pipe(&a, &b, false);
  share[0] = b;
  o.processes = 1;
  o.share = share;
  o.nshare = 1;
  p = make_pool(&o);

  assert_ok(mproc_pool_apply_async(p, task_report_pid_and_sleep, NULL, 0, NULL, &r));
  assert_int_equal(mproc_conn_poll(a, 60), 1);
  assert_ok(mproc_conn_recv(a, &data, &len, 0));
  assert_int_equal(len, sizeof pid);
  memcpy(&pid, data, sizeof pid);
  free(data);
  assert_true(pid > 0);
  assert_true(kill_hard(pid));

  assert_mproc(mproc_result_get(r, 60, NULL, NULL), MPROC_EWORKER);
  assert_mentions(mproc_result_message(r), "signal 9");
  mproc_result_free(r);
  /* A new worker takes over. */
  assert_int_not_equal(apply_i64(p, task_getpid, NULL, 0), pid);
  assert_true(wait_pid_gone(pid, 10));
  free_pool(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

/* task_timeout: the task fails with MPROC_ETIMEDOUT, its worker is replaced. */
static void test_task_timeout(void **state) {
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r;
  long pid;
  int32_t v = 9;
  (void)state;
  o.processes = 1;
  o.task_timeout = 1.5;
  p = make_board_pool(&o, &m, &b, share);

  assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r));
  assert_mproc(mproc_result_get(r, 60, NULL, NULL), MPROC_ETIMEDOUT);
  assert_mentions(mproc_result_message(r), "task_timeout");
  mproc_result_free(r);
  pid = test_load_long(&b->pids[0]);
  assert_true(pid > 0);
  assert_int_equal(test_load(&b->finished), 0);
  assert_true(wait_pid_gone(pid, 10));
  /* Later (quick) tasks succeed, on another worker. */
  for (int i = 0; i < 5; i++) {
    assert_int_not_equal(apply_i64(p, task_getpid, NULL, 0), pid);
    assert_int_equal(apply_i64(p, task_square, &v, sizeof v), 82);
  }
  free_pool(p);
  free_board(m);
}

/* Cancelling a map: pending items give MPROC_ECANCELED, running ones' workers are
 * replaced, other work goes on. */
static void test_cancel_map(void **state) {
  enum { N = 200 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r, *other;
  int32_t in[N];
  int64_t out[N];
  long running[MAX_PIDS];
  size_t nrunning;
  int32_t v = 12;
  (void)state;
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  assert_ok(mproc_pool_map_async(p, task_wait_release, in, N, sizeof *in, out, sizeof *out, 1,
                                 NULL, &r));
  assert_ok(mproc_pool_apply_async(p, task_square, &v, sizeof v, NULL, &other));
  assert_int_equal(wait_int(&b->started, 2, 60), 2);
  assert_false(mproc_result_ready(r));
  assert_ok(mproc_result_cancel(r));
  assert_ok(mproc_result_wait(r, 60));
  assert_true(mproc_result_ready(r));
  assert_int_equal(mproc_result_successful(r), 0);
  assert_mproc(mproc_result_get(r, 0, NULL, NULL), MPROC_ECANCELED);
  for (size_t i = 0; i < N; i++) {
    int rc = mproc_result_item(r, i, NULL, NULL);
    if (rc != MPROC_ECANCELED)
      fail_msg("item %zu: %s, expected MPROC_ECANCELED", i, mproc_err_name(rc));
  }
  /* Cancelling again, or a finished result, is harmless. */
  assert_ok(mproc_result_cancel(r));
  mproc_result_free(r);

  /* The workers that ran the blocked items are replaced. */
  nrunning = pid_count(b->pids);
  assert_int_equal(nrunning, 2);
  memcpy(running, b->pids, nrunning * sizeof *running);
  for (size_t i = 0; i < nrunning; i++)
    if (!wait_pid_gone(running[i], 10))
      fail_msg("worker %ld, running a cancelled item, was not stopped", running[i]);
  assert_int_equal(test_load(&b->finished), 0);

  /* The other job, and new ones, run. */
  assert_int_equal(result_i64(other), 145);
  mproc_result_free(other);
  for (int i = 0; i < 4; i++) {
    int64_t pid = apply_i64(p, task_getpid, NULL, 0);
    for (size_t k = 0; k < nrunning; k++)
      assert_int_not_equal(pid, running[k]);
  }
  free_pool(p);
  free_board(m);
}

/* maxtasksperchild 3: no worker serves more than 3 tasks; the initializer runs once in
 * each worker, before its tasks. */
static void test_maxtasksperchild_and_initializer(void **state) {
  enum { N = 100 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r[N];
  int64_t pids[N];
  size_t distinct = 0;
  int runs;
  (void)state;
  o.processes = 2;
  o.maxtasksperchild = 3;
  o.initializer = task_init;
  o.initarg = INITARG;
  o.initarg_len = strlen(INITARG);
  p = make_board_pool(&o, &m, &b, share);

  for (int i = 0; i < N; i++)
    assert_ok(mproc_pool_apply_async(p, task_getpid, NULL, 0, NULL, &r[i]));
  for (int i = 0; i < N; i++) {
    pids[i] = result_i64(r[i]);
    mproc_result_free(r[i]);
  }
  for (int i = 0; i < N; i++) {
    int same = 0, first = 1;
    for (int k = 0; k < N; k++)
      if (pids[k] == pids[i]) {
        same++;
        if (k < i)
          first = 0;
      }
    if (same > 3)
      fail_msg("worker %" PRId64 " served %d tasks (maxtasksperchild 3)", pids[i], same);
    distinct += (size_t)first;
  }
  assert_true(distinct >= (N + 2) / 3);

  assert_ok(mproc_pool_close(p));
  assert_ok(mproc_pool_join(p));
  runs = test_load(&b->init_runs);
  assert_true(runs >= (int)distinct);
  assert_true(runs <= MAX_PIDS);
  /* Once per worker: no pid ran it twice ... */
  for (int i = 0; i < runs; i++)
    for (int k = 0; k < i; k++)
      if (b->init_pids[i] == b->init_pids[k])
        fail_msg("the initializer ran twice in worker %ld", b->init_pids[i]);
  /* ... and every worker that ran a task had run it. */
  for (int i = 0; i < N; i++) {
    bool found = false;
    for (int k = 0; k < runs && !found; k++)
      found = b->init_pids[k] == pids[i];
    if (!found)
      fail_msg("worker %" PRId64 " ran a task without running the initializer", pids[i]);
  }
  free_pool(p);
  free_board(m);
}

/* A failing initializer fails pending and new tasks with a message naming it, and the
 * pool does not restart workers forever. */
static void test_initializer_fails(void **state) {
  enum { N = 5 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r[N];
  int32_t in[4] = {1, 2, 3, 4};
  int64_t out[4];
  int rc;
  (void)state;
  o.processes = 2;
  o.initializer = task_init_fail;
  p = make_board_pool(&o, &m, &b, share);

  for (int i = 0; i < N; i++) {
    rc = mproc_pool_apply_async(p, task_getpid, NULL, 0, NULL, &r[i]);
    if (rc == 0) {
      assert_mproc(mproc_result_get(r[i], 60, NULL, NULL), MPROC_EFAILED);
      assert_mentions(mproc_result_message(r[i]), "initializer");
      assert_mentions(mproc_result_message(r[i]), "refuses to start");
      mproc_result_free(r[i]);
    } else {
      /* Submitted once the pool knew: refused at once. */
      assert_mproc(rc, MPROC_EFAILED);
      assert_last_error_mentions("initializer");
    }
  }
  /* New work, by every entry point, fails the same way. */
  {
    void *o2 = NULL;
    size_t len;
    assert_mproc(mproc_pool_apply(p, task_getpid, NULL, 0, &o2, &len), MPROC_EFAILED);
    assert_last_error_mentions("initializer");
    assert_null(o2);
  }
  assert_mproc(mproc_pool_map(p, task_square, in, 4, sizeof *in, out, sizeof *out, 0),
               MPROC_EFAILED);
  assert_last_error_mentions("initializer");

  /* No loop: the initializer ran in the first workers only. */
  sleep_seconds(0.5);
  rc = test_load(&b->init_runs);
  assert_true(rc >= 1);
  if (rc > o.processes)
    fail_msg("the failing initializer ran %d times in a pool of %d", rc, o.processes);
  assert_ok(mproc_pool_close(p));
  assert_ok(mproc_pool_join(p));
  assert_true(test_load(&b->init_runs) <= o.processes);
  free_pool(p);
  free_board(m);
  assert_no_children(10);
}

/* opts.share: a Queue and a Semaphore reach every task. */
static void test_share_list_queue_and_sem(void **state) {
  enum { N = 50 };
  mproc_pool_opts o = {0};
  mproc_pool *p;
  mproc_queue *q = NULL;
  mproc_sem *s = NULL;
  void *share[2];
  int32_t in[N], out[N];
  unsigned char seen[N] = {0};
  (void)state;
  assert_ok(mproc_queue_create(&q, NULL));
  assert_ok(mproc_sem_create(&s, 0, false));
  share[0] = q;
  share[1] = s;
  o.processes = 2;
  o.share = share;
  o.nshare = 2;
  p = make_pool(&o);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;
  assert_ok(mproc_pool_map(p, task_put_and_release, in, N, sizeof *in, out, sizeof *out, 3));
  for (int i = 0; i < N; i++) {
    void *data = NULL;
    size_t len = 0;
    int32_t v;
    assert_int_equal(out[i], i);
    assert_ok(mproc_queue_get(q, &data, &len, 10));
    assert_int_equal(len, sizeof v);
    memcpy(&v, data, sizeof v);
    free(data);
    assert_true(v >= 0 && v < N);
    assert_int_equal(seen[v]++, 0);
    assert_ok(mproc_sem_acquire(s, 10));
  }
  assert_mproc(mproc_sem_acquire(s, 0), MPROC_ETIMEDOUT);
  assert_true(mproc_queue_empty(q));
  free_pool(p);
  mproc_queue_free(q);
  mproc_sem_free(s);
}

static void *join_pool(void *p) {
  return (void *)(intptr_t)mproc_pool_join(p);
}

/* Two threads joining one pool at once both return once it is joined. */
static void test_join_from_two_threads(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  test_thread t[2];
  void *rc[2];
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  assert_true(apply_i64(p, task_getpid, NULL, 0) > 0);
  assert_ok(mproc_pool_close(p));
  for (int i = 0; i < 2; i++)
    assert_int_equal(test_thread_start(&t[i], join_pool, p), 0);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(test_thread_join(&t[i], &rc[i]), 0);
    assert_int_equal((intptr_t)rc[i], 0);
  }
  assert_ok(mproc_pool_join(p)); /* and again, at once */
  free_pool(p);
}

/* join before close, submissions after close, close then join. */
static void test_close_join(void **state) {
  enum { N = 20 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r[N], *late = NULL;
  mproc_iter *it = NULL;
  int32_t in[N];
  int64_t out[N];
  mproc_item item = {"x", 1};
  void *res = NULL;
  size_t len;
  size_t npids;
  long pids[MAX_PIDS];
  (void)state;
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  assert_mproc(mproc_pool_join(p), MPROC_ESTATE);
  for (int i = 0; i < N; i++)
    assert_ok(mproc_pool_apply_async(p, task_slowish, &in[i], sizeof in[i], NULL, &r[i]));
  assert_ok(mproc_pool_close(p));

  assert_mproc(mproc_pool_apply_async(p, task_square, &in[0], sizeof in[0], NULL, &late),
               MPROC_ESTATE);
  assert_null(late);
  assert_mproc(mproc_pool_apply(p, task_square, &in[0], sizeof in[0], &res, &len), MPROC_ESTATE);
  assert_mproc(mproc_pool_map(p, task_square, in, N, sizeof *in, out, sizeof *out, 0),
               MPROC_ESTATE);
  assert_mproc(mproc_pool_map_v(p, task_twice, &item, 1, 0, NULL, &late), MPROC_ESTATE);
  assert_mproc(mproc_pool_imap(p, task_square, in, N, sizeof *in, 0, &it), MPROC_ESTATE);
  assert_null(it);
  assert_ok(mproc_pool_close(p));

  /* join waits for every task submitted before close. */
  assert_ok(mproc_pool_join(p));
  assert_int_equal(test_load(&b->finished), N);
  for (int i = 0; i < N; i++) {
    const void *data;
    size_t dlen;
    assert_true(mproc_result_ready(r[i]));
    assert_ok(mproc_result_get(r[i], 0, &data, &dlen));
    assert_int_equal(dlen, sizeof(int32_t));
    assert_memory_equal(data, &in[i], sizeof(int32_t));
    mproc_result_free(r[i]);
  }
  /* The workers are gone. */
  npids = pid_count(b->pids);
  assert_true(npids >= 1);
  memcpy(pids, b->pids, npids * sizeof *pids);
  for (size_t i = 0; i < npids; i++)
    assert_pid_reaped(pids[i], 5);
  assert_ok(mproc_pool_join(p));
  free_pool(p);
  free_board(m);
  assert_no_children(10);
}

/* terminate during a large map: prompt, the map fails with MPROC_ECANCELED, no worker
 * and no zombie is left. */
static void test_terminate_large_map(void **state) {
  enum { N = 100000 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r;
  int32_t *in = malloc(N * sizeof *in);
  int32_t *out = malloc(N * sizeof *out);
  size_t npids;
  long pids[MAX_PIDS];
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int32_t i = 0; i < N; i++)
    in[i] = i;

  assert_ok(mproc_pool_map_async(p, task_slowish, in, N, sizeof *in, out, sizeof *out, 0, NULL,
                                 &r));
  assert_true(wait_int(&b->finished, 50, 60) >= 50);
  assert_ok(mproc_pool_terminate(p));
  assert_ok(mproc_pool_join(p));
  assert_true(mproc_result_ready(r));
  assert_mproc(mproc_result_get(r, 0, NULL, NULL), MPROC_ECANCELED);
  assert_int_equal(mproc_result_successful(r), 0);
  if (test_load(&b->finished) >= N)
    fail_msg("the whole map ran: terminate did not stop it");
  /* Submitting after terminate. */
  {
    mproc_result *late = NULL;
    assert_mproc(mproc_pool_apply_async(p, task_square, &in[0], sizeof in[0], NULL, &late),
                 MPROC_ESTATE);
  }
  mproc_result_free(r);

  npids = pid_count(b->pids);
  assert_true(npids >= 1);
  memcpy(pids, b->pids, npids * sizeof *pids);
  for (size_t i = 0; i < npids; i++)
    assert_pid_reaped(pids[i], 5);
  free_pool(p);
  free_board(m);
  assert_no_children(10);
  free(in);
  free(out);
}

/* mproc_pool_free on a running pool terminates and joins it. */
static void test_free_running_pool(void **state) {
  enum { N = 6 };
  mproc_pool_opts o = {0};
  mproc_shm *m;
  board *b;
  void *share[1];
  mproc_pool *p;
  mproc_result *r[N];
  size_t npids;
  long pids[MAX_PIDS];
  (void)state;
  o.processes = 2;
  p = make_board_pool(&o, &m, &b, share);
  for (int i = 0; i < N; i++)
    assert_ok(mproc_pool_apply_async(p, task_wait_release, NULL, 0, NULL, &r[i]));
  /* At least one runs (how many at once is test_blocking_tasks_spread_over_workers's). */
  assert_true(wait_int(&b->started, 1, 60) >= 1);

  free_pool(p); /* never released: the tasks are still running */

  npids = pid_count(b->pids);
  assert_true(npids >= 1);
  memcpy(pids, b->pids, npids * sizeof *pids);
  for (size_t i = 0; i < npids; i++)
    assert_pid_reaped(pids[i], 5);
  /* The results outlive the pool: ready, cancelled. */
  for (int i = 0; i < N; i++) {
    assert_true(mproc_result_ready(r[i]));
    assert_mproc(mproc_result_get(r[i], 0, NULL, NULL), MPROC_ECANCELED);
    mproc_result_free(r[i]);
  }
  assert_int_equal(test_load(&b->finished), 0);
  free_board(m);
  assert_no_children(10);
  mproc_pool_free(NULL);
}

static int hammer_stop;

static void *hammer(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  size_t rounds = 0;
  while (!test_load(&hammer_stop)) {
    void *blocks[16];
    for (int i = 0; i < 16; i++) {
      size_t n;
      /* An LCG of its own per thread: rand_r() is not in every C library. */
      seed = seed * 1103515245u + 12345u;
      n = (size_t)((seed >> 16) % 8192) + 1;
      blocks[i] = malloc(n);
      if (blocks[i] != NULL)
        memset(blocks[i], i, n < 64 ? n : 64);
    }
    for (int i = 0; i < 16; i++)
      free(blocks[i]);
    rounds++;
  }
  return (void *)(uintptr_t)rounds;
}

/* Workers die over and over while two threads of the parent allocate without pause:
 * every replacement works (under fork they come from the single-threaded fork server,
 * never from this threaded process, whose malloc locks a fork could copy held). */
static void test_replacements_while_threads_allocate(void **state) {
  mproc_pool_opts o = {0};
  mproc_pool *p;
  test_thread t[2];
  int32_t v = 3;
  (void)state;
  o.processes = 2;
  p = make_pool(&o);
  test_store(&hammer_stop, 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(test_thread_start(&t[i], hammer, (void *)(uintptr_t)(i + 1)), 0);

  for (int i = 0; i < 20; i++) {
    mproc_result *r;
    int rc;
    assert_ok(mproc_pool_apply_async(p, task_segv, NULL, 0, NULL, &r));
    rc = mproc_result_get(r, 60, NULL, NULL);
    mproc_result_free(r);
    if (rc != MPROC_EWORKER) {
      test_store(&hammer_stop, 1);
      for (int k = 0; k < 2; k++)
        test_thread_join(&t[k], NULL);
      fail_msg("crash %d: %s (%s), expected MPROC_EWORKER", i, mproc_err_name(rc),
               mproc_last_error());
    }
  }
  /* Replacements run tasks (bounded waits: a worker deadlocked at birth fails here). */
  for (int i = 0; i < 50; i++) {
    mproc_result *r;
    const void *data;
    size_t len;
    int rc;
    assert_ok(mproc_pool_apply_async(p, task_square, &v, sizeof v, NULL, &r));
    rc = mproc_result_get(r, 60, &data, &len);
    if (rc != 0 || len != sizeof(int64_t)) {
      test_store(&hammer_stop, 1);
      for (int k = 0; k < 2; k++)
        test_thread_join(&t[k], NULL);
      fail_msg("task %d after the crashes: %s (%s)", i, mproc_err_name(rc), mproc_last_error());
    }
    assert_int_equal(get_i64(data, len), 10);
    mproc_result_free(r);
  }
  test_store(&hammer_stop, 1);
  for (int i = 0; i < 2; i++) {
    void *rounds;
    assert_int_equal(test_thread_join(&t[i], &rounds), 0);
    assert_true((uintptr_t)rounds > 0);
  }
  free_pool(p);
}

static const struct CMUnitTest pool_tests[] = {
    TP(test_create_bad_args),
    TP(test_call_bad_args),
    TP(test_processes_zero_is_cpu_count),
    TP(test_blocking_tasks_spread_over_workers),
    TP(test_more_than_64_workers),
    TP(test_apply_bytes_exact),
    TP(test_apply_failures),
    TP(test_apply_async_states),
    TP(test_lone_apply_handoffs),
    TP(test_callbacks_once),
    TP(test_apply_async_many),
    TP(test_callback_submits_and_blocking_is_estate),
    TP(test_map_chunksizes),
    TP(test_map_failures_per_item),
    TP(test_starmap),
    TP(test_empty_inputs),
    TP(test_map_v_sizes),
    TP(test_imap_ordered),
    TP(test_imap_unordered),
    TP(test_iter_free_midway),
    TP(test_imap_source_bounded_memory),
    TP(test_imap_source_error),
    TP(test_crashing_workers_in_map),
    TP(test_crashing_workers_in_map_v),
    TP(test_crash_messages_in_imap),
    TP(test_worker_killed_from_outside),
    TP(test_task_timeout),
    TP(test_cancel_map),
    TP(test_maxtasksperchild_and_initializer),
    TP(test_initializer_fails),
    TP(test_share_list_queue_and_sem),
    TP(test_close_join),
    TP(test_join_from_two_threads),
    TP(test_terminate_large_map),
    TP(test_free_running_pool),
    TP(test_replacements_while_threads_allocate),
};

const test_group test_groups[] = {
    TEST_GROUP("pool", pool_tests, TEST_NORMAL),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
const test_role *const test_roles = NULL;
const size_t test_nroles = 0;
