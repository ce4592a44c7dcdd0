/* POSIX processes: fork, posix_spawn, waiting with timeouts, signals, and dying
 * with the parent. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include "internal.h"

extern char **environ;

/* The first descriptor a spawned child receives its descriptors at. */
#define MPROC__CHILD_FD_BASE 3

/* getpid() is a system call (glibc stopped caching it), and the runtime asks often:
 * cache it, and forget it in every new child, ours or the program's own forks. */
static long cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void) { cached_pid = 0; }

static void pid_atfork(void) { pthread_atfork(NULL, NULL, forget_pid); }

long mproc__os_getpid(void) {
  if (cached_pid == 0) {
    pthread_once(&pid_once, pid_atfork);
    cached_pid = (long)getpid();
  }
  return cached_pid;
}

uint64_t mproc__os_thread_id(void) {
#if defined(SYS_gettid)
  return (uint64_t)syscall(SYS_gettid);
#else
  /* Without system-wide thread ids, pair the pid with this thread's address. */
  static MPROC__THREAD_LOCAL char here;
  return ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&here;
#endif
}

void mproc__os_exit(int code) {
  fflush(NULL);
  _exit(code);
}

static int cmp_fd(const void *a, const void *b) {
  mproc__fd x = *(const mproc__fd *)a, y = *(const mproc__fd *)b;
  return (x > y) - (x < y);
}

static void close_range_fallback(unsigned lo, unsigned hi) {
  struct rlimit rl;
  unsigned top = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < top)
    top = (unsigned)rl.rlim_cur;
  if (hi > top)
    hi = top;
  for (unsigned fd = lo; fd < hi; fd++)
    (void)close((int)fd);
}

/* Closes every descriptor from 3 up but those in keep. */
static void close_all_but(const mproc__fd *keep, size_t n) {
  mproc__fd sorted[64];
  mproc__fd *s = n <= 64 ? sorted : malloc(n * sizeof *s);
  unsigned lo = 3;

  if (s == NULL)
    return; /* out of memory in a new child: keeping descriptors beats dying */
  if (n) {
    memcpy(s, keep, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_fd);
  }
  for (size_t i = 0; i <= n; i++) {
    unsigned hi = i < n ? (unsigned)s[i] : ~0u;
    if (i < n && (s[i] < 3 || (unsigned)s[i] < lo))
      continue;
    if (hi > lo) {
#if defined(SYS_close_range)
      if (syscall(SYS_close_range, lo, hi - 1, 0) != 0)
        close_range_fallback(lo, hi);
#else
      close_range_fallback(lo, hi);
#endif
    }
    lo = hi == ~0u ? hi : hi + 1;
  }
  if (s != sorted)
    free(s);
}

/* The portable way to die with the parent: the parent alone holds the write end of
 * the lifeline, so the read end hangs up when the parent is gone, however it ended. */
static void *lifeline_watch(void *arg) {
  struct pollfd p = {(int)(intptr_t)arg, POLLIN, 0};
  char c;
  for (;;) {
    int k = poll(&p, 1, -1);
    if (k < 0 && errno == EINTR)
      continue;
    if (k > 0 && (p.revents & POLLIN) && read(p.fd, &c, 1) > 0)
      continue; /* nobody writes; ignore stray bytes */
    break;
  }
  /* The same end PR_SET_PDEATHSIG(SIGKILL) gives. */
  kill(getpid(), SIGKILL);
  return NULL;
}

static int watch_lifeline(mproc__fd lifeline) {
  pthread_t t;
  pthread_attr_t attr;
  int e;

  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  e = pthread_create(&t, &attr, lifeline_watch, (void *)(intptr_t)lifeline);
  pthread_attr_destroy(&attr);
  return e == 0 ? 0 : mproc__error_os(e, "cannot start the thread watching the parent");
}

/* Linux can signal a child when its parent dies, without a thread; but the signal is
 * tied to the thread that created the child, so it only stands in for the lifeline
 * when that thread is the main thread, whose end is the process's end. */
bool mproc__os_death_signal_usable(void) {
#if defined(__linux__) && !defined(MPROC_FORCE_FALLBACKS) && defined(SYS_gettid)
  return syscall(SYS_gettid) == getpid();
#else
  return false;
#endif
}

static int die_with_parent(long parent_pid, bool use_signal, mproc__fd lifeline) {
#if defined(__linux__) && !defined(MPROC_FORCE_FALLBACKS)
  if (use_signal) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      return mproc__error_os(errno, "prctl(PR_SET_PDEATHSIG) failed");
    if ((long)getppid() != parent_pid)
      kill(getpid(), SIGKILL); /* the parent died before the signal was armed */
    if (lifeline != MPROC__FD_INVALID)
      close((int)lifeline);
    return 0;
  }
#else
  (void)use_signal;
#endif
  if ((long)getppid() != parent_pid)
    kill(getpid(), SIGKILL);
  return lifeline == MPROC__FD_INVALID ? 0 : watch_lifeline(lifeline);
}

static int open_waitfd(mproc__os_proc *proc) {
  proc->waitfd = MPROC__FD_INVALID;
#if defined(SYS_pidfd_open) && !defined(MPROC_FORCE_FALLBACKS)
  {
    /* The pid cannot be reused before we reap it, so this names our child. */
    long fd = syscall(SYS_pidfd_open, (pid_t)proc->pid, 0);
    if (fd >= 0)
      proc->waitfd = (mproc__fd)fd;
  }
#endif
  return 0;
}

bool mproc__os_can_fork(void) { return true; }

int mproc__os_fork(mproc__os_proc *proc, const mproc__os_start *start) {
  sigset_t all, old;
  long parent = (long)getpid();
  bool use_signal = mproc__os_death_signal_usable();
  pid_t pid;

  /* Unwritten stdio buffers would otherwise be written twice, once by each process. */
  fflush(NULL);
  /* No signal handler may run in the child before it is set up (libuv does the same). */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = fork();
  if (pid == 0) {
    close_all_but(start->keep, start->nkeep);
    if (die_with_parent(parent, use_signal, start->lifeline) != 0)
      _exit(127);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 1;
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0)
    return mproc__error_os(e, "fork() failed");
  memset(proc, 0, sizeof *proc);
  proc->pid = (long)pid;
  return open_waitfd(proc);
}

int mproc__os_spawn(mproc__os_proc *proc, const char *exe, const char *argv0,
                    const mproc__os_start *start, mproc__fd *child_fds) {
  char bootfd[24];
  char *argv[4] = {(char *)argv0, (char *)MPROC__SPAWN_FLAG, bootfd, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  mproc__fd *tmp;
  size_t n = start->nkeep, made = 0;
  int r = 0, e;
  pid_t pid;

  tmp = calloc(n ? n : 1, sizeof *tmp);
  if (tmp == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate the child's descriptor table");
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  /* Copies above the target range first, so no dup2 overwrites a source yet to be
   * copied; the copies are close-on-exec and vanish in the child. */
  for (; made < n; made++) {
    int fd = fcntl((int)start->keep[made], F_DUPFD_CLOEXEC, (int)(MPROC__CHILD_FD_BASE + n));
    if (fd < 0) {
      r = mproc__error_os(errno, "cannot duplicate descriptor %d for the child",
                          (int)start->keep[made]);
      goto out;
    }
    tmp[made] = fd;
  }
  snprintf(bootfd, sizeof bootfd, "%d", MPROC__CHILD_FD_BASE);
  for (size_t i = 0; i < n; i++) {
    child_fds[i] = (mproc__fd)(MPROC__CHILD_FD_BASE + i);
    e = posix_spawn_file_actions_adddup2(&fa, (int)tmp[i], (int)child_fds[i]);
    if (e != 0) {
      r = mproc__error_os(e, "posix_spawn_file_actions_adddup2() failed");
      goto out;
    }
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  /* Descriptors someone else created without close-on-exec stay out of the child. */
  (void)posix_spawn_file_actions_addclosefrom_np(&fa, (int)(MPROC__CHILD_FD_BASE + n));
#endif
  e = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
  if (e != 0) {
    r = mproc__error_os(e, "posix_spawn(\"%s\") failed", exe);
    goto out;
  }
  memset(proc, 0, sizeof *proc);
  proc->pid = (long)pid;
  open_waitfd(proc);
out:
  while (made > 0)
    close((int)tmp[--made]);
  free(tmp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return r;
}

int mproc__os_child_setup(const mproc__fd *keep, size_t nkeep, long parent_pid,
                          mproc__fd lifeline, bool use_signal) {
  close_all_but(keep, nkeep);
  for (size_t i = 0; i < nkeep; i++) {
    int r = mproc__os_set_inherit(keep[i], false);
    if (r != 0)
      return r;
  }
  return die_with_parent(parent_pid, use_signal, lifeline);
}

static int reap(mproc__os_proc *proc, bool block, bool *done) {
  int st;
  pid_t k;

  do
    k = waitpid((pid_t)proc->pid, &st, block ? 0 : WNOHANG);
  while (k < 0 && errno == EINTR);
  if (k < 0)
    return mproc__error_os(errno,
                           "waitpid(%ld) failed (was the child reaped elsewhere, by a "
                           "waitpid(-1) or SIGCHLD set to SIG_IGN?)",
                           proc->pid);
  *done = k == (pid_t)proc->pid;
  if (*done) {
    proc->reaped = true;
    proc->exitcode = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
    mproc__os_close(proc->waitfd);
    proc->waitfd = MPROC__FD_INVALID;
  }
  return 0;
}

int mproc__os_proc_wait(mproc__os_proc *proc, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  bool done = false;
  long sleep_us = 200;
  int r;

  if (proc->reaped)
    return 0;
  if (timeout < 0 && proc->waitfd == MPROC__FD_INVALID)
    return reap(proc, true, &done);
  for (;;) {
    if ((r = reap(proc, false, &done)) != 0 || done)
      return r;
    double left = mproc__remaining(deadline);
    if (left == 0)
      return MPROC_ETIMEDOUT;
    if (proc->waitfd != MPROC__FD_INVALID) {
      unsigned char ready;
      size_t nready;
      if ((r = mproc__os_poll_read(&proc->waitfd, 1, left, &ready, &nready)) != 0)
        return r;
    } else {
      /* Without a descriptor to wait on, poll the child with a growing interval. */
      struct timespec ts;
      double step = (double)sleep_us / 1e6;
      if (left > 0 && left < step)
        step = left;
      ts.tv_sec = (time_t)step;
      ts.tv_nsec = (long)((step - (double)ts.tv_sec) * 1e9);
      nanosleep(&ts, NULL);
      if (sleep_us < 20000)
        sleep_us *= 2;
    }
  }
}

int mproc__os_proc_signal(mproc__os_proc *proc, bool force) {
  if (proc->reaped)
    return 0;
  if (kill((pid_t)proc->pid, force ? SIGKILL : SIGTERM) != 0 && errno != ESRCH)
    return mproc__error_os(errno, "kill(%ld) failed", proc->pid);
  return 0;
}

void mproc__os_proc_release(mproc__os_proc *proc) {
  mproc__os_close(proc->waitfd);
  proc->waitfd = MPROC__FD_INVALID;
}
