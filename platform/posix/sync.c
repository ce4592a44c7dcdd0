/* POSIX shared memory, robust process-shared mutexes, and waits on shared words. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "posix.h"

#if MPROC__USE_FUTEX
#include <linux/futex.h>
#elif MPROC__USE_UMTX
#include <sys/types.h>
#include <sys/umtx.h>
#endif

/* ------------------------------------------------------ shared memory */

/* shm_open gives descriptors close-on-exec (POSIX asks it to set FD_CLOEXEC, and
 * O_CLOEXEC is not among the flags it specifies), so no flag is passed for that. */

/* 64 bits for an object name nobody can guess beforehand. */
static uint64_t name_bits(void) {
#if defined(MPROC_HAVE_ARC4RANDOM)
  return ((uint64_t)arc4random() << 32) | arc4random();
#else
  /* Hard to guess rather than random; O_EXCL makes a guessed name cost a retry,
   * never a shared object. */
  static _Atomic uint64_t counter;
  struct timespec ts;
  uint64_t x;
  clock_gettime(CLOCK_REALTIME, &ts);
  x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
      (uint64_t)(uintptr_t)&ts ^ atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull;
  /* splitmix64's finaliser spreads every input bit over the name. */
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
#endif
}

/* Without memfd_create: a POSIX shm object under a random name, created exclusively
 * and unlinked at once, so that only descriptors keep it. The name stays under
 * macOS's 31 characters. */
static int anonymous_shm(int *fd) {
  char name[32];
  int f = -1;
  for (int tries = 0; f < 0 && tries < 100; tries++) {
    snprintf(name, sizeof name, "/mproc.%016llx", (unsigned long long)name_bits());
    do
      f = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    while (f < 0 && errno == EINTR);
    if (f < 0 && errno != EEXIST)
      return mproc__error_os(errno, "shm_open(\"%s\") failed", name);
  }
  if (f < 0)
    return mproc__error_os(EEXIST, "shm_open() found 100 random names taken");
  shm_unlink(name);
  *fd = f;
  return 0;
}

int mproc__os_shm_create(size_t size, mproc__fd *fd) {
  int f, r;
#if MPROC__USE_MEMFD
  f = memfd_create("mproc", MFD_CLOEXEC);
  if (f < 0 && (r = anonymous_shm(&f)) != 0) /* e.g. a seccomp filter refusing it */
    return r;
#else
  if ((r = anonymous_shm(&f)) != 0)
    return r;
#endif
  if (ftruncate(f, (off_t)size) != 0) {
    int e = errno;
    close(f);
    return mproc__error_os(e, "cannot size shared memory to %zu bytes", size);
  }
  *fd = f;
  return 0;
}

int mproc__os_shm_open(const char *name, bool create, size_t *size, mproc__fd *fd) {
  char path[256];
  struct stat st;
  int f;

  if (snprintf(path, sizeof path, "/%s", name[0] == '/' ? name + 1 : name) >= (int)sizeof path)
    return mproc__error(MPROC_EINVAL, "shared memory name \"%s\" is too long", name);
  f = shm_open(path, create ? (O_RDWR | O_CREAT | O_EXCL) : O_RDWR, 0600);
  if (f < 0) {
    if (errno == EEXIST)
      return mproc__error(MPROC_ESTATE, "shared memory \"%s\" already exists", name);
    if (errno == ENOENT)
      return mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\"", name);
    return mproc__error_os(errno, "shm_open(\"%s\") failed", path);
  }
  if (create) {
    if (ftruncate(f, (off_t)*size) != 0) {
      int e = errno;
      close(f);
      shm_unlink(path);
      return mproc__error_os(e, "cannot size shared memory \"%s\" to %zu bytes", name, *size);
    }
  } else {
    if (fstat(f, &st) != 0) {
      int e = errno;
      close(f);
      return mproc__error_os(e, "fstat on shared memory \"%s\" failed", name);
    }
    *size = (size_t)st.st_size;
  }
  *fd = f;
  return 0;
}

int mproc__os_shm_unlink(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/%s", name[0] == '/' ? name + 1 : name);
  if (shm_unlink(path) != 0) {
    if (errno == ENOENT)
      return mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\"", name);
    return mproc__error_os(errno, "shm_unlink(\"%s\") failed", path);
  }
  return 0;
}

int mproc__os_shm_map(mproc__fd fd, size_t size, void **addr) {
  void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (p == MAP_FAILED)
    return mproc__error_os(errno, "cannot map %zu bytes of shared memory", size);
  *addr = p;
  return 0;
}

void mproc__os_shm_unmap(void *addr, size_t size) {
  if (addr != NULL)
    munmap(addr, size ? size : 1);
}

/* ------------------------------------------------------------ mutexes */

#if MPROC__USE_ROBUST_MUTEX

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(mproc__os_mutex),
               "mproc__os_mutex is too small for pthread_mutex_t");

int mproc__os_mutex_init(mproc__os_mutex *m, bool recursive) {
  pthread_mutexattr_t a;
  int e;

  pthread_mutexattr_init(&a);
  if (recursive)
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (e == 0)
    e = pthread_mutex_init((pthread_mutex_t *)m->opaque, &a);
  pthread_mutexattr_destroy(&a);
  return e == 0 ? 0 : mproc__error_os(e, "cannot create a process-shared robust mutex");
}

/* A dead owner leaves the mutex to the next locker, marked inconsistent; the caller
 * repairs the state it guards, and the mutex is made usable again here. */
static int mutex_result(pthread_mutex_t *pm, int e, bool *recovered) {
  *recovered = false;
  if (e == EOWNERDEAD) {
    pthread_mutex_consistent(pm);
    *recovered = true;
    return 0;
  }
  if (e == 0)
    return 0;
  if (e == ETIMEDOUT || e == EBUSY)
    return MPROC_ETIMEDOUT;
  return mproc__error_os(e, "cannot lock a shared mutex");
}

int mproc__os_mutex_lock(mproc__os_mutex *m, int64_t deadline, bool *recovered) {
  pthread_mutex_t *pm = (pthread_mutex_t *)m->opaque;
  struct timespec ts;
  int e;

  if (deadline < 0)
    return mutex_result(pm, pthread_mutex_lock(pm), recovered);
#if MPROC__USE_CLOCKLOCK
  {
    /* The deadline is in apr_time_now()'s clock (the wall clock); wait that long
     * on the monotonic one so that a clock change does not stretch it. */
    double left = mproc__remaining(deadline);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)left;
    ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    e = pthread_mutex_clocklock(pm, CLOCK_MONOTONIC, &ts);
  }
#else
  /* pthread_mutex_timedlock waits until a time of the wall clock, which is
   * apr_time_now()'s (microseconds since the epoch). */
  ts.tv_sec = (time_t)(deadline / 1000000);
  ts.tv_nsec = (long)(deadline % 1000000) * 1000L;
  e = pthread_mutex_timedlock(pm, &ts);
#endif
  return mutex_result(pm, e, recovered);
}

int mproc__os_mutex_trylock(mproc__os_mutex *m, bool *recovered) {
  pthread_mutex_t *pm = (pthread_mutex_t *)m->opaque;
  return mutex_result(pm, pthread_mutex_trylock(pm), recovered);
}

int mproc__os_mutex_unlock(mproc__os_mutex *m) {
  int e = pthread_mutex_unlock((pthread_mutex_t *)m->opaque);
  if (e == EPERM)
    return mproc__error(MPROC_ESTATE, "the lock is not held by this thread");
  return e == 0 ? 0 : mproc__error_os(e, "cannot unlock a shared mutex");
}

#else /* !MPROC__USE_ROBUST_MUTEX */

/*
 * Without robust process-shared pthread mutexes (macOS has neither those nor
 * pthread_mutex_clocklock), a mutex is a word in shared memory naming its holder by
 * thread tag (posix.h: pid and thread number), taken by compare-and-swap. A waiter
 * sleeps on `seq`, which each release bumps, and now and then checks on the holder:
 * a holder whose process has ended (or is a zombie) loses the mutex to the next
 * locker, who is told so (*recovered), as EOWNERDEAD tells with pthreads.
 *
 * The holder's process start time guards against pid reuse where the system gives
 * it (Linux, macOS, FreeBSD). Limits: a thread that ends holding the mutex while its
 * process goes on is not noticed (a robust pthread mutex would be handed on), and
 * where no start time is known, a dead holder whose pid was reused keeps the mutex.
 */
typedef struct fb_mutex {
  _Atomic uint64_t owner;   /* the holder's thread tag, 0 when free */
  _Atomic uint64_t started; /* the holder's process start time; 0 while unknown */
  _Atomic uint32_t seq;     /* bumped by each release: the word waiters sleep on */
  _Atomic uint32_t waiters; /* threads asleep on seq */
  uint32_t depth;           /* holds by the holder (recursive mutexes) */
  uint32_t recursive;
} fb_mutex;

_Static_assert(sizeof(fb_mutex) <= sizeof(mproc__os_mutex),
               "mproc__os_mutex is too small for the portable mutex");

/* The first look at a contended holder's health, and the longest gap between two. */
#define FB_PROBE_FIRST_US 2000
#define FB_PROBE_MAX_US 100000
/* Yields before the first sleep: a holder on another CPU often releases by then. */
#define FB_YIELDS 4

static fb_mutex *fbm(mproc__os_mutex *m) { return (fb_mutex *)(void *)m->opaque; }

int mproc__os_mutex_init(mproc__os_mutex *m, bool recursive) {
  fb_mutex *f = fbm(m);
  memset(m, 0, sizeof *m);
  atomic_init(&f->owner, 0);
  atomic_init(&f->started, 0);
  atomic_init(&f->seq, 0);
  atomic_init(&f->waiters, 0);
  f->recursive = recursive;
  return 0;
}

/* Called by the thread whose compare-and-swap just made it the holder. */
static int fb_taken(fb_mutex *f, bool *recovered, bool was_dead) {
  atomic_store(&f->started, mproc__posix_start_time());
  f->depth = 1;
  *recovered = was_dead;
  return 0;
}

/* Whether holder, seen in f->owner, has ended. started is read between two looks
 * at owner and seq: when neither moved, no release came in between, so started is
 * holder's own (or 0 if it has not stored it yet). Anything else: not proven gone. */
static bool fb_holder_gone(fb_mutex *f, uint64_t holder) {
  uint32_t seq = atomic_load(&f->seq);
  uint64_t started;
  if (atomic_load(&f->owner) != holder)
    return false;
  started = atomic_load(&f->started);
  if (atomic_load(&f->owner) != holder || atomic_load(&f->seq) != seq)
    return false;
  return mproc__posix_proc_gone(MPROC__TAG_PID(holder), started);
}

/* The calling thread's tag is in f->owner: either it holds f, or a thread of an
 * earlier process with the same pid and number died holding it. */
static int fb_relock(fb_mutex *f, bool wait, bool *recovered) {
  uint64_t started = atomic_load(&f->started);
  if (started != 0 && started != mproc__posix_start_time())
    return fb_taken(f, recovered, true);
  *recovered = false;
  if (!f->recursive) {
    if (!wait)
      return MPROC_ETIMEDOUT;
    return mproc__error(MPROC_ESTATE,
                        "locking a non-recursive mutex this thread holds would deadlock");
  }
  if (f->depth == UINT32_MAX)
    return mproc__error(MPROC_ESTATE, "a recursive mutex was locked 2^32 times");
  f->depth++;
  return 0;
}

static int fb_lock(mproc__os_mutex *m, int64_t deadline, bool wait, bool *recovered) {
  fb_mutex *f = fbm(m);
  uint64_t me = mproc__posix_thread_tag();
  int64_t next_probe = 0, gap = FB_PROBE_FIRST_US;

  for (unsigned round = 0;; round++) {
    uint64_t holder = 0;
    int64_t now, until;
    uint32_t seq;

    if (atomic_compare_exchange_strong(&f->owner, &holder, me))
      return fb_taken(f, recovered, false);
    if (holder == me)
      return fb_relock(f, wait, recovered);
    /* trylock must see a dead holder at once; lock looks after a short wait and
     * then less and less often (each look costs system calls). */
    now = mproc__deadline(0);
    if (!wait || (next_probe != 0 && now >= next_probe)) {
      if (fb_holder_gone(f, holder) && atomic_compare_exchange_strong(&f->owner, &holder, me))
        return fb_taken(f, recovered, true);
    }
    if (!wait || (deadline >= 0 && now >= deadline))
      return MPROC_ETIMEDOUT;
    if (next_probe == 0 || now >= next_probe) {
      next_probe = now + gap;
      gap = gap * 2 > FB_PROBE_MAX_US ? FB_PROBE_MAX_US : gap * 2;
    }
    if (round < FB_YIELDS) {
      sched_yield();
      continue;
    }
    until = deadline >= 0 && deadline < next_probe ? deadline : next_probe;
    /* Announced before the last look at owner, as the release bumps seq after
     * clearing it (both seq_cst): either this sees it free or the release sees a
     * waiter. */
    seq = atomic_load(&f->seq);
    atomic_fetch_add(&f->waiters, 1);
    if (atomic_load(&f->owner) != 0)
      (void)mproc__os_word_wait((uint32_t *)&f->seq, seq, until);
    atomic_fetch_sub(&f->waiters, 1);
  }
}

int mproc__os_mutex_lock(mproc__os_mutex *m, int64_t deadline, bool *recovered) {
  return fb_lock(m, deadline, true, recovered);
}

int mproc__os_mutex_trylock(mproc__os_mutex *m, bool *recovered) {
  return fb_lock(m, -1, false, recovered);
}

int mproc__os_mutex_unlock(mproc__os_mutex *m) {
  fb_mutex *f = fbm(m);
  if (atomic_load(&f->owner) != mproc__posix_thread_tag())
    return mproc__error(MPROC_ESTATE, "the lock is not held by this thread");
  if (f->depth > 1) {
    f->depth--;
    return 0;
  }
  f->depth = 0;
  /* In this order: fb_holder_gone relies on seq moving after owner. */
  atomic_store(&f->started, 0);
  atomic_store(&f->owner, 0);
  atomic_fetch_add(&f->seq, 1);
  if (atomic_load(&f->waiters) != 0)
    mproc__os_word_wake((uint32_t *)&f->seq, 1);
  return 0;
}

#endif /* MPROC__USE_ROBUST_MUTEX */

/* ------------------------------------------------- waiting on a word */

/* The time left until deadline as a relative timespec; false when it has passed. */
static bool time_left(int64_t deadline, struct timespec *ts) {
  double left = mproc__remaining(deadline);
  if (left <= 0)
    return false;
  ts->tv_sec = (time_t)left;
  ts->tv_nsec = (long)((left - (double)ts->tv_sec) * 1e9);
  return true;
}

#if MPROC__USE_FUTEX

int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline) {
  struct timespec ts, *tp = NULL;
  long k;

  if (deadline >= 0) {
    if (!time_left(deadline, &ts))
      return MPROC_ETIMEDOUT;
    tp = &ts;
  }
  /* Not FUTEX_PRIVATE: the word is shared with other processes. */
  k = syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, NULL, 0);
  if (k != 0 && errno == ETIMEDOUT)
    return MPROC_ETIMEDOUT;
  return 0; /* woken, changed (EAGAIN) or interrupted: the caller re-checks */
}

void mproc__os_word_wake(uint32_t *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE, n < 0 ? INT_MAX : n, NULL, NULL, 0);
}

#elif MPROC__USE_UMTX

/* FreeBSD's futex. The _PRIVATE variants would not reach other processes. */
int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline) {
  struct timespec ts, *tp = NULL;

  if (deadline >= 0) {
    if (!time_left(deadline, &ts))
      return MPROC_ETIMEDOUT;
    tp = &ts;
  }
  /* A relative timeout: uaddr carries the size of the structure uaddr2 points to. */
  if (_umtx_op(word, UMTX_OP_WAIT_UINT, expected, tp ? (void *)(uintptr_t)sizeof *tp : NULL,
               tp) != 0 &&
      errno == ETIMEDOUT)
    return MPROC_ETIMEDOUT;
  return 0;
}

void mproc__os_word_wake(uint32_t *word, int n) {
  (void)_umtx_op(word, UMTX_OP_WAKE, n < 0 ? INT_MAX : n, NULL, NULL);
}

#else

/* Without a futex (macOS, whose __ulock_wait is private API), a waiter looks at the
 * word after sleeps growing from 2 us to 1 ms: a change is seen at most 1 ms late,
 * and an idle waiter wakes up a thousand times a second. Callers spin a while before
 * they come here. Nothing needs waking. */
#define WORD_SLEEP_FIRST_NS 2000L
#define WORD_SLEEP_MAX_NS 1000000L

int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline) {
  long ns = WORD_SLEEP_FIRST_NS;

  for (;;) {
    struct timespec ts = {0, ns};
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != expected)
      return 0;
    if (deadline >= 0) {
      struct timespec left;
      if (!time_left(deadline, &left))
        return MPROC_ETIMEDOUT;
      if (left.tv_sec == 0 && left.tv_nsec < ns)
        ts.tv_nsec = left.tv_nsec;
    }
    nanosleep(&ts, NULL);
    if (ns < WORD_SLEEP_MAX_NS)
      ns = ns * 2 > WORD_SLEEP_MAX_NS ? WORD_SLEEP_MAX_NS : ns * 2;
  }
}

void mproc__os_word_wake(uint32_t *word, int n) {
  (void)word;
  (void)n;
}

#endif
