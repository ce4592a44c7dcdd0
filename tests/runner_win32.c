/* The runner's OS helpers for Windows (see runner.h); runner_posix.c has POSIX's. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include "runner.h"

#include <fcntl.h>
#include <io.h>
#include <process.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>
#include <psapi.h>
#include <tlhelp32.h>

long test_getpid(void) { return (long)GetCurrentProcessId(); }

long test_getppid(void) {
  DWORD me = GetCurrentProcessId();
  long parent = -1;
  PROCESSENTRY32 e;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);

  if (snap == INVALID_HANDLE_VALUE)
    return -1;
  e.dwSize = sizeof e;
  for (BOOL more = Process32First(snap, &e); more; more = Process32Next(snap, &e))
    if (e.th32ProcessID == me) {
      parent = (long)e.th32ParentProcessID;
      break;
    }
  CloseHandle(snap);
  return parent;
}

bool kill_hard(long pid) {
  HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, (DWORD)pid);
  BOOL ok;
  if (h == NULL)
    return false;
  /* mproc's own code for a kill (platform/win32/win32.h), so that the process is
   * reported as killed (-9), as under SIGKILL. */
  ok = TerminateProcess(h, 0x10009u);
  CloseHandle(h);
  return ok != 0;
}

void crash_now(void) { *(volatile int *)(uintptr_t)8 = 0; }

int count_open_fds(void) {
  DWORD n = 0;
  if (!GetProcessHandleCount(GetCurrentProcess(), &n))
    return -1;
  return (int)n;
}

/* Whether pid is a process that has not ended: 1 running, 0 ended or unknown. */
static bool pid_running(long pid) {
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
  bool running;
  if (h == NULL)
    return false;
  running = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
  CloseHandle(h);
  return running;
}

char proc_state(long pid) { return pid_running(pid) ? 'R' : 0; }

bool pid_gone(long pid) { return !pid_running(pid); }

/* A process that has ended leaves nothing to reap on Windows: its object lives on only
 * while someone holds a handle to it. */
bool pid_reaped(long pid) { return !pid_running(pid); }

bool wait_asleep(long pid, double seconds) {
  (void)pid;
  sleep_seconds(seconds < 0.2 ? seconds : 0.2);
  return true;
}

void sleep_seconds(double s) { Sleep(s <= 0 ? 0 : (DWORD)(s * 1000 + 0.5)); }

void test_yield(void) { SwitchToThread(); }

static unsigned __stdcall thread_main(void *arg) {
  test_thread *t = arg;
  t->ret = t->fn(t->arg);
  return 0;
}

int test_thread_start(test_thread *t, void *(*fn)(void *), void *arg) {
  t->fn = fn;
  t->arg = arg;
  t->ret = NULL;
  t->handle = (void *)_beginthreadex(NULL, 0, thread_main, t, 0, NULL);
  return t->handle != NULL ? 0 : -1;
}

int test_thread_join(test_thread *t, void **ret) {
  if (WaitForSingleObject(t->handle, INFINITE) != WAIT_OBJECT_0)
    return -1;
  CloseHandle(t->handle);
  t->handle = NULL;
  if (ret != NULL)
    *ret = t->ret;
  return 0;
}

double now_seconds(void) {
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  return (double)c.QuadPart / (double)f.QuadPart;
}

bool raise_nofile(size_t need) {
  (void)need;
  return true;
}

/* Appends arg to cmd, quoted as CommandLineToArgvW reads it back (libuv's
 * quote_cmd_arg): backslashes double only before a quote. */
static void append_quoted(char *cmd, size_t cap, const char *arg) {
  size_t n = strlen(cmd);
  if (n > 0 && n + 1 < cap)
    cmd[n++] = ' ';
  if (n + 1 < cap)
    cmd[n++] = '"';
  for (const char *p = arg;; p++) {
    size_t slashes = 0;
    while (*p == '\\')
      slashes++, p++;
    if (*p == '\0' || *p == '"')
      slashes = slashes * 2 + (*p == '"');
    while (slashes-- > 0 && n + 1 < cap)
      cmd[n++] = '\\';
    if (*p == '\0')
      break;
    if (n + 1 < cap)
      cmd[n++] = *p;
  }
  if (n + 1 < cap)
    cmd[n++] = '"';
  cmd[n] = '\0';
}

/* The process run_self() started last, for wait_self(). */
static HANDLE last_self;

long run_self(const char *const *args, intptr_t *out_fd) {
  char exe[MAX_PATH + 1], cmd[8192] = "";
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  STARTUPINFOA si;
  PROCESS_INFORMATION pi;
  HANDLE rd, wr;
  DWORD len = GetModuleFileNameA(NULL, exe, sizeof exe);

  if (len == 0 || len >= sizeof exe)
    fail_msg("GetModuleFileName failed");
  append_quoted(cmd, sizeof cmd, exe);
  while (*args != NULL)
    append_quoted(cmd, sizeof cmd, *args++);
  if (!CreatePipe(&rd, &wr, &sa, 0))
    fail_msg("CreatePipe failed (%lu)", (unsigned long)GetLastError());
  /* Only the write end goes to the child. */
  SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = wr;
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  if (!CreateProcessA(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
    fail_msg("CreateProcess of %s failed (%lu)", exe, (unsigned long)GetLastError());
  CloseHandle(wr);
  CloseHandle(pi.hThread);
  last_self = pi.hProcess;
  *out_fd = (intptr_t)rd;
  return (long)pi.dwProcessId;
}

bool read_to_end(intptr_t fd, char *buf, size_t cap, double seconds) {
  HANDLE h = (HANDLE)fd;
  double end = now_seconds() + seconds;
  size_t n = 0;
  bool ok = false;

  /* An anonymous pipe has no overlapped reads: peek, and read only what is there. */
  while (n < cap - 1) {
    DWORD avail = 0, got = 0;
    if (!PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL)) {
      ok = GetLastError() == ERROR_BROKEN_PIPE;
      break;
    }
    if (avail == 0) {
      if (now_seconds() >= end)
        break;
      Sleep(10);
      continue;
    }
    if (avail > cap - 1 - n)
      avail = (DWORD)(cap - 1 - n);
    if (!ReadFile(h, buf + n, avail, &got, NULL)) {
      ok = GetLastError() == ERROR_BROKEN_PIPE;
      break;
    }
    n += got;
  }
  if (n == cap - 1)
    ok = true;
  buf[n] = '\0';
  CloseHandle(h);
  return ok;
}

fd_kind fd_state(intptr_t fd) {
  DWORD flags;
  if (!GetHandleInformation((HANDLE)fd, &flags))
    return FD_CLOSED;
  return (flags & HANDLE_FLAG_INHERIT) ? FD_INHERITABLE : FD_PRIVATE;
}

/* The connection's handle may be overlapped (a named pipe) or not: an OVERLAPPED with
 * its own event works for both, as a synchronous write would not on the former. */
bool write_fd_all(intptr_t fd, const void *buf, size_t len) {
  const unsigned char *p = buf;
  OVERLAPPED ov;
  bool ok = true;

  memset(&ov, 0, sizeof ov);
  ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (ov.hEvent == NULL)
    return false;
  while (ok && len > 0) {
    DWORD chunk = len > (1u << 30) ? (1u << 30) : (DWORD)len, done = 0;
    ResetEvent(ov.hEvent);
    if (!WriteFile((HANDLE)fd, p, chunk, &done, &ov) &&
        (GetLastError() != ERROR_IO_PENDING ||
         !GetOverlappedResult((HANDLE)fd, &ov, &done, TRUE)))
      ok = false;
    else if (done == 0)
      ok = false;
    p += done;
    len -= done;
  }
  CloseHandle(ov.hEvent);
  return ok;
}

uint64_t available_memory(void) {
  MEMORYSTATUSEX m;
  m.dwLength = sizeof m;
  if (!GlobalMemoryStatusEx(&m))
    return 0;
  return m.ullAvailPhys;
}

int wait_self(long pid) {
  DWORD code = 0;
  (void)pid;
  if (last_self == NULL || WaitForSingleObject(last_self, INFINITE) != WAIT_OBJECT_0 ||
      !GetExitCodeProcess(last_self, &code))
    code = (DWORD)-1;
  if (last_self != NULL)
    CloseHandle(last_self);
  last_self = NULL;
  return code <= 255 ? (int)code : -1;
}


static int capture_fd = -1, capture_saved = -1;

/* The C runtime's _dup2 onto 2 also sets the process's standard error handle, which is
 * what a started child receives. */
void stderr_capture_begin(void) {
  char dir[MAX_PATH + 1], path[MAX_PATH + 1];
  assert_true(GetTempPathA(sizeof dir, dir) > 0);
  assert_true(GetTempFileNameA(dir, "mpt", 0, path) != 0);
  capture_fd = _open(path, _O_RDWR | _O_BINARY | _O_TEMPORARY);
  assert_true(capture_fd >= 0);
  fflush(stderr);
  capture_saved = _dup(2);
  assert_true(capture_saved >= 0);
  assert_true(_dup2(capture_fd, 2) == 0);
}

char *stderr_capture_end(void) {
  char *buf = calloc(1, 65536);
  int n;
  fflush(stderr);
  _dup2(capture_saved, 2);
  _close(capture_saved);
  _lseek(capture_fd, 0, SEEK_SET);
  n = _read(capture_fd, buf, 65535);
  _close(capture_fd);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

void *late_library_symbol(const char **name) {
  /* Libraries of every Windows (and of wine), with one of their functions: the first
   * that this process has not loaded yet. */
  static const char *const libs[][3] = {
      {"version.dll", "version", "GetFileVersionInfoSizeA"},
      {"dbghelp.dll", "dbghelp", "SymInitialize"},
      {"winhttp.dll", "winhttp", "WinHttpOpen"},
      {"imagehlp.dll", "imagehlp", "ImageLoad"},
  };
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    HMODULE lib;
    if (GetModuleHandleA(libs[i][0]) != NULL || (lib = LoadLibraryA(libs[i][0])) == NULL)
      continue;
    *name = libs[i][1];
    return (void *)GetProcAddress(lib, libs[i][2]);
  }
  *name = "";
  return NULL;
}

void shm_name_remove(const char *name) { (void)name; }

unsigned char *faulting_area(size_t len, size_t fault_at) {
  size_t page = 4096, maplen = (len + page - 1) / page * page;
  unsigned char *p = VirtualAlloc(NULL, maplen, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  DWORD old;
  if (p == NULL)
    return NULL;
  if (fault_at < maplen && !VirtualProtect(p + fault_at, maplen - fault_at, PAGE_NOACCESS, &old))
    return NULL;
  return p;
}

int count_children(int *zombies) {
  DWORD me = GetCurrentProcessId();
  int n = 0;
  PROCESSENTRY32 e;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);

  *zombies = 0;
  if (snap == INVALID_HANDLE_VALUE)
    return -1;
  e.dwSize = sizeof e;
  for (BOOL more = Process32First(snap, &e); more; more = Process32Next(snap, &e))
    if (e.th32ParentProcessID == me && e.th32ProcessID != me)
      n++;
  CloseHandle(snap);
  return n;
}

long resident_kib(void) {
  PROCESS_MEMORY_COUNTERS c;
  if (!K32GetProcessMemoryInfo(GetCurrentProcess(), &c, sizeof c))
    return -1;
  return (long)(c.WorkingSetSize / 1024);
}
