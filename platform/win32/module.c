/* Code addresses as (module, offset), so a spawned child finds the same function
 * at its own load address; the executable's path; the CPU count. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#include <psapi.h>

/* Paths of the modules loaded when mproc_init ran: a spawned child loads the same
 * ones at start, but not what the parent loaded later with LoadLibrary. */
static char **startup_modules;
static size_t nstartup_modules;

/* The path of module m (NULL: the executable), malloc()ed as UTF-8. */
static int module_path(HMODULE m, char **path) {
  DWORD cap = MAX_PATH;
  for (;;) {
    wchar_t *w = malloc(cap * sizeof *w);
    DWORD n;
    if (w == NULL)
      return mproc__error(MPROC_ENOMEM, "out of memory");
    n = GetModuleFileNameW(m, w, cap);
    if (n == 0) {
      DWORD e = GetLastError();
      free(w);
      return mproc__error_os((int)e, "GetModuleFileNameW() failed");
    }
    if (n < cap) {
      *path = mproc__w32_narrow(w);
      free(w);
      return *path ? 0 : mproc__error(MPROC_ENOMEM, "out of memory");
    }
    free(w);
    if (cap >= 32768) /* the longest path Windows has */
      return mproc__error(MPROC_ENOTFOUND, "the module's path is too long");
    cap *= 2;
  }
}

int mproc__os_exe_path(const char *argv0, char **path) {
  (void)argv0; /* the system always knows the executable's path */
  return module_path(NULL, path);
}

int mproc__os_modules_snapshot(void) {
  HMODULE *mods = NULL;
  DWORD need = 0, have = 0;
  int r = 0;

  if (startup_modules != NULL)
    return 0;
  /* The list may grow between the two calls: ask again until it fits. */
  do {
    HMODULE *more;
    have = need ? need : 64 * sizeof *mods;
    if ((more = realloc(mods, have)) == NULL) {
      free(mods);
      return mproc__error(MPROC_ENOMEM, "cannot record the loaded modules");
    }
    mods = more;
    if (!K32EnumProcessModules(GetCurrentProcess(), mods, have, &need)) {
      r = mproc__error_os((int)GetLastError(), "EnumProcessModules() failed");
      goto out;
    }
  } while (need > have);
  startup_modules = calloc(need / sizeof *mods + 1, sizeof *startup_modules);
  if (startup_modules == NULL) {
    r = mproc__error(MPROC_ENOMEM, "cannot record the loaded modules");
    goto out;
  }
  for (size_t i = 0; i < need / sizeof *mods; i++) {
    if ((r = module_path(mods[i], &startup_modules[nstartup_modules])) != 0)
      goto out;
    nstartup_modules++;
  }
out:
  free(mods);
  return r;
}

static bool loaded_at_startup(const char *path) {
  for (size_t i = 0; i < nstartup_modules; i++)
    if (strcmp(startup_modules[i], path) == 0)
      return true;
  return false;
}

static bool is_code(const void *addr) {
  MEMORY_BASIC_INFORMATION mbi;
  const DWORD exec = PAGE_EXECUTE | PAGE_EXECUTE_READ | PAGE_EXECUTE_READWRITE |
                     PAGE_EXECUTE_WRITECOPY;
  return VirtualQuery(addr, &mbi, sizeof mbi) == sizeof mbi && mbi.State == MEM_COMMIT &&
         (mbi.Protect & exec) != 0;
}

/* The size of a loaded image, from its PE headers. */
static size_t image_size(HMODULE m) {
  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)m;
  const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)((const char *)m + dos->e_lfanew);
  return nt->OptionalHeader.SizeOfImage;
}

int mproc__os_addr_to_ref(const void *addr, char **module, uint64_t *offset) {
  HMODULE m;
  char *path = NULL;
  int r;

  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                              GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          (LPCWSTR)addr, &m))
    return mproc__error(MPROC_ENOTFOUND,
                        "address 0x%" PRIxPTR " is in no loaded module: a spawned child cannot "
                        "find it",
                        (uintptr_t)addr);
  if (m == GetModuleHandleW(NULL)) {
    path = malloc(1);
    if (path == NULL)
      return mproc__error(MPROC_ENOMEM, "out of memory");
    path[0] = '\0';
  } else if ((r = module_path(m, &path)) != 0) {
    return r;
  }
  if (!is_code(addr)) {
    r = mproc__error(MPROC_ENOTFOUND, "address 0x%" PRIxPTR " in module \"%s\" is not code",
                     (uintptr_t)addr,
                     path[0] ? path : "(executable)");
    free(path);
    return r;
  }
  if (path[0] != '\0' && !loaded_at_startup(path)) {
    r = mproc__error(MPROC_ENOTFOUND,
                     "function 0x%" PRIxPTR " is in \"%s\", which was loaded after "
                     "mproc_init(): a spawned child does not load it",
                     (uintptr_t)addr, path);
    free(path);
    return r;
  }
  *module = path;
  *offset = (uint64_t)((uintptr_t)addr - (uintptr_t)m);
  return 0;
}

int mproc__os_ref_to_addr(const char *module, uint64_t offset, void **addr) {
  HMODULE m;
  char *a;

  if (module[0] == '\0') {
    m = GetModuleHandleW(NULL);
  } else {
    wchar_t *w = mproc__w32_widen(module);
    if (w == NULL)
      return mproc__error(MPROC_EINVAL, "module name \"%s\" is not UTF-8", module);
    m = GetModuleHandleW(w); /* only a loaded one: nothing is loaded here */
    free(w);
  }
  if (m == NULL || offset >= image_size(m) || !is_code(a = (char *)m + offset))
    return mproc__error(MPROC_ENOTFOUND, "no code at offset %#llx of module \"%s\" in this process",
                        (unsigned long long)offset, module[0] ? module : "(executable)");
  *addr = a;
  return 0;
}

void mproc__os_yield(void) { SwitchToThread(); }

int mproc__os_cpu_count(void) {
  DWORD all = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  DWORD_PTR mine, sys;
  int n = 0;

  /* The CPUs this process may run on, as sched_getaffinity tells on Linux; an
   * affinity mask only covers one processor group, so not beyond 64 CPUs. */
  if (all <= 64 && GetProcessAffinityMask(GetCurrentProcess(), &mine, &sys))
    for (; mine != 0; mine &= mine - 1)
      n++;
  if (n == 0)
    n = (int)all;
  return n > 0 ? n : 1;
}
