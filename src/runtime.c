/* Start-up (mproc_init), the start-method default, timeouts, and the lifeline. */
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_time.h>
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <immintrin.h> /* _mm_pause */
#endif

#include "internal.h"

char *mproc__exe;
const char *mproc__argv0;

static bool initialized;
static long init_pid;
static mproc_start_method default_method;
/* This process's lifeline; the write end never leaves it. */
static mproc__fd lifeline[2] = {MPROC__FD_INVALID, MPROC__FD_INVALID};
static long lifeline_pid;
static int ncpu = 1; /* set by mproc_init: whether spinning can help */

static void at_exit(void) {
  /* A forked child that calls exit() inherits this handler; its parent's children
   * are not its business. */
  if (mproc__os_getpid() != init_pid)
    return;
  mproc__processes_at_exit();
}

int mproc_init(int *argc, char ***argv) {
  apr_status_t st;
  mproc__fd life;
  bool spawned;
  int r;

  if (argc == NULL || argv == NULL || *argv == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_init: pass &argc and &argv from main()");
  if (initialized && init_pid == mproc__os_getpid())
    return 0;
  if ((st = apr_initialize()) != APR_SUCCESS)
    return mproc__error(MPROC_ESYS, "apr_initialize() failed (APR status %d)", st);
  mproc__argv0 = (*argv)[0];
  if ((r = mproc__os_exe_path(mproc__argv0, &mproc__exe)) != 0)
    return r;
  if ((r = mproc__os_modules_snapshot()) != 0)
    return r;
  init_pid = mproc__os_getpid();
  ncpu = mproc__os_cpu_count();
  spawned = *argc >= 3 && strcmp((*argv)[1], MPROC__SPAWN_FLAG) == 0;
  /* Made now, while only this thread runs: pool threads start children later. A
   * spawned child makes its own when it first starts one, as a forked child does:
   * made here, it would be closed with the descriptors not meant for the child. */
  if (!spawned && (r = mproc__lifeline(&life)) != 0)
    return r;
  if ((r = mproc__processes_init()) != 0)
    return r;
  if (!initialized && atexit(at_exit) != 0)
    return mproc__error(MPROC_ESYS, "atexit() failed");
  initialized = true;
  if (spawned) {
    char *end;
    long fd = strtol((*argv)[2], &end, 10);
    if (*end != '\0' || fd < 0)
      return mproc__error(MPROC_EINVAL, "mproc_init: malformed spawn child arguments");
    mproc__spawn_child_main((mproc__fd)fd); /* does not return */
  }
  return 0;
}

void mproc__child_exit(int code) {
  /* As Python's children do: wait for (or end) this child's own children first. */
  mproc__processes_at_exit();
  mproc__os_exit(code);
}

int mproc__check_init(const char *fn) {
  if (!initialized)
    return mproc__error(MPROC_ENOTINIT, "%s: call mproc_init(&argc, &argv) first in main()", fn);
  return 0;
}

int mproc_set_start_method(mproc_start_method method) {
  if (method != MPROC_START_DEFAULT && method != MPROC_START_FORK && method != MPROC_START_SPAWN)
    return mproc__error(MPROC_EINVAL, "mproc_set_start_method: unknown method %d", (int)method);
  if (method == MPROC_START_FORK && !mproc__os_can_fork())
    return mproc__error(MPROC_ENOTSUP, "mproc_set_start_method: this system has no fork; spawn "
                                       "is its only start method");
  default_method = method;
  return 0;
}

mproc_start_method mproc_get_start_method(void) { return mproc__resolve_start(default_method); }

mproc_start_method mproc__resolve_start(mproc_start_method m) {
  if (m == MPROC_START_DEFAULT)
    m = default_method;
  if (m == MPROC_START_DEFAULT)
    m = mproc__os_can_fork() ? MPROC_START_FORK : MPROC_START_SPAWN;
  return m;
}

int mproc_cpu_count(void) { return mproc__os_cpu_count(); }

long mproc_getpid(void) { return mproc__os_getpid(); }

void mproc_sleep(double seconds) {
  if (seconds > 0) /* false for NaN too */
    apr_sleep((apr_interval_time_t)(seconds * 1e6));
}

int64_t mproc__deadline(double timeout) {
  if (timeout < 0)
    return -1;
  return (int64_t)apr_time_now() + (int64_t)(timeout * 1e6);
}

double mproc__remaining(int64_t deadline) {
  int64_t left;
  if (deadline < 0)
    return -1;
  left = deadline - (int64_t)apr_time_now();
  return left > 0 ? (double)left / 1e6 : 0;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(_M_X64) || defined(_M_IX86)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

bool mproc__spin(bool (*done)(const void *arg), const void *arg, int64_t deadline, int64_t us) {
  int64_t end = 0;
  if (ncpu < 2)
    return done(arg);
  for (unsigned i = 0;; i++) {
    if (done(arg))
      return true;
    if ((i & 63) == 0) {
      int64_t now = mproc__deadline(0);
      if (end == 0)
        end = deadline >= 0 && deadline < now + us ? deadline : now + us;
      else if (now >= end)
        return false;
      /* On a busy machine the peer may be waiting for this very CPU: let it run. On
       * an idle one this returns at once. */
      if (i > 0)
        mproc__os_yield();
    }
    cpu_relax();
  }
}

int mproc__lifeline(mproc__fd *read_end) {
  /* A forked child inherits the variables but not the descriptors (they were
   * closed), so the lifeline belongs to the process that made it. */
  if (lifeline_pid != mproc__os_getpid()) {
    int r = mproc__os_pipe(lifeline, false);
    if (r != 0)
      return r;
    lifeline_pid = mproc__os_getpid();
  }
  *read_end = lifeline[0];
  return 0;
}

void mproc__after_fork_child(void) {
  lifeline[0] = lifeline[1] = MPROC__FD_INVALID;
  lifeline_pid = 0;
  init_pid = mproc__os_getpid();
  mproc__processes_after_fork();
}
