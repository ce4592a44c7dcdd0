/*
 * The portable core's queue and connections over the Windows layer, without APR:
 * built with src/{error,wire,conn,share,queue}.c and platform/win32, the rest of
 * the core stubbed (tests/win32/run.sh). A spawned child receives a queue and a
 * connection as the share list hands them over (their kind's fds, encode and
 * decode), and the two processes move messages both ways: small ones, ones larger
 * than the ring, and enough of them to sleep and wake on the queue's words.
 *
 * Ends with "N passed, N failed"; exits 1 if anything failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pool.h"

/* runtime.c spins before sleeping on a queue's word; here the first check is enough,
 * the word wait is what this test exercises. */
bool mproc__spin(bool (*done)(const void *arg), const void *arg, int64_t deadline, int64_t us) {
  (void)deadline;
  (void)us;
  return done(arg);
}

int mproc__check_init(const char *fn) {
  (void)fn;
  return 0;
}

/* Kinds this test does not use (sync.c and pool.c need APR). */
const mproc__kind_ops mproc__lock_ops = {.name = "lock", .kind = MPROC__KIND_LOCK};
const mproc__kind_ops mproc__sem_ops = {.name = "semaphore", .kind = MPROC__KIND_SEM};
const mproc__kind_ops mproc__event_ops = {.name = "event", .kind = MPROC__KIND_EVENT};
const mproc__kind_ops mproc__cond_ops = {.name = "condition", .kind = MPROC__KIND_COND};
const mproc__kind_ops mproc__shm_ops = {.name = "shared memory block", .kind = MPROC__KIND_SHM};
const mproc__kind_ops mproc__poolseg_ops = {.name = "pool segment", .kind = MPROC__KIND_POOLSEG};

/* ------------------------------------------------------ handing over */

/* An object's kind, its handles as the child sees them, and its encoded state. */
static int hand_over(mproc__buf *b, const mproc__kind_ops *ops, const void *obj,
                     const mproc__fd *child_fds, size_t nfds) {
  mproc__buf state = {0};
  mproc__buf_put_u64(b, ops->kind);
  mproc__buf_put_u64(b, nfds);
  for (size_t i = 0; i < nfds; i++)
    mproc__buf_put_u64(b, (uint64_t)child_fds[i]);
  ops->encode(obj, &state);
  mproc__buf_put_bytes(b, state.data, state.len);
  mproc__buf_free(&state);
  return b->err;
}

static int take_over(mproc__rd *rd, void **obj) {
  const mproc__kind_ops *ops = mproc__kind_ops_get(mproc__rd_u64(rd));
  mproc__fd fds[MPROC__MAX_OBJ_FDS];
  uint64_t n = mproc__rd_u64(rd);
  mproc__rd state;
  size_t len;

  if (ops == NULL || n > MPROC__MAX_OBJ_FDS)
    return MPROC_EPROTO;
  for (uint64_t i = 0; i < n; i++)
    fds[i] = (mproc__fd)mproc__rd_u64(rd);
  state.p = mproc__rd_bytes(rd, &len);
  state.end = state.p + len;
  state.err = 0;
  if (rd->err)
    return MPROC_EPROTO;
  return ops->decode(ops, &state, fds, (size_t)n, obj);
}

/* ------------------------------------------------------------- child */

enum { SMALL = 3000, BIG = 3 };
#define BIG_SIZE ((size_t)1 << 20) /* larger than the 64 KiB ring */

static unsigned char pattern(size_t i, size_t k) { return (unsigned char)(i * 131 + k * 7 + 1); }

/* Gets every message the parent puts, checks it, and answers over the connection
 * with the bytes received; then echoes each big message back through the
 * queue it was given second once the count is sent. */
static int child_main(mproc__fd boot) {
  mproc_conn *bc, *c;
  mproc_queue *in, *out;
  void *msg;
  size_t len;
  mproc__rd rd;
  uint64_t sum = 0;
  void *big[BIG];
  size_t nbig = 0;
  int r;

  if (mproc__conn_wrap(&bc, boot, true, false, false) != 0 ||
      mproc_conn_recv(bc, &msg, &len, 0) != 0)
    return 100;
  rd.p = msg;
  rd.end = rd.p + len;
  rd.err = 0;
  if (take_over(&rd, (void **)&c) != 0 || take_over(&rd, (void **)&in) != 0 ||
      take_over(&rd, (void **)&out) != 0)
    return 101;
  for (size_t i = 0; i < SMALL + BIG; i++) {
    void *m;
    size_t n;
    if ((r = mproc_queue_get(in, &m, &n, 30)) != 0)
      return 102;
    for (size_t k = 0; k < n; k++)
      if (((unsigned char *)m)[k] != pattern(i, k))
        return 103;
    sum += n;
    /* Kept until the parent is done putting: it reads them back only then. */
    if (n == BIG_SIZE && nbig < BIG)
      big[nbig++] = m;
    else
      free(m);
  }
  if (mproc_conn_send(c, &sum, sizeof sum) != 0)
    return 105;
  for (size_t i = 0; i < nbig; i++) {
    if (mproc_queue_put(out, big[i], BIG_SIZE, 30) != 0)
      return 104;
    free(big[i]);
  }
  /* The parent closes the queue: a get then ends with MPROC_EOF. */
  if (mproc_queue_get(in, &msg, &len, 30) != MPROC_EOF)
    return 106;
  return 0;
}

/* ------------------------------------------------------------ parent */

static void test_queue_and_conn(const char *exe) {
  mproc_conn *a, *b;
  mproc_queue *q, *back;
  mproc_queue_opts o = {.buffer_size = 65536};
  mproc__fd boot[2], keep[8], child[8];
  size_t nkeep = 0, na, nq, nb;
  mproc__os_start st;
  mproc__os_proc p;
  mproc__buf msg = {0};
  mproc_conn *bc;
  unsigned char *data = malloc(BIG_SIZE);
  uint64_t want = 0, *got;
  size_t len, ready, nready;

  CHECK(mproc_pipe(&a, &b, true) == 0);
  CHECK(mproc_queue_create(&q, &o) == 0 && mproc_queue_create(&back, &o) == 0);
  CHECK(mproc__os_pipe(boot, false) == 0);
  keep[nkeep++] = boot[0];
  na = mproc__conn_ops.fds(b, keep + nkeep);
  nkeep += na;
  nq = mproc__queue_ops.fds(q, keep + nkeep);
  nkeep += nq;
  nb = mproc__queue_ops.fds(back, keep + nkeep);
  nkeep += nb;
  st.keep = keep;
  st.nkeep = nkeep;
  st.lifeline = MPROC__FD_INVALID;
  CHECK(mproc__os_spawn(&p, exe, exe, &st, child) == 0);
  mproc__os_close(boot[0]);
  CHECK(hand_over(&msg, &mproc__conn_ops, b, child + 1, na) == 0);
  CHECK(hand_over(&msg, &mproc__queue_ops, q, child + 1 + na, nq) == 0);
  CHECK(hand_over(&msg, &mproc__queue_ops, back, child + 1 + na + nq, nb) == 0);
  CHECK(mproc__conn_wrap(&bc, boot[1], false, true, false) == 0);
  CHECK(mproc_conn_send(bc, msg.data, msg.len) == 0);
  mproc_conn_free(bc);
  mproc__buf_free(&msg);

  /* Small messages, with the big ones among them; the ring is 64 KiB, so the
   * producer waits for room and the consumer for data, both asleep on words. */
  for (size_t i = 0; i < SMALL + BIG; i++) {
    size_t n = i % (SMALL / BIG) == 5 ? BIG_SIZE : i % 200;
    for (size_t k = 0; k < n; k++)
      data[k] = pattern(i, k);
    want += n;
    if (mproc_queue_put(q, data, n, 30) != 0) {
      CHECK(!"put");
      break;
    }
  }
  CHECK(mproc_wait(&a, 1, 60, &ready, &nready) == 0 && nready == 1);
  CHECK(mproc_conn_recv(a, (void **)&got, &len, 0) == 0 && len == 8 && *got == want);
  free(got);
  for (int i = 0; i < BIG; i++) {
    void *m;
    CHECK(mproc_queue_get(back, &m, &len, 30) == 0 && len == BIG_SIZE);
    free(m);
  }
  CHECK(mproc_queue_close(q) == 0);
  CHECK(mproc__os_proc_wait(&p, 30) == 0 && p.exitcode == 0);
  if (p.reaped && p.exitcode != 0)
    printf("child exit code %d\n", p.exitcode);
  mproc_queue_free(q);
  mproc_queue_free(back);
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(data);
}

int main(int argc, char **argv) {
  char *exe;
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc >= 3 && strcmp(argv[1], MPROC__SPAWN_FLAG) == 0)
    return child_main((mproc__fd)_atoi64(argv[2]));
  if (mproc__os_exe_path(argv[0], &exe) != 0)
    return 1;
  test_queue_and_conn(exe);
  free(exe);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
