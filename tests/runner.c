/* The common main of the test binaries and their shared helpers (see runner.h). */
#define _GNU_SOURCE
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

mproc_start_method test_start_method = MPROC_START_DEFAULT;
int test_argc;
char **test_argv;

/* ---------------------------------------------------------------- data */

/* Byte i of the pattern is byte i % 8 of splitmix64(i / 8 + seed): it never repeats, so
 * a shifted, truncated or reordered copy shows, and it is cheap enough for 4 GiB. */
static inline uint64_t pattern_word(uint64_t k, uint32_t seed) {
  uint64_t z = (k + ((uint64_t)seed << 40)) * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline unsigned char pattern_byte(size_t i, uint32_t seed) {
  return (unsigned char)(pattern_word(i / 8, seed) >> (8 * (i % 8)));
}

void fill_pattern(void *buf, size_t len, uint32_t seed) {
  unsigned char *p = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w = pattern_word(i / 8, seed);
    for (size_t b = 0; b < 8; b++)
      p[i + b] = (unsigned char)(w >> (8 * b));
  }
  for (; i < len; i++)
    p[i] = pattern_byte(i, seed);
}

size_t check_pattern(const void *buf, size_t len, uint32_t seed) {
  const unsigned char *p = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w = pattern_word(i / 8, seed), got = 0;
    for (size_t b = 8; b-- > 0;)
      got = (got << 8) | p[i + b];
    if (got != w)
      break;
  }
  for (; i < len; i++)
    if (p[i] != pattern_byte(i, seed))
      return i;
  return SIZE_MAX;
}

unsigned char *pattern_alloc(size_t len, uint32_t seed) {
  unsigned char *p = malloc(len ? len : 1);
  if (p == NULL)
    fail_msg("cannot allocate %zu bytes for a test message", len);
  fill_pattern(p, len, seed);
  return p;
}

/* ------------------------------------------------------ descriptors, processes */

void make_pipe(mproc_conn **a, mproc_conn **b, bool duplex) {
  *a = *b = NULL;
  assert_ok(mproc_pipe(a, b, duplex));
  assert_non_null(*a);
  assert_non_null(*b);
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

bool wait_pid_gone(long pid, double seconds) {
  for (double t = 0; t < seconds; t += 0.02) {
    if (pid_gone(pid))
      return true;
    sleep_seconds(0.02);
  }
  return pid_gone(pid);
}

bool raise_nofile(rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return false;
  if (rl.rlim_cur >= need)
    return true;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return false;
  rl.rlim_cur = need;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

void child_enter(void) {
  static const int sigs[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGSYS};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    signal(sigs[i], SIG_DFL);
}

#define MAX_TRACKED 256
static mproc_process *tracked[MAX_TRACKED];

static void track(mproc_process *p) {
  for (size_t i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] == NULL) {
      tracked[i] = p;
      return;
    }
}

static void untrack(mproc_process *p) {
  for (size_t i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] == p)
      tracked[i] = NULL;
}

void tstart_adopt(mproc_process *p) { track(p); }

int tstart_opts(mproc_process **p, mproc_fn target, const void *arg, size_t len,
                const mproc_process_opts *opts) {
  mproc_process_opts o = {0};
  int r;

  if (opts != NULL)
    o = *opts;
  if (o.start_method == MPROC_START_DEFAULT)
    o.start_method = test_start_method;
  r = mproc_process_start(p, target, arg, len, &o);
  if (r == 0)
    track(*p);
  return r;
}

int tstart(mproc_process **p, mproc_fn target, const void *arg, size_t len, void *const *share,
           size_t nshare) {
  mproc_process_opts o = {0};
  o.share = share;
  o.nshare = nshare;
  return tstart_opts(p, target, arg, len, &o);
}

int tjoin(mproc_process *p, double timeout) {
  int r = mproc_process_join(p, timeout);
  if (r == MPROC_ETIMEDOUT) {
    mproc_process_kill(p);
    mproc_process_join(p, 10.0);
  }
  return r;
}

void tfree(mproc_process *p) {
  untrack(p);
  mproc_process_free(p);
}

int texitcode(mproc_process *p) {
  int code;
  if (mproc_process_exitcode(p, &code) != 0)
    return INT_MIN;
  return code;
}

int test_teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] != NULL) {
      mproc_process_kill(tracked[i]);
      mproc_process_join(tracked[i], 10.0);
      mproc_process_free(tracked[i]);
      tracked[i] = NULL;
    }
  return 0;
}

long run_self(const char *const *args, int *out_fd) {
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

bool read_to_end(int fd, char *buf, size_t cap, double seconds) {
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

/* ---------------------------------------------------------------- main */

static int usage(const char *argv0, const char *bad) {
  fprintf(stderr,
          "%s: unknown argument \"%s\"\n"
          "usage: %s [--start=fork|spawn] [--large | --no-init] [--filter=PATTERN]\n"
          "          [--role=NAME]\n",
          argv0, bad, argv0);
  return 2;
}

int main(int argc, char **argv) {
  test_mode mode = TEST_NORMAL;
  const char *filter = NULL, *role = NULL;
  int failed = 0, r;

  /* Only --no-init may keep mproc_init() from being the first call: the spawn
   * child's arguments never contain it. */
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--no-init") == 0)
      mode = TEST_NO_INIT;
  if (mode != TEST_NO_INIT && (r = mproc_init(&argc, &argv)) != 0) {
    fprintf(stderr, "mproc_init failed: %s (%s)\n", mproc_err_name(r), mproc_last_error());
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--start=fork") == 0)
      test_start_method = MPROC_START_FORK;
    else if (strcmp(a, "--start=spawn") == 0)
      test_start_method = MPROC_START_SPAWN;
    else if (strcmp(a, "--large") == 0)
      mode = TEST_LARGE;
    else if (strcmp(a, "--no-init") == 0)
      continue;
    else if (strncmp(a, "--filter=", 9) == 0)
      filter = a + 9;
    else if (strncmp(a, "--role=", 7) == 0)
      role = a + 7;
    else
      return usage(argv[0], a);
  }
  if (test_start_method != MPROC_START_DEFAULT &&
      (r = mproc_set_start_method(test_start_method)) != 0) {
    fprintf(stderr, "mproc_set_start_method failed: %s (%s)\n", mproc_err_name(r),
            mproc_last_error());
    return 1;
  }
  test_argc = argc;
  test_argv = argv;
  if (role != NULL) {
    for (size_t i = 0; i < test_nroles; i++)
      if (strcmp(test_roles[i].name, role) == 0)
        return test_roles[i].fn(argc, argv);
    fprintf(stderr, "%s: no role \"%s\"\n", argv[0], role);
    return 2;
  }
  if (filter != NULL)
    cmocka_set_test_filter(filter);
  for (size_t g = 0; g < test_ngroups; g++) {
    char name[128];
    if (test_groups[g].mode != mode)
      continue;
    snprintf(name, sizeof name, "%s%s", test_groups[g].name,
             test_start_method == MPROC_START_FORK    ? " [fork]"
             : test_start_method == MPROC_START_SPAWN ? " [spawn]"
                                                      : "");
    failed += _cmocka_run_group_tests(name, test_groups[g].tests, test_groups[g].ntests, NULL,
                                      NULL);
  }
  return failed == 0 ? 0 : 1;
}
