/* The runner's OS helpers for POSIX (see runner.h); runner_win32.c has Windows'. */
#define _GNU_SOURCE
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long test_getpid(void) { return (long)getpid(); }

long test_getppid(void) { return (long)getppid(); }

bool kill_hard(long pid) { return kill((pid_t)pid, SIGKILL) == 0; }

void crash_now(void) {
  /* No core file for a crash on purpose. */
  struct rlimit rl = {0, 0};
  setrlimit(RLIMIT_CORE, &rl);
  raise(SIGSEGV);
  /* Not reached unless SIGSEGV is blocked or caught; fault for real then. */
  *(volatile int *)(uintptr_t)8 = 0;
}

bool pid_reaped(long pid) { return kill((pid_t)pid, 0) == -1 && errno == ESRCH; }

bool wait_asleep(long pid, double seconds) {
  for (double t = 0; t < seconds; t += 0.01) {
    if (proc_state(pid) == 'S')
      return true;
    sleep_seconds(0.01);
  }
  return proc_state(pid) == 'S';
}

void test_yield(void) { sched_yield(); }

int test_thread_start(test_thread *t, void *(*fn)(void *), void *arg) {
  return pthread_create(&t->th, NULL, fn, arg);
}

int test_thread_join(test_thread *t, void **ret) { return pthread_join(t->th, ret); }

double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int count_open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
      n++;
  closedir(d);
  return n;
}

char proc_state(long pid) {
  char path[64], buf[512];
  FILE *f;
  size_t n;
  char *close_paren;

  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  f = fopen(path, "r");
  if (f == NULL)
    return 0;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* "pid (comm) S ...": comm may hold spaces and parentheses, so take the last ')'. */
  close_paren = strrchr(buf, ')');
  if (close_paren == NULL || close_paren[1] != ' ')
    return 0;
  return close_paren[2];
}

bool pid_gone(long pid) {
  char s;
  if (kill((pid_t)pid, 0) == -1 && errno == ESRCH)
    return true;
  /* An orphan's zombie stays until init reaps it, and a container's init may not. */
  s = proc_state(pid);
  return s == 0 || s == 'Z' || s == 'X';
}

void sleep_seconds(double s) {
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

bool raise_nofile(size_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return false;
  if (rl.rlim_cur >= (rlim_t)need)
    return true;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need)
    return false;
  rl.rlim_cur = (rlim_t)need;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

long run_self(const char *const *args, intptr_t *out_fd) {
  char exe[4096];
  char *argv[32];
  size_t n = 0;
  int pfd[2];
  pid_t pid;
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  posix_spawn_file_actions_t fa;

  if (len <= 0)
    fail_msg("cannot read /proc/self/exe");
  exe[len] = '\0';
  argv[n++] = exe;
  while (*args != NULL && n < 31)
    argv[n++] = (char *)*args++;
  argv[n] = NULL;
  if (pipe2(pfd, O_CLOEXEC) != 0)
    fail_msg("pipe2 failed");
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  if (posix_spawn(&pid, exe, &fa, NULL, argv, environ) != 0)
    fail_msg("posix_spawn of %s failed", exe);
  posix_spawn_file_actions_destroy(&fa);
  close(pfd[1]);
  *out_fd = pfd[0];
  return (long)pid;
}

bool read_to_end(intptr_t fd_, char *buf, size_t cap, double seconds) {
  int fd = (int)fd_;
  size_t n = 0;
  bool ok = false;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    double left;
    ssize_t k;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left = seconds - (double)(now.tv_sec - start.tv_sec) -
           (double)(now.tv_nsec - start.tv_nsec) / 1e9;
    if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0)
      break;
    k = read(fd, buf + n, cap - 1 - n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      ok = k == 0;
      break;
    }
    n += (size_t)k;
    if (n == cap - 1) {
      ok = true;
      break;
    }
  }
  buf[n] = '\0';
  close(fd);
  return ok;
}


fd_kind fd_state(intptr_t fd) {
  int flags = fcntl((int)fd, F_GETFD);
  if (flags == -1)
    return FD_CLOSED;
  return (flags & FD_CLOEXEC) ? FD_PRIVATE : FD_INHERITABLE;
}

bool write_fd_all(intptr_t fd, const void *buf, size_t len) {
  const unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = write((int)fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

uint64_t available_memory(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  unsigned long long kb = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  fclose(f);
  return (uint64_t)kb * 1024u;
}

int wait_self(long pid) {
  int st = 0;
  if (waitpid((pid_t)pid, &st, 0) != (pid_t)pid)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int capture_fd = -1, capture_saved = -1;

void stderr_capture_begin(void) {
  char path[] = "/tmp/mproc-test-stderr-XXXXXX";
  capture_fd = mkstemp(path);
  assert_true(capture_fd >= 0);
  unlink(path);
  fflush(stderr);
  capture_saved = dup(2);
  assert_true(capture_saved >= 0);
  assert_true(dup2(capture_fd, 2) == 2);
}

char *stderr_capture_end(void) {
  char *buf = calloc(1, 65536);
  ssize_t n;
  fflush(stderr);
  dup2(capture_saved, 2);
  close(capture_saved);
  n = pread(capture_fd, buf, 65535, 0);
  close(capture_fd);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

void *late_library_symbol(const char **name) {
  void *lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  *name = "libz";
  /* Never closed: the symbol is compared with what mproc reports afterwards. */
  return lib == NULL ? NULL : dlsym(lib, "zlibVersion");
}

void shm_name_remove(const char *name) {
  char path[300];
  snprintf(path, sizeof path, "/%s", name);
  shm_unlink(path); /* ENOENT when the test unlinked it itself */
}

unsigned char *faulting_area(size_t len, size_t fault_at) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), maplen = (len + page - 1) / page * page;
  unsigned char *p;
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  if (fault_at < maplen && mprotect(p + fault_at, maplen - fault_at, PROT_NONE) != 0)
    return NULL;
  return p;
}

int count_children(int *zombies) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  long me = (long)getpid();
  int n = 0;
  *zombies = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[1024], *end, *paren, st;
    long pid = strtol(e->d_name, &end, 10), ppid;
    FILE *f;
    size_t k;
    if (*end != '\0' || pid <= 0)
      continue;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
      continue;
    k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = '\0';
    paren = strrchr(buf, ')');
    if (paren == NULL || sscanf(paren + 1, " %c %ld", &st, &ppid) != 2)
      continue;
    if (ppid == me) {
      n++;
      if (st == 'Z')
        (*zombies)++;
    }
  }
  closedir(d);
  return n;
}

long resident_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0) {
      v = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}
