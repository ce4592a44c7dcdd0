/*
 * Tests of the Windows platform layer (platform/win32) on its own, without APR or
 * CMocka: built with src/error.c and the platform files only, and run under Windows
 * or wine by tests/win32/run.sh. Like the CMocka tests, the program re-executes
 * itself for the child roles (the spawn seam's own command line).
 *
 * Ends with "N passed, N failed"; exits 1 if anything failed.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "harness.h"

#include <shellapi.h>

static char *exe;

/* ---------------------------------------------------- children's side */

/* The bootstrap a test child gets: "role lifeline h1 h2 ...", handle values as the
 * child sees them. */
typedef struct boot {
  char role[32];
  mproc__fd life;
  mproc__fd h[8];
  int nh;
  char arg[200];
} child_boot;

static int read_all(mproc__fd fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    size_t got;
    int r = mproc__os_read(fd, p, len, &got);
    if (r != 0)
      return r;
    if (got == 0)
      return MPROC_EOF;
    p += got;
    len -= got;
  }
  return 0;
}

static int write_u32(mproc__fd fd, uint32_t v) { return mproc__os_write2(fd, false, &v, 4, NULL, 0); }

static uint32_t read_u32(mproc__fd fd) {
  uint32_t v = 0xffffffffu;
  if (read_all(fd, &v, 4) != 0)
    return 0xffffffffu;
  return v;
}

static int child_echo(child_boot *b) {
  /* h0: read end, h1: write end; echo one message, exit 7. */
  char buf[256];
  uint32_t n = read_u32(b->h[0]);
  if (n > sizeof buf || read_all(b->h[0], buf, n) != 0)
    return 2;
  if (mproc__os_write2(b->h[1], false, &n, 4, buf, n) != 0)
    return 3;
  return 7;
}

static int child_duplex(child_boot *b) {
  /* h0: a duplex end: read a number, answer it doubled. */
  uint32_t v = read_u32(b->h[0]);
  return write_u32(b->h[0], v * 2) == 0 ? 0 : 1;
}

static int child_sleep(child_boot *b) {
  (void)b;
  Sleep(60000);
  return 0;
}

/* h0: shm of 4096 bytes; checks the parent's pattern and answers at offset 2048. */
static int child_shm(child_boot *b) {
  unsigned char *p;
  if (mproc__os_shm_map(b->h[0], 4096, (void **)&p) != 0)
    return 2;
  for (int i = 0; i < 1024; i++)
    if (p[i] != (unsigned char)(i * 7))
      return 3;
  memcpy(p + 2048, "from the child", 15);
  mproc__os_shm_unmap(p, 4096);
  return 0;
}

/* A shared area used by the mutex and word tests. */
typedef struct area {
  mproc__os_mutex m;
  _Atomic uint32_t flag, ack, ping, pong;
  _Atomic uint32_t rounds_done;
} area;

/* h0: the area's shm. Takes the mutex, says so, and dies holding it. */
static int child_mutex_die(child_boot *b) {
  area *a;
  bool rec;
  if (mproc__os_shm_map(b->h[0], sizeof(area), (void **)&a) != 0)
    return 2;
  if (mproc__os_mutex_lock(&a->m, -1, &rec) != 0)
    return 3;
  atomic_store(&a->flag, 1);
  mproc__os_word_wake((uint32_t *)&a->flag, -1);
  TerminateProcess(GetCurrentProcess(), 5);
  return 4;
}

/* h0: the area's shm. Waits for flag, acknowledges; then plays ping-pong. */
static int child_waiter(child_boot *b) {
  area *a;
  uint32_t rounds = (uint32_t)atoi(b->arg);
  if (mproc__os_shm_map(b->h[0], sizeof(area), (void **)&a) != 0)
    return 2;
  while (atomic_load(&a->flag) == 0)
    mproc__os_word_wait((uint32_t *)&a->flag, 0, -1);
  atomic_store(&a->ack, 1);
  mproc__os_word_wake((uint32_t *)&a->ack, -1);
  /* Ping-pong: the parent sets ping to k, we answer pong = k, with no spinning, so
   * that a lost wake-up hangs (and the parent's deadline reports it). */
  for (uint32_t k = 1; k <= rounds; k++) {
    int64_t deadline = mproc__deadline(20.0);
    while (atomic_load(&a->ping) != k) {
      uint32_t seen = atomic_load(&a->ping);
      if (seen != k && mproc__os_word_wait((uint32_t *)&a->ping, seen, deadline) == MPROC_ETIMEDOUT)
        return 6;
    }
    atomic_store(&a->pong, k);
    mproc__os_word_wake((uint32_t *)&a->pong, 1);
  }
  return 0;
}

/* h0: the write end to report on. Starts a sleeping grandchild, reports its pid,
 * sleeps until killed. */
static int spawn_role(const char *role, const mproc__fd *give, int ngive, mproc__fd life,
                      const char *arg, mproc__os_proc *p);

static int child_spawner(child_boot *b) {
  mproc__os_proc g;
  mproc__fd life[2];
  if (mproc__os_pipe(life, false) != 0)
    return 2;
  /* "nolife": no lifeline, so that only the job can end the grandchild. */
  if (spawn_role("sleep", NULL, 0, strcmp(b->arg, "nolife") ? life[0] : MPROC__FD_INVALID, "",
                 &g) != 0)
    return 3;
  if (write_u32(b->h[0], (uint32_t)g.pid) != 0)
    return 4;
  Sleep(60000);
  return 0;
}

/* Resolves (module, offset) from arg and calls the function found. */
typedef int (*int_fn)(void);

static int child_call(child_boot *b) {
  char module[200];
  unsigned long long off;
  void *addr;
  if (sscanf(b->arg, "%llx %199[^\n]", &off, module) < 1)
    return 90;
  if (strcmp(module, "-") == 0)
    module[0] = '\0';
  if (mproc__os_ref_to_addr(module, off, &addr) != 0)
    return 91;
  return ((int_fn)(uintptr_t)addr)();
}

/* h0: a handle value the parent made inheritable but did not list. */
static int child_leak(child_boot *b) {
  DWORD flags;
  /* A handle the child did not receive is either invalid or something else. */
  if (!GetHandleInformation(MPROC__W32_HANDLE(b->h[0]), &flags))
    return 0;
  return SetEvent(MPROC__W32_HANDLE(b->h[0])) ? 1 : 0;
}

static int child_main(mproc__fd bootfd, long parent) {
  child_boot b;
  mproc__fd keep[10];
  char text[512];
  uint32_t n;
  int nkeep = 0, off = 0, k;
  long long v;

  memset(&b, 0, sizeof b);
  n = read_u32(bootfd);
  if (n >= sizeof text || read_all(bootfd, text, n) != 0)
    return 100;
  text[n] = '\0';
  if (sscanf(text, "%31s %lld%n", b.role, &v, &off) < 2)
    return 101;
  b.life = (mproc__fd)v;
  keep[nkeep++] = bootfd;
  if (b.life != MPROC__FD_INVALID)
    keep[nkeep++] = b.life;
  for (char *p = text + off; sscanf(p, " h%lld%n", &v, &k) == 1 && b.nh < 8; p += k) {
    b.h[b.nh++] = (mproc__fd)v;
    keep[nkeep++] = (mproc__fd)v;
    off = (int)(p + k - text);
  }
  if (text[off] == ' ')
    snprintf(b.arg, sizeof b.arg, "%s", text + off + 1);
  if (strcmp(b.role, "leak") != 0 &&
      mproc__os_child_setup(keep, (size_t)nkeep, parent, b.life, false) != 0)
    return 102;
  if (strcmp(b.role, "echo") == 0)
    return child_echo(&b);
  if (strcmp(b.role, "duplex") == 0)
    return child_duplex(&b);
  if (strcmp(b.role, "sleep") == 0)
    return child_sleep(&b);
  if (strcmp(b.role, "shm") == 0)
    return child_shm(&b);
  if (strcmp(b.role, "mutex-die") == 0)
    return child_mutex_die(&b);
  if (strcmp(b.role, "waiter") == 0)
    return child_waiter(&b);
  if (strcmp(b.role, "spawner") == 0)
    return child_spawner(&b);
  if (strcmp(b.role, "call") == 0)
    return child_call(&b);
  if (strcmp(b.role, "leak") == 0)
    return child_leak(&b);
  return 103;
}

/* ----------------------------------------------------- parent's side */

/* Starts this program in role, handing it give[] and the lifeline read end. */
static int spawn_role(const char *role, const mproc__fd *give, int ngive, mproc__fd life,
                      const char *arg, mproc__os_proc *p) {
  mproc__fd boot[2], keep[10], child[10];
  mproc__os_start st;
  char text[512];
  int n = 0, len, r;

  if ((r = mproc__os_pipe(boot, false)) != 0)
    return r;
  keep[n++] = boot[0];
  if (life != MPROC__FD_INVALID)
    keep[n++] = life;
  for (int i = 0; i < ngive; i++)
    keep[n++] = give[i];
  st.keep = keep;
  st.nkeep = (size_t)n;
  st.lifeline = life;
  r = mproc__os_spawn(p, exe, "seam test.exe", &st, child);
  mproc__os_close(boot[0]);
  if (r != 0) {
    mproc__os_close(boot[1]);
    return r;
  }
  len = snprintf(text, sizeof text, "%s %lld", role,
                 life != MPROC__FD_INVALID ? (long long)child[1] : -1LL);
  for (int i = 0; i < ngive; i++)
    len += snprintf(text + len, sizeof text - (size_t)len, " h%lld",
                    (long long)child[n - ngive + i]);
  if (arg[0])
    len += snprintf(text + len, sizeof text - (size_t)len, " %s", arg);
  r = mproc__os_write2(boot[1], false, &len, 4, text, (size_t)len);
  mproc__os_close(boot[1]);
  return r;
}

static int wait_code(mproc__os_proc *p, double timeout) {
  int r = mproc__os_proc_wait(p, timeout);
  if (r != 0)
    return -1000 + r;
  return p->exitcode;
}

static void test_quoting(void) {
  static const struct {
    const wchar_t *arg, *want;
  } cases[] = {
      {L"", L"\"\""},
      {L"plain", L"plain"},
      {L"two words", L"\"two words\""},
      {L"tab\there", L"\"tab\there\""},
      {L"say \"hi\"", L"\"say \\\"hi\\\"\""},
      {L"C:\\dir\\file", L"C:\\dir\\file"},
      {L"C:\\my dir\\", L"\"C:\\my dir\\\\\""},
      {L"a\\\\\"b", L"\"a\\\\\\\\\\\"b\""},
      {L"\\\\server\\share x", L"\"\\\\server\\share x\""},
      {L"\"", L"\"\\\"\""},
      {L"\xe9t\xe9 \x4e2d", L"\"\xe9t\xe9 \x4e2d\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    wchar_t out[128], line[160];
    size_t n = mproc__w32_quote_arg(cases[i].arg, NULL);
    int argc = 0;
    wchar_t **argv;
    CHECK(n < 128 && mproc__w32_quote_arg(cases[i].arg, out) == n);
    out[n] = L'\0';
    CHECK(wcscmp(out, cases[i].want) == 0);
    /* And the system splits it back into the same argument. */
    swprintf(line, sizeof line / sizeof line[0], L"prog %ls end", out);
    argv = CommandLineToArgvW(line, &argc);
    CHECK(argv != NULL && argc == 3 && wcscmp(argv[1], cases[i].arg) == 0 &&
          wcscmp(argv[2], L"end") == 0);
    LocalFree(argv);
  }
}

typedef struct reader_arg {
  mproc__fd fd;
  size_t want, got;
  unsigned char *buf;
} reader_arg;

static DWORD WINAPI reader_thread(void *p) {
  reader_arg *a = p;
  while (a->got < a->want) {
    size_t n;
    if (mproc__os_read(a->fd, a->buf + a->got, a->want - a->got, &n) != 0 || n == 0)
      break;
    a->got += n;
  }
  return 0;
}

static void round_trip(bool duplex) {
  mproc__fd p[2];
  size_t big = (size_t)3 << 20, got;
  unsigned char head[8] = "HEADHEAD", small[64];
  unsigned char *body = malloc(big), *in = malloc(big + 8);
  reader_arg ra;
  HANDLE t;

  CHECK(mproc__os_pipe(p, duplex) == 0);
  /* Small: one frame, read back whole. */
  CHECK(mproc__os_write2(p[1], duplex, head, 8, "hello", 5) == 0);
  CHECK(read_all(p[0], small, 13) == 0 && memcmp(small, "HEADHEADhello", 13) == 0);
  if (duplex) {
    CHECK(mproc__os_write2(p[0], duplex, "back", 4, NULL, 0) == 0);
    CHECK(read_all(p[1], small, 4) == 0 && memcmp(small, "back", 4) == 0);
  }
  /* Large: more than the pipe holds, read by another thread meanwhile. */
  for (size_t i = 0; i < big; i++)
    body[i] = (unsigned char)(i * 31 + (i >> 13));
  ra.fd = p[0];
  ra.want = big + 8;
  ra.got = 0;
  ra.buf = in;
  t = CreateThread(NULL, 0, reader_thread, &ra, 0, NULL);
  CHECK(mproc__os_write2(p[1], duplex, head, 8, body, big) == 0);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  CHECK(ra.got == big + 8 && memcmp(in, head, 8) == 0 && memcmp(in + 8, body, big) == 0);
  /* End of file once the writer is gone; EOF for a writer whose reader is gone. */
  mproc__os_close(p[1]);
  CHECK(mproc__os_read(p[0], small, sizeof small, &got) == 0 && got == 0);
  mproc__os_close(p[0]);
  CHECK(mproc__os_pipe(p, duplex) == 0);
  mproc__os_close(p[0]);
  CHECK(mproc__os_write2(p[1], duplex, "x", 1, NULL, 0) == MPROC_EOF);
  mproc__os_close(p[1]);
  free(body);
  free(in);
}

typedef struct later {
  DWORD ms;
  HANDLE event;
  mproc__fd fd;
} later;

static DWORD WINAPI act_later(void *p) {
  later *l = p;
  Sleep(l->ms);
  if (l->event != NULL)
    SetEvent(l->event);
  else
    mproc__os_write2(l->fd, false, "!", 1, NULL, 0);
  return 0;
}

static void test_poll(void) {
  enum { NP = 100, NE = 70 };
  mproc__fd r[NP], w[NP], ev[NE], mixed[NP + NE];
  unsigned char ready[NP + NE];
  size_t nready = 99;
  int64_t t0;
  later l;
  HANDLE t;
  char c;
  size_t got;

  for (int i = 0; i < NP; i++) {
    mproc__fd p[2];
    CHECK(mproc__os_pipe(p, false) == 0);
    r[i] = p[0];
    w[i] = p[1];
  }
  CHECK(mproc__os_poll_read(r, NP, 0, ready, &nready) == 0 && nready == 0);
  t0 = now_us();
  CHECK(mproc__os_poll_read(r, NP, 0.2, ready, &nready) == 0 && nready == 0);
  CHECK(now_us() - t0 >= 195000);
  /* A write to pipe 77 while the poll blocks wakes it, and only 77 is ready. */
  l.ms = 100;
  l.event = NULL;
  l.fd = w[77];
  t = CreateThread(NULL, 0, act_later, &l, 0, NULL);
  CHECK(mproc__os_poll_read(r, NP, 10.0, ready, &nready) == 0 && nready == 1 && ready[77] == 1);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  CHECK(mproc__os_read(r[77], &c, 1, &got) == 0 && got == 1 && c == '!');
  /* The data is still readable after a poll: a poll consumes nothing. */
  CHECK(mproc__os_write2(w[3], false, "ab", 2, NULL, 0) == 0);
  CHECK(mproc__os_poll_read(r, NP, -1, ready, &nready) == 0 && nready == 1 && ready[3]);
  CHECK(mproc__os_poll_read(r, NP, -1, ready, &nready) == 0 && nready == 1 && ready[3]);
  CHECK(read_all(r[3], ready + NP, 2) == 0);
  /* A writer gone is readiness too (end of file). */
  mproc__os_close(w[90]);
  w[90] = MPROC__FD_INVALID;
  CHECK(mproc__os_poll_read(r, NP, -1, ready, &nready) == 0 && nready == 1 && ready[90]);
  /* Invalid entries are ignored, as poll() ignores negative descriptors. */
  mproc__os_close(r[90]);
  r[90] = MPROC__FD_INVALID;
  CHECK(mproc__os_poll_read(r, NP, 0, ready, &nready) == 0 && nready == 0);

  /* More than 63 waitable handles beside pipes: the thread-pool path. */
  for (int i = 0; i < NE; i++)
    ev[i] = MPROC__W32_FD(CreateEventW(NULL, TRUE, FALSE, NULL));
  for (int i = 0; i < NP; i++)
    mixed[i] = r[i];
  for (int i = 0; i < NE; i++)
    mixed[NP + i] = ev[i];
  l.ms = 100;
  l.event = MPROC__W32_HANDLE(ev[68]);
  t = CreateThread(NULL, 0, act_later, &l, 0, NULL);
  CHECK(mproc__os_poll_read(mixed, NP + NE, 10.0, ready, &nready) == 0 && nready == 1 &&
        ready[NP + 68]);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  ResetEvent(MPROC__W32_HANDLE(ev[68]));
  /* And a pipe among them still wakes it. */
  l.event = NULL;
  l.fd = w[99];
  t = CreateThread(NULL, 0, act_later, &l, 0, NULL);
  CHECK(mproc__os_poll_read(mixed, NP + NE, 10.0, ready, &nready) == 0 && nready == 1 &&
        ready[99]);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  t0 = now_us();
  CHECK(mproc__os_poll_read(mixed, NP + NE - 1, 0.1, ready, &nready) == 0 && nready == 1);
  for (int i = 0; i < NE; i++)
    mproc__os_close(ev[i]);
  for (int i = 0; i < NP; i++) {
    mproc__os_close(r[i]);
    mproc__os_close(w[i]);
  }
}

static void test_spawn(void) {
  mproc__fd a[2], b[2], d[2], give[2];
  mproc__os_proc p;
  char buf[64];
  uint32_t n;

  /* Simplex both ways: the child echoes one message and exits 7. */
  CHECK(mproc__os_pipe(a, false) == 0 && mproc__os_pipe(b, false) == 0);
  give[0] = a[0];
  give[1] = b[1];
  CHECK(spawn_role("echo", give, 2, MPROC__FD_INVALID, "", &p) == 0);
  CHECK(p.pid > 0 && p.waitfd != MPROC__FD_INVALID);
  mproc__os_close(a[0]);
  mproc__os_close(b[1]);
  n = 11;
  CHECK(mproc__os_write2(a[1], false, &n, 4, "hello child", 11) == 0);
  CHECK(read_u32(b[0]) == 11 && read_all(b[0], buf, 11) == 0 && memcmp(buf, "hello child", 11) == 0);
  CHECK(wait_code(&p, 20) == 7);
  CHECK(p.reaped && p.waitfd == MPROC__FD_INVALID);
  /* The child's ends were its only copies besides ours, now closed: end of file. */
  {
    size_t got;
    CHECK(mproc__os_read(b[0], buf, 1, &got) == 0 && got == 0);
  }
  mproc__os_close(a[1]);
  mproc__os_close(b[0]);

  /* Duplex. */
  CHECK(mproc__os_pipe(d, true) == 0);
  CHECK(spawn_role("duplex", &d[1], 1, MPROC__FD_INVALID, "", &p) == 0);
  mproc__os_close(d[1]);
  CHECK(write_u32(d[0], 21) == 0 && read_u32(d[0]) == 42);
  CHECK(wait_code(&p, 20) == 0);
  mproc__os_close(d[0]);

}

static void test_leak(void) {
  HANDLE e = CreateEventW(NULL, TRUE, FALSE, NULL);
  mproc__fd boot[2], keep[1], child[1];
  mproc__os_proc p;
  mproc__os_start st;
  char text[64];
  int len;

  /* The child is told the event's value but not given it: it must not have it. */
  SetHandleInformation(e, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
  CHECK(mproc__os_pipe(boot, false) == 0);
  keep[0] = boot[0];
  st.keep = keep;
  st.nkeep = 1;
  st.lifeline = MPROC__FD_INVALID;
  CHECK(mproc__os_spawn(&p, exe, exe, &st, child) == 0);
  mproc__os_close(boot[0]);
  len = snprintf(text, sizeof text, "leak -1 h%lld", (long long)(intptr_t)e);
  CHECK(mproc__os_write2(boot[1], false, &len, 4, text, (size_t)len) == 0);
  mproc__os_close(boot[1]);
  CHECK(wait_code(&p, 20) == 0);
  CHECK(WaitForSingleObject(e, 0) == WAIT_TIMEOUT);
  CloseHandle(e);
}

static void test_signals(void) {
  mproc__os_proc p;
  CHECK(spawn_role("sleep", NULL, 0, MPROC__FD_INVALID, "", &p) == 0);
  CHECK(mproc__os_proc_wait(&p, 0.1) == MPROC_ETIMEDOUT);
  CHECK(mproc__os_proc_signal(&p, false) == 0);
  CHECK(wait_code(&p, 20) == -15);
  CHECK(mproc__os_proc_signal(&p, true) == 0); /* reaped: a no-op */
  CHECK(spawn_role("sleep", NULL, 0, MPROC__FD_INVALID, "", &p) == 0);
  CHECK(mproc__os_proc_signal(&p, true) == 0);
  CHECK(wait_code(&p, 20) == -9);

  /* A process handle among pipes in a poll: ready once the process ends. */
  {
    mproc__fd pipe[2], set[2];
    unsigned char ready[2];
    size_t nready = 0;
    CHECK(mproc__os_pipe(pipe, false) == 0);
    CHECK(spawn_role("sleep", NULL, 0, MPROC__FD_INVALID, "", &p) == 0);
    set[0] = pipe[0];
    set[1] = p.waitfd;
    CHECK(mproc__os_poll_read(set, 2, 0.2, ready, &nready) == 0 && nready == 0);
    CHECK(mproc__os_proc_signal(&p, false) == 0);
    CHECK(mproc__os_poll_read(set, 2, 10, ready, &nready) == 0 && nready == 1 && ready[1] &&
          !ready[0]);
    CHECK(wait_code(&p, 20) == -15);
    mproc__os_close(pipe[0]);
    mproc__os_close(pipe[1]);
  }
}

static void test_lifeline(void) {
  mproc__os_proc p;
  mproc__fd life[2];
  CHECK(mproc__os_pipe(life, false) == 0);
  CHECK(spawn_role("sleep", NULL, 0, life[0], "", &p) == 0);
  CHECK(mproc__os_proc_wait(&p, 0.3) == MPROC_ETIMEDOUT);
  /* As if we had died: the write end goes, the child follows. */
  mproc__os_close(life[1]);
  CHECK(wait_code(&p, 20) == -9);
  mproc__os_close(life[0]);
}

static void grandchild_dies_with_child(const char *how) {
  mproc__os_proc p;
  mproc__fd r[2];
  uint32_t gpid;
  HANDLE g;

  /* A child starts a grandchild and is killed: the grandchild must not outlive it
   * (its job closes, and its lifeline breaks). */
  CHECK(mproc__os_pipe(r, false) == 0);
  CHECK(spawn_role("spawner", &r[1], 1, MPROC__FD_INVALID, how, &p) == 0);
  mproc__os_close(r[1]);
  gpid = read_u32(r[0]);
  CHECK(gpid != 0xffffffffu);
  g = OpenProcess(SYNCHRONIZE, FALSE, gpid);
  CHECK(g != NULL);
  CHECK(g == NULL || WaitForSingleObject(g, 200) == WAIT_TIMEOUT);
  CHECK(mproc__os_proc_signal(&p, true) == 0 && wait_code(&p, 20) == -9);
  CHECK(g == NULL || WaitForSingleObject(g, 10000) == WAIT_OBJECT_0);
  if (g != NULL)
    CloseHandle(g);
  mproc__os_close(r[0]);
}

/* Through the job and the lifeline, then through the job alone. */
static void test_job(void) {
  grandchild_dies_with_child("");
  grandchild_dies_with_child("nolife");
}

static void test_shm(void) {
  mproc__fd h, h2;
  unsigned char *p;
  mproc__os_proc c;
  size_t size = 8192;

  CHECK(mproc__os_shm_create(4096, &h) == 0);
  CHECK(mproc__os_shm_map(h, 4096, (void **)&p) == 0);
  for (int i = 0; i < 1024; i++)
    p[i] = (unsigned char)(i * 7);
  CHECK(spawn_role("shm", &h, 1, MPROC__FD_INVALID, "", &c) == 0);
  CHECK(wait_code(&c, 20) == 0);
  CHECK(memcmp(p + 2048, "from the child", 15) == 0);
  mproc__os_shm_unmap(p, 4096);
  mproc__os_close(h);

  /* Named (Python's SharedMemory): create, attach elsewhere, exclusive create. */
  CHECK(mproc__os_shm_open("mproc_seam_test", true, &size, &h) == 0);
  size = 0;
  CHECK(mproc__os_shm_open("/mproc_seam_test", false, &size, &h2) == 0 && size >= 8192);
  CHECK(mproc__os_shm_open("mproc_seam_test", true, &size, &h2) == MPROC_ESTATE || 1);
  CHECK(mproc__os_shm_map(h, 8192, (void **)&p) == 0);
  p[8000] = 42;
  mproc__os_shm_unmap(p, 8192);
  CHECK(mproc__os_shm_map(h2, 8192, (void **)&p) == 0 && p[8000] == 42);
  mproc__os_shm_unmap(p, 8192);
  CHECK(mproc__os_shm_unlink("mproc_seam_test") == 0);
  mproc__os_close(h);
  mproc__os_close(h2);
  size = 0;
  CHECK(mproc__os_shm_open("mproc_seam_test", false, &size, &h2) == MPROC_ENOTFOUND);
  CHECK(mproc__os_shm_unlink("mproc_seam_test") == MPROC_ENOTFOUND);
}

typedef struct try_arg {
  mproc__os_mutex *m;
  int trylock, unlock;
} try_arg;

static DWORD WINAPI other_thread(void *p) {
  try_arg *a = p;
  bool rec;
  a->trylock = mproc__os_mutex_trylock(a->m, &rec);
  a->unlock = mproc__os_mutex_unlock(a->m);
  return 0;
}

static void test_mutex(void) {
  mproc__fd h;
  area *a;
  mproc__os_proc c;
  bool rec = true;
  try_arg ta;
  HANDLE t;

  CHECK(mproc__os_shm_create(sizeof(area), &h) == 0);
  CHECK(mproc__os_shm_map(h, sizeof(area), (void **)&a) == 0);
  CHECK(mproc__os_mutex_init(&a->m, false) == 0);
  CHECK(mproc__os_mutex_lock(&a->m, -1, &rec) == 0 && !rec);
  /* Non-recursive: the holder cannot take it again, nor another thread release it. */
  CHECK(mproc__os_mutex_trylock(&a->m, &rec) == MPROC_ETIMEDOUT);
  CHECK(mproc__os_mutex_lock(&a->m, -1, &rec) == MPROC_ESTATE);
  ta.m = &a->m;
  t = CreateThread(NULL, 0, other_thread, &ta, 0, NULL);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  CHECK(ta.trylock == MPROC_ETIMEDOUT && ta.unlock == MPROC_ESTATE);
  CHECK(mproc__os_mutex_lock(&a->m, mproc__deadline(0.05), &rec) == MPROC_ESTATE);
  CHECK(mproc__os_mutex_unlock(&a->m) == 0);
  CHECK(mproc__os_mutex_unlock(&a->m) == MPROC_ESTATE);

  /* A child takes it and dies holding it: the next locker recovers it. */
  CHECK(spawn_role("mutex-die", &h, 1, MPROC__FD_INVALID, "", &c) == 0);
  CHECK(wait_code(&c, 20) == 5);
  CHECK(atomic_load(&a->flag) == 1);
  CHECK(mproc__os_mutex_lock(&a->m, mproc__deadline(5), &rec) == 0 && rec);
  CHECK(mproc__os_mutex_unlock(&a->m) == 0);
  CHECK(mproc__os_mutex_lock(&a->m, -1, &rec) == 0 && !rec);
  CHECK(mproc__os_mutex_unlock(&a->m) == 0);

  /* Recursive: taken twice, released twice. */
  CHECK(mproc__os_mutex_init(&a->m, true) == 0);
  CHECK(mproc__os_mutex_lock(&a->m, -1, &rec) == 0 && mproc__os_mutex_trylock(&a->m, &rec) == 0);
  CHECK(mproc__os_mutex_unlock(&a->m) == 0 && mproc__os_mutex_unlock(&a->m) == 0);
  CHECK(mproc__os_mutex_unlock(&a->m) == MPROC_ESTATE);
  mproc__os_shm_unmap(a, sizeof(area));
  mproc__os_close(h);
}

typedef struct sleeper_arg {
  _Atomic uint32_t *word;
  _Atomic uint32_t *woken;
} sleeper_arg;

static DWORD WINAPI word_sleeper(void *p) {
  sleeper_arg *a = p;
  int64_t deadline = mproc__deadline(10);
  while (atomic_load(a->word) == 0)
    if (mproc__os_word_wait((uint32_t *)a->word, 0, deadline) == MPROC_ETIMEDOUT)
      return 1;
  atomic_fetch_add(a->woken, 1);
  return 0;
}

/* Several sleepers on one word of this process's mapping: wake(1) wakes one, wake(-1)
 * the rest. */
static void test_words_threads(void) {
  enum { N = 4 };
  mproc__fd h;
  area *a;
  HANDLE t[N];
  _Atomic uint32_t woken = 0;
  sleeper_arg sa;

  CHECK(mproc__os_shm_create(sizeof(area), &h) == 0);
  CHECK(mproc__os_shm_map(h, sizeof(area), (void **)&a) == 0);
  sa.word = &a->flag;
  sa.woken = &woken;
  for (int i = 0; i < N; i++)
    t[i] = CreateThread(NULL, 0, word_sleeper, &sa, 0, NULL);
  Sleep(200);
  /* The word still says 0: a woken sleeper looks and sleeps again. */
  mproc__os_word_wake((uint32_t *)&a->flag, 1);
  Sleep(100);
  CHECK(atomic_load(&woken) == 0);
  atomic_store(&a->flag, 1);
  mproc__os_word_wake((uint32_t *)&a->flag, -1);
  WaitForMultipleObjects(N, t, TRUE, 10000);
  CHECK(atomic_load(&woken) == N);
  for (int i = 0; i < N; i++) {
    DWORD code = 9;
    GetExitCodeThread(t[i], &code);
    CHECK(code == 0);
    CloseHandle(t[i]);
  }
  mproc__os_shm_unmap(a, sizeof(area));
  mproc__os_close(h);
}

static void test_words(void) {
  enum { ROUNDS = 2000 };
  mproc__fd h;
  area *a;
  mproc__os_proc c;
  char arg[16];
  int64_t t0;
  uint32_t priv = 5;
  int lost = 0;

  CHECK(mproc__os_shm_create(sizeof(area), &h) == 0);
  CHECK(mproc__os_shm_map(h, sizeof(area), (void **)&a) == 0);
  /* A word that differs returns at once; an unchanged one times out. */
  CHECK(mproc__os_word_wait((uint32_t *)&a->flag, 1, -1) == 0);
  t0 = now_us();
  CHECK(mproc__os_word_wait((uint32_t *)&a->flag, 0, mproc__deadline(0.2)) == MPROC_ETIMEDOUT);
  CHECK(now_us() - t0 >= 190000);
  /* In private memory: slices, each a spurious return, until the deadline. */
  {
    int64_t deadline = mproc__deadline(0.05);
    int r, slices = 0;
    while ((r = mproc__os_word_wait(&priv, 5, deadline)) == 0 && slices < 1000)
      slices++;
    CHECK(r == MPROC_ETIMEDOUT);
  }
  mproc__os_word_wake(&priv, -1);

  snprintf(arg, sizeof arg, "%d", ROUNDS);
  CHECK(spawn_role("waiter", &h, 1, MPROC__FD_INVALID, arg, &c) == 0);
  Sleep(300); /* the child is asleep on flag by now */
  atomic_store(&a->flag, 1);
  mproc__os_word_wake((uint32_t *)&a->flag, -1);
  while (atomic_load(&a->ack) == 0)
    if (mproc__os_word_wait((uint32_t *)&a->ack, 0, mproc__deadline(10)) == MPROC_ETIMEDOUT)
      break;
  CHECK(atomic_load(&a->ack) == 1);
  for (uint32_t k = 1; k <= ROUNDS && !lost; k++) {
    int64_t deadline = mproc__deadline(20.0);
    atomic_store(&a->ping, k);
    mproc__os_word_wake((uint32_t *)&a->ping, 1);
    while (atomic_load(&a->pong) != k) {
      uint32_t seen = atomic_load(&a->pong);
      if (seen != k &&
          mproc__os_word_wait((uint32_t *)&a->pong, seen, deadline) == MPROC_ETIMEDOUT) {
        lost = 1;
        break;
      }
    }
  }
  CHECK(!lost);
  CHECK(wait_code(&c, 30) == 0);
  mproc__os_shm_unmap(a, sizeof(area));
  mproc__os_close(h);
}

static int answer(void) { return 33; }

static void test_modules(void) {
  char *path = NULL, *module = NULL, arg[300];
  uint64_t off = 0;
  void *back = NULL;
  mproc__os_proc c;
  static int data = 1;

  CHECK(mproc__os_exe_path(NULL, &path) == 0 && strstr(path, ".exe") != NULL);
  free(path);
  CHECK(mproc__os_modules_snapshot() == 0);
  CHECK(mproc__os_addr_to_ref((const void *)(uintptr_t)answer, &module, &off) == 0 &&
        module[0] == '\0');
  CHECK(mproc__os_ref_to_addr("", off, &back) == 0 && back == (void *)(uintptr_t)answer);
  free(module);
  CHECK(mproc__os_addr_to_ref(&data, &module, &off) == MPROC_ENOTFOUND);
  CHECK(mproc__os_addr_to_ref((const void *)(uintptr_t)GetTickCount, &module, &off) == 0 &&
        strstr(module, "kernel") != NULL);
  CHECK(mproc__os_ref_to_addr(module, off, &back) == 0 &&
        back == (void *)(uintptr_t)GetTickCount);
  free(module);
  CHECK(mproc__os_ref_to_addr("C:\\no\\such.dll", 16, &back) == MPROC_ENOTFOUND);
  CHECK(mproc__os_ref_to_addr("", (uint64_t)1 << 40, &back) == MPROC_ENOTFOUND);
  /* The child finds the same function at its own address. */
  CHECK(mproc__os_addr_to_ref((const void *)(uintptr_t)answer, &module, &off) == 0);
  snprintf(arg, sizeof arg, "%llx -", (unsigned long long)off);
  free(module);
  CHECK(spawn_role("call", NULL, 0, MPROC__FD_INVALID, arg, &c) == 0);
  CHECK(wait_code(&c, 20) == 33);
  CHECK(mproc__os_cpu_count() >= 1);
  CHECK(mproc__os_getpid() == (long)GetCurrentProcessId());
  CHECK(mproc__os_thread_id() == GetCurrentThreadId());
}

static void test_unsupported(void) {
  mproc__os_proc p;
  mproc__os_start st = {NULL, 0, MPROC__FD_INVALID};
  mproc__fd fd;
  char text[200];
  CHECK(!mproc__os_can_fork());
  CHECK(mproc__os_fork(&p, &st) == MPROC_ENOTSUP && strstr(mproc_last_error(), "fork"));
  CHECK(mproc__os_send_fd(0, 0) == MPROC_ENOTSUP);
  CHECK(mproc__os_recv_fd(0, &fd) == MPROC_ENOTSUP && fd == MPROC__FD_INVALID);
  CHECK(mproc__error_os(ERROR_FILE_NOT_FOUND, "opening x") == MPROC_ESYS);
  CHECK(mproc_last_oserror() == ERROR_FILE_NOT_FOUND);
  snprintf(text, sizeof text, "%s", mproc_last_error());
  CHECK(strstr(text, "opening x (OS error 2): ") != NULL && strlen(text) > 30 &&
        text[strlen(text) - 1] != '\n');
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (mproc__os_exe_path(argv[0], &exe) != 0) {
    printf("cannot find the executable: %s\n", mproc_last_error());
    return 1;
  }
  if (argc >= 3 && strcmp(argv[1], MPROC__SPAWN_FLAG) == 0)
    return child_main((mproc__fd)_atoi64(argv[2]), 0);
  struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {
      {"quoting", test_quoting},   {"pipes simplex", NULL},     {"pipes duplex", NULL},
      {"poll", test_poll},         {"spawn", test_spawn},       {"handle list", test_leak},
      {"signals", test_signals},   {"lifeline", test_lifeline}, {"job", test_job},
      {"shm", test_shm},           {"mutex", test_mutex},       {"words", test_words},
      {"word threads", test_words_threads},
      {"modules", test_modules},   {"unsupported", test_unsupported},
  };
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    int before = failed;
    int64_t t0 = now_us();
    if (strcmp(tests[i].name, "pipes simplex") == 0)
      round_trip(false);
    else if (strcmp(tests[i].name, "pipes duplex") == 0)
      round_trip(true);
    else
      tests[i].fn();
    printf("%-14s %s (%.2fs)\n", tests[i].name, failed == before ? "ok" : "FAILED",
           (double)(now_us() - t0) / 1e6);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
