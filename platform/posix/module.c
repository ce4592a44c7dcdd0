/* Code addresses as (module, offset), so a spawned child finds the same function
 * at its own load address; the executable's path; the CPU count. */
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Modules loaded when mproc_init ran: a spawned child loads the same ones at start,
 * but not what the parent dlopen()ed later. */
static char **startup_modules;
static size_t nstartup_modules;

int mproc__os_exe_path(const char *argv0, char **path) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);

  if (n > 0) {
    buf[n] = '\0';
    *path = strdup(buf);
  } else if (argv0 != NULL && realpath(argv0, buf) != NULL) {
    *path = strdup(buf);
  } else {
    return mproc__error(MPROC_ENOTFOUND,
                        "cannot find the running executable (no /proc/self/exe and argv[0] "
                        "\"%s\" does not name a file)",
                        argv0 ? argv0 : "(null)");
  }
  return *path ? 0 : mproc__error(MPROC_ENOMEM, "out of memory");
}

static int collect_module(struct dl_phdr_info *info, size_t size, void *data) {
  char **list;
  (void)size;
  (void)data;
  if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
    return 0; /* the executable, always present */
  list = realloc(startup_modules, (nstartup_modules + 1) * sizeof *list);
  if (list == NULL)
    return 1;
  startup_modules = list;
  startup_modules[nstartup_modules] = strdup(info->dlpi_name);
  if (startup_modules[nstartup_modules] == NULL)
    return 1;
  nstartup_modules++;
  return 0;
}

int mproc__os_modules_snapshot(void) {
  if (startup_modules != NULL)
    return 0;
  if (dl_iterate_phdr(collect_module, NULL) != 0)
    return mproc__error(MPROC_ENOMEM, "cannot record the loaded modules");
  return 0;
}

static bool loaded_at_startup(const char *name) {
  for (size_t i = 0; i < nstartup_modules; i++)
    if (strcmp(startup_modules[i], name) == 0)
      return true;
  return false;
}

typedef struct find_req {
  /* in: an address, or a module name to look up */
  uintptr_t addr;
  const char *name;
  uint64_t offset;
  size_t seen; /* objects visited so far */
  /* out */
  bool found, executable;
  const char *found_name;
  uintptr_t base;
} find_req;

static bool in_exec_segment(const struct dl_phdr_info *info, uintptr_t addr, bool *any) {
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type != PT_LOAD || addr < lo || addr - lo >= ph->p_memsz)
      continue;
    *any = true;
    if (ph->p_flags & PF_X)
      return true;
  }
  return false;
}

static int find_by_addr(struct dl_phdr_info *info, size_t size, void *data) {
  find_req *q = data;
  bool any = false;
  (void)size;
  q->executable = in_exec_segment(info, q->addr, &any);
  if (!any)
    return 0;
  q->found = true;
  q->found_name = info->dlpi_name ? info->dlpi_name : "";
  q->base = info->dlpi_addr;
  return 1;
}

/* The executable is the first object dl_iterate_phdr reports. */
static int find_by_name(struct dl_phdr_info *info, size_t size, void *data) {
  find_req *q = data;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  bool any = false, first = q->seen++ == 0;
  (void)size;
  if (q->name[0] == '\0' ? !first : strcmp(name, q->name) != 0)
    return 0;
  q->found = true;
  q->base = info->dlpi_addr;
  q->executable = in_exec_segment(info, info->dlpi_addr + (uintptr_t)q->offset, &any);
  return 1;
}

int mproc__os_addr_to_ref(const void *addr, char **module, uint64_t *offset) {
  find_req q;

  memset(&q, 0, sizeof q);
  q.addr = (uintptr_t)addr;
  dl_iterate_phdr(find_by_addr, &q);
  if (!q.found)
    return mproc__error(MPROC_ENOTFOUND,
                        "address %p is in no loaded module: a spawned child cannot find it",
                        addr);
  if (!q.executable)
    return mproc__error(MPROC_ENOTFOUND, "address %p in module \"%s\" is not code", addr,
                        q.found_name[0] ? q.found_name : "(executable)");
  if (q.found_name[0] != '\0' && !loaded_at_startup(q.found_name))
    return mproc__error(MPROC_ENOTFOUND,
                        "function %p is in \"%s\", which was loaded after mproc_init(): a "
                        "spawned child does not load it",
                        addr, q.found_name);
  *module = strdup(q.found_name);
  if (*module == NULL)
    return mproc__error(MPROC_ENOMEM, "out of memory");
  *offset = (uint64_t)(q.addr - q.base);
  return 0;
}

int mproc__os_ref_to_addr(const char *module, uint64_t offset, void **addr) {
  find_req q;

  memset(&q, 0, sizeof q);
  q.name = module;
  q.offset = offset;
  dl_iterate_phdr(find_by_name, &q);
  if (!q.found || !q.executable)
    return mproc__error(MPROC_ENOTFOUND, "no code at offset %#llx of module \"%s\" in this process",
                        (unsigned long long)offset, module[0] ? module : "(executable)");
  *addr = (void *)(q.base + (uintptr_t)offset);
  return 0;
}

int mproc__os_cpu_count(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
