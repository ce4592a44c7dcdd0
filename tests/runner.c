/* The common main of the test binaries and their shared helpers (see runner.h). */
#include "runner.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
const mproc_start_method test_methods[] = {MPROC_START_SPAWN};
#else
const mproc_start_method test_methods[] = {MPROC_START_FORK, MPROC_START_SPAWN};
#endif
const size_t test_nmethods = sizeof test_methods / sizeof test_methods[0];

const char *method_name(mproc_start_method m) {
  return m == MPROC_START_FORK ? "fork" : m == MPROC_START_SPAWN ? "spawn" : "default";
}

_Noreturn void sleep_forever(void) {
  for (;;)
    sleep_seconds(3600);
}

mproc_start_method test_start_method = MPROC_START_DEFAULT;
int test_argc;
char **test_argv;

/* ------------------------------------------------------------- atomics */

#ifdef _MSC_VER
#include <intrin.h>
/* int and long are both 32 bits there. */
int test_load(const int *p) { return (int)_InterlockedOr((volatile long *)p, 0); }
void test_store(int *p, int v) { _InterlockedExchange((volatile long *)p, v); }
int test_add(int *p, int v) { return (int)_InterlockedExchangeAdd((volatile long *)p, v) + v; }
long test_load_long(const long *p) { return _InterlockedOr((volatile long *)p, 0); }
void test_store_long(long *p, long v) { _InterlockedExchange((volatile long *)p, v); }
bool test_cas_long(long *p, long *expected, long desired) {
  long seen = _InterlockedCompareExchange((volatile long *)p, desired, *expected);
  if (seen == *expected)
    return true;
  *expected = seen;
  return false;
}
#else
int test_load(const int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void test_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
int test_add(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
long test_load_long(const long *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void test_store_long(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
bool test_cas_long(long *p, long *expected, long desired) {
  return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST);
}
#endif

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

bool wait_pid_gone(long pid, double seconds) {
  for (double t = 0; t < seconds; t += 0.02) {
    if (pid_gone(pid))
      return true;
    sleep_seconds(0.02);
  }
  return pid_gone(pid);
}

void child_enter(void) {
  static const int sigs[] = {SIGFPE, SIGILL, SIGSEGV,
#ifdef SIGBUS
                             SIGBUS,
#endif
#ifdef SIGSYS
                             SIGSYS
#endif
  };
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
    if (r == MPROC_ENOTSUP) { /* fork on Windows: ctest reports it as skipped */
      printf("skipped: %s\n", mproc_last_error());
      return TEST_SKIPPED;
    }
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
