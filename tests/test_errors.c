/* Error codes and messages, version, runtime settings (one process, no children). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "runner.h"

/* The table itself, iterated: a code added to MPROC_ERRNO_MAP is tested without
 * touching this file. */
typedef struct err_row {
  int code;
  const char *name;
  const char *message;
  int index;
} err_row;

static const err_row err_table[] = {
#define ROW(name, msg) {MPROC_##name, "MPROC_" #name, msg, MPROC__ERRIDX_##name},
    MPROC_ERRNO_MAP(ROW)
#undef ROW
};
#define NERR (sizeof err_table / sizeof err_table[0])

static void test_codes_negative_distinct(void **state) {
  (void)state;
  assert_int_equal(NERR, MPROC__ERRIDX_COUNT);
  assert_int_equal(MPROC_OK, 0);
  for (size_t i = 0; i < NERR; i++) {
    assert_true(err_table[i].code < 0);
    /* The header promises -1 - position. */
    assert_int_equal(err_table[i].code, -1 - (int)i);
    assert_int_equal(err_table[i].index, (int)i);
    for (size_t k = 0; k < i; k++)
      assert_int_not_equal(err_table[i].code, err_table[k].code);
  }
}

static void test_strerror_and_name_for_every_code(void **state) {
  (void)state;
  for (size_t i = 0; i < NERR; i++) {
    const char *msg = mproc_strerror(err_table[i].code);
    const char *name = mproc_err_name(err_table[i].code);
    assert_non_null(msg);
    assert_non_null(name);
    assert_string_equal(msg, err_table[i].message);
    assert_string_equal(name, err_table[i].name);
    assert_true(strlen(msg) > 0);
  }
  /* Spot checks against the header's own examples. */
  assert_string_equal(mproc_strerror(MPROC_EINVAL), "invalid argument");
  assert_string_equal(mproc_err_name(MPROC_EINVAL), "MPROC_EINVAL");
}

static void test_unknown_codes(void **state) {
  static const int unknown[] = {-1 - (int)MPROC__ERRIDX_COUNT, -2 - (int)MPROC__ERRIDX_COUNT,
                                -1000, INT_MIN, 1, 2, 42, 1000, INT_MAX};
  (void)state;
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    assert_string_equal(mproc_strerror(unknown[i]), "unknown error");
    assert_string_equal(mproc_err_name(unknown[i]), "MPROC_UNKNOWN");
  }
}

/* 0 is MPROC_OK, which the enum has but MPROC_ERRNO_MAP does not. The header names
 * only the table's codes and "a value outside the table"; accept either reading, as
 * long as the two functions agree and 0 is never taken for one of the errors. */
static void test_zero_is_not_an_error(void **state) {
  const char *msg = mproc_strerror(0), *name = mproc_err_name(0);
  (void)state;
  assert_non_null(msg);
  assert_non_null(name);
  for (size_t i = 0; i < NERR; i++) {
    assert_string_not_equal(msg, err_table[i].message);
    assert_string_not_equal(name, err_table[i].name);
  }
  if (strcmp(name, "MPROC_UNKNOWN") == 0)
    assert_string_equal(msg, "unknown error");
  else
    assert_string_equal(name, "MPROC_OK");
}

static void test_last_error_after_einval(void **state) {
  (void)state;
  assert_mproc(mproc_conn_send(NULL, "x", 1), MPROC_EINVAL);
  assert_non_null(mproc_last_error());
  assert_true(strlen(mproc_last_error()) > 0);
  assert_last_error_mentions("mproc_conn_send");
  /* Not an MPROC_ESYS: no OS error behind it. */
  assert_int_equal(mproc_last_oserror(), 0);

  assert_mproc(mproc_conn_recv(NULL, NULL, NULL, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_conn_recv");
  assert_mproc(mproc_process_join(NULL, 0), MPROC_EINVAL);
  assert_true(strlen(mproc_last_error()) > 0);
}

#ifdef _WIN32
static void test_last_error_esys_has_os_error(void **state) {
  (void)state;
  /* The test runs into RLIMIT_NOFILE; Windows has no per-process limit on handles low
   * enough to reach. */
  skip();
}
#else
/* Runs out of descriptors on purpose to get a real MPROC_ESYS. */
static void test_last_error_esys_has_os_error(void **state) {
  struct rlimit saved, low;
  mproc_conn *a[64], *b[64];
  size_t n = 0;
  int r = 0;
  char expect[256];
  const char *msg;
  (void)state;

  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  low = saved;
  /* Enough for what is open now, so that a few pipes fail at once. */
  low.rlim_cur = (rlim_t)count_open_fds() + 4;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  while (n < 64 && (r = mproc_pipe(&a[n], &b[n], true)) == 0)
    n++;
  /* Read what the failure left before any other mproc call. */
  msg = mproc_last_error();
  snprintf(expect, sizeof expect, "%s", msg);
  {
    int oserr = mproc_last_oserror();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    for (size_t i = 0; i < n; i++) {
      mproc_conn_free(a[i]);
      mproc_conn_free(b[i]);
    }
    if (r != MPROC_ESYS)
      fail_msg("mproc_pipe at the descriptor limit returned %s, expected MPROC_ESYS (%s)",
               mproc_err_name(r), expect);
    assert_int_equal(oserr, EMFILE);
  }
  /* The header: "For MPROC_ESYS it ends with the OS error's text". */
  {
    const char *text = strerror(EMFILE);
    size_t lm = strlen(expect), lt = strlen(text);
    if (strstr(expect, text) == NULL)
      fail_msg("last error \"%s\" does not contain the OS error's text \"%s\"", expect, text);
    if (lm < lt || strcmp(expect + lm - lt, text) != 0)
      fail_msg("last error \"%s\" does not end with the OS error's text \"%s\" as the header "
               "promises",
               expect, text);
  }
}
#endif

typedef struct thread_result {
  char before[256];
  char after[256];
  int code;
} thread_result;

static void *thread_fails(void *arg) {
  thread_result *t = arg;
  snprintf(t->before, sizeof t->before, "%s", mproc_last_error());
  t->code = mproc_conn_poll(NULL, 0);
  snprintf(t->after, sizeof t->after, "%s", mproc_last_error());
  return NULL;
}

static void test_last_error_is_per_thread(void **state) {
  test_thread th;
  thread_result t;
  (void)state;

  memset(&t, 0, sizeof t);
  assert_mproc(mproc_conn_send(NULL, "x", 1), MPROC_EINVAL);
  assert_int_equal(test_thread_start(&th, thread_fails, &t), 0);
  assert_int_equal(test_thread_join(&th, NULL), 0);
  /* A fresh thread has no failure yet: "" if none. */
  assert_string_equal(t.before, "");
  assert_int_equal(t.code, MPROC_EINVAL);
  assert_non_null(strstr(t.after, "mproc_conn_poll"));
  /* This thread's message is untouched by the other thread's failure. */
  assert_last_error_mentions("mproc_conn_send");
}

static void test_version(void **state) {
  char expect[64];
  (void)state;
  assert_int_equal(mproc_version(), MPROC_VERSION_HEX);
  assert_int_equal((mproc_version() >> 16) & 0xff, MPROC_VERSION_MAJOR);
  assert_int_equal((mproc_version() >> 8) & 0xff, MPROC_VERSION_MINOR);
  assert_int_equal(mproc_version() & 0xff, MPROC_VERSION_PATCH);
  snprintf(expect, sizeof expect, "%d.%d.%d", MPROC_VERSION_MAJOR, MPROC_VERSION_MINOR,
           MPROC_VERSION_PATCH);
  assert_non_null(mproc_version_string());
  assert_string_equal(mproc_version_string(), expect);
}

/* mproc_getpid is the OS's process id; mproc_sleep sleeps at least as long as asked,
 * and not at all for 0, a negative time or NaN. */
static void test_getpid_and_sleep(void **state) {
  double t0;
  (void)state;
  assert_int_equal(mproc_getpid(), test_getpid());
  t0 = now_seconds();
  mproc_sleep(0.05);
  assert_true(now_seconds() - t0 >= 0.045);
  t0 = now_seconds();
  mproc_sleep(0);
  mproc_sleep(-1);
  mproc_sleep(NAN);
  assert_true(now_seconds() - t0 < 5); /* returned, rather than sleeping for ever */
}

/* "Number of CPUs usable by this process": the affinity mask, not the machine. */
#ifdef _WIN32
static void test_cpu_count(void **state) {
  DWORD_PTR saved, sys;
  int n, all = 0;
  (void)state;

  assert_true(mproc_cpu_count() >= 1);
  assert_true(GetProcessAffinityMask(GetCurrentProcess(), &saved, &sys));
  for (DWORD_PTR m = saved; m != 0; m &= m - 1)
    all++;
  assert_int_equal(mproc_cpu_count(), all);
  /* The lowest CPU of the mask alone. */
  assert_true(SetProcessAffinityMask(GetCurrentProcess(), saved & (~saved + 1)));
  n = mproc_cpu_count();
  assert_true(SetProcessAffinityMask(GetCurrentProcess(), saved));
  assert_int_equal(n, 1);
}
#else
static void test_cpu_count(void **state) {
  cpu_set_t saved, one;
  size_t first = CPU_SETSIZE;
  (void)state;

  assert_true(mproc_cpu_count() >= 1);
  assert_int_equal(sched_getaffinity(0, sizeof saved, &saved), 0);
  assert_int_equal(mproc_cpu_count(), CPU_COUNT(&saved));
  for (size_t c = 0; c < CPU_SETSIZE && first == CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &saved))
      first = c;
  assert_true(first < CPU_SETSIZE);
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
  {
    int n = mproc_cpu_count();
    assert_int_equal(sched_setaffinity(0, sizeof saved, &saved), 0);
    assert_int_equal(n, 1);
  }
}
#endif

#ifdef _WIN32
#define PLATFORM_DEFAULT MPROC_START_SPAWN
#else
#define PLATFORM_DEFAULT MPROC_START_FORK
#endif

static void test_start_method_round_trip(void **state) {
  mproc_start_method saved = mproc_get_start_method();
  (void)state;

  /* Never DEFAULT: the getter resolves it, to fork on POSIX, to spawn on Windows,
   * which has no fork and refuses it. */
  assert_int_not_equal(saved, MPROC_START_DEFAULT);
  assert_ok(mproc_set_start_method(MPROC_START_DEFAULT));
  assert_int_equal(mproc_get_start_method(), PLATFORM_DEFAULT);
  assert_ok(mproc_set_start_method(MPROC_START_SPAWN));
  assert_int_equal(mproc_get_start_method(), MPROC_START_SPAWN);
#ifdef _WIN32
  assert_mproc(mproc_set_start_method(MPROC_START_FORK), MPROC_ENOTSUP);
  assert_int_equal(mproc_get_start_method(), MPROC_START_SPAWN);
#else
  assert_ok(mproc_set_start_method(MPROC_START_FORK));
  assert_int_equal(mproc_get_start_method(), MPROC_START_FORK);
#endif
  assert_ok(mproc_set_start_method(MPROC_START_SPAWN));
  /* Back to the platform default. */
  assert_ok(mproc_set_start_method(MPROC_START_DEFAULT));
  assert_int_equal(mproc_get_start_method(), PLATFORM_DEFAULT);

  /* Bad values are refused and change nothing. */
  assert_ok(mproc_set_start_method(MPROC_START_SPAWN));
  assert_mproc(mproc_set_start_method((mproc_start_method)3), MPROC_EINVAL);
  assert_mproc(mproc_set_start_method((mproc_start_method)-1), MPROC_EINVAL);
  assert_mproc(mproc_set_start_method((mproc_start_method)1000), MPROC_EINVAL);
  assert_true(strlen(mproc_last_error()) > 0);
  assert_int_equal(mproc_get_start_method(), MPROC_START_SPAWN);

  assert_ok(mproc_set_start_method(saved));
  assert_int_equal(mproc_get_start_method(), saved);
}

static void test_init_again_and_bad_args(void **state) {
  int argc = test_argc;
  char **argv = test_argv;
  (void)state;
  /* A second call in the parent is harmless and still reports success. */
  assert_ok(mproc_init(&argc, &argv));
  assert_int_equal(argc, test_argc);
  assert_ptr_equal(argv, test_argv);
  assert_mproc(mproc_init(NULL, &argv), MPROC_EINVAL);
  assert_mproc(mproc_init(&argc, NULL), MPROC_EINVAL);
}

/* The context calls outside a child, with no context at all. */
static void test_ctx_calls_without_ctx(void **state) {
  (void)state;
  assert_null(mproc_shared(NULL, 0));
  assert_int_equal(mproc_shared_count(NULL), 0);
  assert_mproc(mproc_return(NULL, "x", 1), MPROC_EINVAL);
}

/* ---------------------------------------------- without mproc_init (--no-init) */

static int never_runs(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}

static void test_noinit_process_start(void **state) {
  mproc_process *p = NULL;
  (void)state;
  assert_mproc(mproc_process_start(&p, never_runs, NULL, 0, NULL), MPROC_ENOTINIT);
  assert_last_error_mentions("mproc_init");
  assert_null(p);
}

/* What needs no runtime works before mproc_init. */
static void test_noinit_pure_calls(void **state) {
  (void)state;
  assert_string_equal(mproc_strerror(MPROC_ENOTINIT), "mproc_init() has not been called");
  assert_string_equal(mproc_err_name(MPROC_ENOTINIT), "MPROC_ENOTINIT");
  assert_int_equal(mproc_version(), MPROC_VERSION_HEX);
  assert_true(mproc_cpu_count() >= 1);
}

static const struct CMUnitTest errors_tests[] = {
    T(test_codes_negative_distinct),
    T(test_strerror_and_name_for_every_code),
    T(test_unknown_codes),
    T(test_zero_is_not_an_error),
    T(test_last_error_after_einval),
    T(test_last_error_esys_has_os_error),
    T(test_last_error_is_per_thread),
    T(test_version),
    T(test_cpu_count),
    T(test_getpid_and_sleep),
    T(test_start_method_round_trip),
    T(test_init_again_and_bad_args),
    T(test_ctx_calls_without_ctx),
};

static const struct CMUnitTest noinit_tests[] = {
    T(test_noinit_process_start),
    T(test_noinit_pure_calls),
};

const test_group test_groups[] = {
    TEST_GROUP("errors", errors_tests, TEST_NORMAL),
    TEST_GROUP("errors without mproc_init", noinit_tests, TEST_NO_INIT),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
const test_role *const test_roles = NULL;
const size_t test_nroles = 0;
