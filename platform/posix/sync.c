/* POSIX shared memory, robust process-shared mutexes, and futex waits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#endif

#include "internal.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(mproc__os_mutex),
               "mproc__os_mutex is too small for pthread_mutex_t");

int mproc__os_shm_create(size_t size, mproc__fd *fd) {
  int f = -1;
#if defined(__linux__) && defined(MFD_CLOEXEC) && !defined(MPROC_FORCE_FALLBACKS)
  f = memfd_create("mproc", MFD_CLOEXEC);
#endif
  if (f < 0) {
    /* Fallback: a POSIX shm object, unlinked at once so only descriptors keep it. */
    char name[64];
    static unsigned counter;
    for (int tries = 0; f < 0 && tries < 100; tries++) {
      snprintf(name, sizeof name, "/mproc-%ld-%u-%ld", (long)getpid(),
               __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), (long)clock());
      f = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (f < 0 && errno != EEXIST)
        break;
    }
    if (f < 0)
      return mproc__error_os(errno, "cannot create shared memory");
    shm_unlink(name);
  }
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
  f = shm_open(path, create ? (O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC) : (O_RDWR | O_CLOEXEC),
               0600);
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
  int e;

  if (deadline < 0) {
    e = pthread_mutex_lock(pm);
  } else {
    /* The deadline is in apr_time_now()'s clock (the wall clock); wait that long
     * on the monotonic one so that a clock change does not stretch it. */
    struct timespec ts;
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

int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline) {
  struct timespec ts, *tp = NULL;
  long k;

  if (deadline >= 0) {
    double left = mproc__remaining(deadline);
    if (left <= 0)
      return MPROC_ETIMEDOUT;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
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
