/* The common main of the test binaries, and helpers they share.
 *
 * Each test binary defines test_groups[] and test_ngroups; runner.c holds main(),
 * which calls mproc_init() first (in a child started with the spawn method that call
 * runs the child's function and never returns), applies --start=fork|spawn, and runs
 * the groups. A TEST_LARGE group runs only with --large, and then alone; a TEST_NO_INIT
 * group only with --no-init, which skips mproc_init() to test what happens without it.
 *
 * Functions that run in children must not use cmocka's assertions: under the fork
 * start method a failed assertion would longjmp into the copy of the runner that the
 * child inherited and run the rest of the suite there. They report through their exit
 * code or through a shared connection instead, and call child_enter() first. */
#ifndef MPROC_TESTS_RUNNER_H
#define MPROC_TESTS_RUNNER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include <cmocka.h>

#include "mproc.h"

typedef enum test_mode {
  TEST_NORMAL,  /* the default run */
  TEST_LARGE,   /* only with --large (messages of several GiB) */
  TEST_NO_INIT  /* only with --no-init, where main() does not call mproc_init() */
} test_mode;

typedef struct test_group {
  const char *name;
  const struct CMUnitTest *tests;
  size_t ntests;
  test_mode mode;
} test_group;

#define TEST_GROUP(name, tests, mode) {name, tests, sizeof(tests) / sizeof((tests)[0]), mode}

/* A helper role: with --role=NAME the binary runs fn(argc, argv) after mproc_init()
 * and the runner's options instead of the tests, and exits with what it returns. Tests
 * start the binary in a role to watch a whole program from outside (its exit, say). */
typedef struct test_role {
  const char *name;
  int (*fn)(int argc, char **argv);
} test_role;

/* Defined by each test binary (test_roles may be NULL). */
extern const test_group test_groups[];
extern const size_t test_ngroups;
extern const test_role *const test_roles;
extern const size_t test_nroles;

/* The start methods this system has: fork and spawn, or spawn alone on Windows. */
extern const mproc_start_method test_methods[];
extern const size_t test_nmethods;
const char *method_name(mproc_start_method m);

/* The exit status of a test binary with nothing to run here (--start=fork on Windows):
 * ctest's SKIP_RETURN_CODE, so that it is reported as skipped. */
#define TEST_SKIPPED 77

/* The start method given with --start= (MPROC_START_DEFAULT when none was). */
extern mproc_start_method test_start_method;
/* main()'s arguments after mproc_init() and the runner's options. */
extern int test_argc;
extern char **test_argv;

/* ---------------------------------------------------------------- data */

/* A position-dependent byte pattern: a shifted or truncated copy never matches. */
void fill_pattern(void *buf, size_t len, uint32_t seed);
/* The offset of the first byte that differs from the pattern, or SIZE_MAX if none. */
size_t check_pattern(const void *buf, size_t len, uint32_t seed);
/* Allocates len bytes (at least 1) filled with the pattern; fails the test if it cannot. */
unsigned char *pattern_alloc(size_t len, uint32_t seed);

/* ------------------------------------------------------ descriptors, processes */

/* mproc_pipe(a, b, duplex), failing the test if it fails. */
void make_pipe(mproc_conn **a, mproc_conn **b, bool duplex);

/* What the tests need of the OS, for POSIX and for Windows alike (runner.c). */

long test_getpid(void);
/* The parent's pid (Windows keeps it in the process list), or -1. */
long test_getppid(void);
/* Ends pid at once: SIGKILL, TerminateProcess. False when it could not be done. */
bool kill_hard(long pid);
/* Blocks the calling thread for good (a child that waits to be killed). */
_Noreturn void sleep_forever(void);
/* Ends the calling process with a real memory fault (SIGSEGV, an access violation):
 * raise() on Windows would only call the C runtime's handler. */
void crash_now(void);

/* The exit codes mproc reports for a child killed with mproc_process_kill() or
 * _terminate(), one that faulted (crash_now()) and one that called abort(). Windows
 * has no signals: mproc maps its own kill and terminate to -9 and -15 as Python does,
 * a fault is the exception code, abort() exits with 3. */
#define EXIT_KILLED (-9)
#define EXIT_TERMINATED (-15)
#ifdef _WIN32
#define EXIT_FAULT ((int)0xC0000005u)
#define EXIT_ABORT 3
#else
#define EXIT_FAULT (-11)
#define EXIT_ABORT (-6)
#endif

/* What a descriptor (a HANDLE on Windows) is: FD_CLOSED when it is not open,
 * FD_PRIVATE when started programs do not inherit it (CLOEXEC, not inheritable),
 * FD_INHERITABLE otherwise. */
typedef enum fd_kind { FD_CLOSED, FD_PRIVATE, FD_INHERITABLE } fd_kind;
fd_kind fd_state(intptr_t fd);
/* Writes all of buf to fd (a connection's raw end, from mproc_conn_fileno()). */
bool write_fd_all(intptr_t fd, const void *buf, size_t len);
/* A buffer of len bytes whose pages from offset fault_at on (a multiple of the page
 * size) cannot be touched: the process faults there (crash_now's way, without a core
 * file). NULL on failure. Never freed. */
unsigned char *faulting_area(size_t len, size_t fault_at);
/* Removes the named shared memory block name (as given to mproc_shm_create) if a test
 * left it behind. Windows removes a block with its last handle: nothing to do there. */
void shm_name_remove(const char *name);
/* The memory the system could give this process now, in bytes (0 if unknown). */
uint64_t available_memory(void);

/* This process's children, and how many of them are zombies (none on Windows, where
 * an ended process is not listed); -1 when they cannot be listed. */
int count_children(int *zombies);
/* This process's resident memory (working set) in KiB, or -1. */
long resident_kib(void);

/* The number of descriptors (handles on Windows) this process has open. */
int count_open_fds(void);
/* The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0 when there is none.
 * Windows shows no scheduler state: 'R' while the process runs, 0 once it has ended. */
char proc_state(long pid);
/* True when pid is no longer a running process (gone, or a zombie nobody reaped). */
bool pid_gone(long pid);
/* True when nothing is left of pid, not even a zombie (kill(pid, 0) fails with ESRCH);
 * on Windows, once it has ended. */
bool pid_reaped(long pid);
/* Polls pid_gone() for up to seconds. */
bool wait_pid_gone(long pid, double seconds);
/* Waits up to seconds for pid to be asleep in the kernel (blocked in a wait): only to
 * make it likely that a waiter is blocked before it is woken. Windows cannot show it,
 * so there it gives the process a fixed 0.2 s. */
bool wait_asleep(long pid, double seconds);
/* Raises the limit on open descriptors to at least need (up to the hard limit);
 * Windows has no such limit. */
bool raise_nofile(size_t need);
void sleep_seconds(double s);
/* Seconds on a monotonic clock. */
double now_seconds(void);
/* Lets other threads and processes run (sched_yield, SwitchToThread). */
void test_yield(void);

/* Sequentially consistent atomics on plain ints and longs, for counters that threads
 * or processes (in shared memory) update at once: GCC's builtins, or Interlocked*
 * with MSVC. test_add returns the new value; test_cas_long stores desired when *p is
 * *expected, and otherwise puts *p into *expected. */
int test_load(const int *p);
void test_store(int *p, int v);
int test_add(int *p, int v);
long test_load_long(const long *p);
void test_store_long(long *p, long v);
bool test_cas_long(long *p, long *expected, long desired);

/* A thread of the test program: pthreads on POSIX, the Windows API on Windows (where
 * MSVC has no pthreads). The struct must stay in place until joined. */
typedef struct test_thread {
#ifdef _WIN32
  void *handle;
  void *(*fn)(void *);
  void *arg, *ret;
#else
  pthread_t th;
#endif
} test_thread;
/* 0 when started. */
int test_thread_start(test_thread *t, void *(*fn)(void *), void *arg);
/* Waits for it; its return value in *ret when ret is not NULL. 0 when joined. */
int test_thread_join(test_thread *t, void **ret);

/* Resets the signal handlers cmocka installs (SIGSEGV, ...) to the default, so that a
 * forked child neither returns into the runner nor hides its crash. */
void child_enter(void);

/* Starts target with the run's start method (or method, when not DEFAULT), and
 * records the process so that the test's teardown kills it if the test failed. */
int tstart(mproc_process **p, mproc_fn target, const void *arg, size_t len, void *const *share,
           size_t nshare);
int tstart_opts(mproc_process **p, mproc_fn target, const void *arg, size_t len,
                const mproc_process_opts *opts);
/* Records a process started without tstart() (from another thread, say). */
void tstart_adopt(mproc_process *p);
/* Joins (up to timeout seconds); kills the process if it is still running then. Returns
 * what the first join returned. */
int tjoin(mproc_process *p, double timeout);
/* Frees p and forgets it. */
void tfree(mproc_process *p);
/* The exit code after tjoin(); INT_MIN if there is none. */
int texitcode(mproc_process *p);
/* Teardown for every test: kills and frees processes a failed test left behind. */
int test_teardown(void **state);

/* Runs this test binary with args (NULL-terminated, after argv[0]) in a new process
 * whose stdout is a pipe; returns its pid and the pipe's read end (a descriptor, or a
 * HANDLE) in *out_fd. */
long run_self(const char *const *args, intptr_t *out_fd);
/* Reads fd to its end (at most cap - 1 bytes, NUL-terminated), waiting at most seconds
 * in all; false on a timeout. Closes fd. */
bool read_to_end(intptr_t fd, char *buf, size_t cap, double seconds);
/* Waits for the process run_self() started last and returns its exit status (0-255),
 * or -1 when it did not exit normally. */
int wait_self(long pid);

/* Sends this process's stderr (and so a started child's) to a temporary file, until
 * stderr_capture_end(), which returns what was written (to free). */
void stderr_capture_begin(void);
char *stderr_capture_end(void);

/* A function of a library loaded now, after mproc_init(): a spawned child would not
 * have it. *name is a part of the library's name; NULL when there is none to load. */
void *late_library_symbol(const char **name);

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

/* Asserts that the last mproc error message mentions needle. */
#define assert_last_error_mentions(needle)                                                     \
  do {                                                                                       \
    const char *le_ = mproc_last_error();                                                    \
    if (le_ == NULL || strstr(le_, (needle)) == NULL)                                        \
      fail_msg("mproc_last_error() is \"%s\", expected it to mention \"%s\"",               \
               le_ ? le_ : "(null)", (needle));                                              \
  } while (0)

/* Asserts an mproc call returned code, printing both names and the detail otherwise. */
#define assert_mproc(call, code)                                                               \
  do {                                                                                       \
    int mr_ = (call);                                                                        \
    if (mr_ != (code))                                                                       \
      fail_msg("%s returned %d (%s), expected %s; last error: %s", #call, mr_,              \
               mproc_err_name(mr_), #code, mproc_last_error());                              \
  } while (0)

#define assert_ok(call) assert_mproc(call, 0)

#endif /* MPROC_TESTS_RUNNER_H */
