/* Code addresses as (module, offset), so a spawned child finds the same function
 * at its own load address; the executable's path; the CPU count. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "posix.h"

#if defined(MPROC_HAVE_DL_ITERATE_PHDR)
#include <link.h>
#elif defined(__APPLE__)
#include <mach-o/dyld.h>
#include <mach-o/loader.h>
#else
#error "mproc needs dl_iterate_phdr or dyld to list the loaded modules"
#endif
#if defined(__FreeBSD__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

/* The running executable's path as the system knows it, into buf. */
static bool system_exe_path(char *buf, size_t cap) {
#if MPROC__USE_PROC_SELF_EXE
  ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
  if (n <= 0)
    return false;
  buf[n] = '\0';
  return true;
#elif defined(__APPLE__)
  char raw[PATH_MAX + 1];
  uint32_t size = sizeof raw;
  return cap >= PATH_MAX + 1 && _NSGetExecutablePath(raw, &size) == 0 &&
         realpath(raw, buf) != NULL;
#elif defined(__FreeBSD__)
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PATHNAME, -1};
  size_t len = cap;
  return sysctl(mib, 4, buf, &len, NULL, 0) == 0 && len > 1;
#else
  (void)buf;
  (void)cap;
  return false;
#endif
}

int mproc__os_exe_path(const char *argv0, char **path) {
  char buf[PATH_MAX + 1];

  if (system_exe_path(buf, sizeof buf)) {
    *path = strdup(buf);
  } else if (argv0 != NULL && realpath(argv0, buf) != NULL) {
    *path = strdup(buf);
  } else {
    return mproc__error(MPROC_ENOTFOUND,
                        "cannot find the running executable (the system does not say and "
                        "argv[0] \"%s\" does not name a file)",
                        argv0 ? argv0 : "(null)");
  }
  return *path ? 0 : mproc__error(MPROC_ENOMEM, "out of memory");
}

#if MPROC__USE_PHDR_LOOKUP

/* Every lookup walks the loaded objects with dl_iterate_phdr. */

/* Modules loaded when mproc_init ran: a spawned child loads the same ones at start,
 * but not what the parent dlopen()ed later. */
static char **startup_modules;
static size_t nstartup_modules;

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

#else /* !MPROC__USE_PHDR_LOOKUP */

/* The loaded images are listed once, at start-up (dl_iterate_phdr, or dyld on macOS),
 * and every lookup asks dladdr which image holds an address. Only images listed
 * then can be named: a spawned child loads the same ones at start, but not what the
 * parent dlopen()ed later. An image is known by what dladdr reports for it (its
 * dli_fbase and dli_fname), so that both sides of a lookup agree. */

typedef struct code_range {
  uintptr_t lo, hi;
} code_range;

typedef struct image {
  char *name;     /* dli_fname; "" for the executable */
  uintptr_t base; /* dli_fbase: offsets are counted from here */
  code_range *code;
  size_t ncode;
} image;

static image *images;
static size_t nimages;

/* Records the image holding `inside`, with its executable ranges. */
static int add_image(const void *inside, bool executable, const code_range *code, size_t ncode) {
  Dl_info di;
  image *list, *im;

  if (dladdr(inside, &di) == 0 || di.dli_fbase == NULL)
    return 0; /* dladdr cannot name it, so no lookup can land in it */
  list = realloc(images, (nimages + 1) * sizeof *list);
  if (list == NULL)
    return -1;
  images = list;
  im = &images[nimages];
  im->name = strdup(executable || di.dli_fname == NULL ? "" : di.dli_fname);
  im->base = (uintptr_t)di.dli_fbase;
  im->code = ncode ? malloc(ncode * sizeof *code) : NULL;
  im->ncode = ncode;
  if (im->name == NULL || (ncode && im->code == NULL)) {
    free(im->name);
    free(im->code);
    return -1;
  }
  if (ncode)
    memcpy(im->code, code, ncode * sizeof *code);
  nimages++;
  return 0;
}

#if defined(MPROC_HAVE_DL_ITERATE_PHDR)

typedef struct walk {
  size_t seen;
  int failed;
} walk;

/* The executable is the first object dl_iterate_phdr reports. */
static int list_object(struct dl_phdr_info *info, size_t size, void *data) {
  walk *w = data;
  code_range code[16];
  size_t ncode = 0;
  const void *inside = NULL;
  bool executable = w->seen++ == 0;
  (void)size;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
      continue;
    if (inside == NULL)
      inside = (const void *)lo;
    if ((ph->p_flags & PF_X) && ncode < sizeof code / sizeof code[0])
      code[ncode++] = (code_range){lo, lo + ph->p_memsz};
  }
  if (inside != NULL && add_image(inside, executable, code, ncode) != 0) {
    w->failed = 1;
    return 1;
  }
  return 0;
}

static int list_images(void) {
  walk w = {0, 0};
  dl_iterate_phdr(list_object, &w);
  return w.failed ? -1 : 0;
}

#else /* __APPLE__ */

#if defined(__LP64__)
typedef struct mach_header_64 mach_header_t;
typedef struct segment_command_64 segment_command_t;
#define MPROC__LC_SEGMENT LC_SEGMENT_64
#else
typedef struct mach_header mach_header_t;
typedef struct segment_command segment_command_t;
#define MPROC__LC_SEGMENT LC_SEGMENT
#endif

/* dyld may add images while this runs (another thread's dlopen): an image added
 * after the count was read is not listed, as if loaded after mproc_init. */
static int list_images(void) {
  uint32_t n = _dyld_image_count();
  for (uint32_t i = 0; i < n; i++) {
    const mach_header_t *h = (const mach_header_t *)_dyld_get_image_header(i);
    uintptr_t slide = (uintptr_t)_dyld_get_image_vmaddr_slide(i);
    const struct load_command *lc;
    code_range code[16];
    size_t ncode = 0;
    if (h == NULL)
      continue;
    lc = (const struct load_command *)(h + 1);
    for (uint32_t k = 0; k < h->ncmds; k++) {
      if (lc->cmd == MPROC__LC_SEGMENT) {
        const segment_command_t *seg = (const segment_command_t *)lc;
        if ((seg->initprot & VM_PROT_EXECUTE) && seg->vmsize != 0 &&
            ncode < sizeof code / sizeof code[0])
          code[ncode++] = (code_range){(uintptr_t)seg->vmaddr + slide,
                                       (uintptr_t)seg->vmaddr + slide + (uintptr_t)seg->vmsize};
      }
      lc = (const struct load_command *)((const char *)lc + lc->cmdsize);
    }
    if (add_image(h, h->filetype == MH_EXECUTE, code, ncode) != 0)
      return -1;
  }
  return 0;
}

#endif

int mproc__os_modules_snapshot(void) {
  if (images != NULL)
    return 0;
  if (list_images() != 0)
    return mproc__error(MPROC_ENOMEM, "cannot record the loaded modules");
  return 0;
}

static bool is_code(const image *im, uintptr_t addr) {
  for (size_t i = 0; i < im->ncode; i++)
    if (addr >= im->code[i].lo && addr < im->code[i].hi)
      return true;
  return false;
}

static const image *image_at(uintptr_t base, const char *name) {
  for (size_t i = 0; i < nimages; i++)
    if (images[i].base == base && (images[i].name[0] == '\0' || strcmp(images[i].name, name) == 0))
      return &images[i];
  return NULL;
}

static const image *image_named(const char *name) {
  for (size_t i = 0; i < nimages; i++)
    if (strcmp(images[i].name, name) == 0)
      return &images[i];
  return NULL;
}

int mproc__os_addr_to_ref(const void *addr, char **module, uint64_t *offset) {
  Dl_info di;
  const image *im;
  const char *name;

  if (dladdr(addr, &di) == 0 || di.dli_fbase == NULL)
    return mproc__error(MPROC_ENOTFOUND,
                        "address %p is in no loaded module: a spawned child cannot find it",
                        addr);
  name = di.dli_fname ? di.dli_fname : "";
  im = image_at((uintptr_t)di.dli_fbase, name);
  if (im == NULL)
    return mproc__error(MPROC_ENOTFOUND,
                        "function %p is in \"%s\", which was loaded after mproc_init(): a "
                        "spawned child does not load it",
                        addr, name);
  if (!is_code(im, (uintptr_t)addr))
    return mproc__error(MPROC_ENOTFOUND, "address %p in module \"%s\" is not code", addr,
                        im->name[0] ? im->name : "(executable)");
  *module = strdup(im->name);
  if (*module == NULL)
    return mproc__error(MPROC_ENOMEM, "out of memory");
  *offset = (uint64_t)((uintptr_t)addr - im->base);
  return 0;
}

int mproc__os_ref_to_addr(const char *module, uint64_t offset, void **addr) {
  const image *im = image_named(module);
  uintptr_t a = im ? im->base + (uintptr_t)offset : 0;

  if (im == NULL || !is_code(im, a))
    return mproc__error(MPROC_ENOTFOUND, "no code at offset %#llx of module \"%s\" in this process",
                        (unsigned long long)offset, module[0] ? module : "(executable)");
  *addr = (void *)a;
  return 0;
}

#endif /* MPROC__USE_PHDR_LOOKUP */

void mproc__os_yield(void) { sched_yield(); }

int mproc__os_cpu_count(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
