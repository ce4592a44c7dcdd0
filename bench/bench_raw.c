/* Raw-syscall baselines of the bench/ workloads, without mproc: what the kernel
 * gives when nothing stands in between. Same command line and output as
 * bench_mproc (see bench_common.h), with "impl": "raw". Linux only.
 *
 * Each workload is one function in the table at the bottom; to add one, write the
 * function and add a line there (and to the list in run.py if it is new). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2, F_SETPIPE_SZ */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"

#define IMPL "raw"

extern char **environ;

static char self_exe[PATH_MAX];

/* ------------------------------------------------------------ helpers */

static int read_full(int fd, void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n == 0 ? 1 : -1; /* 1: end of file */
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int writev_full(int fd, struct iovec *v, int nv) {
  while (nv > 0) {
    ssize_t n = writev(fd, v, nv);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    while (nv > 0 && (size_t)n >= v->iov_len) {
      n -= (ssize_t)v->iov_len;
      v++;
      nv--;
    }
    if (nv > 0) {
      v->iov_base = (char *)v->iov_base + n;
      v->iov_len -= (size_t)n;
    }
  }
  return 0;
}

/* A frame: 8-byte length, then the payload, in one writev. */
static int send_frame(int fd, const void *data, uint64_t len) {
  struct iovec v[2] = {{&len, sizeof len}, {(void *)data, (size_t)len}};
  return writev_full(fd, v, 2);
}

/* Reads the header, then the payload (two reads at least, as a framed protocol
 * that does not know the length in advance must). 1 at end of file. */
static int recv_frame(int fd, void *buf, size_t cap, uint64_t *len) {
  int r = read_full(fd, len, sizeof *len);
  if (r != 0)
    return r;
  if (*len > cap)
    return -1;
  return read_full(fd, buf, (size_t)*len);
}

static int wait_child(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* -------------------------------------------------- process start */

static int w_start_fork(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 200, 20), warm = 5;
  double *t = malloc(n * sizeof *t);
  char params[64];

  for (size_t i = 0; i < warm + n; i++) {
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    if (pid < 0 || wait_child(pid) != 0)
      BENCH_FAIL("fork/waitpid failed: %s", strerror(errno));
    if (i >= warm)
      t[i - warm] = (bench_now() - t0) * 1e6;
  }
  snprintf(params, sizeof params, "n=%zu, median", n);
  bench_emit("start_fork", IMPL, bench_median(t, n), "us", "lower", params);
  free(t);
  return 0;
}

/* posix_spawn of this same executable, which exits at once (main's first line). */
static int w_start_spawn(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 50, 10), warm = 3;
  double *t = malloc(n * sizeof *t);
  char *argv[] = {self_exe, "--exit-at-once", NULL};
  char params[64];

  for (size_t i = 0; i < warm + n; i++) {
    double t0 = bench_now();
    pid_t pid;
    int e = posix_spawn(&pid, self_exe, NULL, NULL, argv, environ);
    if (e != 0 || wait_child(pid) != 0)
      BENCH_FAIL("posix_spawn/waitpid failed: %s", strerror(e ? e : errno));
    if (i >= warm)
      t[i - warm] = (bench_now() - t0) * 1e6;
  }
  snprintf(params, sizeof params, "n=%zu, median, self-exec", n);
  bench_emit("start_spawn", IMPL, bench_median(t, n), "us", "lower", params);
  free(t);
  return 0;
}

/* ------------------------------------------------------------ pipes */

static int w_pipe_pingpong_64(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 50000, 5000), warm = 1000;
  unsigned char msg[64], buf[64];
  uint64_t len;
  double t0 = 0;
  int sv[2];
  pid_t pid;
  char params[64];

  memset(msg, 'x', sizeof msg);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    BENCH_FAIL("socketpair: %s", strerror(errno));
  pid = fork();
  if (pid == 0) {
    close(sv[0]);
    while (recv_frame(sv[1], buf, sizeof buf, &len) == 0)
      if (send_frame(sv[1], buf, len) != 0)
        _exit(1);
    _exit(0);
  }
  close(sv[1]);
  for (size_t i = 0; i < warm + n; i++) {
    if (i == warm)
      t0 = bench_now();
    if (send_frame(sv[0], msg, sizeof msg) != 0 || recv_frame(sv[0], buf, sizeof buf, &len) != 0 ||
        len != sizeof msg)
      BENCH_FAIL("ping-pong failed at %zu", i);
  }
  double us = (bench_now() - t0) * 1e6 / (double)n;
  close(sv[0]);
  if (wait_child(pid) != 0)
    BENCH_FAIL("echo child failed");
  snprintf(params, sizeof params, "n=%zu round trips, socketpair", n);
  bench_emit("pipe_pingpong_64", IMPL, us, "us", "lower", params);
  return 0;
}

static int w_pipe_oneway_1m(const bench_opts *o) {
  size_t count = BENCH_SIZE(o, 2048, 256), size = MiB;
  unsigned char *buf = malloc(size);
  uint64_t len;
  double t0 = 0;
  int p[2];
  pid_t pid;
  char params[64];

  if (pipe2(p, O_CLOEXEC) != 0)
    BENCH_FAIL("pipe2: %s", strerror(errno));
  (void)fcntl(p[1], F_SETPIPE_SZ, (int)MiB);
  memset(buf, 'y', size);
  pid = fork();
  if (pid == 0) {
    close(p[0]);
    for (size_t i = 0; i < count; i++)
      if (send_frame(p[1], buf, size) != 0)
        _exit(1);
    _exit(0);
  }
  close(p[1]);
  /* The clock starts once the first message is in: process start is not timed. */
  for (size_t i = 0; i < count; i++) {
    if (recv_frame(p[0], buf, size, &len) != 0 || len != size)
      BENCH_FAIL("receive failed at %zu", i);
    if (i == 0)
      t0 = bench_now();
  }
  double gbs = (double)(count - 1) * (double)size / (bench_now() - t0) / 1e9;
  close(p[0]);
  free(buf);
  if (wait_child(pid) != 0)
    BENCH_FAIL("sender failed");
  snprintf(params, sizeof params, "%zu x 1 MiB, pipe2 + F_SETPIPE_SZ 1 MiB", count);
  bench_emit("pipe_oneway_1m", IMPL, gbs, "GB/s", "higher", params);
  return 0;
}

/* ----------------------------------------- shared-memory ring queue
 *
 * Single producer, single consumer, in a MAP_SHARED anonymous mapping inherited
 * through fork. A byte ring of framed messages (8-byte length, payload padded to
 * 8); head and tail count bytes ever written and read. A side that cannot go on
 * spins a little, yields a few times (its peer may share its CPU), then sleeps on
 * a futex word its peer bumps (and wakes) only when the sleeper has said it is
 * waiting. All the flag/counter accesses are seq_cst,
 * which is what makes "check, announce, re-check, sleep" race-free against
 * "publish, check the announcement, wake". */

typedef struct ring {
  _Alignas(64) _Atomic uint64_t head; /* written by the producer */
  _Atomic uint32_t head_seq;          /* bumped when head moves and the consumer waits */
  _Atomic uint32_t cons_waiting;
  _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
  _Atomic uint32_t tail_seq;
  _Atomic uint32_t prod_waiting;
  _Alignas(64) uint64_t cap; /* bytes in data, a power of two */
  unsigned char data[];
} ring;

#define RING_SPINS 1000
#define RING_YIELDS 50

static void futex_wait(_Atomic uint32_t *w, uint32_t seen) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, seen, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Waits until *counter differs from old; returns its new value. */
static uint64_t ring_wait_change(_Atomic uint64_t *counter, uint64_t old, _Atomic uint32_t *seq,
                                 _Atomic uint32_t *waiting) {
  uint64_t v;
  for (int i = 0; i < RING_SPINS; i++) {
    if ((v = atomic_load_explicit(counter, memory_order_acquire)) != old)
      return v;
    cpu_relax();
  }
  /* The peer may be on this very CPU: let it run before going to sleep. */
  for (int i = 0; i < RING_YIELDS; i++) {
    if ((v = atomic_load_explicit(counter, memory_order_acquire)) != old)
      return v;
    sched_yield();
  }
  for (;;) {
    atomic_store(waiting, 1);
    uint32_t s = atomic_load(seq);
    if ((v = atomic_load(counter)) != old) {
      atomic_store(waiting, 0);
      return v;
    }
    futex_wait(seq, s);
    atomic_store(waiting, 0);
    if ((v = atomic_load(counter)) != old)
      return v;
  }
}

static void ring_publish(_Atomic uint64_t *counter, uint64_t v, _Atomic uint32_t *seq,
                         _Atomic uint32_t *waiting) {
  atomic_store(counter, v);
  if (atomic_load(waiting)) {
    atomic_fetch_add(seq, 1);
    futex_wake(seq);
  }
}

static ring *ring_create(uint64_t cap) {
  ring *r = mmap(NULL, sizeof(ring) + cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
  if (r == MAP_FAILED)
    return NULL;
  r->cap = cap; /* the rest is zero already */
  return r;
}

static void ring_copy_in(ring *r, uint64_t pos, const void *src, size_t len) {
  size_t off = (size_t)(pos & (r->cap - 1)), first = (size_t)r->cap - off;
  if (first >= len) {
    memcpy(r->data + off, src, len);
  } else {
    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *)src + first, len - first);
  }
}

static void ring_copy_out(ring *r, uint64_t pos, void *dst, size_t len) {
  size_t off = (size_t)(pos & (r->cap - 1)), first = (size_t)r->cap - off;
  if (first >= len) {
    memcpy(dst, r->data + off, len);
  } else {
    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *)dst + first, r->data, len - first);
  }
}

typedef struct ring_end {
  ring *r;
  uint64_t mine;  /* head (producer) or tail (consumer): only this side writes it */
  uint64_t other; /* last value seen of the other counter */
} ring_end;

static void ring_put(ring_end *e, const void *data, uint64_t len) {
  ring *r = e->r;
  uint64_t need = 8 + ((len + 7) & ~(uint64_t)7);
  while (r->cap - (e->mine - e->other) < need) {
    e->other = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (r->cap - (e->mine - e->other) < need)
      e->other = ring_wait_change(&r->tail, e->other, &r->tail_seq, &r->prod_waiting);
  }
  ring_copy_in(r, e->mine, &len, 8);
  ring_copy_in(r, e->mine + 8, data, (size_t)len);
  e->mine += need;
  ring_publish(&r->head, e->mine, &r->head_seq, &r->cons_waiting);
}

static uint64_t ring_get(ring_end *e, void *buf, size_t cap) {
  ring *r = e->r;
  uint64_t len;
  if (e->other == e->mine) {
    e->other = atomic_load_explicit(&r->head, memory_order_acquire);
    if (e->other == e->mine)
      e->other = ring_wait_change(&r->head, e->mine, &r->head_seq, &r->cons_waiting);
  }
  ring_copy_out(r, e->mine, &len, 8);
  if (len <= cap)
    ring_copy_out(r, e->mine + 8, buf, (size_t)len);
  e->mine += 8 + ((len + 7) & ~(uint64_t)7);
  ring_publish(&r->tail, e->mine, &r->tail_seq, &r->prod_waiting);
  return len;
}

/* A child puts count messages of size bytes; the parent gets them. Timed from the
 * first message in. Returns seconds for count-1 messages, or < 0. */
static double ring_run(size_t count, size_t size, uint64_t cap) {
  ring *r = ring_create(cap);
  unsigned char *buf = malloc(size);
  double t0 = 0, dt;
  pid_t pid;

  if (r == NULL || buf == NULL)
    return -1;
  memset(buf, 'q', size);
  pid = fork();
  if (pid == 0) {
    ring_end e = {r, 0, 0};
    for (size_t i = 0; i < count; i++)
      ring_put(&e, buf, size);
    _exit(0);
  }
  ring_end e = {r, 0, 0};
  for (size_t i = 0; i < count; i++) {
    if (ring_get(&e, buf, size) != size)
      return -1;
    if (i == 0)
      t0 = bench_now();
  }
  dt = bench_now() - t0;
  if (wait_child(pid) != 0)
    return -1;
  munmap(r, sizeof(ring) + cap);
  free(buf);
  return dt;
}

static int w_queue_64(const bench_opts *o) {
  size_t count = BENCH_SIZE(o, 200000, 20000);
  char params[80];
  double dt = ring_run(count, 64, 256 * KiB);
  if (dt < 0)
    BENCH_FAIL("ring queue failed");
  snprintf(params, sizeof params, "%zu x 64 B, SPSC shm ring 256 KiB, futex", count);
  bench_emit("queue_64", IMPL, (double)(count - 1) / dt, "msg/s", "higher", params);
  return 0;
}

static int w_queue_1m(const bench_opts *o) {
  size_t count = BENCH_SIZE(o, 256, 64);
  char params[80];
  double dt = ring_run(count, MiB, 4 * MiB);
  if (dt < 0)
    BENCH_FAIL("ring queue failed");
  snprintf(params, sizeof params, "%zu x 1 MiB, SPSC shm ring 4 MiB, futex", count);
  bench_emit("queue_1m", IMPL, (double)(count - 1) * (double)MiB / dt / 1e9, "GB/s", "higher",
             params);
  return 0;
}

/* ------------------------------------------------------ minimal pool
 *
 * Two forked workers, each with a task pipe and a result pipe. The parent keeps
 * WINDOW task ids in flight per worker and refills a worker as its results come
 * back; a worker reads whatever ids are there, answers each with id + 1, and
 * writes the answers back in one write. Every task crosses on its own (chunksize
 * 1); only the syscalls are batched, as a lean pool would. */

#define POOL_WORKERS 2
#define POOL_WINDOW 8

static void pool_worker(int tasks, int results) {
  uint64_t buf[POOL_WINDOW];
  for (;;) {
    ssize_t n = read(tasks, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      _exit(n == 0 ? 0 : 1);
    /* Pipes deliver whole 8-byte writes; reads return multiples of 8. */
    for (ssize_t k = 0; k < n / 8; k++)
      buf[k] += 1;
    if (write(results, buf, (size_t)n) != n)
      _exit(1);
  }
}

static int w_pool_map_100k_cs1(const bench_opts *o) {
  size_t n = BENCH_SIZE(o, 100000, 10000);
  uint64_t *out = calloc(n, sizeof *out);
  int task_w[POOL_WORKERS], res_r[POOL_WORKERS];
  pid_t pid[POOL_WORKERS];
  size_t next = 0, done = 0, inflight[POOL_WORKERS] = {0};
  char params[80];
  double t0;

  for (int w = 0; w < POOL_WORKERS; w++) {
    int tp[2], rp[2];
    if (pipe2(tp, O_CLOEXEC) != 0 || pipe2(rp, O_CLOEXEC) != 0)
      BENCH_FAIL("pipe2: %s", strerror(errno));
    pid[w] = fork();
    if (pid[w] == 0) {
      for (int k = 0; k < w; k++) {
        close(task_w[k]);
        close(res_r[k]);
      }
      close(tp[1]);
      close(rp[0]);
      pool_worker(tp[0], rp[1]);
    }
    close(tp[0]);
    close(rp[1]);
    task_w[w] = tp[1];
    res_r[w] = rp[0];
  }

  t0 = bench_now();
  while (done < n) {
    struct pollfd pfd[POOL_WORKERS];
    for (int w = 0; w < POOL_WORKERS; w++) {
      /* Refill. */
      uint64_t ids[POOL_WINDOW];
      size_t k = 0;
      while (inflight[w] + k < POOL_WINDOW && next < n)
        ids[k++] = next++;
      if (k > 0) {
        if (write(task_w[w], ids, k * 8) != (ssize_t)(k * 8))
          BENCH_FAIL("task write failed");
        inflight[w] += k;
      }
      pfd[w].fd = res_r[w];
      pfd[w].events = POLLIN;
    }
    if (poll(pfd, POOL_WORKERS, -1) < 0 && errno != EINTR)
      BENCH_FAIL("poll: %s", strerror(errno));
    for (int w = 0; w < POOL_WORKERS; w++) {
      uint64_t res[POOL_WINDOW];
      ssize_t got;
      if (!(pfd[w].revents & (POLLIN | POLLHUP)))
        continue;
      got = read(res_r[w], res, sizeof res);
      if (got <= 0 || got % 8 != 0)
        BENCH_FAIL("result read failed");
      for (ssize_t k = 0; k < got / 8; k++) {
        if (res[k] == 0 || res[k] > n)
          BENCH_FAIL("bad result %llu", (unsigned long long)res[k]);
        out[res[k] - 1] = res[k];
      }
      inflight[w] -= (size_t)got / 8;
      done += (size_t)got / 8;
    }
  }
  double dt = bench_now() - t0;
  for (int w = 0; w < POOL_WORKERS; w++) {
    close(task_w[w]);
    if (wait_child(pid[w]) != 0)
      BENCH_FAIL("worker failed");
    close(res_r[w]);
  }
  for (size_t i = 0; i < n; i++)
    if (out[i] != i + 1)
      BENCH_FAIL("missing result %zu", i);
  free(out);
  snprintf(params, sizeof params, "n=%zu, 2 workers, window %d, pipes", n, POOL_WINDOW);
  bench_emit("pool_map_100k_cs1", IMPL, (double)n / dt, "tasks/s", "higher", params);
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
    {"pool_map_100k_cs1", w_pool_map_100k_cs1},
};

int main(int argc, char **argv) {
  ssize_t n;

  /* The child of start_spawn: exit before doing anything, like /bin/true. */
  if (argc >= 2 && strcmp(argv[1], "--exit-at-once") == 0)
    return 0;
  n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
  if (n <= 0) {
    perror("readlink /proc/self/exe");
    return 1;
  }
  self_exe[n] = '\0';
  signal(SIGPIPE, SIG_IGN);
  return bench_main(argc, argv, workloads, sizeof workloads / sizeof workloads[0]);
}
