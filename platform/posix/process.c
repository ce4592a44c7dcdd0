/* POSIX processes: fork, posix_spawn, waiting with timeouts, signals, and dying
 * with the parent. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "posix.h"

#if MPROC__USE_PDEATHSIG
#include <sys/prctl.h>
#endif
#if defined(__APPLE__)
#include <sys/proc.h>
#include <sys/sysctl.h>
#elif defined(__FreeBSD__)
#include <sys/param.h>
#include <sys/proc.h>
#include <sys/sysctl.h>
#include <sys/user.h>
#endif

#if defined(__APPLE__)
/* A shared library on macOS has no `environ` to link against. */
#include <crt_externs.h>
#define MPROC__ENVIRON (*_NSGetEnviron())
#else
extern char **environ;
#define MPROC__ENVIRON environ
#endif

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

/* The tag is made on a thread's first call and made again in a forked child, whose
 * thread inherits the parent's tag with the parent's pid in it. */
uint64_t mproc__posix_thread_tag(void) {
  static _Atomic uint32_t last_number;
  static MPROC__THREAD_LOCAL uint64_t tag;
  static MPROC__THREAD_LOCAL long tag_pid;
  long pid = mproc__os_getpid();

  if (tag_pid != pid) {
    uint32_t n = atomic_fetch_add_explicit(&last_number, 1, memory_order_relaxed) + 1;
    tag = ((uint64_t)(uint32_t)pid << 32) | n;
    tag_pid = pid;
  }
  return tag;
}

uint64_t mproc__os_thread_id(void) {
#if MPROC__USE_GETTID
  return (uint64_t)syscall(SYS_gettid);
#else
  return mproc__posix_thread_tag();
#endif
}

/* ------------------------------------------------- is a process alive */

/* What the system says of pid: 1 when it exists (with *zombie and *start set), 0 when
 * it does not, -1 when it cannot say. */
static int proc_info(long pid, bool *zombie, uint64_t *start) {
#if defined(__linux__)
  /* /proc/<pid>/stat: "pid (comm) state ppid ..." with the start time (clock ticks
   * after boot) as field 22. comm may hold spaces and parentheses: fields are
   * counted from the last ')'. */
  char path[64], buf[1024], *p;
  ssize_t n;
  int fd;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  do
    fd = open(path, O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH ? 0 : -1;
  do
    n = read(fd, buf, sizeof buf - 1);
  while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0)
    return n == 0 || errno == ESRCH ? 0 : -1;
  buf[n] = '\0';
  if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
    return -1;
  p += 2; /* at field 3, the state */
  *zombie = *p == 'Z' || *p == 'X' || *p == 'x';
  for (int field = 3; field < 22 && p != NULL; field++)
    if ((p = strchr(p, ' ')) != NULL)
      p++;
  *start = p ? strtoull(p, NULL, 10) : 0;
  return 1;
#elif defined(__APPLE__) || defined(__FreeBSD__)
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
  struct kinfo_proc kp;
  size_t len = sizeof kp;
  if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0)
    return errno == ESRCH ? 0 : -1;
  if (len == 0)
    return 0;
#if defined(__APPLE__)
  *zombie = kp.kp_proc.p_stat == SZOMB;
  *start = (uint64_t)kp.kp_proc.p_starttime.tv_sec * 1000000u +
           (uint64_t)kp.kp_proc.p_starttime.tv_usec;
#else
  *zombie = kp.ki_stat == SZOMB;
  *start = (uint64_t)kp.ki_start.tv_sec * 1000000u + (uint64_t)kp.ki_start.tv_usec;
#endif
  return 1;
#else
  (void)pid;
  (void)zombie;
  (void)start;
  return -1;
#endif
}

uint64_t mproc__posix_start_time(void) {
  static _Atomic long for_pid;
  static _Atomic uint64_t start;
  long pid = mproc__os_getpid();

  if (atomic_load_explicit(&for_pid, memory_order_acquire) != pid) {
    bool zombie;
    uint64_t s = 0;
    if (proc_info(pid, &zombie, &s) != 1)
      s = 0;
    atomic_store_explicit(&start, s, memory_order_relaxed);
    atomic_store_explicit(&for_pid, pid, memory_order_release);
  }
  return atomic_load_explicit(&start, memory_order_relaxed);
}

bool mproc__posix_proc_gone(long pid, uint64_t started) {
  bool zombie = false;
  uint64_t start = 0;
  int known;

  if (pid <= 0)
    return false;
  if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
    return true;
  known = proc_info(pid, &zombie, &start);
  if (known == 0 || (known == 1 && zombie))
    return true;
  if (known == 1)
    return started != 0 && start != 0 && start != started;
  {
    /* The system cannot say: a child of ours that ended is still seen, unreaped. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == (pid_t)pid;
  }
}

/* ---------------------------------------------------------------- exit */

_Noreturn void mproc__os_exit(int code) {
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
#if MPROC__USE_CLOSE_RANGE
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

/* The portable way to die with the parent: a thread that looks at the parent's pid
 * every MPROC__PARENT_CHECK_NS. An orphan is given a new parent (init, or a
 * subreaper), so getppid() changes when the parent is gone, however it ended. The
 * lifeline would tell at once, but a child would have to keep it open all its life,
 * a descriptor besides those meant for it. */
#define MPROC__PARENT_CHECK_NS 100000000L

typedef struct watch_arg {
  pid_t parent;
  _Atomic bool running; /* set by the watcher once it no longer needs this */
} watch_arg;

static void *parent_watch(void *arg) {
  watch_arg *w = arg;
  pid_t parent = w->parent;
  struct timespec ts = {0, MPROC__PARENT_CHECK_NS};
  atomic_store(&w->running, true);
  while (getppid() == parent)
    nanosleep(&ts, NULL);
  /* The same end PR_SET_PDEATHSIG(SIGKILL) gives. */
  kill(getpid(), SIGKILL);
  return NULL;
}

/* Returns once the watcher runs its own code. Until then the new thread may be
 * inside the C library or a sanitizer's runtime (AddressSanitizer's thread start
 * allocates), and a fork of this process in that time would give the child those
 * locks held by a thread it does not have. */
static int watch_parent(long parent_pid) {
  watch_arg w = {(pid_t)parent_pid, false};
  pthread_t t;
  pthread_attr_t attr;
  sigset_t all, old;
  int e;

  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  /* The watcher takes no signals: they stay with the program's own threads. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  e = pthread_create(&t, &attr, parent_watch, &w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (e != 0)
    return mproc__error_os(e, "cannot start the thread watching the parent");
  while (!atomic_load(&w.running))
    sched_yield();
  return 0;
}

/* Linux can signal a child when its parent dies, without a thread; but the signal is
 * tied to the thread that created the child, so it only stands in for the watching
 * thread when that thread is the main thread, whose end is the process's end. */
bool mproc__os_death_signal_usable(void) {
#if MPROC__USE_PDEATHSIG
  return syscall(SYS_gettid) == getpid();
#else
  return false;
#endif
}

static int die_with_parent(long parent_pid, bool use_signal, mproc__fd lifeline) {
  /* Neither way watches the lifeline (see parent_watch): the child lets it go. */
  if (lifeline != MPROC__FD_INVALID)
    close((int)lifeline);
#if MPROC__USE_PDEATHSIG
  if (use_signal) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      return mproc__error_os(errno, "prctl(PR_SET_PDEATHSIG) failed");
    if ((long)getppid() != parent_pid)
      kill(getpid(), SIGKILL); /* the parent died before the signal was armed */
    return 0;
  }
#else
  (void)use_signal;
#endif
  if ((long)getppid() != parent_pid)
    kill(getpid(), SIGKILL);
  return watch_parent(parent_pid);
}

/* Without pidfd_open (before Linux 5.3, and elsewhere) a process has no descriptor
 * that becomes readable when it exits: mproc__os_proc_wait then polls waitpid with a
 * growing interval, and the pool looks at such workers every 50 ms. A SIGCHLD
 * handler writing to a pipe would avoid the polling, but it would take the
 * process-wide signal disposition away from the program. */
static int open_waitfd(mproc__os_proc *proc) {
  proc->waitfd = MPROC__FD_INVALID;
#if MPROC__USE_PIDFD
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
#if MPROC__USE_SPAWN_CLOSEFROM
  /* Descriptors someone else created without close-on-exec stay out of the child.
   * Without this action the child closes them itself, in mproc__os_child_setup. */
  (void)posix_spawn_file_actions_addclosefrom_np(&fa, (int)(MPROC__CHILD_FD_BASE + n));
#endif
  e = posix_spawn(&pid, exe, &fa, &attr, argv, MPROC__ENVIRON);
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
