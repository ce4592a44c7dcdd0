/* Windows processes: CreateProcessW of the running executable with exactly the
 * child's handles, a job object that ends the children with us, waits with
 * timeouts, TerminateProcess, and the lifeline a child watches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

/* ------------------------------------------------------------- quoting */

static bool needs_quotes(const wchar_t *arg) {
  return arg[0] == L'\0' || wcspbrk(arg, L" \t\n\v\"") != NULL;
}

/*
 * The inverse of how the C runtime and CommandLineToArgvW split a command line: an
 * argument with a blank or a quote (or an empty one) goes in quotes; inside them,
 * backslashes are literal unless they precede a quote, so a run of n backslashes
 * before a quote, or before the closing quote, is doubled, and the quote itself is
 * escaped. The same rules as libuv's quote_cmd_arg, written forwards.
 */
size_t mproc__w32_quote_arg(const wchar_t *arg, wchar_t *out) {
  size_t n = 0;

#define PUT(c)                                                                                 \
  do {                                                                                         \
    if (out != NULL)                                                                           \
      out[n] = (c);                                                                            \
    n++;                                                                                       \
  } while (0)

  if (!needs_quotes(arg)) {
    for (const wchar_t *p = arg; *p; p++)
      PUT(*p);
    return n;
  }
  PUT(L'"');
  for (const wchar_t *p = arg;; p++) {
    size_t slashes = 0;
    while (*p == L'\\') {
      slashes++;
      p++;
    }
    if (*p == L'\0') {
      /* Doubled, so that the closing quote stays a quote. */
      for (size_t i = 0; i < 2 * slashes; i++)
        PUT(L'\\');
      break;
    }
    if (*p == L'"') {
      for (size_t i = 0; i < 2 * slashes + 1; i++)
        PUT(L'\\');
    } else {
      for (size_t i = 0; i < slashes; i++)
        PUT(L'\\');
    }
    PUT(*p);
  }
  PUT(L'"');
#undef PUT
  return n;
}

/* "argv0" MPROC__SPAWN_FLAG <boot>, malloc()ed. */
static wchar_t *command_line(const wchar_t *argv0, mproc__fd boot) {
  char tail[64];
  size_t n = mproc__w32_quote_arg(argv0, NULL), t;
  wchar_t *line;

  /* ASCII only: widened character by character. */
  snprintf(tail, sizeof tail, " %s %lld", MPROC__SPAWN_FLAG, (long long)boot);
  t = strlen(tail);
  line = malloc((n + t + 1) * sizeof *line);
  if (line == NULL)
    return NULL;
  mproc__w32_quote_arg(argv0, line);
  for (size_t i = 0; i <= t; i++)
    line[n + i] = (wchar_t)tail[i];
  return line;
}

/* ------------------------------------------------------------ the job */

/* Every child goes into one job that ends them all when its last handle, ours,
 * closes: however this process ends, none outlives it. The handle is never
 * inherited, so children do not keep the job (and themselves) alive. */
static INIT_ONCE job_once = INIT_ONCE_STATIC_INIT;
static HANDLE job;

static BOOL CALLBACK make_job(INIT_ONCE *once, void *param, void **ctx) {
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
  (void)once;
  (void)param;
  (void)ctx;
  job = CreateJobObjectW(NULL, NULL);
  if (job == NULL)
    return TRUE; /* children still have their lifeline */
  memset(&li, 0, sizeof li);
  li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
  if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &li, sizeof li)) {
    CloseHandle(job);
    job = NULL;
  }
  return TRUE;
}

static HANDLE children_job(void) {
  InitOnceExecuteOnce(&job_once, make_job, NULL, NULL);
  return job;
}

/* -------------------------------------------------------------- spawn */

/* What CreateProcessW needs beyond the command line; everything here is undone by
 * spawn_free. */
typedef struct spawn_ctx {
  HANDLE *inherit; /* inheritable duplicates: the child's handles, then std handles */
  size_t ninherit;
  HANDLE std[3];
  LPPROC_THREAD_ATTRIBUTE_LIST attrs;
  bool attrs_ready;
} spawn_ctx;

static void spawn_free(spawn_ctx *c) {
  for (size_t i = 0; i < c->ninherit; i++)
    CloseHandle(c->inherit[i]);
  free(c->inherit);
  if (c->attrs_ready)
    DeleteProcThreadAttributeList(c->attrs);
  free(c->attrs);
}

/*
 * Handles are made inheritable as duplicates, and only those duplicates are listed
 * with PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the originals stay private, and a child
 * started concurrently by another of our threads inherits nothing of this one's.
 */
static int inheritable_copy(HANDLE h, HANDLE *copy) {
  if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), copy, 0, TRUE,
                       DUPLICATE_SAME_ACCESS))
    return mproc__error_os((int)GetLastError(), "DuplicateHandle() of handle %p for the child failed",
                           h);
  return 0;
}

static int spawn_prepare(spawn_ctx *c, const mproc__os_start *start, mproc__fd *child_fds) {
  static const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  SIZE_T size = 0;
  int r;

  c->inherit = calloc(start->nkeep + 3, sizeof *c->inherit);
  if (c->inherit == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate the child's handle list");
  for (size_t i = 0; i < start->nkeep; i++) {
    if ((r = inheritable_copy(MPROC__W32_HANDLE(start->keep[i]), &c->inherit[c->ninherit])) != 0)
      return r;
    /* An inherited handle has the same value in the child. */
    child_fds[i] = MPROC__W32_FD(c->inherit[c->ninherit++]);
  }
  /* The child writes to our console or files, as a POSIX child shares 0-2. A
   * standard handle that cannot be duplicated (none, or a pseudo console handle of
   * an old system) is left out rather than failing the start. */
  for (int k = 0; k < 3; k++) {
    HANDLE h = GetStdHandle(which[k]);
    if (h == NULL || h == INVALID_HANDLE_VALUE ||
        !DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &c->std[k], 0, TRUE,
                         DUPLICATE_SAME_ACCESS)) {
      c->std[k] = NULL;
      continue;
    }
    c->inherit[c->ninherit++] = c->std[k];
  }
  if (c->ninherit == 0)
    return 0;
  InitializeProcThreadAttributeList(NULL, 1, 0, &size);
  if ((c->attrs = malloc(size)) == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a thread attribute list");
  if (!InitializeProcThreadAttributeList(c->attrs, 1, 0, &size))
    return mproc__error_os((int)GetLastError(), "InitializeProcThreadAttributeList() failed");
  c->attrs_ready = true;
  if (!UpdateProcThreadAttribute(c->attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, c->inherit,
                                 c->ninherit * sizeof *c->inherit, NULL, NULL))
    return mproc__error_os((int)GetLastError(),
                           "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST) failed");
  return 0;
}

/* CreateProcessW, tried again a few times when it fails with ERROR_INTERNAL_ERROR:
 * wine reports that when its loader could not be started for the new process (a
 * passing shortage on a loaded machine), and the same call succeeds moments later.
 * Every other failure is reported at once. */
static BOOL create_process(wchar_t *exe, wchar_t *line, bool inherit, DWORD flags,
                           STARTUPINFOW *si, PROCESS_INFORMATION *pi) {
  for (int attempt = 0;; attempt++) {
    if (CreateProcessW(exe, line, NULL, NULL, inherit, flags, NULL, NULL, si, pi))
      return TRUE;
    if (GetLastError() != ERROR_INTERNAL_ERROR || attempt == 4)
      return FALSE;
    Sleep(20u << attempt);
  }
}

int mproc__os_spawn(mproc__os_proc *proc, const char *exe, const char *argv0,
                    const mproc__os_start *start, mproc__fd *child_fds) {
  wchar_t *wexe = mproc__w32_widen(exe), *warg0 = mproc__w32_widen(argv0 ? argv0 : exe);
  wchar_t *line = NULL;
  spawn_ctx c;
  STARTUPINFOEXW si;
  PROCESS_INFORMATION pi;
  DWORD flags = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
  HANDLE j;
  int r;

  memset(&c, 0, sizeof c);
  if (wexe == NULL || warg0 == NULL) {
    r = mproc__error(MPROC_EINVAL, "cannot convert \"%s\" to UTF-16", wexe ? argv0 : exe);
    goto out;
  }
  if (start->nkeep == 0) {
    r = mproc__error(MPROC_EINVAL, "a spawned child needs at least its bootstrap handle");
    goto out;
  }
  if ((r = spawn_prepare(&c, start, child_fds)) != 0)
    goto out;
  if ((line = command_line(warg0, child_fds[0])) == NULL) {
    r = mproc__error(MPROC_ENOMEM, "cannot allocate the child's command line");
    goto out;
  }
  memset(&si, 0, sizeof si);
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = c.std[0];
  si.StartupInfo.hStdOutput = c.std[1];
  si.StartupInfo.hStdError = c.std[2];
  if (c.attrs_ready) {
    si.lpAttributeList = c.attrs;
    flags |= EXTENDED_STARTUPINFO_PRESENT;
  }
  if (!create_process(wexe, line, c.ninherit > 0, flags, &si.StartupInfo, &pi)) {
    r = mproc__error_os((int)GetLastError(), "CreateProcessW(\"%s\") failed", exe);
    goto out;
  }
  /* Suspended until it is in the job, so that none of its own children escape it.
   * Where jobs cannot nest (before Windows 8) this fails and the lifeline is all
   * that ends the child with us. */
  if ((j = children_job()) != NULL)
    (void)AssignProcessToJobObject(j, pi.hProcess);
  ResumeThread(pi.hThread);
  CloseHandle(pi.hThread);
  memset(proc, 0, sizeof *proc);
  proc->pid = (long)pi.dwProcessId;
  proc->waitfd = MPROC__W32_FD(pi.hProcess);
out:
  /* Our inheritable duplicates go; the child holds its own copies. */
  spawn_free(&c);
  free(line);
  free(wexe);
  free(warg0);
  return r;
}

int mproc__os_fork(mproc__os_proc *proc, const mproc__os_start *start) {
  (void)proc;
  (void)start;
  return mproc__error(MPROC_ENOTSUP, "the fork start method does not exist on Windows: use "
                                     "MPROC_START_SPAWN (the default there)");
}

bool mproc__os_can_fork(void) { return false; }

/* ------------------------------------------------------------- waiting */

static int exit_status(DWORD code) {
  if (code == MPROC__W32_EXIT_TERMINATE)
    return -15; /* SIGTERM, as POSIX reports it and Python does on Windows */
  if (code == MPROC__W32_EXIT_KILL)
    return -9; /* SIGKILL */
  return (int)code;
}

int mproc__os_proc_wait(mproc__os_proc *proc, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  HANDLE h = MPROC__W32_HANDLE(proc->waitfd);
  DWORD code;

  if (proc->reaped)
    return 0;
  for (;;) {
    DWORD w = WaitForSingleObject(h, mproc__w32_wait_ms(deadline));
    if (w == WAIT_OBJECT_0)
      break;
    if (w != WAIT_TIMEOUT)
      return mproc__error_os((int)GetLastError(), "WaitForSingleObject() on process %ld failed",
                             proc->pid);
    if (mproc__remaining(deadline) == 0)
      return MPROC_ETIMEDOUT;
  }
  if (!GetExitCodeProcess(h, &code))
    return mproc__error_os((int)GetLastError(), "GetExitCodeProcess() on process %ld failed",
                           proc->pid);
  proc->reaped = true;
  proc->exitcode = exit_status(code);
  /* As POSIX closes its pidfd: nothing waits on a reaped child. */
  CloseHandle(h);
  proc->waitfd = MPROC__FD_INVALID;
  return 0;
}

int mproc__os_proc_signal(mproc__os_proc *proc, bool force) {
  HANDLE h = MPROC__W32_HANDLE(proc->waitfd);
  if (proc->reaped)
    return 0;
  if (!TerminateProcess(h, force ? MPROC__W32_EXIT_KILL : MPROC__W32_EXIT_TERMINATE)) {
    DWORD e = GetLastError();
    /* A process that has already ended refuses (access denied): not an error. */
    if (WaitForSingleObject(h, 0) == WAIT_OBJECT_0)
      return 0;
    return mproc__error_os((int)e, "TerminateProcess(%ld) failed", proc->pid);
  }
  return 0;
}

void mproc__os_proc_release(mproc__os_proc *proc) {
  mproc__os_close(proc->waitfd);
  proc->waitfd = MPROC__FD_INVALID;
}

long mproc__os_getpid(void) { return (long)GetCurrentProcessId(); }

/* Thread and process ids share one space on Windows: unique while the thread lives. */
uint64_t mproc__os_thread_id(void) { return (uint64_t)GetCurrentThreadId(); }

_Noreturn void mproc__os_exit(int code) {
  fflush(NULL);
  _exit(code);
}

/* ------------------------------------------------------ parent's death */

/* A job is a process's, not a thread's, but it cannot be relied on alone: where
 * jobs do not nest, a child started inside someone else's job stays out of ours.
 * So every child also watches its lifeline. */
bool mproc__os_death_signal_usable(void) { return false; }

/* The parent alone holds the lifeline's write end, so the read end reports end of
 * file when the parent is gone, however it ended. */
static DWORD WINAPI lifeline_watch(void *arg) {
  mproc__fd fd = (mproc__fd)(intptr_t)arg;
  char buf[16];
  size_t got;
  while (mproc__os_read(fd, buf, sizeof buf, &got) == 0 && got > 0)
    ; /* nobody writes; ignore stray bytes */
  TerminateProcess(GetCurrentProcess(), MPROC__W32_EXIT_KILL);
  return 0;
}

int mproc__os_child_setup(const mproc__fd *keep, size_t nkeep, long parent_pid,
                          mproc__fd lifeline, bool use_signal) {
  HANDLE t;
  int r;

  (void)parent_pid; /* a closed lifeline already tells that the parent is gone */
  /* Only the listed handles were inherited; they become private again so that our
   * own children get only what they are given. */
  for (size_t i = 0; i < nkeep; i++)
    if ((r = mproc__os_set_inherit(keep[i], false)) != 0)
      return r;
  if (lifeline == MPROC__FD_INVALID)
    return 0;
  if (use_signal) {
    /* The job ends us with the parent. */
    mproc__os_close(lifeline);
    return 0;
  }
  t = CreateThread(NULL, 64 * 1024, lifeline_watch, (void *)(intptr_t)lifeline,
                   STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
  if (t == NULL)
    return mproc__error_os((int)GetLastError(), "cannot start the thread watching the parent");
  CloseHandle(t);
  return 0;
}
