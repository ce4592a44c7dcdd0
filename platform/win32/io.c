/* Windows I/O: named pipes with overlapped I/O, whole writes, and waits on any
 * number of pipes and waitable handles (processes) at once. */
#define _CRT_RAND_S /* rand_s, before stdlib.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

/* Named pipe buffers: a hint to the system, which grows them as needed; a larger
 * one moves big messages in fewer round trips. */
#define PIPE_BUFFER (1u << 20)
/* One ReadFile or WriteFile never asks for more (counts are DWORDs). */
#define IO_MAX ((size_t)1 << 30)
/* Head and body shorter than this go out in one write. */
#define JOIN_MAX 4096
/* Attempts at a pipe name nobody else holds. */
#define NAME_TRIES 64

/* ------------------------------------------------------------ helpers */

const char *mproc__os_strerror(int oserr, char *buf, size_t cap) {
  DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                           (DWORD)oserr, 0, buf, cap > 0xffff ? 0xffff : (DWORD)cap, NULL);
  if (n == 0) {
    snprintf(buf, cap, "unknown error");
    return buf;
  }
  /* The system's text ends with ".\r\n", which reads badly inside a sentence. */
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == '.' ||
                   buf[n - 1] == ' '))
    buf[--n] = '\0';
  return buf;
}

wchar_t *mproc__w32_widen(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  wchar_t *w;
  if (n <= 0 || (w = malloc((size_t)n * sizeof *w)) == NULL)
    return NULL;
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
  return w;
}

char *mproc__w32_narrow(const wchar_t *w) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
  char *s;
  if (n <= 0 || (s = malloc((size_t)n)) == NULL)
    return NULL;
  WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL);
  return s;
}

uint64_t mproc__w32_random(void) {
  unsigned a = 0, b = 0;
  LARGE_INTEGER t;
  if (rand_s(&a) == 0 && rand_s(&b) == 0)
    return ((uint64_t)a << 32) | b;
  /* No system generator: the clock still makes a name unlikely to be taken, and
   * every user of these names retries on a collision. */
  QueryPerformanceCounter(&t);
  return (uint64_t)t.QuadPart * 0x9e3779b97f4a7c15ull ^ GetCurrentThreadId();
}

DWORD mproc__w32_wait_ms(int64_t deadline) {
  double left = mproc__remaining(deadline);
  if (left < 0)
    return INFINITE;
  if (left >= 4e6) /* about 46 days: beyond that, wait again when it ends */
    return 4000000000u;
  /* Rounded up, so that a wait never ends before its deadline. */
  return (DWORD)(left * 1000.0 + 0.999);
}

/* The thread's I/O event lives in a fiber-local slot whose destructor closes it
 * when the thread ends. */
static INIT_ONCE event_once = INIT_ONCE_STATIC_INIT;
static DWORD event_slot = FLS_OUT_OF_INDEXES;

static void WINAPI close_event(void *h) {
  if (h != NULL)
    CloseHandle(h);
}

static BOOL CALLBACK alloc_slot(INIT_ONCE *once, void *param, void **ctx) {
  (void)once;
  (void)param;
  (void)ctx;
  event_slot = FlsAlloc(close_event);
  return event_slot != FLS_OUT_OF_INDEXES;
}

HANDLE mproc__w32_thread_event(void) {
  HANDLE h;
  if (!InitOnceExecuteOnce(&event_once, alloc_slot, NULL, NULL)) {
    mproc__error_os((int)GetLastError(), "FlsAlloc() failed");
    return NULL;
  }
  h = FlsGetValue(event_slot);
  if (h != NULL)
    return h;
  h = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (h == NULL) {
    mproc__error_os((int)GetLastError(), "CreateEventW() failed");
    return NULL;
  }
  if (!FlsSetValue(event_slot, h)) {
    DWORD e = GetLastError();
    CloseHandle(h);
    mproc__error_os((int)e, "FlsSetValue() failed");
    return NULL;
  }
  return h;
}

/* Finishes an overlapped operation started with ok = ReadFile/WriteFile(..., ov):
 * waits for it and returns 0 or the OS error. */
static DWORD finish(HANDLE h, OVERLAPPED *ov, BOOL ok, DWORD *n) {
  if (!ok) {
    DWORD e = GetLastError();
    if (e != ERROR_IO_PENDING)
      return e;
  }
  return GetOverlappedResult(h, ov, n, TRUE) ? 0 : GetLastError();
}

static bool peer_gone(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED ||
         e == ERROR_HANDLE_EOF;
}

/* -------------------------------------------------------------- pipes */

int mproc__os_pipe(mproc__fd fds[2], bool duplex) {
  DWORD open_mode = (duplex ? PIPE_ACCESS_DUPLEX : PIPE_ACCESS_INBOUND) | FILE_FLAG_OVERLAPPED |
                    FILE_FLAG_FIRST_PIPE_INSTANCE;
  DWORD pipe_mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
  /* The writing end of a simplex pipe may still ask the pipe's state (PeekNamedPipe
   * needs no more), never read it. */
  DWORD access = duplex ? GENERIC_READ | GENERIC_WRITE : GENERIC_WRITE | FILE_READ_ATTRIBUTES;
  wchar_t name[80];
  HANDLE srv = INVALID_HANDLE_VALUE, cli;
  OVERLAPPED ov;
  DWORD e = 0, n;

  /* A name from our pid and a random value; FILE_FLAG_FIRST_PIPE_INSTANCE makes
   * creation fail rather than join a pipe someone else made under the same name. */
  for (int tries = 0; srv == INVALID_HANDLE_VALUE && tries < NAME_TRIES; tries++) {
    swprintf(name, sizeof name / sizeof name[0], L"\\\\.\\pipe\\mproc-%lu-%016llx",
             GetCurrentProcessId(), (unsigned long long)mproc__w32_random());
    srv = CreateNamedPipeW(name, open_mode, pipe_mode, 1, PIPE_BUFFER, PIPE_BUFFER, 0, NULL);
    if (srv == INVALID_HANDLE_VALUE) {
      e = GetLastError();
      if (e != ERROR_ACCESS_DENIED && e != ERROR_PIPE_BUSY)
        break;
    }
  }
  if (srv == INVALID_HANDLE_VALUE)
    return mproc__error_os((int)e, "CreateNamedPipeW(\"%ls\") failed", name);
  /* NULL security attributes: neither end is inheritable. */
  cli = CreateFileW(name, access, 0, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
  if (cli == INVALID_HANDLE_VALUE) {
    e = GetLastError();
    CloseHandle(srv);
    return mproc__error_os((int)e, "CreateFileW(\"%ls\") on a new pipe failed", name);
  }
  /* The client is connected once CreateFileW returned; ConnectNamedPipe confirms it
   * (ERROR_PIPE_CONNECTED), and waits should the system say otherwise. */
  memset(&ov, 0, sizeof ov);
  ov.hEvent = mproc__w32_thread_event();
  if (ov.hEvent == NULL) {
    e = (DWORD)mproc_last_oserror();
    goto fail;
  }
  e = finish(srv, &ov, ConnectNamedPipe(srv, &ov), &n);
  if (e != 0 && e != ERROR_PIPE_CONNECTED)
    goto fail;
  fds[0] = MPROC__W32_FD(srv);
  fds[1] = MPROC__W32_FD(cli);
  return 0;
fail:
  CloseHandle(cli);
  CloseHandle(srv);
  return mproc__error_os((int)e, "ConnectNamedPipe(\"%ls\") failed", name);
}

int mproc__os_read(mproc__fd fd, void *buf, size_t len, size_t *got) {
  HANDLE h = MPROC__W32_HANDLE(fd);
  OVERLAPPED ov;
  DWORD n = 0, e;

  if (len > IO_MAX)
    len = IO_MAX;
  memset(&ov, 0, sizeof ov);
  if ((ov.hEvent = mproc__w32_thread_event()) == NULL)
    return MPROC_ESYS;
  e = finish(h, &ov, ReadFile(h, buf, (DWORD)len, NULL, &ov), &n);
  if (e != 0) {
    if (!peer_gone(e))
      return mproc__error_os((int)e, "ReadFile() on handle %p failed", h);
    n = 0; /* the writer is gone: end of file */
  }
  *got = n;
  return 0;
}

static int write_all(HANDLE h, const void *data, size_t len) {
  const char *p = data;
  OVERLAPPED ov;

  memset(&ov, 0, sizeof ov);
  if ((ov.hEvent = mproc__w32_thread_event()) == NULL)
    return MPROC_ESYS;
  while (len > 0) {
    DWORD n = 0, e, want = (DWORD)(len > IO_MAX ? IO_MAX : len);
    e = finish(h, &ov, WriteFile(h, p, want, NULL, &ov), &n);
    if (e != 0) {
      if (peer_gone(e))
        return mproc__error(MPROC_EOF, "the peer of handle %p has closed it", h);
      return mproc__error_os((int)e, "WriteFile() on handle %p failed", h);
    }
    p += n;
    len -= n;
  }
  return 0;
}

int mproc__os_write2(mproc__fd fd, bool duplex, const void *head, size_t hlen, const void *body,
                     size_t blen) {
  HANDLE h = MPROC__W32_HANDLE(fd);
  int r;

  (void)duplex; /* both kinds are named pipes; no signal to guard against */
  if (hlen + blen <= JOIN_MAX && hlen + blen >= hlen) {
    /* One write for a small frame: half the system calls, and the reader wakes once. */
    char one[JOIN_MAX];
    if (hlen)
      memcpy(one, head, hlen);
    if (blen)
      memcpy(one + hlen, body, blen);
    return write_all(h, one, hlen + blen);
  }
  if ((r = write_all(h, head, hlen)) != 0)
    return r;
  return write_all(h, body, blen);
}

void mproc__os_close(mproc__fd fd) {
  if (fd != MPROC__FD_INVALID && fd != 0)
    (void)CloseHandle(MPROC__W32_HANDLE(fd));
}

int mproc__os_set_inherit(mproc__fd fd, bool inherit) {
  if (!SetHandleInformation(MPROC__W32_HANDLE(fd), HANDLE_FLAG_INHERIT,
                            inherit ? HANDLE_FLAG_INHERIT : 0))
    return mproc__error_os((int)GetLastError(), "SetHandleInformation() on handle %p failed",
                           MPROC__W32_HANDLE(fd));
  return 0;
}

int mproc__os_send_fd(mproc__fd sock, mproc__fd fd) {
  (void)sock;
  (void)fd;
  return mproc__error(MPROC_ENOTSUP, "passing a handle over a connection is only done by the "
                                     "fork server, and Windows has no fork");
}

int mproc__os_recv_fd(mproc__fd sock, mproc__fd *fd) {
  (void)sock;
  *fd = MPROC__FD_INVALID;
  return mproc__error(MPROC_ENOTSUP, "receiving a handle over a connection is only done by the "
                                     "fork server, and Windows has no fork");
}

/* --------------------------------------------------------------- poll */

/*
 * Waiting for any of n handles. A pipe is not waitable itself, so each pipe gets a
 * zero-byte overlapped read, which completes when data arrives or the writer goes
 * (what Python's multiprocessing.connection.wait does). All those reads signal one
 * event. Other handles (processes) are waited on directly while they fit in one
 * WaitForMultipleObjects beside that event; past that, each is registered with
 * the thread pool, whose callback sets the same event, so that there is no
 * ceiling of 64 handles.
 */

typedef enum { K_SKIP, K_PIPE, K_WAITABLE } kind;

typedef struct poll_set {
  size_t n;
  const mproc__fd *fds;
  unsigned char *ready;
  kind *kinds;
  OVERLAPPED *ov;       /* per pipe with a zero-byte read in flight */
  bool *pending;        /* that read has not completed */
  HANDLE *registered;   /* per waitable registered with the thread pool, or NULL */
  HANDLE event;         /* set by every completion and callback */
  HANDLE direct[MAXIMUM_WAIT_OBJECTS];
  DWORD ndirect;
} poll_set;

/* Pipe readiness without waiting: data in it, or its writer gone. */
static bool pipe_ready_now(HANDLE h, bool *readable) {
  DWORD avail = 0;
  *readable = true;
  if (PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL))
    return avail > 0;
  /* The writing end of a simplex pipe cannot be read: it is never readable. */
  *readable = GetLastError() != ERROR_ACCESS_DENIED;
  return *readable;
}

static void classify(poll_set *s) {
  for (size_t i = 0; i < s->n; i++) {
    HANDLE h = MPROC__W32_HANDLE(s->fds[i]);
    bool readable;
    s->ready[i] = 0;
    if (s->fds[i] == MPROC__FD_INVALID || h == NULL) {
      s->kinds[i] = K_SKIP; /* as poll() ignores a negative descriptor */
    } else if (GetFileType(h) == FILE_TYPE_PIPE) {
      s->kinds[i] = K_PIPE;
      s->ready[i] = pipe_ready_now(h, &readable);
      if (!readable)
        s->kinds[i] = K_SKIP;
    } else {
      s->kinds[i] = K_WAITABLE;
      s->ready[i] = WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
    }
  }
}

static VOID CALLBACK waitable_signalled(PVOID event, BOOLEAN timed_out) {
  (void)timed_out;
  SetEvent(event);
}

/* Starts the waits: returns 0, or an error with everything started undone. */
static int arm(poll_set *s, size_t nwaitable, bool *done) {
  static char nothing;
  bool use_pool = nwaitable + 1 > MAXIMUM_WAIT_OBJECTS;

  *done = false;
  s->direct[0] = s->event;
  s->ndirect = 1;
  for (size_t i = 0; i < s->n; i++) {
    HANDLE h = MPROC__W32_HANDLE(s->fds[i]);
    if (s->kinds[i] == K_PIPE) {
      memset(&s->ov[i], 0, sizeof s->ov[i]);
      s->ov[i].hEvent = s->event;
      if (ReadFile(h, &nothing, 0, NULL, &s->ov[i])) {
        s->ready[i] = 1;
        *done = true;
      } else if (GetLastError() == ERROR_IO_PENDING) {
        s->pending[i] = true;
      } else {
        s->ready[i] = 1; /* end of file or an error: the read will tell */
        *done = true;
      }
    } else if (s->kinds[i] == K_WAITABLE) {
      if (!use_pool) {
        s->direct[s->ndirect++] = h;
      } else if (!RegisterWaitForSingleObject(&s->registered[i], h, waitable_signalled,
                                              s->event, INFINITE,
                                              WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD)) {
        s->registered[i] = NULL;
        return mproc__error_os((int)GetLastError(),
                               "RegisterWaitForSingleObject() on handle %p failed", h);
      }
    }
  }
  return 0;
}

/* Stops what arm started and records what became ready meanwhile. */
static void disarm(poll_set *s) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->pending[i])
      CancelIoEx(MPROC__W32_HANDLE(s->fds[i]), &s->ov[i]);
    if (s->registered[i] != NULL) {
      /* INVALID_HANDLE_VALUE: returns once no callback runs any more. */
      UnregisterWaitEx(s->registered[i], INVALID_HANDLE_VALUE);
      s->registered[i] = NULL;
    }
  }
  /* Every cancelled read must have completed before its OVERLAPPED goes away. Reset
   * the event before looking, so that a completion after the look wakes the wait. */
  for (;;) {
    bool all = true;
    ResetEvent(s->event);
    for (size_t i = 0; i < s->n; i++) {
      DWORD got, e;
      BOOL ok;
      if (!s->pending[i])
        continue;
      ok = GetOverlappedResult(MPROC__W32_HANDLE(s->fds[i]), &s->ov[i], &got, FALSE);
      e = ok ? 0 : GetLastError();
      if (e == ERROR_IO_INCOMPLETE) {
        all = false;
        continue;
      }
      s->pending[i] = false;
      /* Completed rather than cancelled: data came, or the writer left. */
      if (e != ERROR_OPERATION_ABORTED)
        s->ready[i] = 1;
    }
    if (all)
      break;
    WaitForSingleObject(s->event, INFINITE);
  }
  for (size_t i = 0; i < s->n; i++)
    if (s->kinds[i] == K_WAITABLE && !s->ready[i])
      s->ready[i] = WaitForSingleObject(MPROC__W32_HANDLE(s->fds[i]), 0) == WAIT_OBJECT_0;
}

static size_t count_ready(const poll_set *s) {
  size_t k = 0;
  for (size_t i = 0; i < s->n; i++)
    k += s->ready[i];
  return k;
}

static int poll_wait(poll_set *s, int64_t deadline) {
  size_t nwaitable = 0;
  int r = 0;

  for (size_t i = 0; i < s->n; i++)
    nwaitable += s->kinds[i] == K_WAITABLE;
  for (;;) {
    bool done;
    DWORD w = WAIT_OBJECT_0;
    ResetEvent(s->event);
    r = arm(s, nwaitable, &done);
    if (r == 0 && !done) {
      w = WaitForMultipleObjects(s->ndirect, s->direct, FALSE, mproc__w32_wait_ms(deadline));
      if (w == WAIT_FAILED)
        r = mproc__error_os((int)GetLastError(), "WaitForMultipleObjects() on %lu handles failed",
                            s->ndirect);
    }
    disarm(s);
    if (r != 0 || count_ready(s) > 0)
      return r;
    if (w == WAIT_TIMEOUT && mproc__remaining(deadline) == 0)
      return 0;
  }
}

int mproc__os_poll_read(const mproc__fd *fds, size_t n, double timeout, unsigned char *ready,
                        size_t *nready) {
  int64_t deadline = mproc__deadline(timeout);
  poll_set s;
  int r = 0;

  memset(&s, 0, sizeof s);
  s.n = n;
  s.fds = fds;
  s.ready = ready;
  s.kinds = calloc(n ? n : 1, sizeof *s.kinds);
  s.ov = calloc(n ? n : 1, sizeof *s.ov);
  s.pending = calloc(n ? n : 1, sizeof *s.pending);
  s.registered = calloc(n ? n : 1, sizeof *s.registered);
  if (s.kinds == NULL || s.ov == NULL || s.pending == NULL || s.registered == NULL) {
    r = mproc__error(MPROC_ENOMEM, "cannot allocate a wait set of %zu handles", n);
    goto out;
  }
  classify(&s);
  *nready = count_ready(&s);
  if (*nready > 0 || timeout == 0)
    goto out;
  if ((s.event = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL) {
    r = mproc__error_os((int)GetLastError(), "CreateEventW() failed");
    goto out;
  }
  r = poll_wait(&s, deadline);
  *nready = count_ready(&s);
out:
  if (s.event != NULL)
    CloseHandle(s.event);
  free(s.kinds);
  free(s.ov);
  free(s.pending);
  free(s.registered);
  return r;
}
