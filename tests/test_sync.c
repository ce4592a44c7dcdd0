/* Synchronization: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and
 * SharedMemory, in one process and across processes under the run's start method
 * (--start=fork or --start=spawn). Children get the objects through the share list
 * (mproc_shared) or, for SharedMemory, by name. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

/* ------------------------------------------------------ reporting in children */

/* Children must not use cmocka's assertions (runner.h). A failed check prints what
 * failed on stderr (ctest --output-on-failure shows it) and ends the child with
 * CHILD_FAILED, which the parent reports. */
#define CHILD_FAILED 99

#define CEXPECT(call, code)                                                                    \
  do {                                                                                       \
    int cr_ = (call);                                                                        \
    if (cr_ != (code)) {                                                                     \
      fprintf(stderr, "[child %ld] %s:%d: %s returned %s, expected %s; last error: %s\n",    \
              test_getpid(), __FILE__, __LINE__, #call, mproc_err_name(cr_), #code,         \
              mproc_last_error());                                                           \
      return CHILD_FAILED;                                                                   \
    }                                                                                        \
  } while (0)

#define CCHECK(cond)                                                                           \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "[child %ld] %s:%d: check failed: %s\n", test_getpid(), __FILE__,     \
              __LINE__, #cond);                                                              \
      return CHILD_FAILED;                                                                   \
    }                                                                                        \
  } while (0)

/* ---------------------------------------------------------------- helpers */

/* Names of SharedMemory blocks created by a test: the teardown unlinks those left, so
 * that a failing test leaves nothing in /dev/shm. */
#define MAX_NAMES 16
static char created_names[MAX_NAMES][128];

/* A fresh block name, recorded for the teardown. */
static const char *new_shm_name(void) {
  static unsigned counter;
  for (size_t i = 0; i < MAX_NAMES; i++)
    if (created_names[i][0] == '\0') {
      snprintf(created_names[i], sizeof created_names[i], "mproc-test-sync-%ld-%u",
               test_getpid(), ++counter);
      return created_names[i];
    }
  fail_msg("too many shared memory names in one test");
  return NULL;
}

/* Records a generated name for the teardown. */
static void note_shm_name(const char *name) {
  for (size_t i = 0; i < MAX_NAMES; i++)
    if (created_names[i][0] == '\0') {
      snprintf(created_names[i], sizeof created_names[i], "%s", name);
      return;
    }
  fail_msg("too many shared memory names in one test");
}

/* Kills what the test left running (test_teardown), then unlinks its blocks. */
static int sync_teardown(void **state) {
  test_teardown(state);
  for (size_t i = 0; i < MAX_NAMES; i++)
    if (created_names[i][0] != '\0') {
      shm_name_remove(created_names[i]);
      created_names[i][0] = '\0';
    }
  return 0;
}

#define TS(f) cmocka_unit_test_teardown(f, sync_teardown)

/* Zeroed shared memory for counters: a block whose name is unlinked at once (the
 * mapping, and the share list, keep it alive), so nothing can leak in /dev/shm. */
static void *scratch(mproc_shm **m, size_t size) {
  void *buf;
  assert_ok(mproc_shm_create(m, NULL, size));
  assert_ok(mproc_shm_unlink(*m));
  buf = mproc_shm_buf(*m);
  assert_non_null(buf);
  memset(buf, 0, size);
  return buf;
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

/* Gives pid up to 10 s to be asleep. This only makes it likely that a waiter is
 * already blocked when it is woken; no assertion depends on it. */
static void wait_blocked(long pid) { (void)wait_asleep(pid, 10); }

/* Joins p (30 s at most, then it is killed) and checks that it exited with 0. */
static void join_ok(mproc_process *p, const char *what) {
  long pid = mproc_process_pid(p);
  int r = tjoin(p, 30), code;
  if (r != 0)
    fail_msg("%s (pid %ld) did not finish within 30 s: %s", what, pid, mproc_err_name(r));
  code = texitcode(p);
  if (code != 0)
    fail_msg("%s (pid %ld) exited with %d%s", what, pid, code,
             code == CHILD_FAILED ? " (a check failed in it: see its message on stderr)" : "");
  tfree(p);
}

static mproc_process *start(mproc_fn fn, const void *arg, size_t len, void *const *share,
                            size_t nshare) {
  mproc_process *p = NULL;
  assert_ok(tstart(&p, fn, arg, len, share, nshare));
  assert_non_null(p);
  return p;
}

/* -------------------------------------------------------------- bad input */

static bool pred_true(void *arg) {
  (void)arg;
  return true;
}

static bool pred_false(void *arg) {
  (void)arg;
  return false;
}

static void test_null_handles(void **state) {
  mproc_lock *l;
  mproc_sem *s;
  mproc_cond *c;
  mproc_shm *m;
  unsigned v = 7;
  const char *name = new_shm_name();
  (void)state;

  assert_mproc(mproc_lock_create(NULL, false), MPROC_EINVAL);
  assert_last_error_mentions("mproc_lock_create");
  assert_mproc(mproc_lock_create(NULL, true), MPROC_EINVAL);
  assert_mproc(mproc_lock_acquire(NULL, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_lock_acquire");
  assert_mproc(mproc_lock_acquire(NULL, 0.5), MPROC_EINVAL);
  assert_mproc(mproc_lock_acquire(NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_mproc(mproc_lock_release(NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_lock_release");
  mproc_lock_free(NULL);

  assert_mproc(mproc_sem_create(NULL, 1, false), MPROC_EINVAL);
  assert_last_error_mentions("mproc_sem_create");
  assert_mproc(mproc_sem_create(NULL, 1, true), MPROC_EINVAL);
  assert_mproc(mproc_sem_acquire(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_sem_acquire(NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_mproc(mproc_sem_release(NULL), MPROC_EINVAL);
  assert_mproc(mproc_sem_value(NULL, &v), MPROC_EINVAL);
  assert_last_error_mentions("mproc_sem_value");
  assert_int_equal(v, 7);
  assert_ok(mproc_sem_create(&s, 1, false));
  assert_mproc(mproc_sem_value(s, NULL), MPROC_EINVAL);
  mproc_sem_free(s);
  mproc_sem_free(NULL);

  assert_mproc(mproc_event_create(NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_event_create");
  assert_mproc(mproc_event_set(NULL), MPROC_EINVAL);
  assert_mproc(mproc_event_clear(NULL), MPROC_EINVAL);
  assert_false(mproc_event_is_set(NULL));
  assert_mproc(mproc_event_wait(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_event_wait(NULL, MPROC_FOREVER), MPROC_EINVAL);
  mproc_event_free(NULL);

  assert_mproc(mproc_cond_create(NULL, NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_cond_create");
  assert_ok(mproc_lock_create(&l, false));
  assert_mproc(mproc_cond_create(NULL, l), MPROC_EINVAL);
  assert_mproc(mproc_cond_acquire(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_cond_release(NULL), MPROC_EINVAL);
  assert_mproc(mproc_cond_wait(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_cond_wait(NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_mproc(mproc_cond_wait_for(NULL, pred_true, NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_cond_notify(NULL, 1), MPROC_EINVAL);
  assert_mproc(mproc_cond_notify_all(NULL), MPROC_EINVAL);
  mproc_cond_free(NULL);
  /* A NULL predicate, with the lock held. */
  assert_ok(mproc_cond_create(&c, l));
  assert_ok(mproc_cond_acquire(c, 0));
  assert_mproc(mproc_cond_wait_for(c, NULL, NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_cond_wait_for(c, NULL, NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_last_error_mentions("mproc_cond_wait_for");
  assert_ok(mproc_cond_release(c));
  mproc_cond_free(c);
  mproc_lock_free(l);

  assert_mproc(mproc_shm_create(NULL, NULL, 64), MPROC_EINVAL);
  assert_mproc(mproc_shm_create(NULL, name, 64), MPROC_EINVAL);
  assert_last_error_mentions("mproc_shm_create");
  m = (mproc_shm *)&v;
  /* Refused before anything was made: the name does not exist. */
  assert_mproc(mproc_shm_attach(&m, name), MPROC_ENOTFOUND);
  assert_null(m);
  assert_mproc(mproc_shm_attach(NULL, name), MPROC_EINVAL);
  assert_mproc(mproc_shm_attach(&m, NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_shm_attach");
  assert_null(mproc_shm_buf(NULL));
  assert_int_equal(mproc_shm_size(NULL), 0);
  assert_null(mproc_shm_name(NULL));
  assert_mproc(mproc_shm_unlink(NULL), MPROC_EINVAL);
  mproc_shm_free(NULL);
}

/* A create or attach refused for a bad argument leaves its output NULL (as
 * mproc_process_start does), so that freeing it on the error path is safe. */
static void test_refused_create_clears_output(void **state) {
  uint64_t not_a_handle[4] = {0, 0, 0, 0};
  mproc_sem *s = (mproc_sem *)not_a_handle;
  mproc_cond *c = (mproc_cond *)not_a_handle;
  mproc_shm *m = (mproc_shm *)not_a_handle;
  (void)state;
  assert_mproc(mproc_sem_create(&s, 0, true), MPROC_EINVAL);
  assert_null(s);
  assert_mproc(mproc_cond_create(&c, (mproc_lock *)not_a_handle), MPROC_EINVAL);
  assert_null(c);
  assert_mproc(mproc_shm_create(&m, NULL, 0), MPROC_EINVAL);
  assert_null(m);
  m = (mproc_shm *)not_a_handle;
  assert_mproc(mproc_shm_create(&m, "a/b", 16), MPROC_EINVAL);
  assert_null(m);
  m = (mproc_shm *)not_a_handle;
  assert_mproc(mproc_shm_attach(&m, NULL), MPROC_EINVAL);
  if (m != NULL)
    fail_msg("mproc_shm_attach(&m, NULL) returned MPROC_EINVAL but left m as it was");
}

/* One of each kind of handle, to pass where another kind is expected. */
enum { K_LOCK, K_RLOCK, K_SEM, K_EVENT, K_COND, K_SHM, K_CONN, K_QUEUE, K_COUNT };
static const char *const kind_names[K_COUNT] = {"Lock",      "RLock",        "Semaphore",
                                                "Event",     "Condition",    "SharedMemory",
                                                "Connection", "Queue"};

#define EXPECT_EINVAL(call, kind)                                                              \
  do {                                                                                       \
    int er_ = (call);                                                                        \
    if (er_ != MPROC_EINVAL)                                                                 \
      fail_msg("%s with a %s returned %d (%s), expected MPROC_EINVAL; last error: %s", #call, \
               kind_names[kind], er_, mproc_err_name(er_), mproc_last_error());              \
  } while (0)

static void test_wrong_kind_handles(void **state) {
  void *obj[K_COUNT];
  mproc_lock *l, *rl;
  mproc_sem *s;
  mproc_event *e;
  mproc_cond *c;
  mproc_shm *m;
  mproc_conn *a, *b;
  mproc_queue *q;
  mproc_queue_opts qo = {0};
  unsigned v = 0;
  (void)state;

  assert_ok(mproc_lock_create(&l, false));
  assert_ok(mproc_lock_create(&rl, true));
  assert_ok(mproc_sem_create(&s, 3, false));
  assert_ok(mproc_event_create(&e));
  assert_ok(mproc_cond_create(&c, NULL));
  scratch(&m, 4096);
  make_pipe(&a, &b, true);
  qo.buffer_size = 4096;
  assert_ok(mproc_queue_create(&q, &qo));
  obj[K_LOCK] = l;
  obj[K_RLOCK] = rl;
  obj[K_SEM] = s;
  obj[K_EVENT] = e;
  obj[K_COND] = c;
  obj[K_SHM] = m;
  obj[K_CONN] = a;
  obj[K_QUEUE] = q;

  for (int k = 0; k < K_COUNT; k++) {
    void *o = obj[k];
    if (k != K_LOCK && k != K_RLOCK) {
      mproc_cond *c2 = (mproc_cond *)&v;
      EXPECT_EINVAL(mproc_lock_acquire(o, 0), k);
      EXPECT_EINVAL(mproc_lock_acquire(o, 0.01), k);
      EXPECT_EINVAL(mproc_lock_release(o), k);
      EXPECT_EINVAL(mproc_cond_create(&c2, o), k);
      assert_null(c2);
    }
    if (k != K_SEM) {
      unsigned val = 12345;
      EXPECT_EINVAL(mproc_sem_acquire(o, 0), k);
      EXPECT_EINVAL(mproc_sem_acquire(o, 0.01), k);
      EXPECT_EINVAL(mproc_sem_release(o), k);
      EXPECT_EINVAL(mproc_sem_value(o, &val), k);
      assert_int_equal(val, 12345);
    }
    if (k != K_EVENT) {
      EXPECT_EINVAL(mproc_event_set(o), k);
      EXPECT_EINVAL(mproc_event_clear(o), k);
      EXPECT_EINVAL(mproc_event_wait(o, 0), k);
      EXPECT_EINVAL(mproc_event_wait(o, 0.01), k);
      if (mproc_event_is_set(o))
        fail_msg("mproc_event_is_set on a %s returned true", kind_names[k]);
    }
    if (k != K_COND) {
      EXPECT_EINVAL(mproc_cond_acquire(o, 0), k);
      EXPECT_EINVAL(mproc_cond_release(o), k);
      EXPECT_EINVAL(mproc_cond_wait(o, 0), k);
      EXPECT_EINVAL(mproc_cond_wait(o, 0.01), k);
      EXPECT_EINVAL(mproc_cond_wait_for(o, pred_false, NULL, 0.01), k);
      EXPECT_EINVAL(mproc_cond_notify(o, 1), k);
      EXPECT_EINVAL(mproc_cond_notify_all(o), k);
    }
    if (k != K_SHM) {
      if (mproc_shm_buf(o) != NULL || mproc_shm_size(o) != 0 || mproc_shm_name(o) != NULL)
        fail_msg("mproc_shm_buf/size/name accepted a %s", kind_names[k]);
      EXPECT_EINVAL(mproc_shm_unlink(o), k);
    }
  }

  /* None of the objects was disturbed by the refused calls. */
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(rl, 0));
  assert_ok(mproc_lock_release(rl));
  assert_mproc(mproc_lock_release(rl), MPROC_ESTATE);
  assert_ok(mproc_sem_value(s, &v));
  assert_int_equal(v, 3);
  assert_false(mproc_event_is_set(e));
  assert_ok(mproc_cond_acquire(c, 0));
  assert_ok(mproc_cond_release(c));
  assert_mproc(mproc_cond_release(c), MPROC_ESTATE);
  assert_int_equal(mproc_shm_size(m), 4096);
  assert_int_equal(mproc_queue_qsize(q), 0);

  mproc_queue_free(q);
  mproc_conn_free(a);
  mproc_conn_free(b);
  mproc_shm_free(m);
  mproc_cond_free(c);
  mproc_event_free(e);
  mproc_sem_free(s);
  mproc_lock_free(rl);
  mproc_lock_free(l);
}

/* ------------------------------------------------------------------- Lock */

static void test_lock_acquire_release(void **state) {
  mproc_lock *l;
  (void)state;
  assert_ok(mproc_lock_create(&l, false));
  assert_non_null(l);
  /* Releasing a lock nobody holds. */
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  assert_ok(mproc_lock_acquire(l, MPROC_FOREVER));
  assert_ok(mproc_lock_release(l));
  assert_ok(mproc_lock_acquire(l, 5.0));
  /* A second acquire by the holder would deadlock: refused, whatever the timeout. */
  assert_mproc(mproc_lock_acquire(l, 0), MPROC_ESTATE);
  assert_last_error_mentions("deadlock");
  assert_mproc(mproc_lock_acquire(l, 0.05), MPROC_ESTATE);
  assert_mproc(mproc_lock_acquire(l, MPROC_FOREVER), MPROC_ESTATE);
  /* Still held once: one release frees it. */
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  mproc_lock_free(l);
}

/* A thread that tries a lock held by another thread. */
typedef struct try_thread {
  mproc_lock *l;
  int r_try, r_timed, r_release;
} try_thread;

static void *try_thread_main(void *arg) {
  try_thread *t = arg;
  t->r_try = mproc_lock_acquire(t->l, 0);
  t->r_timed = mproc_lock_acquire(t->l, 0.1);
  t->r_release = mproc_lock_release(t->l);
  return NULL;
}

/* Runs try_thread_main on l in a new thread and checks what it saw: the lock is held
 * by someone else. */
static void check_held_by_other_thread(mproc_lock *l) {
  try_thread t = {l, 1, 1, 1};
  test_thread th;
  assert_int_equal(test_thread_start(&th, try_thread_main, &t), 0);
  assert_int_equal(test_thread_join(&th, NULL), 0);
  assert_mproc(t.r_try, MPROC_ETIMEDOUT);
  assert_mproc(t.r_timed, MPROC_ETIMEDOUT);
  assert_mproc(t.r_release, MPROC_ESTATE);
}

/* A thread that holds a lock until told to let it go. */
typedef struct holder_thread {
  mproc_lock *l;
  mproc_event *held, *go; /* this thread -> the test, and back */
  int r_acquire, r_release;
} holder_thread;

static void *holder_thread_main(void *arg) {
  holder_thread *h = arg;
  h->r_acquire = mproc_lock_acquire(h->l, 10);
  mproc_event_set(h->held);
  mproc_event_wait(h->go, MPROC_FOREVER);
  h->r_release = mproc_lock_release(h->l);
  return NULL;
}

static void test_lock_other_thread(void **state) {
  mproc_lock *l;
  holder_thread h;
  test_thread th;
  (void)state;
  assert_ok(mproc_lock_create(&l, false));

  /* Held by this thread: another one can neither take nor release it. */
  assert_ok(mproc_lock_acquire(l, 0));
  check_held_by_other_thread(l);
  assert_ok(mproc_lock_release(l));

  /* Held by another thread: this one can neither take nor release it. */
  memset(&h, 0, sizeof h);
  h.l = l;
  h.r_acquire = h.r_release = 1;
  assert_ok(mproc_event_create(&h.held));
  assert_ok(mproc_event_create(&h.go));
  assert_int_equal(test_thread_start(&th, holder_thread_main, &h), 0);
  assert_ok(mproc_event_wait(h.held, MPROC_FOREVER));
  {
    int r_rel = mproc_lock_release(l), r_try = mproc_lock_acquire(l, 0),
        r_timed = mproc_lock_acquire(l, 0.1);
    assert_ok(mproc_event_set(h.go));
    assert_int_equal(test_thread_join(&th, NULL), 0);
    assert_mproc(h.r_acquire, 0);
    assert_mproc(r_rel, MPROC_ESTATE);
    assert_mproc(r_try, MPROC_ETIMEDOUT);
    assert_mproc(r_timed, MPROC_ETIMEDOUT);
    assert_mproc(h.r_release, 0);
  }
  mproc_event_free(h.held);
  mproc_event_free(h.go);
  /* Free again. */
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  mproc_lock_free(l);
}

/* arg: depth (int). With depth 0: the lock is held elsewhere; the child can neither
 * take it (at once or with a timeout) nor release it. With depth > 0: the lock is
 * free; the child takes it depth times (an RLock) and releases it as often. */
static int child_lock_probe(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_lock *l = mproc_shared(ctx, 0);
  int depth;
  child_enter();
  CCHECK(l != NULL && len == sizeof depth);
  memcpy(&depth, arg, sizeof depth);
  if (depth == 0) {
    CEXPECT(mproc_lock_acquire(l, 0), MPROC_ETIMEDOUT);
    CEXPECT(mproc_lock_acquire(l, 0.2), MPROC_ETIMEDOUT);
    CEXPECT(mproc_lock_release(l), MPROC_ESTATE);
    return 0;
  }
  for (int i = 0; i < depth; i++)
    CEXPECT(mproc_lock_acquire(l, 0), 0);
  for (int i = 0; i < depth; i++)
    CEXPECT(mproc_lock_release(l), 0);
  CEXPECT(mproc_lock_release(l), MPROC_ESTATE);
  return 0;
}

static void probe_lock(mproc_lock *l, int depth, const char *what) {
  void *share[1] = {l};
  join_ok(start(child_lock_probe, &depth, sizeof depth, share, 1), what);
}

static void test_lock_other_process(void **state) {
  mproc_lock *l;
  (void)state;
  assert_ok(mproc_lock_create(&l, false));
  assert_ok(mproc_lock_acquire(l, 0));
  probe_lock(l, 0, "a child probing a Lock the parent holds");
  /* The child's failed release left it held here. */
  assert_ok(mproc_lock_release(l));
  probe_lock(l, 1, "a child taking a free Lock");
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  mproc_lock_free(l);
}

/* Mutual exclusion: each child adds 1 to a counter in shared memory COUNT_ITERS times,
 * under the lock, with a read-modify-write that loses updates without it. */
#define COUNT_CHILDREN 4
#define COUNT_ITERS 10000

typedef struct count_area {
  volatile long count;
  int started;
  int go;
} count_area;

static void start_barrier(count_area *a) {
  test_add(&a->started, 1);
  while (test_load(&a->go) == 0)
    test_yield();
}

static int count_under_lock(mproc_lock *l, count_area *a) {
  for (int i = 0; i < COUNT_ITERS; i++) {
    long v;
    CEXPECT(mproc_lock_acquire(l, MPROC_FOREVER), 0);
    v = a->count;
    if (i % 32 == 0)
      test_yield(); /* let the others run into the lock */
    a->count = v + 1;
    CEXPECT(mproc_lock_release(l), 0);
  }
  return 0;
}

static int child_count(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_lock *l = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  count_area *a;
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(l != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL);
  start_barrier(a);
  return count_under_lock(l, a);
}

static void test_lock_mutual_exclusion_processes(void **state) {
  mproc_lock *l;
  mproc_shm *m;
  count_area *a = scratch(&m, sizeof *a);
  mproc_process *p[COUNT_CHILDREN];
  void *share[2];
  (void)state;
  assert_ok(mproc_lock_create(&l, false));
  share[0] = l;
  share[1] = m;
  for (int i = 0; i < COUNT_CHILDREN; i++)
    p[i] = start(child_count, NULL, 0, share, 2);
  /* All at the start line, then all at once. */
  assert_int_equal(wait_int(&a->started, COUNT_CHILDREN, 30), COUNT_CHILDREN);
  test_store(&a->go, 1);
  for (int i = 0; i < COUNT_CHILDREN; i++)
    join_ok(p[i], "a counting child");
  assert_int_equal(a->count, (long)COUNT_CHILDREN * COUNT_ITERS);
  /* Nobody holds it now. */
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  mproc_lock_free(l);
  mproc_shm_free(m);
}

typedef struct count_thread {
  mproc_lock *l;
  count_area *a;
  int r;
} count_thread;

static void *count_thread_main(void *arg) {
  count_thread *t = arg;
  start_barrier(t->a);
  t->r = count_under_lock(t->l, t->a);
  return NULL;
}

/* The same between the threads of one process (and, under TSan, a check that the lock
 * gives the ordering it promises). */
static void test_lock_mutual_exclusion_threads(void **state) {
  enum { N = 3 };
  mproc_lock *l;
  count_area a;
  count_thread t[N];
  test_thread th[N];
  (void)state;
  memset(&a, 0, sizeof a);
  assert_ok(mproc_lock_create(&l, false));
  for (int i = 0; i < N; i++) {
    t[i].l = l;
    t[i].a = &a;
    t[i].r = -1;
    assert_int_equal(test_thread_start(&th[i], count_thread_main, &t[i]), 0);
  }
  wait_int(&a.started, N, 30);
  test_store(&a.go, 1);
  for (int i = 0; i < N; i++)
    assert_int_equal(test_thread_join(&th[i], NULL), 0);
  for (int i = 0; i < N; i++)
    assert_int_equal(t[i].r, 0);
  assert_int_equal(a.count, (long)N * COUNT_ITERS);
  mproc_lock_free(l);
}

/* Robustness: a child takes the lock (depth times: an RLock), says so on `ready`, and
 * then, as `how` says, sleeps until killed, blocks forever inside mproc (waiting on an
 * event nobody sets) until killed, or exits without releasing it. */
enum { HOLD_SLEEP, HOLD_BLOCKED, HOLD_EXIT };

typedef struct hold_arg {
  int how, depth;
} hold_arg;

static int child_hold_lock(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_lock *l = mproc_shared(ctx, 0);
  mproc_event *ready = mproc_shared(ctx, 1), *never = mproc_shared(ctx, 2);
  hold_arg h;
  child_enter();
  CCHECK(l != NULL && ready != NULL && never != NULL && len == sizeof h);
  memcpy(&h, arg, sizeof h);
  for (int i = 0; i < h.depth; i++)
    CEXPECT(mproc_lock_acquire(l, 30), 0);
  CEXPECT(mproc_event_set(ready), 0);
  switch (h.how) {
  case HOLD_SLEEP:
    sleep_forever();
  case HOLD_BLOCKED: {
    int r = mproc_event_wait(never, MPROC_FOREVER); /* should never return */
    fprintf(stderr, "[child %ld] waiting on an event nobody sets returned %s\n",
            test_getpid(), mproc_err_name(r));
    return CHILD_FAILED;
  }
  default:
    return 0; /* exits holding the lock */
  }
}

static void check_recovery(int how, bool recursive, int depth) {
  mproc_lock *l;
  mproc_event *ready, *never;
  mproc_process *p;
  void *share[3];
  hold_arg h = {how, depth};
  int code;

  assert_ok(mproc_lock_create(&l, recursive));
  assert_ok(mproc_event_create(&ready));
  assert_ok(mproc_event_create(&never));
  share[0] = l;
  share[1] = ready;
  share[2] = never;
  p = start(child_hold_lock, &h, sizeof h, share, 3);
  assert_ok(mproc_event_wait(ready, 30));

  if (how == HOLD_EXIT) {
    assert_ok(tjoin(p, 30));
    assert_int_equal(texitcode(p), 0);
  } else {
    /* Held by the child. */
    assert_mproc(mproc_lock_acquire(l, 0), MPROC_ETIMEDOUT);
    assert_mproc(mproc_lock_acquire(l, 0.1), MPROC_ETIMEDOUT);
    assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
    wait_blocked(mproc_process_pid(p));
    assert_true(mproc_process_is_alive(p));
    assert_ok(mproc_process_kill(p));
  }
  /* The holder is dead (or dying: then this waits for the kernel to hand the lock on). */
  assert_mproc(mproc_lock_acquire(l, 30), 0);
  if (how != HOLD_EXIT) {
    assert_ok(tjoin(p, 30));
    code = texitcode(p);
    assert_int_equal(code, EXIT_KILLED);
  }
  tfree(p);

  /* Ours now, once, whatever depth the dead holder had; then a normal lock again. */
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(l, 0));
  if (!recursive)
    assert_mproc(mproc_lock_acquire(l, 0), MPROC_ESTATE);
  probe_lock(l, 0, "a child probing the recovered lock held by the parent");
  assert_ok(mproc_lock_release(l));
  probe_lock(l, recursive ? 2 : 1, "a child taking the recovered lock");
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));

  mproc_event_free(never);
  mproc_event_free(ready);
  mproc_lock_free(l);
}

static void test_lock_holder_killed(void **state) {
  (void)state;
  check_recovery(HOLD_SLEEP, false, 1);
}

static void test_lock_holder_killed_while_blocked(void **state) {
  (void)state;
  check_recovery(HOLD_BLOCKED, false, 1);
}

static void test_lock_holder_exits_holding(void **state) {
  (void)state;
  check_recovery(HOLD_EXIT, false, 1);
}

static void test_rlock_holder_killed(void **state) {
  (void)state;
  check_recovery(HOLD_SLEEP, true, 2);
  check_recovery(HOLD_BLOCKED, true, 3);
}

/* ------------------------------------------------------------------ RLock */

static void test_rlock_recursion(void **state) {
  mproc_lock *l;
  (void)state;
  assert_ok(mproc_lock_create(&l, true));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_acquire(l, MPROC_FOREVER));
  assert_ok(mproc_lock_acquire(l, 1.0));
  check_held_by_other_thread(l);
  assert_ok(mproc_lock_release(l));
  assert_ok(mproc_lock_release(l));
  /* Still held once. */
  check_held_by_other_thread(l);
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  /* Free: another thread takes it. */
  {
    holder_thread h;
    test_thread th;
    memset(&h, 0, sizeof h);
    h.l = l;
    h.r_acquire = h.r_release = 1;
    assert_ok(mproc_event_create(&h.held));
    assert_ok(mproc_event_create(&h.go));
    assert_int_equal(test_thread_start(&th, holder_thread_main, &h), 0);
    assert_ok(mproc_event_wait(h.held, MPROC_FOREVER));
    {
      int r_try = mproc_lock_acquire(l, 0), r_rel = mproc_lock_release(l);
      assert_ok(mproc_event_set(h.go));
      assert_int_equal(test_thread_join(&th, NULL), 0);
      assert_mproc(h.r_acquire, 0);
      assert_mproc(r_try, MPROC_ETIMEDOUT);
      assert_mproc(r_rel, MPROC_ESTATE);
      assert_mproc(h.r_release, 0);
    }
    mproc_event_free(h.held);
    mproc_event_free(h.go);
  }
  mproc_lock_free(l);
}

static void test_rlock_other_process(void **state) {
  mproc_lock *l;
  (void)state;
  assert_ok(mproc_lock_create(&l, true));
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_acquire(l, 0));
  probe_lock(l, 0, "a child probing an RLock held twice");
  assert_ok(mproc_lock_release(l));
  probe_lock(l, 0, "a child probing an RLock held once");
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  probe_lock(l, 3, "a child taking a free RLock three times");
  mproc_lock_free(l);
}

/* -------------------------------------------------------------- Semaphore */

static unsigned sem_value(mproc_sem *s) {
  unsigned v = 12345;
  assert_ok(mproc_sem_value(s, &v));
  return v;
}

static void test_sem_value_and_timeouts(void **state) {
  mproc_sem *s;
  (void)state;
  assert_ok(mproc_sem_create(&s, 3, false));
  assert_non_null(s);
  assert_int_equal(sem_value(s), 3);
  assert_ok(mproc_sem_acquire(s, 0));
  assert_int_equal(sem_value(s), 2);
  assert_ok(mproc_sem_acquire(s, MPROC_FOREVER));
  assert_int_equal(sem_value(s), 1);
  assert_ok(mproc_sem_acquire(s, 1.0));
  assert_int_equal(sem_value(s), 0);
  assert_mproc(mproc_sem_acquire(s, 0), MPROC_ETIMEDOUT);
  assert_mproc(mproc_sem_acquire(s, 0.05), MPROC_ETIMEDOUT);
  assert_int_equal(sem_value(s), 0);
  assert_ok(mproc_sem_release(s));
  assert_int_equal(sem_value(s), 1);
  /* An unbounded semaphore goes above its initial value. */
  for (int i = 0; i < 4; i++)
    assert_ok(mproc_sem_release(s));
  assert_int_equal(sem_value(s), 5);
  for (int i = 0; i < 5; i++)
    assert_ok(mproc_sem_acquire(s, 0));
  assert_mproc(mproc_sem_acquire(s, 0), MPROC_ETIMEDOUT);
  mproc_sem_free(s);

  assert_ok(mproc_sem_create(&s, 0, false));
  assert_int_equal(sem_value(s), 0);
  assert_mproc(mproc_sem_acquire(s, 0), MPROC_ETIMEDOUT);
  mproc_sem_free(s);
}

/* Says so on `ready`, then blocks on the semaphore until someone releases it. */
static int child_sem_wait(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_sem *s = mproc_shared(ctx, 0);
  mproc_event *ready = mproc_shared(ctx, 1);
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(s != NULL && ready != NULL);
  CEXPECT(mproc_event_set(ready), 0);
  CEXPECT(mproc_sem_acquire(s, MPROC_FOREVER), 0);
  return 0;
}

/* Waits for `go`, lets the parent fall asleep on the semaphore, then releases it. */
static int child_sem_post(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_sem *s = mproc_shared(ctx, 0);
  mproc_event *go = mproc_shared(ctx, 1);
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(s != NULL && go != NULL);
  CEXPECT(mproc_event_wait(go, 30), 0);
  wait_blocked(test_getppid());
  CEXPECT(mproc_sem_release(s), 0);
  return 0;
}

static void test_sem_release_wakes_other_process(void **state) {
  mproc_sem *s;
  mproc_event *ev;
  mproc_process *p;
  void *share[2];
  (void)state;
  assert_ok(mproc_sem_create(&s, 0, false));
  assert_ok(mproc_event_create(&ev));
  share[0] = s;
  share[1] = ev;

  /* The parent releases; the child blocked in acquire wakes. */
  p = start(child_sem_wait, NULL, 0, share, 2);
  assert_ok(mproc_event_wait(ev, 30));
  wait_blocked(mproc_process_pid(p));
  assert_int_equal(sem_value(s), 0);
  assert_ok(mproc_sem_release(s));
  join_ok(p, "a child blocked on the semaphore");
  assert_int_equal(sem_value(s), 0);

  /* A child releases; the parent blocked in acquire wakes. */
  assert_ok(mproc_event_clear(ev));
  p = start(child_sem_post, NULL, 0, share, 2);
  assert_ok(mproc_event_set(ev));
  assert_mproc(mproc_sem_acquire(s, 30), 0);
  join_ok(p, "a child releasing the semaphore");
  assert_int_equal(sem_value(s), 0);

  mproc_event_free(ev);
  mproc_sem_free(s);
}

/* No more than SEM_SLOTS children inside at once: each counts itself in and out under
 * a lock and records the most it saw. */
#define SEM_SLOTS 2
#define SEM_CHILDREN 5
#define SEM_ROUNDS 200

typedef struct sem_area {
  int inside, max_inside, entries, started, go;
} sem_area;

static int child_sem_slot(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_sem *s = mproc_shared(ctx, 0);
  mproc_lock *l = mproc_shared(ctx, 1);
  mproc_shm *m = mproc_shared(ctx, 2);
  sem_area *a;
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(s != NULL && l != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL);
  test_add(&a->started, 1);
  while (test_load(&a->go) == 0)
    test_yield();
  for (int i = 0; i < SEM_ROUNDS; i++) {
    CEXPECT(mproc_sem_acquire(s, 60), 0);
    CEXPECT(mproc_lock_acquire(l, 60), 0);
    a->inside++;
    a->entries++;
    if (a->inside > a->max_inside)
      a->max_inside = a->inside;
    CEXPECT(mproc_lock_release(l), 0);
    test_yield(); /* stay inside a little */
    CEXPECT(mproc_lock_acquire(l, 60), 0);
    a->inside--;
    CEXPECT(mproc_lock_release(l), 0);
    CEXPECT(mproc_sem_release(s), 0);
  }
  return 0;
}

static void test_sem_limits_concurrency(void **state) {
  mproc_sem *s;
  mproc_lock *l;
  mproc_shm *m;
  sem_area *a = scratch(&m, sizeof *a);
  mproc_process *p[SEM_CHILDREN];
  void *share[3];
  (void)state;
  assert_ok(mproc_sem_create(&s, SEM_SLOTS, false));
  assert_ok(mproc_lock_create(&l, false));
  share[0] = s;
  share[1] = l;
  share[2] = m;
  for (int i = 0; i < SEM_CHILDREN; i++)
    p[i] = start(child_sem_slot, NULL, 0, share, 3);
  assert_int_equal(wait_int(&a->started, SEM_CHILDREN, 30), SEM_CHILDREN);
  test_store(&a->go, 1);
  for (int i = 0; i < SEM_CHILDREN; i++)
    join_ok(p[i], "a child taking semaphore slots");
  assert_int_equal(a->entries, SEM_CHILDREN * SEM_ROUNDS);
  assert_int_equal(a->inside, 0);
  if (a->max_inside < 1 || a->max_inside > SEM_SLOTS)
    fail_msg("%d children were inside a semaphore of value %d at once", a->max_inside,
             SEM_SLOTS);
  assert_int_equal(sem_value(s), SEM_SLOTS);
  mproc_lock_free(l);
  mproc_sem_free(s);
  mproc_shm_free(m);
}

/* A child releasing a BoundedSemaphore that is full. */
static int child_sem_over_release(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_sem *s = mproc_shared(ctx, 0);
  unsigned v = 0;
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(s != NULL);
  CEXPECT(mproc_sem_release(s), MPROC_ESTATE);
  CEXPECT(mproc_sem_value(s, &v), 0);
  CCHECK(v == 2);
  CEXPECT(mproc_sem_acquire(s, 0), 0);
  CEXPECT(mproc_sem_release(s), 0);
  CEXPECT(mproc_sem_release(s), MPROC_ESTATE);
  return 0;
}

static void test_bounded_sem(void **state) {
  mproc_sem *s = NULL;
  void *share[1];
  (void)state;
  assert_mproc(mproc_sem_create(&s, 0, true), MPROC_EINVAL);
  assert_null(s);
  assert_last_error_mentions("mproc_sem_create");

  assert_ok(mproc_sem_create(&s, 2, true));
  assert_int_equal(sem_value(s), 2);
  assert_mproc(mproc_sem_release(s), MPROC_ESTATE);
  assert_int_equal(sem_value(s), 2);
  assert_ok(mproc_sem_acquire(s, 0));
  assert_ok(mproc_sem_acquire(s, 0));
  assert_mproc(mproc_sem_acquire(s, 0), MPROC_ETIMEDOUT);
  assert_ok(mproc_sem_release(s));
  assert_ok(mproc_sem_release(s));
  assert_mproc(mproc_sem_release(s), MPROC_ESTATE);
  assert_int_equal(sem_value(s), 2);
  share[0] = s;
  join_ok(start(child_sem_over_release, NULL, 0, share, 1), "a child over-releasing");
  assert_int_equal(sem_value(s), 2);
  mproc_sem_free(s);

  /* An unbounded semaphore may start at 0. */
  assert_ok(mproc_sem_create(&s, 0, false));
  assert_ok(mproc_sem_release(s));
  assert_int_equal(sem_value(s), 1);
  mproc_sem_free(s);
}

/* ------------------------------------------------------------------ Event */

static void test_event_basic(void **state) {
  mproc_event *e;
  (void)state;
  assert_ok(mproc_event_create(&e));
  assert_non_null(e);
  assert_false(mproc_event_is_set(e));
  assert_mproc(mproc_event_wait(e, 0), MPROC_ETIMEDOUT);
  assert_mproc(mproc_event_wait(e, 0.05), MPROC_ETIMEDOUT);
  assert_false(mproc_event_is_set(e));
  assert_ok(mproc_event_set(e));
  assert_true(mproc_event_is_set(e));
  assert_ok(mproc_event_wait(e, 0));
  assert_ok(mproc_event_wait(e, 0.05));
  assert_ok(mproc_event_wait(e, MPROC_FOREVER));
  /* Waiting does not consume it; setting twice is fine. */
  assert_true(mproc_event_is_set(e));
  assert_ok(mproc_event_set(e));
  assert_true(mproc_event_is_set(e));
  assert_ok(mproc_event_clear(e));
  assert_false(mproc_event_is_set(e));
  assert_mproc(mproc_event_wait(e, 0), MPROC_ETIMEDOUT);
  assert_ok(mproc_event_clear(e));
  assert_false(mproc_event_is_set(e));
  assert_ok(mproc_event_set(e));
  assert_ok(mproc_event_wait(e, 0));
  mproc_event_free(e);
}

typedef struct event_area {
  int ready, woke;
} event_area;

/* Counts itself ready, waits for the event without a timeout, counts itself woken;
 * with arg "clear", clears the event and sets `done` (shared 2). */
static int child_event_wait(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_event *e = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  event_area *a;
  child_enter();
  CCHECK(e != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL);
  test_add(&a->ready, 1);
  CEXPECT(mproc_event_wait(e, MPROC_FOREVER), 0);
  CCHECK(mproc_event_is_set(e));
  test_add(&a->woke, 1);
  if (len == 5 && memcmp(arg, "clear", 5) == 0) {
    mproc_event *done = mproc_shared(ctx, 2);
    CCHECK(done != NULL);
    CEXPECT(mproc_event_clear(e), 0);
    CEXPECT(mproc_event_set(done), 0);
  }
  return 0;
}

static void test_event_wakes_waiting_child(void **state) {
  mproc_event *e, *done;
  mproc_shm *m;
  event_area *a = scratch(&m, sizeof *a);
  mproc_process *p;
  void *share[3];
  (void)state;
  assert_ok(mproc_event_create(&e));
  assert_ok(mproc_event_create(&done));
  share[0] = e;
  share[1] = m;
  share[2] = done;
  p = start(child_event_wait, "clear", 5, share, 3);
  assert_int_equal(wait_int(&a->ready, 1, 30), 1);
  wait_blocked(mproc_process_pid(p));
  assert_int_equal(test_load(&a->woke), 0);
  assert_ok(mproc_event_set(e));
  assert_ok(mproc_event_wait(done, 30));
  join_ok(p, "a child waiting on the event");
  assert_int_equal(test_load(&a->woke), 1);
  /* The child's clear is seen here. */
  assert_false(mproc_event_is_set(e));
  mproc_event_free(done);
  mproc_event_free(e);
  mproc_shm_free(m);
}

static void test_event_wakes_all_children(void **state) {
  enum { N = 4 };
  mproc_event *e;
  mproc_shm *m;
  event_area *a = scratch(&m, sizeof *a);
  mproc_process *p[N];
  void *share[2];
  (void)state;
  assert_ok(mproc_event_create(&e));
  share[0] = e;
  share[1] = m;
  for (int i = 0; i < N; i++)
    p[i] = start(child_event_wait, NULL, 0, share, 2);
  assert_int_equal(wait_int(&a->ready, N, 30), N);
  for (int i = 0; i < N; i++)
    wait_blocked(mproc_process_pid(p[i]));
  assert_int_equal(test_load(&a->woke), 0);
  assert_ok(mproc_event_set(e)); /* once */
  for (int i = 0; i < N; i++)
    join_ok(p[i], "a child waiting on the event");
  assert_int_equal(test_load(&a->woke), N);
  assert_true(mproc_event_is_set(e));
  mproc_event_free(e);
  mproc_shm_free(m);
}

/* -------------------------------------------------------------- Condition */

/* A thread holding the condition's lock while the main thread tries the calls. */
typedef struct cond_holder {
  mproc_cond *c;
  mproc_event *held, *go; /* this thread -> the test, and back */
  int r_acquire, r_release;
} cond_holder;

static void *cond_holder_main(void *arg) {
  cond_holder *h = arg;
  h->r_acquire = mproc_cond_acquire(h->c, 10);
  mproc_event_set(h->held);
  mproc_event_wait(h->go, MPROC_FOREVER);
  h->r_release = mproc_cond_release(h->c);
  return NULL;
}

static void check_cond_not_held(mproc_cond *c) {
  assert_mproc(mproc_cond_wait(c, 0), MPROC_ESTATE);
  assert_last_error_mentions("mproc_cond_wait");
  assert_mproc(mproc_cond_wait(c, 0.05), MPROC_ESTATE);
  assert_mproc(mproc_cond_wait(c, MPROC_FOREVER), MPROC_ESTATE); /* does not block */
  assert_mproc(mproc_cond_wait_for(c, pred_false, NULL, 0), MPROC_ESTATE);
  assert_mproc(mproc_cond_wait_for(c, pred_false, NULL, MPROC_FOREVER), MPROC_ESTATE);
  assert_mproc(mproc_cond_notify(c, 1), MPROC_ESTATE);
  assert_last_error_mentions("mproc_cond_notify");
  assert_mproc(mproc_cond_notify_all(c), MPROC_ESTATE);
  assert_mproc(mproc_cond_release(c), MPROC_ESTATE);
}

static void test_cond_needs_lock(void **state) {
  mproc_cond *c;
  cond_holder h;
  test_thread th;
  (void)state;
  assert_ok(mproc_cond_create(&c, NULL));
  assert_non_null(c);
  /* Held by nobody. */
  check_cond_not_held(c);
  /* Held by another thread. */
  memset(&h, 0, sizeof h);
  h.c = c;
  h.r_acquire = h.r_release = 1;
  assert_ok(mproc_event_create(&h.held));
  assert_ok(mproc_event_create(&h.go));
  assert_int_equal(test_thread_start(&th, cond_holder_main, &h), 0);
  assert_ok(mproc_event_wait(h.held, MPROC_FOREVER));
  {
    int r_wait = mproc_cond_wait(c, 0), r_notify = mproc_cond_notify(c, 1),
        r_all = mproc_cond_notify_all(c), r_rel = mproc_cond_release(c),
        r_acq = mproc_cond_acquire(c, 0);
    assert_ok(mproc_event_set(h.go));
    assert_int_equal(test_thread_join(&th, NULL), 0);
    assert_mproc(h.r_acquire, 0);
    assert_mproc(r_wait, MPROC_ESTATE);
    assert_mproc(r_notify, MPROC_ESTATE);
    assert_mproc(r_all, MPROC_ESTATE);
    assert_mproc(r_rel, MPROC_ESTATE);
    assert_mproc(r_acq, MPROC_ETIMEDOUT);
    assert_mproc(h.r_release, 0);
  }
  mproc_event_free(h.held);
  mproc_event_free(h.go);
  /* Held here: notify with nobody waiting is fine. */
  assert_ok(mproc_cond_acquire(c, 0));
  assert_ok(mproc_cond_notify(c, 1));
  assert_ok(mproc_cond_notify(c, 0));
  assert_ok(mproc_cond_notify_all(c));
  assert_ok(mproc_cond_release(c));
  check_cond_not_held(c);
  mproc_cond_free(c);
}

static void test_cond_wait_timeout_keeps_lock(void **state) {
  mproc_cond *c;
  mproc_lock *l;
  (void)state;
  /* The condition's own RLock. */
  assert_ok(mproc_cond_create(&c, NULL));
  assert_ok(mproc_cond_acquire(c, 0));
  assert_mproc(mproc_cond_wait(c, 0), MPROC_ETIMEDOUT);
  assert_mproc(mproc_cond_wait(c, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_cond_wait_for(c, pred_false, NULL, 0), MPROC_ETIMEDOUT);
  assert_mproc(mproc_cond_wait_for(c, pred_false, NULL, 0.05), MPROC_ETIMEDOUT);
  /* A true predicate returns at once, whatever the timeout. */
  assert_ok(mproc_cond_wait_for(c, pred_true, NULL, 0));
  assert_ok(mproc_cond_wait_for(c, pred_true, NULL, MPROC_FOREVER));
  /* Held again, exactly once. */
  assert_ok(mproc_cond_notify(c, 1));
  assert_ok(mproc_cond_release(c));
  assert_mproc(mproc_cond_release(c), MPROC_ESTATE);
  mproc_cond_free(c);

  /* An explicit Lock. */
  assert_ok(mproc_lock_create(&l, false));
  assert_ok(mproc_cond_create(&c, l));
  assert_ok(mproc_lock_acquire(l, 0));
  assert_mproc(mproc_cond_wait(c, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_cond_wait_for(c, pred_false, NULL, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_lock_acquire(l, 0), MPROC_ESTATE); /* held by this thread */
  check_held_by_other_thread(l);
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  mproc_cond_free(c);
  mproc_lock_free(l);
}

/* Producers and consumers across processes, through a small ring in shared memory
 * guarded by the condition, with wait_for on "not full" and "not empty or all done". */
#define PC_CAP 4
#define PC_PRODUCERS 2
#define PC_CONSUMERS 2
#define PC_ITEMS 400 /* per producer */
#define PC_TOTAL (PC_PRODUCERS * PC_ITEMS)

typedef struct pc_area {
  int ring[PC_CAP];
  int head, tail, count, taken, bad;
  int last[PC_PRODUCERS]; /* the last item taken of each producer: order check */
  int by_consumer[PC_CONSUMERS];
  unsigned char seen[PC_TOTAL];
} pc_area;

static bool pc_not_full(void *arg) { return ((pc_area *)arg)->count < PC_CAP; }

static bool pc_not_empty_or_done(void *arg) {
  pc_area *a = arg;
  return a->count > 0 || a->taken == PC_TOTAL;
}

static int child_producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_cond *c = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  pc_area *a;
  int id;
  child_enter();
  CCHECK(c != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL && len == sizeof id);
  memcpy(&id, arg, sizeof id);
  for (int k = 0; k < PC_ITEMS; k++) {
    CEXPECT(mproc_cond_acquire(c, 60), 0);
    CEXPECT(mproc_cond_wait_for(c, pc_not_full, a, 60), 0);
    CCHECK(a->count < PC_CAP);
    a->ring[a->tail] = id * PC_ITEMS + k;
    a->tail = (a->tail + 1) % PC_CAP;
    a->count++;
    CEXPECT(mproc_cond_notify_all(c), 0);
    CEXPECT(mproc_cond_release(c), 0);
  }
  return 0;
}

static int child_consumer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_cond *c = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  pc_area *a;
  int id;
  child_enter();
  CCHECK(c != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL && len == sizeof id);
  memcpy(&id, arg, sizeof id);
  for (;;) {
    int v;
    CEXPECT(mproc_cond_acquire(c, 60), 0);
    CEXPECT(mproc_cond_wait_for(c, pc_not_empty_or_done, a, 60), 0);
    if (a->count == 0) {
      CCHECK(a->taken == PC_TOTAL);
      CEXPECT(mproc_cond_release(c), 0);
      return 0;
    }
    v = a->ring[a->head];
    a->head = (a->head + 1) % PC_CAP;
    a->count--;
    a->taken++;
    if (v < 0 || v >= PC_TOTAL) {
      a->bad++;
    } else {
      if (v % PC_ITEMS <= a->last[v / PC_ITEMS])
        a->bad++;
      a->last[v / PC_ITEMS] = v % PC_ITEMS;
      a->seen[v]++;
    }
    a->by_consumer[id]++;
    CEXPECT(mproc_cond_notify_all(c), 0);
    CEXPECT(mproc_cond_release(c), 0);
  }
}

static void test_cond_producer_consumer(void **state) {
  mproc_cond *c;
  mproc_shm *m;
  pc_area *a = scratch(&m, sizeof *a);
  mproc_process *cons[PC_CONSUMERS], *prod[PC_PRODUCERS];
  void *share[2];
  (void)state;
  for (int i = 0; i < PC_PRODUCERS; i++)
    a->last[i] = -1;
  assert_ok(mproc_cond_create(&c, NULL));
  share[0] = c;
  share[1] = m;
  for (int i = 0; i < PC_CONSUMERS; i++)
    cons[i] = start(child_consumer, &i, sizeof i, share, 2);
  for (int i = 0; i < PC_PRODUCERS; i++)
    prod[i] = start(child_producer, &i, sizeof i, share, 2);
  for (int i = 0; i < PC_PRODUCERS; i++)
    join_ok(prod[i], "a producer");
  for (int i = 0; i < PC_CONSUMERS; i++)
    join_ok(cons[i], "a consumer");
  assert_int_equal(a->taken, PC_TOTAL);
  assert_int_equal(a->count, 0);
  assert_int_equal(a->bad, 0);
  assert_int_equal(a->by_consumer[0] + a->by_consumer[1], PC_TOTAL);
  for (int v = 0; v < PC_TOTAL; v++)
    if (a->seen[v] != 1)
      fail_msg("item %d was taken %d times", v, a->seen[v]);
  for (int i = 0; i < PC_PRODUCERS; i++)
    assert_int_equal(a->last[i], PC_ITEMS - 1);
  mproc_cond_free(c);
  mproc_shm_free(m);
}

typedef struct wake_area {
  int waiting, woken, timedout, other;
} wake_area;

/* Counts itself waiting (under the condition's lock), waits, counts how it woke. */
static int child_cond_waiter(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_cond *c = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  wake_area *a;
  int r;
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(c != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL);
  CEXPECT(mproc_cond_acquire(c, 60), 0);
  a->waiting++;
  r = mproc_cond_wait(c, 60);
  if (r == 0)
    a->woken++;
  else if (r == MPROC_ETIMEDOUT)
    a->timedout++;
  else
    a->other++;
  CEXPECT(mproc_cond_release(c), 0); /* held again after the wait */
  CEXPECT(r, 0);
  return 0;
}

/* Reads a field of the area under the condition's lock. */
static int read_locked(mproc_cond *c, const int *field) {
  int v;
  assert_ok(mproc_cond_acquire(c, 30));
  v = *field;
  assert_ok(mproc_cond_release(c));
  return v;
}

static int wait_locked(mproc_cond *c, const int *field, int want) {
  int v = read_locked(c, field);
  for (double t = 0; v < want && t < 30; t += 0.005) {
    sleep_seconds(0.005);
    v = read_locked(c, field);
  }
  return v;
}

static void test_cond_notify_one_wakes_one(void **state) {
  enum { N = 3 };
  mproc_cond *c;
  mproc_shm *m;
  wake_area *a = scratch(&m, sizeof *a);
  mproc_process *p[N];
  void *share[2];
  (void)state;
  assert_ok(mproc_cond_create(&c, NULL));
  share[0] = c;
  share[1] = m;
  for (int i = 0; i < N; i++)
    p[i] = start(child_cond_waiter, NULL, 0, share, 2);
  /* A child counts itself under the lock and wait lets it go: once the count is N
   * (read under the lock) all N are in the wait. */
  assert_int_equal(wait_locked(c, &a->waiting, N), N);

  assert_ok(mproc_cond_acquire(c, 30));
  assert_int_equal(a->woken, 0);
  assert_ok(mproc_cond_notify(c, 1));
  assert_ok(mproc_cond_release(c));
  assert_int_equal(wait_locked(c, &a->woken, 1), 1);
  /* No other one follows. */
  sleep_seconds(0.3);
  assert_ok(mproc_cond_acquire(c, 30));
  assert_int_equal(a->woken, 1);
  assert_int_equal(a->timedout, 0);
  assert_int_equal(a->other, 0);
  assert_ok(mproc_cond_notify_all(c));
  assert_ok(mproc_cond_release(c));
  for (int i = 0; i < N; i++)
    join_ok(p[i], "a child waiting on the condition");
  assert_int_equal(a->woken, N);
  assert_int_equal(a->timedout, 0);
  assert_int_equal(a->other, 0);
  mproc_cond_free(c);
  mproc_shm_free(m);
}

typedef struct flag_area {
  int flag;
} flag_area;

static bool flag_set(void *arg) { return ((flag_area *)arg)->flag != 0; }

/* Takes the condition's lock, sets the flag, notifies and lets the lock go. With a
 * lock as shared 2 it takes that one (the condition's explicit lock) directly. */
static int child_cond_signal(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_cond *c = mproc_shared(ctx, 0);
  mproc_shm *m = mproc_shared(ctx, 1);
  mproc_lock *l = mproc_shared(ctx, 2);
  flag_area *a;
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(c != NULL && m != NULL && (a = mproc_shm_buf(m)) != NULL);
  if (l != NULL)
    CEXPECT(mproc_lock_acquire(l, 30), 0);
  else
    CEXPECT(mproc_cond_acquire(c, 30), 0);
  a->flag = 1;
  CEXPECT(mproc_cond_notify(c, 1), 0);
  if (l != NULL)
    CEXPECT(mproc_lock_release(l), 0);
  else
    CEXPECT(mproc_cond_release(c), 0);
  return 0;
}

/* Tries the condition's lock, held elsewhere. */
static int child_cond_try(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_cond *c = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  CCHECK(c != NULL);
  CEXPECT(mproc_cond_acquire(c, 0), MPROC_ETIMEDOUT);
  CEXPECT(mproc_cond_acquire(c, 0.1), MPROC_ETIMEDOUT);
  CEXPECT(mproc_cond_notify(c, 1), MPROC_ESTATE);
  return 0;
}

static void test_cond_explicit_lock(void **state) {
  mproc_lock *l;
  mproc_cond *c;
  mproc_shm *m;
  flag_area *a = scratch(&m, sizeof *a);
  void *share[3];
  (void)state;
  assert_ok(mproc_lock_create(&l, false));
  assert_ok(mproc_cond_create(&c, l));
  /* The condition's acquire takes that lock, and the lock taken directly counts. */
  assert_ok(mproc_cond_acquire(c, 0));
  assert_mproc(mproc_lock_acquire(l, 0), MPROC_ESTATE);
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_cond_notify(c, 1), MPROC_ESTATE);
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_cond_notify(c, 1));

  /* wait lets the lock go: a child takes it, sets the flag and notifies. */
  share[0] = c;
  share[1] = m;
  share[2] = l;
  {
    mproc_process *p = start(child_cond_signal, NULL, 0, share, 3);
    assert_mproc(mproc_cond_wait_for(c, flag_set, a, 30), 0);
    assert_int_equal(a->flag, 1);
    /* Held again: a child cannot take it. */
    probe_lock(l, 0, "a child probing the lock after the wait");
    join_ok(p, "a child notifying through the explicit lock");
  }
  assert_ok(mproc_lock_release(l));
  assert_mproc(mproc_lock_release(l), MPROC_ESTATE);
  mproc_cond_free(c);
  /* Freeing the condition leaves the caller's lock alone. */
  assert_ok(mproc_lock_acquire(l, 0));
  assert_ok(mproc_lock_release(l));
  mproc_lock_free(l);
  mproc_shm_free(m);
}

/* An RLock held twice around wait: wait lets go of both levels (a child takes the lock
 * meanwhile) and takes both back. */
static void check_rlock_wait(mproc_lock *explicit_lock) {
  mproc_cond *c;
  mproc_shm *m;
  flag_area *a = scratch(&m, sizeof *a);
  void *share[2];
  mproc_process *p;
  assert_ok(mproc_cond_create(&c, explicit_lock));
  assert_ok(mproc_cond_acquire(c, 0));
  assert_ok(mproc_cond_acquire(c, 0));
  share[0] = c;
  share[1] = m;
  p = start(child_cond_signal, NULL, 0, share, 2);
  while (!flag_set(a)) {
    int r = mproc_cond_wait(c, 30);
    if (r != 0)
      fail_msg("mproc_cond_wait with an RLock held twice returned %s (the child could not "
               "take the lock?); last error: %s",
               mproc_err_name(r), mproc_last_error());
  }
  join_ok(p, "a child notifying while the parent waits with an RLock held twice");
  /* Both levels are back: after one release, a child still cannot take it. */
  assert_ok(mproc_cond_release(c));
  join_ok(start(child_cond_try, NULL, 0, share, 2), "a child probing the condition's lock");
  assert_ok(mproc_cond_release(c));
  assert_mproc(mproc_cond_release(c), MPROC_ESTATE);
  mproc_cond_free(c);
  mproc_shm_free(m);
}

static void test_cond_rlock_held_twice(void **state) {
  mproc_lock *rl;
  (void)state;
  check_rlock_wait(NULL); /* the condition's own RLock */
  assert_ok(mproc_lock_create(&rl, true));
  check_rlock_wait(rl);
  assert_ok(mproc_lock_acquire(rl, 0));
  assert_ok(mproc_lock_release(rl));
  mproc_lock_free(rl);
}

/* ----------------------------------------------------------- SharedMemory */

#define SHM_SIZE ((size_t)3 * 4096 + 100) /* not a whole number of pages */
#define HALF (SHM_SIZE / 2)

static void test_shm_named(void **state) {
  const char *name = new_shm_name();
  mproc_shm *m, *m2, *m3 = (mproc_shm *)&m;
  unsigned char *buf, *buf2;
  (void)state;
  assert_ok(mproc_shm_create(&m, name, SHM_SIZE));
  assert_non_null(m);
  assert_string_equal(mproc_shm_name(m), name);
  assert_int_equal(mproc_shm_size(m), SHM_SIZE);
  buf = mproc_shm_buf(m);
  assert_non_null(buf);
  fill_pattern(buf, SHM_SIZE, 1);

  /* The name is taken. */
  assert_mproc(mproc_shm_create(&m3, name, SHM_SIZE), MPROC_ESTATE);
  assert_null(m3);
  assert_mproc(mproc_shm_create(&m3, name, 64), MPROC_ESTATE);
  assert_null(m3);

  /* A second handle on the same memory, both ways. */
  assert_ok(mproc_shm_attach(&m2, name));
  assert_non_null(m2);
  assert_string_equal(mproc_shm_name(m2), name);
  assert_int_equal(mproc_shm_size(m2), SHM_SIZE);
  buf2 = mproc_shm_buf(m2);
  assert_non_null(buf2);
  assert_int_equal(check_pattern(buf2, SHM_SIZE, 1), SIZE_MAX);
  fill_pattern(buf2 + HALF, SHM_SIZE - HALF, 2);
  assert_int_equal(check_pattern(buf + HALF, SHM_SIZE - HALF, 2), SIZE_MAX);

  /* Unlinked: no new attach, but the mappings stay. */
  assert_ok(mproc_shm_unlink(m));
  m3 = (mproc_shm *)&m;
  assert_mproc(mproc_shm_attach(&m3, name), MPROC_ENOTFOUND);
  assert_null(m3);
  assert_true(mproc_shm_unlink(m2) < 0);
  fill_pattern(buf, HALF, 3);
  assert_int_equal(check_pattern(buf2, HALF, 3), SIZE_MAX);
  mproc_shm_free(m);
  assert_int_equal(check_pattern(buf2, HALF, 3), SIZE_MAX);
  mproc_shm_free(m2);

  /* The name is free again. */
  assert_ok(mproc_shm_create(&m, name, 64));
  assert_int_equal(mproc_shm_size(m), 64);
  assert_ok(mproc_shm_unlink(m));
  mproc_shm_free(m);
}

static void test_shm_generated_names(void **state) {
  mproc_shm *m1, *m2, *m3;
  const char *n1, *n2;
  (void)state;
  assert_ok(mproc_shm_create(&m1, NULL, 100));
  note_shm_name(mproc_shm_name(m1));
  assert_ok(mproc_shm_create(&m2, NULL, 100));
  note_shm_name(mproc_shm_name(m2));
  n1 = mproc_shm_name(m1);
  n2 = mproc_shm_name(m2);
  assert_non_null(n1);
  assert_non_null(n2);
  assert_true(strlen(n1) > 0);
  assert_true(strlen(n2) > 0);
  assert_string_not_equal(n1, n2);
  assert_int_equal(mproc_shm_size(m1), 100);
  /* The generated name is a real name: attach by it, and it is taken. */
  assert_ok(mproc_shm_attach(&m3, n1));
  ((unsigned char *)mproc_shm_buf(m1))[99] = 0xa5;
  assert_int_equal(((unsigned char *)mproc_shm_buf(m3))[99], 0xa5);
  mproc_shm_free(m3);
  assert_mproc(mproc_shm_create(&m3, n2, 100), MPROC_ESTATE);
  assert_ok(mproc_shm_unlink(m1));
  assert_ok(mproc_shm_unlink(m2));
  mproc_shm_free(m1);
  mproc_shm_free(m2);
}

static void test_shm_bad_args(void **state) {
  const char *name = new_shm_name();
  char longname[301], problems[2048];
  size_t used = 0;
  mproc_shm *m = NULL;
  int r;
  static const char *const bad[] = {"", "a/b", "dir/", "/"};
  (void)state;
  assert_mproc(mproc_shm_create(&m, name, 0), MPROC_EINVAL);
  assert_null(m);
  assert_mproc(mproc_shm_create(&m, NULL, 0), MPROC_EINVAL);
  assert_null(m);
  /* Nothing was made under the name. */
  assert_mproc(mproc_shm_attach(&m, name), MPROC_ENOTFOUND);

  /* Every bad name is tried; the problems are reported together. */
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  for (size_t i = 0; i <= sizeof bad / sizeof bad[0]; i++) {
    const char *n = i < sizeof bad / sizeof bad[0] ? bad[i] : longname;
    m = NULL;
    r = mproc_shm_create(&m, n, 64);
    if (r == 0) {
      mproc_shm_unlink(m);
      mproc_shm_free(m);
      m = NULL;
    }
    if (r != MPROC_EINVAL)
      used += (size_t)snprintf(problems + used, sizeof problems - used,
                               "\n  mproc_shm_create(\"%.20s\") returned %s, expected "
                               "MPROC_EINVAL (%s)",
                               n, mproc_err_name(r), mproc_last_error());
    /* No such block can exist: attaching is refused too, as invalid or not found. */
    r = mproc_shm_attach(&m, n);
    if (r == 0)
      mproc_shm_free(m);
    if (r != MPROC_EINVAL && r != MPROC_ENOTFOUND && used < sizeof problems)
      used += (size_t)snprintf(problems + used, sizeof problems - used,
                               "\n  mproc_shm_attach(\"%.20s\") returned %s, expected "
                               "MPROC_EINVAL or MPROC_ENOTFOUND (%s)",
                               n, mproc_err_name(r), mproc_last_error());
    if (used >= sizeof problems)
      break;
  }
  if (used > 0)
    fail_msg("invalid shared memory names:%s", problems);
}

/* arg: the block's name. Attaches by name, checks the size and the parent's pattern
 * in the first half, and writes pattern 2 in the second half. */
static int child_shm_by_name(mproc_ctx *ctx, const void *arg, size_t len) {
  char name[200];
  mproc_shm *m = NULL;
  unsigned char *buf;
  (void)ctx;
  child_enter();
  CCHECK(len > 0 && len < sizeof name);
  memcpy(name, arg, len);
  name[len] = '\0';
  CEXPECT(mproc_shm_attach(&m, name), 0);
  CCHECK(m != NULL && (buf = mproc_shm_buf(m)) != NULL);
  CCHECK(mproc_shm_size(m) == SHM_SIZE);
  CCHECK(strcmp(mproc_shm_name(m), name) == 0);
  CCHECK(check_pattern(buf, HALF, 1) == SIZE_MAX);
  fill_pattern(buf + HALF, SHM_SIZE - HALF, 2);
  mproc_shm_free(m);
  return 0;
}

/* arg: a name that was unlinked. */
static int child_shm_gone(mproc_ctx *ctx, const void *arg, size_t len) {
  char name[200];
  mproc_shm *m = (mproc_shm *)name;
  (void)ctx;
  child_enter();
  CCHECK(len > 0 && len < sizeof name);
  memcpy(name, arg, len);
  name[len] = '\0';
  CEXPECT(mproc_shm_attach(&m, name), MPROC_ENOTFOUND);
  CCHECK(m == NULL);
  return 0;
}

/* The block as shared 0; arg: {seed to find in the first half, seed to write in the
 * second}, and the expected name after them. */
typedef struct shm_share_arg {
  uint32_t expect_seed, write_seed;
  char name[200];
} shm_share_arg;

static int child_shm_shared(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_shm *m = mproc_shared(ctx, 0);
  shm_share_arg sa;
  unsigned char *buf;
  child_enter();
  CCHECK(m != NULL && len == sizeof sa);
  memcpy(&sa, arg, sizeof sa);
  CCHECK((buf = mproc_shm_buf(m)) != NULL);
  CCHECK(mproc_shm_size(m) == SHM_SIZE);
  CCHECK(mproc_shm_name(m) != NULL && strcmp(mproc_shm_name(m), sa.name) == 0);
  CCHECK(check_pattern(buf, HALF, sa.expect_seed) == SIZE_MAX);
  fill_pattern(buf + HALF, SHM_SIZE - HALF, sa.write_seed);
  return 0;
}

static void test_shm_attach_in_child(void **state) {
  const char *name = new_shm_name();
  mproc_shm *m;
  unsigned char *buf;
  (void)state;
  assert_ok(mproc_shm_create(&m, name, SHM_SIZE));
  buf = mproc_shm_buf(m);
  fill_pattern(buf, HALF, 1);
  join_ok(start(child_shm_by_name, name, strlen(name), NULL, 0),
          "a child attaching by name");
  assert_int_equal(check_pattern(buf + HALF, SHM_SIZE - HALF, 2), SIZE_MAX);
  assert_int_equal(check_pattern(buf, HALF, 1), SIZE_MAX);
  assert_ok(mproc_shm_unlink(m));
  join_ok(start(child_shm_gone, name, strlen(name), NULL, 0),
          "a child attaching an unlinked name");
  mproc_shm_free(m);
}

static void test_shm_share_list(void **state) {
  const char *name = new_shm_name();
  mproc_shm *m;
  unsigned char *buf;
  shm_share_arg sa;
  void *share[1];
  (void)state;
  memset(&sa, 0, sizeof sa);
  assert_ok(mproc_shm_create(&m, name, SHM_SIZE));
  buf = mproc_shm_buf(m);
  fill_pattern(buf, HALF, 5);
  share[0] = m;
  sa.expect_seed = 5;
  sa.write_seed = 6;
  snprintf(sa.name, sizeof sa.name, "%s", name);
  join_ok(start(child_shm_shared, &sa, sizeof sa, share, 1), "a child given the block");
  assert_int_equal(check_pattern(buf + HALF, SHM_SIZE - HALF, 6), SIZE_MAX);

  /* Once unlinked, the block still travels in a share list (attached processes keep
   * it), though no one can attach it by name any more. */
  assert_ok(mproc_shm_unlink(m));
  fill_pattern(buf, HALF, 7);
  sa.expect_seed = 7;
  sa.write_seed = 8;
  join_ok(start(child_shm_shared, &sa, sizeof sa, share, 1),
          "a child given an unlinked block");
  assert_int_equal(check_pattern(buf + HALF, SHM_SIZE - HALF, 8), SIZE_MAX);
  mproc_shm_free(m);
}

/* ------------------------------------------------------------------------ */

static const struct CMUnitTest sync_tests[] = {
    TS(test_null_handles),
    TS(test_refused_create_clears_output),
    TS(test_wrong_kind_handles),
    TS(test_lock_acquire_release),
    TS(test_lock_other_thread),
    TS(test_lock_other_process),
    TS(test_lock_mutual_exclusion_processes),
    TS(test_lock_mutual_exclusion_threads),
    TS(test_lock_holder_killed),
    TS(test_lock_holder_killed_while_blocked),
    TS(test_lock_holder_exits_holding),
    TS(test_rlock_holder_killed),
    TS(test_rlock_recursion),
    TS(test_rlock_other_process),
    TS(test_sem_value_and_timeouts),
    TS(test_sem_release_wakes_other_process),
    TS(test_sem_limits_concurrency),
    TS(test_bounded_sem),
    TS(test_event_basic),
    TS(test_event_wakes_waiting_child),
    TS(test_event_wakes_all_children),
    TS(test_cond_needs_lock),
    TS(test_cond_wait_timeout_keeps_lock),
    TS(test_cond_producer_consumer),
    TS(test_cond_notify_one_wakes_one),
    TS(test_cond_explicit_lock),
    TS(test_cond_rlock_held_twice),
    TS(test_shm_named),
    TS(test_shm_generated_names),
    TS(test_shm_bad_args),
    TS(test_shm_attach_in_child),
    TS(test_shm_share_list),
};

const test_group test_groups[] = {
    TEST_GROUP("sync", sync_tests, TEST_NORMAL),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
const test_role *const test_roles = NULL;
const size_t test_nroles = 0;
