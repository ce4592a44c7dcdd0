/* Process: start, join, exit codes, signals, names, arguments, daemons, descriptors,
 * zombies and orphans, under the run's start method (--start=fork or --start=spawn). */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#endif

#include "runner.h"

#define MiB ((size_t)1 << 20)

/* ---------------------------------------------------------------- helpers */

/* Receives one message as a NUL-terminated string (the caller frees it). */
static char *recv_str(mproc_conn *c) {
  void *data = NULL;
  size_t len = 0;
  char *s;
  assert_int_equal(mproc_conn_poll(c, 30), 1);
  assert_ok(mproc_conn_recv(c, &data, &len, 0));
  s = malloc(len + 1);
  assert_non_null(s);
  memcpy(s, data, len);
  s[len] = '\0';
  free(data);
  return s;
}

static long recv_long(mproc_conn *c) {
  char *s = recv_str(c);
  long v = strtol(s, NULL, 10);
  free(s);
  return v;
}

/* In a child: sends a formatted string; false on failure. */
static bool send_fmt(mproc_conn *c, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return n >= 0 && (size_t)n < sizeof buf && mproc_conn_send(c, buf, (size_t)n) == 0;
}

/* Starts target, joins it and returns its exit code. */
static int run_child(mproc_fn target, const void *arg, size_t len) {
  mproc_process *p;
  int code;
  assert_ok(tstart(&p, target, arg, len, NULL, 0));
  assert_ok(tjoin(p, 30));
  code = texitcode(p);
  tfree(p);
  return code;
}

/* No zombie left for pid: gone, or at least not in state Z. */
static void assert_not_zombie(long pid) {
  char s = proc_state(pid);
  if (s == 'Z')
    fail_msg("process %ld is a zombie", pid);
}

/* ------------------------------------------------------- child functions */

static int child_return_arg(mproc_ctx *ctx, const void *arg, size_t len) {
  int v;
  (void)ctx;
  child_enter();
  if (len != sizeof v)
    return 100;
  memcpy(&v, arg, sizeof v);
  return v;
}

static int child_exit_3(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  exit(3);
}

static int child_segv(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  crash_now();
  return 100;
}

static int child_abort(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  abort();
}

/* Says "ready" on its shared connection, then waits for end of file on it: it runs
 * until the parent closes its end (or kills it). */
static int child_block(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (c == NULL || mproc_conn_send(c, "ready", 5) != 0)
    return 10;
  for (;;) {
    int r = mproc_conn_recv(c, &data, &got, 0);
    if (r == MPROC_EOF)
      return 0;
    if (r != 0)
      return 11;
    free(data);
  }
}

/* Says "ready", then sleeps until a signal ends it. */
static int child_sleep_forever(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  if (c == NULL || mproc_conn_send(c, "ready", 5) != 0)
    return 10;
  sleep_forever();
}

/* Starts child_block with a fresh duplex pipe and waits for its "ready". The parent's
 * copy of the child's end is closed, so closing *parent_end lets the child finish. */
static mproc_process *start_blocked(mproc_fn target, mproc_conn **parent_end,
                                    const mproc_process_opts *base) {
  mproc_conn *a, *b;
  mproc_process *p;
  mproc_process_opts o = {0};
  void *share[1];
  char *s;
  if (base != NULL)
    o = *base;
  make_pipe(&a, &b, true);
  share[0] = b;
  o.share = share;
  o.nshare = 1;
  assert_ok(tstart_opts(&p, target, NULL, 0, &o));
  mproc_conn_free(b);
  s = recv_str(a);
  assert_string_equal(s, "ready");
  free(s);
  *parent_end = a;
  return p;
}

/* ------------------------------------------------------------------ tests */

static void test_start_join(void **state) {
  int zero = 0;
  mproc_process *p;
  (void)state;
  assert_ok(tstart(&p, child_return_arg, &zero, sizeof zero, NULL, 0));
  assert_ok(mproc_process_join(p, MPROC_FOREVER));
  assert_false(mproc_process_is_alive(p));
  assert_int_equal(texitcode(p), 0);
  /* Joining again, with any timeout, is fine. */
  assert_ok(mproc_process_join(p, 0));
  assert_ok(mproc_process_join(p, MPROC_FOREVER));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
}

static void test_exitcode_is_return_value(void **state) {
  static const int codes[] = {0, 1, 7, 42, 254, 255};
  (void)state;
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    assert_int_equal(run_child(child_return_arg, &codes[i], sizeof codes[i]), codes[i]);
}

static void test_exitcode_of_exit_call(void **state) {
  (void)state;
  assert_int_equal(run_child(child_exit_3, NULL, 0), 3);
}

static void test_exitcode_of_crash(void **state) {
  (void)state;
  assert_int_equal(run_child(child_segv, NULL, 0), EXIT_FAULT);
  assert_int_equal(run_child(child_abort, NULL, 0), EXIT_ABORT);
}

static void test_kill(void **state) {
  mproc_conn *a;
  mproc_process *p = start_blocked(child_sleep_forever, &a, NULL);
  (void)state;
  assert_true(mproc_process_is_alive(p));
  assert_ok(mproc_process_kill(p));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), EXIT_KILLED);
  assert_false(mproc_process_is_alive(p));
  /* Once it has exited, kill and terminate do nothing. */
  assert_ok(mproc_process_kill(p));
  assert_ok(mproc_process_terminate(p));
  assert_int_equal(texitcode(p), EXIT_KILLED);
  tfree(p);
  mproc_conn_free(a);
}

static void test_terminate(void **state) {
  mproc_conn *a;
  mproc_process *p = start_blocked(child_sleep_forever, &a, NULL);
  (void)state;
  assert_ok(mproc_process_terminate(p));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), EXIT_TERMINATED);
  tfree(p);
  mproc_conn_free(a);
}

static void test_join_timeout_while_running(void **state) {
  mproc_conn *a;
  mproc_process *p = start_blocked(child_block, &a, NULL);
  int code = 12345;
  (void)state;
  assert_mproc(mproc_process_join(p, 0), MPROC_ETIMEDOUT);
  assert_true(mproc_process_is_alive(p));
  assert_mproc(mproc_process_join(p, 0.1), MPROC_ETIMEDOUT);
  assert_true(mproc_process_is_alive(p));
  assert_mproc(mproc_process_exitcode(p, &code), MPROC_ESTATE);
  assert_int_equal(code, 12345);
  /* Let it finish. */
  assert_ok(mproc_conn_close(a));
  assert_ok(tjoin(p, 30));
  assert_false(mproc_process_is_alive(p));
  assert_ok(mproc_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  tfree(p);
  mproc_conn_free(a);
}

static int child_return_5(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  return 5;
}

/* is_alive notices the exit by itself (as Python's does), and exitcode follows. */
static void test_is_alive_without_join(void **state) {
  mproc_process *p;
  int i;
  (void)state;
  assert_ok(tstart(&p, child_return_5, NULL, 0, NULL, 0));
  for (i = 0; i < 1000 && mproc_process_is_alive(p); i++)
    sleep_seconds(0.02);
  assert_false(mproc_process_is_alive(p));
  assert_int_equal(texitcode(p), 5);
  assert_not_zombie(mproc_process_pid(p));
  tfree(p);
}

static int child_report_pids(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_getpid() != test_getpid())
    return 11;
  return send_fmt(c, "%ld %ld", test_getpid(), test_getppid()) ? 0 : 10;
}

static void test_pid(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  long pid, child_pid = 0, child_ppid = 0;
  char *s;
  (void)state;
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_report_pids, NULL, 0, share, 1));
  pid = mproc_process_pid(p);
  assert_true(pid > 0);
  assert_int_not_equal(pid, test_getpid());
  s = recv_str(a);
  assert_int_equal(sscanf(s, "%ld %ld", &child_pid, &child_ppid), 2);
  free(s);
  assert_int_equal(child_pid, pid);
  assert_int_equal(child_ppid, test_getpid());
  assert_int_equal(mproc_getpid(), test_getpid());
  assert_ok(tjoin(p, 30));
  /* The pid stays readable after the exit. */
  assert_int_equal(mproc_process_pid(p), pid);
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_report_name(mproc_ctx *ctx, const void *arg, size_t len) {
  const char *name = mproc_ctx_name(ctx);
  (void)arg;
  (void)len;
  child_enter();
  return send_fmt(mproc_shared(ctx, 0), "%s", name ? name : "(null)") ? 0 : 10;
}

/* Starts child_report_name and returns the name the child saw (to free). */
static char *name_seen_by_child(const mproc_process_opts *base, mproc_process **out) {
  mproc_conn *a, *b;
  mproc_process *p;
  mproc_process_opts o = {0};
  void *share[1];
  char *s;
  if (base != NULL)
    o = *base;
  make_pipe(&a, &b, true);
  share[0] = b;
  o.share = share;
  o.nshare = 1;
  assert_ok(tstart_opts(&p, child_report_name, NULL, 0, &o));
  s = recv_str(a);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  mproc_conn_free(a);
  mproc_conn_free(b);
  *out = p;
  return s;
}

static void test_default_name(void **state) {
  mproc_process *p1, *p2;
  char *s1 = name_seen_by_child(NULL, &p1), *s2 = name_seen_by_child(NULL, &p2);
  int n1 = 0, n2 = 0;
  char tail;
  (void)state;
  assert_non_null(mproc_process_name(p1));
  assert_string_equal(mproc_process_name(p1), s1);
  assert_string_equal(mproc_process_name(p2), s2);
  assert_int_equal(sscanf(s1, "Process-%d%c", &n1, &tail), 1);
  assert_int_equal(sscanf(s2, "Process-%d%c", &n2, &tail), 1);
  assert_true(n1 >= 1);
  /* Each process gets its own number. */
  assert_true(n2 > n1);
  tfree(p1);
  tfree(p2);
  free(s1);
  free(s2);
}

static void test_custom_name(void **state) {
  char name[] = "worker \xce\xb1 #1";
  mproc_process_opts o = {0};
  mproc_process *p;
  char *s;
  (void)state;
  o.name = name;
  s = name_seen_by_child(&o, &p);
  assert_string_equal(s, "worker \xce\xb1 #1");
  /* The handle keeps its own copy. */
  name[0] = 'X';
  assert_string_equal(mproc_process_name(p), "worker \xce\xb1 #1");
  tfree(p);
  free(s);
}

/* Sends back the argument: its length, whether it was NULL, then the bytes. */
static int child_echo_arg(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  child_enter();
  if (!send_fmt(c, "%zu", len))
    return 10;
  return mproc_conn_send(c, arg, len) == 0 ? 0 : 11;
}

static void check_arg_arrives(const void *arg, size_t len) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1], *data = NULL;
  size_t got = 0;
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_echo_arg, arg, len, share, 1));
  assert_int_equal(recv_long(a), (long)len);
  assert_int_equal(mproc_conn_poll(a, 30), 1);
  assert_ok(mproc_conn_recv(a, &data, &got, 0));
  assert_int_equal(got, len);
  if (len > 0)
    assert_memory_equal(data, arg, len);
  free(data);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_arguments_arrive_exactly(void **state) {
  unsigned char *big = pattern_alloc(MiB, 60);
  static const unsigned char bytes[] = {0, 1, 0xff, 0, 'a', '\n', 0};
  (void)state;
  check_arg_arrives(NULL, 0);
  check_arg_arrives("ignored", 0);
  check_arg_arrives("x", 1);
  check_arg_arrives(bytes, sizeof bytes);
  check_arg_arrives(big, MiB);
  free(big);
}

/* The child got a copy: changing the caller's buffer after start changes nothing. */
static void test_argument_is_copied(void **state) {
  int v = 77;
  mproc_process *p;
  (void)state;
  assert_ok(tstart(&p, child_return_arg, &v, sizeof v, NULL, 0));
  v = 1;
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 77);
  tfree(p);
}

static void test_daemon_flag(void **state) {
  mproc_conn *a;
  mproc_process_opts o = {0};
  mproc_process *p;
  (void)state;
  p = start_blocked(child_block, &a, NULL);
  assert_false(mproc_process_daemon(p));
  mproc_conn_close(a);
  assert_ok(tjoin(p, 30));
  tfree(p);
  mproc_conn_free(a);
  o.daemon = true;
  p = start_blocked(child_block, &a, &o);
  assert_true(mproc_process_daemon(p));
  mproc_conn_close(a);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
}

/* Freeing a running daemon terminates and reaps it. */
static void test_daemon_free_terminates(void **state) {
  mproc_conn *a;
  mproc_process_opts o = {0};
  mproc_process *p;
  long pid;
  bool gone = false;
  (void)state;
  o.daemon = true;
  p = start_blocked(child_sleep_forever, &a, &o);
  pid = mproc_process_pid(p);
  assert_true(pid > 0);
  tfree(p);
  /* Reaped, not merely dead: kill() fails with ESRCH only once no zombie is left. */
  for (int i = 0; i < 250 && !gone; i++) {
    gone = pid_reaped(pid);
    if (!gone)
      sleep_seconds(0.02);
  }
  if (!gone) {
    char s = proc_state(pid);
    kill_hard(pid);
    fail_msg("the freed daemon %ld is still there (state %c)", pid, s ? s : '?');
  }
  mproc_conn_free(a);
}

/* Freeing a running non-daemon leaves it running. */
static void test_nondaemon_free_leaves_running(void **state) {
  mproc_conn *a;
  mproc_process *p;
  long pid;
  char s;
  (void)state;
  p = start_blocked(child_block, &a, NULL);
  pid = mproc_process_pid(p);
  tfree(p);
  sleep_seconds(0.2);
  s = proc_state(pid);
  if (pid_gone(pid)) {
    kill_hard(pid);
    fail_msg("the freed non-daemon %ld is not running (state %c)", pid, s ? s : '?');
  }
  /* It still answers: closing our end lets it finish normally. */
  mproc_conn_free(a);
  if (!wait_pid_gone(pid, 10)) {
    kill_hard(pid);
    fail_msg("the freed non-daemon %ld did not finish after its pipe closed", pid);
  }
}

#ifdef _WIN32
/* Windows lists no process's handles, but a handle keeps its value when it is
 * inherited. The parent writes a marker into pipes the child must not hold and passes
 * the read ends' values; the child peeks at each value and reports any that shows its
 * marker: that one leaked. */
#define DECOYS 4
static const char decoy_marker[] = "decoy-7f3a";

static bool shows_marker(HANDLE h) {
  char buf[256];
  DWORD got = 0;
  if (GetFileType(h) != FILE_TYPE_PIPE || !PeekNamedPipe(h, buf, sizeof buf, &got, NULL, NULL))
    return false;
  for (DWORD i = 0; i + sizeof decoy_marker - 1 <= got; i++)
    if (memcmp(buf + i, decoy_marker, sizeof decoy_marker - 1) == 0)
      return true;
  return false;
}

static int child_check_decoys(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  intptr_t decoys[DECOYS];
  char out[512] = "";
  child_enter();
  if (len != sizeof decoys)
    return 10;
  memcpy(decoys, arg, len);
  if (fd_state(mproc_conn_fileno(c)) == FD_CLOSED)
    return 11;
  for (size_t i = 0; i < DECOYS; i++)
    if (shows_marker((HANDLE)decoys[i]))
      snprintf(out + strlen(out), sizeof out - strlen(out), "decoy %zu (%p); ", i,
               (void *)decoys[i]);
  return mproc_conn_send(c, out, strlen(out)) == 0 ? 0 : 12;
}

/* The child holds the shared connection's handle and none of the parent's other
 * pipes, inheritable or not, nor mproc's own. */
static void test_child_holds_only_its_descriptors(void **state) {
  SECURITY_ATTRIBUTES inherit = {sizeof inherit, NULL, TRUE};
  HANDLE rd[3], wr[3];
  intptr_t decoys[DECOYS];
  mproc_conn *da, *db, *a, *b;
  mproc_process *p;
  void *share[1];
  char *leaked;
  DWORD done;
  (void)state;

  /* Two inheritable pipes and a private one, each holding the marker. */
  for (int i = 0; i < 3; i++) {
    assert_true(CreatePipe(&rd[i], &wr[i], i < 2 ? &inherit : NULL, 0));
    assert_true(WriteFile(wr[i], decoy_marker, sizeof decoy_marker - 1, &done, NULL));
    decoys[i] = (intptr_t)rd[i];
  }
  make_pipe(&da, &db, false);
  assert_ok(mproc_conn_send(db, decoy_marker, sizeof decoy_marker - 1));
  decoys[3] = mproc_conn_fileno(da);
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_check_decoys, decoys, sizeof decoys, share, 1));
  leaked = recv_str(a);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  for (int i = 0; i < 3; i++) {
    CloseHandle(rd[i]);
    CloseHandle(wr[i]);
  }
  mproc_conn_free(da);
  mproc_conn_free(db);
  mproc_conn_free(a);
  mproc_conn_free(b);
  if (leaked[0] != '\0')
    fail_msg("the child holds handles not meant for it: %s", leaked);
  free(leaked);
}
#else
/* Lists /proc/self/fd as "fd=target" lines, then "conn=N" for the shared end. */
static int child_list_fds(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c = mproc_shared(ctx, 0);
  char out[8192];
  size_t n = 0;
  DIR *d;
  struct dirent *e;
  (void)arg;
  (void)len;
  child_enter();
  d = opendir("/proc/self/fd");
  if (d == NULL)
    return 10;
  while ((e = readdir(d)) != NULL) {
    char path[300], target[256];
    ssize_t k;
    if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
      continue;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    k = readlink(path, target, sizeof target - 1);
    target[k < 0 ? 0 : k] = '\0';
    n += (size_t)snprintf(out + n, sizeof out - n, "%s=%s\n", e->d_name, target);
    if (n >= sizeof out)
      return 11;
  }
  closedir(d);
  n += (size_t)snprintf(out + n, sizeof out - n, "conn=%ld\n", (long)mproc_conn_fileno(c));
  if (n >= sizeof out)
    return 12;
  return mproc_conn_send(c, out, n) == 0 ? 0 : 13;
}

/* The child holds 0-2 and the shared connection's descriptor, nothing else: not the
 * parent's other pipes, inheritable or not, nor mproc's own. */
static void test_child_holds_only_its_descriptors(void **state) {
  int decoy_inh[2], decoy_inh2[2], decoy_cloexec[2];
  mproc_conn *da, *db, *a, *b;
  mproc_process *p;
  void *share[1];
  char *list, *line, *save = NULL, extra[4096] = "";
  long conn_fd = -2;
  int shared_seen = 0;
  (void)state;

  assert_int_equal(pipe(decoy_inh), 0);
  assert_int_equal(pipe(decoy_inh2), 0);
  assert_int_equal(pipe2(decoy_cloexec, O_CLOEXEC), 0);
  make_pipe(&da, &db, false);
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_list_fds, NULL, 0, share, 1));
  list = recv_str(a);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);

  /* "conn=N" names the shared end's descriptor in the child; it comes last. */
  line = strstr(list, "conn=");
  assert_non_null(line);
  assert_int_equal(sscanf(line, "conn=%ld", &conn_fd), 1);
  assert_true(conn_fd >= 0);
  *line = '\0';
  for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    long fd = strtol(line, NULL, 10);
    if (fd <= 2)
      continue;
    if (fd == conn_fd) {
      shared_seen++;
      continue;
    }
    strncat(extra, line, sizeof extra - strlen(extra) - 3);
    strcat(extra, "; ");
  }
  free(list);
  close(decoy_inh[0]);
  close(decoy_inh[1]);
  close(decoy_inh2[0]);
  close(decoy_inh2[1]);
  close(decoy_cloexec[0]);
  close(decoy_cloexec[1]);
  mproc_conn_free(da);
  mproc_conn_free(db);
  mproc_conn_free(a);
  mproc_conn_free(b);
  assert_int_equal(shared_seen, 1);
  if (extra[0] != '\0')
    fail_msg("the child holds descriptors not meant for it: %s", extra);
}
#endif

typedef struct thread_start {
  void *share[1];
  mproc_process *p;
  int r;
} thread_start;

static void *start_from_thread(void *arg) {
  thread_start *t = arg;
  mproc_process_opts o = {0};
  o.start_method = test_start_method;
  o.share = t->share;
  o.nshare = 1;
  t->r = mproc_process_start(&t->p, child_block, NULL, 0, &o);
  return NULL;
}

/* A child started by a thread that then ends lives on: only the parent process's end
 * ends it (Linux's PR_SET_PDEATHSIG fires when the creating thread exits). */
static void test_child_outlives_starting_thread(void **state) {
  mproc_conn *a, *b;
  test_thread th;
  thread_start t;
  char *s;
  (void)state;
  memset(&t, 0, sizeof t);
  make_pipe(&a, &b, true);
  t.share[0] = b;
  assert_int_equal(test_thread_start(&th, start_from_thread, &t), 0);
  assert_int_equal(test_thread_join(&th, NULL), 0);
  assert_ok(t.r);
  tstart_adopt(t.p);
  mproc_conn_free(b);
  s = recv_str(a);
  assert_string_equal(s, "ready");
  free(s);
  sleep_seconds(0.3);
  assert_true(mproc_process_is_alive(t.p));
  assert_mproc(mproc_process_join(t.p, 0), MPROC_ETIMEDOUT);
  /* It still works normally: closing the pipe ends it with 0. */
  assert_ok(mproc_conn_close(a));
  assert_ok(tjoin(t.p, 30));
  assert_int_equal(texitcode(t.p), 0);
  tfree(t.p);
  mproc_conn_free(a);
}

static void test_no_zombie_after_join(void **state) {
  mproc_process *p;
  int v = 9;
  long pid;
  (void)state;
  assert_ok(tstart(&p, child_return_arg, &v, sizeof v, NULL, 0));
  pid = mproc_process_pid(p);
  assert_ok(tjoin(p, 30));
  assert_not_zombie(pid);
  assert_true(pid_reaped(pid));
  tfree(p);
}

/* B: reports its pid, then sleeps until it dies. */
static int child_grandchild(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  if (!send_fmt(mproc_shared(ctx, 0), "%ld", test_getpid()))
    return 10;
  sleep_forever();
}

/* A: starts B with the method given in arg, then sleeps until killed. */
static int child_intermediate(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_process_opts o = {0};
  mproc_process *b;
  void *share[1];
  child_enter();
  if (len != sizeof o.start_method)
    return 10;
  memcpy(&o.start_method, arg, len);
  share[0] = mproc_shared(ctx, 0);
  o.share = share;
  o.nshare = 1;
  if (mproc_process_start(&b, child_grandchild, NULL, 0, &o) != 0) {
    send_fmt(share[0], "A could not start B: %s", mproc_last_error());
    return 11;
  }
  sleep_forever();
}

/* A child whose parent dies exits too: A is killed, B (started by A with method) must
 * go. */
static void check_orphan_exits(mproc_start_method method) {
  mproc_conn *a, *b;
  mproc_process *pa;
  void *share[1];
  long bpid;
  bool gone;
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&pa, child_intermediate, &method, sizeof method, share, 1));
  {
    /* B's pid, or why A could not start B. */
    char *s = recv_str(a);
    bpid = strtol(s, NULL, 10);
    if (bpid <= 0) {
      char msg[512];
      snprintf(msg, sizeof msg, "grandchild by %s: %s",
               method_name(method), s);
      free(s);
      mproc_conn_free(a);
      mproc_conn_free(b);
      fail_msg("%s", msg);
    }
    free(s);
  }
  assert_int_not_equal(bpid, mproc_process_pid(pa));
  assert_ok(mproc_process_kill(pa));
  assert_ok(tjoin(pa, 30));
  assert_int_equal(texitcode(pa), EXIT_KILLED);
  tfree(pa);
  gone = wait_pid_gone(bpid, 5);
  mproc_conn_free(a);
  mproc_conn_free(b);
  if (!gone) {
    kill_hard(bpid);
    fail_msg("grandchild %ld (by %s) outlived its killed parent", bpid,
             method_name(method));
  }
}

static void test_orphan_exits_with_parent(void **state) {
  (void)state;
  for (size_t i = 0; i < test_nmethods; i++)
    check_orphan_exits(test_methods[i]);
}

/* B: says hello on its shared connection. */
static int child_hello(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  return mproc_conn_send(mproc_shared(ctx, 0), "hello from B", 12) == 0 ? 0 : 10;
}

/* A: makes its own pipe, starts B with the method in arg, hears from it, joins it, and
 * reports "ok" or what failed on the test's connection. */
static int child_nested(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *up = mproc_shared(ctx, 0), *x, *y;
  mproc_process_opts o = {0};
  mproc_process *b;
  void *share[1], *data;
  size_t got;
  int code;
  child_enter();
  if (len != sizeof o.start_method)
    return 10;
  memcpy(&o.start_method, arg, len);
  if (mproc_pipe(&x, &y, true) != 0)
    return send_fmt(up, "mproc_pipe in A: %s", mproc_last_error()) ? 11 : 12;
  share[0] = y;
  o.share = share;
  o.nshare = 1;
  if (mproc_process_start(&b, child_hello, NULL, 0, &o) != 0)
    return send_fmt(up, "start in A: %s", mproc_last_error()) ? 13 : 14;
  if (mproc_conn_poll(x, 30) != 1 || mproc_conn_recv(x, &data, &got, 0) != 0)
    return send_fmt(up, "recv in A: %s", mproc_last_error()) ? 15 : 16;
  if (got != 12 || memcmp(data, "hello from B", 12) != 0)
    return send_fmt(up, "A got the wrong message") ? 17 : 18;
  free(data);
  if (mproc_process_join(b, 30) != 0 || mproc_process_exitcode(b, &code) != 0 || code != 0)
    return send_fmt(up, "join in A: %s", mproc_last_error()) ? 19 : 20;
  mproc_process_free(b);
  mproc_conn_free(x);
  mproc_conn_free(y);
  return send_fmt(up, "ok") ? 0 : 21;
}

/* B: works a while, then reports on its shared connection. */
static int child_report_late(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  sleep_seconds(0.5);
  return mproc_conn_send(mproc_shared(ctx, 0), "B done", 6) == 0 ? 0 : 10;
}

/* A: starts B (non-daemon, method in arg) and returns at once, without joining it. */
static int child_leave_child_running(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_process_opts o = {0};
  mproc_process *b;
  void *share[1];
  child_enter();
  if (len != sizeof o.start_method)
    return 10;
  memcpy(&o.start_method, arg, len);
  share[0] = mproc_shared(ctx, 0);
  o.share = share;
  o.nshare = 1;
  if (mproc_process_start(&b, child_report_late, NULL, 0, &o) != 0) {
    send_fmt(share[0], "A could not start B: %s", mproc_last_error());
    return 11;
  }
  return 0;
}

/* A child's end, like the program's, waits for its non-daemon children: B finishes its
 * work instead of dying with A. */
static void test_child_exit_waits_for_its_children(void **state) {
  (void)state;
  for (size_t i = 0; i < test_nmethods; i++) {
    mproc_conn *a, *b;
    mproc_process *p;
    void *share[1];
    char *s = NULL;
    int ready;
    make_pipe(&a, &b, true);
    share[0] = b;
    assert_ok(tstart(&p, child_leave_child_running, &test_methods[i], sizeof test_methods[i], share, 1));
    mproc_conn_free(b);
    ready = mproc_conn_poll(a, 30);
    if (ready == 1) {
      void *data = NULL;
      size_t len = 0;
      int r = mproc_conn_recv(a, &data, &len, 0);
      if (r == 0) {
        s = calloc(1, len + 1);
        memcpy(s, data, len);
        free(data);
      }
    }
    assert_ok(tjoin(p, 30));
    tfree(p);
    mproc_conn_free(a);
    if (s == NULL || strcmp(s, "B done") != 0) {
      char msg[600];
      snprintf(msg, sizeof msg, "grandchild by %s: %s", method_name(test_methods[i]),
               s ? s : "no message: B died with A");
      free(s);
      fail_msg("%s", msg);
    }
    free(s);
  }
}

/* A child starts processes of its own, with either method. */
static void test_nested_start(void **state) {
  (void)state;
  for (size_t i = 0; i < test_nmethods; i++) {
    mproc_conn *a, *b;
    mproc_process *p;
    void *share[1];
    char *s;
    make_pipe(&a, &b, true);
    share[0] = b;
    assert_ok(tstart(&p, child_nested, &test_methods[i], sizeof test_methods[i], share, 1));
    s = recv_str(a);
    if (strcmp(s, "ok") != 0) {
      char msg[600];
      snprintf(msg, sizeof msg, "grandchild by %s: %s", method_name(test_methods[i]), s);
      free(s);
      mproc_conn_free(a);
      mproc_conn_free(b);
      fail_msg("%s", msg);
    }
    free(s);
    assert_ok(tjoin(p, 30));
    assert_int_equal(texitcode(p), 0);
    tfree(p);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

static void test_null_handles(void **state) {
  mproc_process *p = NULL;
  int code = 0, v = 0;
  (void)state;
  assert_mproc(mproc_process_start(NULL, child_return_arg, &v, sizeof v, NULL), MPROC_EINVAL);
  assert_mproc(mproc_process_start(&p, NULL, NULL, 0, NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_process_start");
  assert_null(p);
  /* Bytes announced but no buffer. */
  assert_mproc(mproc_process_start(&p, child_return_arg, NULL, 4, NULL), MPROC_EINVAL);
  assert_null(p);
  assert_mproc(mproc_process_join(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_process_join(NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_mproc(mproc_process_terminate(NULL), MPROC_EINVAL);
  assert_mproc(mproc_process_kill(NULL), MPROC_EINVAL);
  assert_mproc(mproc_process_exitcode(NULL, &code), MPROC_EINVAL);
  assert_false(mproc_process_is_alive(NULL));
  assert_false(mproc_process_daemon(NULL));
  assert_true(mproc_process_pid(NULL) <= 0);
  mproc_process_free(NULL);

  assert_ok(tstart(&p, child_return_arg, &v, sizeof v, NULL, 0));
  assert_ok(tjoin(p, 30));
  assert_mproc(mproc_process_exitcode(p, NULL), MPROC_EINVAL);
  tfree(p);
}

static void test_bad_options(void **state) {
  mproc_process *p = NULL;
  mproc_process_opts o = {0};
  mproc_conn *a, *b;
  void *share[2];
  int not_a_handle = 0, v = 0;
  /* Starts like an mproc handle (its magic "mpro") but names no kind of object. */
  struct {
    uint32_t magic, kind;
  } lookalike = {0x6d70726fu, 99};
  (void)state;

  o.start_method = (mproc_start_method)9;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  assert_null(p);

  memset(&o, 0, sizeof o);
  share[0] = &not_a_handle;
  o.share = share;
  o.nshare = 1;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  assert_true(strlen(mproc_last_error()) > 0);
  assert_null(p);

  share[0] = &lookalike;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  assert_null(p);

  share[0] = NULL;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  o.share = NULL;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  assert_null(p);

  /* A good handle after a bad one: still refused, nothing started. */
  make_pipe(&a, &b, true);
  share[0] = b;
  share[1] = &not_a_handle;
  o.share = share;
  o.nshare = 2;
  assert_mproc(mproc_process_start(&p, child_return_arg, &v, sizeof v, &o), MPROC_EINVAL);
  assert_null(p);
  /* A closed connection cannot be handed over. */
  assert_ok(mproc_conn_close(b));
  o.nshare = 1;
  {
    int r = mproc_process_start(&p, child_return_arg, &v, sizeof v, &o);
    assert_true(r < 0);
  }
  assert_null(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

/* Whether needle is in haystack, letters compared without case. */
static bool contains_nocase(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  for (; *haystack != '\0'; haystack++) {
    size_t i = 0;
    while (i < n && haystack[i] != '\0' &&
           tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n)
      return true;
  }
  return n == 0;
}

/* In spawn mode the function travels as (module, offset); an address in no module
 * fails at start, naming the address. */
static void test_spawn_unresolvable_target(void **state) {
  mproc_process *p = NULL;
  mproc_process_opts o = {0};
  unsigned char *heap = malloc(64);
  char hex[32];
  (void)state;
  assert_non_null(heap);
  o.start_method = MPROC_START_SPAWN;

  assert_mproc(mproc_process_start(&p, (mproc_fn)(uintptr_t)0x10, NULL, 0, &o),
               MPROC_ENOTFOUND);
  assert_null(p);
  assert_last_error_mentions("0x10");

  assert_mproc(mproc_process_start(&p, (mproc_fn)(void *)(heap + 16), NULL, 0, &o),
               MPROC_ENOTFOUND);
  assert_null(p);
  snprintf(hex, sizeof hex, "%" PRIxPTR, (uintptr_t)(heap + 16));
  if (!contains_nocase(mproc_last_error(), hex))
    fail_msg("last error \"%s\" does not name the address 0x%s", mproc_last_error(), hex);
  free(heap);
}

/* A function of a shared library loaded at start-up resolves in a spawned child too:
 * mproc_return has the signature of an mproc_fn, and in a Process it fails, which
 * exits 1. */
static void test_target_in_shared_library(void **state) {
  (void)state;
  assert_int_equal(run_child(mproc_return, "x", 1), 1);
}

/* A library dlopen()ed after mproc_init is not in a spawned child: refused at start. */
static void test_spawn_target_in_dlopened_library(void **state) {
  mproc_process *p = NULL;
  mproc_process_opts o = {0};
  const char *name;
  void *sym = late_library_symbol(&name);
  (void)state;
  if (sym == NULL)
    skip();
  o.start_method = MPROC_START_SPAWN;
  assert_mproc(mproc_process_start(&p, (mproc_fn)sym, NULL, 0, &o), MPROC_ENOTFOUND);
  assert_null(p);
  if (!contains_nocase(mproc_last_error(), name))
    fail_msg("last error \"%s\" does not name the library %s", mproc_last_error(), name);
}

static int child_return_in_process(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  return mproc_return(ctx, "x", 1) == MPROC_ESTATE ? 42 : 1;
}

static void test_return_in_process_is_estate(void **state) {
  (void)state;
  assert_int_equal(run_child(child_return_in_process, NULL, 0), 42);
}

static int child_fail_checked(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  return mproc_fail(ctx, "boom %d from the child", 5) == MPROC_EFAILED ? 42 : 1;
}

static int child_fail_returned(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  return mproc_fail(ctx, "returned failure");
}

/* Runs target with the child's stderr in a file; returns the exit code and what was
 * written (to free). */
static int run_capturing_stderr(mproc_fn target, char **text) {
  int code;
  stderr_capture_begin();
  code = run_child(target, NULL, 0);
  *text = stderr_capture_end();
  return code;
}

static void test_fail_in_process(void **state) {
  char *text;
  (void)state;
  /* mproc_fail returns MPROC_EFAILED and writes the message to stderr. */
  assert_int_equal(run_capturing_stderr(child_fail_checked, &text), 42);
  if (strstr(text, "boom 5 from the child") == NULL)
    fail_msg("the child's stderr \"%s\" lacks the mproc_fail message", text);
  free(text);
  /* `return mproc_fail(...)` ends the process with a failure status. */
  {
    int code = run_capturing_stderr(child_fail_returned, &text);
    free(text);
    assert_int_not_equal(code, 0);
    assert_true(code > 0);
  }
}

static int child_check_ctx(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_shared_count(ctx) != 1)
    return 10;
  if (mproc_shared(ctx, 1) != NULL || mproc_shared(ctx, (size_t)-1) != NULL)
    return 11;
  c = mproc_shared(ctx, 0);
  if (c == NULL || mproc_conn_readable(c) || !mproc_conn_writable(c))
    return 12;
  if (mproc_conn_fileno(c) < 0)
    return 13;
  if (mproc_ctx_name(ctx) == NULL || mproc_ctx_name(ctx)[0] == '\0')
    return 14;
  return mproc_conn_send(c, "from the child", 14) == 0 ? 0 : 15;
}

/* What the context gives a child: the share list in order, with the same kind of end. */
static void test_ctx_in_child(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  char *s;
  (void)state;
  make_pipe(&a, &b, false);
  share[0] = b;
  assert_ok(tstart(&p, child_check_ctx, NULL, 0, share, 1));
  s = recv_str(a);
  assert_string_equal(s, "from the child");
  free(s);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_zero(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  return 0;
}

static void test_many_processes(void **state) {
  enum { N = 50 };
  mproc_process *p[N];
  long pids[N];
  int before, after;
  (void)state;
  before = count_open_fds();
  for (int i = 0; i < N; i++) {
    assert_ok(tstart(&p[i], child_zero, NULL, 0, NULL, 0));
    pids[i] = mproc_process_pid(p[i]);
  }
  for (int i = 0; i < N; i++) {
    assert_ok(tjoin(p[i], 30));
    assert_int_equal(texitcode(p[i]), 0);
    assert_not_zombie(pids[i]);
  }
  for (int i = 0; i < N; i++)
    tfree(p[i]);
  after = count_open_fds();
  assert_int_equal(after, before);
}

/* A forked child must not write out what the parent had buffered in stdio before the
 * fork (the parent writes it too): output would appear twice. */
#ifdef _WIN32
static void test_buffered_stdout_not_duplicated(void **state) {
  (void)state;
  /* Only a forked child could write out the parent's stdio buffer. */
  skip();
}
#else
static void test_buffered_stdout_not_duplicated(void **state) {
  int pfd[2], saved;
  char buf[256];
  size_t n = 0;
  ssize_t k;
  (void)state;
  fflush(stdout);
  assert_int_equal(pipe(pfd), 0);
  saved = dup(1);
  assert_true(saved >= 0);
  assert_true(dup2(pfd[1], 1) == 1);
  close(pfd[1]);
  fputs("MARK", stdout); /* no newline: stays in the buffer */
  {
    mproc_process *p;
    int r = tstart(&p, child_zero, NULL, 0, NULL, 0);
    if (r == 0) {
      tjoin(p, 30);
      tfree(p);
    }
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    assert_ok(r);
  }
  while (n < sizeof buf - 1 && (k = read(pfd[0], buf + n, sizeof buf - 1 - n)) > 0)
    n += (size_t)k;
  close(pfd[0]);
  buf[n] = '\0';
  assert_string_equal(buf, "MARK");
}
#endif

/* ------------------------------------------------ the program's exit (roles) */

static int child_pause(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  sleep_forever();
  return 0; /* not reached */
}

static int child_finish_late(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  child_enter();
  sleep_seconds(0.5);
  printf("N done\n");
  fflush(stdout);
  return 0;
}

/* A program that starts a daemon D and a non-daemon N and returns from main without
 * joining them (free_them: after freeing their handles). */
static int exit_with_children(bool free_them) {
  mproc_process_opts o = {0};
  mproc_process *d, *n;
  int r;
  o.daemon = true;
  if ((r = mproc_process_start(&d, child_pause, NULL, 0, &o)) != 0 ||
      (r = mproc_process_start(&n, child_finish_late, NULL, 0, NULL)) != 0) {
    fprintf(stderr, "start failed: %s\n", mproc_last_error());
    return 3;
  }
  printf("D=%ld N=%ld\n", mproc_process_pid(d), mproc_process_pid(n));
  fflush(stdout);
  if (free_them) {
    mproc_process_free(d);
    mproc_process_free(n);
  }
  return 0;
}

static int role_exit_keeping_handles(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return exit_with_children(false);
}

static int role_exit_after_free(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return exit_with_children(true);
}

static const test_role roles[] = {
    {"exit-keeping-handles", role_exit_keeping_handles},
    {"exit-after-free", role_exit_after_free},
};
const test_role *const test_roles = roles;
const size_t test_nroles = sizeof roles / sizeof roles[0];

/* At exit a program waits for its non-daemon children (N finishes its work) and
 * terminates its daemons, as Python does. */
static void check_exit(const char *role) {
  char role_arg[64], out[4096];
  const char *args[3] = {role_arg, NULL, NULL};
  long pid, dpid = 0, npid = 0;
  intptr_t fd;
  int status;
  bool finished;
  snprintf(role_arg, sizeof role_arg, "--role=%s", role);
  if (test_start_method == MPROC_START_FORK)
    args[1] = "--start=fork";
  else if (test_start_method == MPROC_START_SPAWN)
    args[1] = "--start=spawn";
  pid = run_self(args, &fd);
  finished = read_to_end(fd, out, sizeof out, 30);
  if (!finished)
    kill_hard(pid);
  status = wait_self(pid);
  if (!finished)
    fail_msg("%s: the program did not finish; its output: %s", role, out);
  assert_int_equal(status, 0);
  assert_int_equal(sscanf(out, "D=%ld N=%ld", &dpid, &npid), 2);
  if (strstr(out, "N done") == NULL)
    fail_msg("%s: the non-daemon child was not waited for (output: %s)", role, out);
  assert_true(wait_pid_gone(dpid, 5));
  assert_true(wait_pid_gone(npid, 5));
}

static void test_exit_waits_for_children_and_ends_daemons(void **state) {
  (void)state;
  check_exit("exit-keeping-handles");
  check_exit("exit-after-free");
}

static const struct CMUnitTest process_tests[] = {
    T(test_start_join),
    T(test_exitcode_is_return_value),
    T(test_exitcode_of_exit_call),
    T(test_exitcode_of_crash),
    T(test_kill),
    T(test_terminate),
    T(test_join_timeout_while_running),
    T(test_is_alive_without_join),
    T(test_pid),
    T(test_default_name),
    T(test_custom_name),
    T(test_arguments_arrive_exactly),
    T(test_argument_is_copied),
    T(test_daemon_flag),
    T(test_daemon_free_terminates),
    T(test_nondaemon_free_leaves_running),
    T(test_child_holds_only_its_descriptors),
    T(test_child_outlives_starting_thread),
    T(test_no_zombie_after_join),
    T(test_orphan_exits_with_parent),
    T(test_nested_start),
    T(test_child_exit_waits_for_its_children),
    T(test_null_handles),
    T(test_bad_options),
    T(test_spawn_unresolvable_target),
    T(test_target_in_shared_library),
    T(test_spawn_target_in_dlopened_library),
    T(test_return_in_process_is_estate),
    T(test_fail_in_process),
    T(test_ctx_in_child),
    T(test_many_processes),
    T(test_buffered_stdout_not_duplicated),
    T(test_exit_waits_for_children_and_ends_daemons),
};

const test_group test_groups[] = {
    TEST_GROUP("process", process_tests, TEST_NORMAL),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
