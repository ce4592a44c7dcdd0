/*
 * Windows shared memory (file mappings), robust mutexes in shared memory, and waits
 * on 32-bit words shared between processes.
 *
 * Mutex: Windows' robust mutex is the named kernel mutex, whose waiter gets
 * WAIT_ABANDONED when the owner died. The 64-byte opaque in shared memory holds
 * its name; each process opens it on first use and keeps the handle until the
 * memory is unmapped.
 *
 * Word waits: WaitOnAddress works within one process only. A word in a mapping is
 * named instead by its mapping and offset: every mapping mproc makes has a kernel
 * name, the same in every process, that this process reads back from the handle
 * when it maps it (children get the handle, not the name). Beside each mapping
 * lives a parking table, a second named mapping: a sleeper records the word's
 * offset and its own wake-up event there and sleeps; a waker sets the events of
 * the sleepers on its word. A named mutex per table orders the two, and the
 * sleeper compares the word with its expected value under it, so no wake-up can
 * fall between the look and the sleep.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

#include <winternl.h>

/* ------------------------------------------------------------- names */

/* L"Local\\" + name: the session's namespace, where Python's SharedMemory lives too
 * (its names have no prefix, which means the same). */
static wchar_t *local_name(const char *name) {
  wchar_t *w = mproc__w32_widen(name), *full;
  size_t n;
  if (w == NULL)
    return NULL;
  n = wcslen(w);
  full = malloc((n + 7) * sizeof *full);
  if (full != NULL) {
    memcpy(full, L"Local\\", 6 * sizeof *full);
    memcpy(full + 6, w, (n + 1) * sizeof *full);
  }
  free(w);
  return full;
}

typedef LONG(NTAPI *query_object_fn)(HANDLE, int, void *, ULONG, ULONG *);

/* The kernel name of a named object (\Sessions\1\BaseNamedObjects\mproc-seg-...),
 * malloc()ed; NULL for an unnamed one or on failure. The same in every process
 * that holds the object. */
static wchar_t *object_name(HANDLE h) {
  static query_object_fn query;
  struct {
    UNICODE_STRING name;
    wchar_t text[1024];
  } info;
  ULONG len = 0;
  wchar_t *out;

  if (query == NULL) {
    HMODULE nt = GetModuleHandleW(L"ntdll.dll");
    /* Through void (*)(void), the cast compilers accept between function types. */
    query = nt ? (query_object_fn)(void (*)(void))GetProcAddress(nt, "NtQueryObject") : NULL;
    if (query == NULL)
      return NULL;
  }
  /* 1: ObjectNameInformation. Names longer than the buffer are not ours. */
  if (query(h, 1, &info, sizeof info, &len) != 0 || info.name.Length == 0)
    return NULL;
  out = malloc(info.name.Length + sizeof(wchar_t));
  if (out == NULL)
    return NULL;
  memcpy(out, info.name.Buffer, info.name.Length);
  out[info.name.Length / sizeof(wchar_t)] = L'\0';
  return out;
}

/* ------------------------------------------------------ shared memory */

int mproc__os_shm_create(size_t size, mproc__fd *fd) {
  uint64_t sz = size ? size : 1;
  wchar_t name[80];
  HANDLE h = NULL;
  DWORD e = 0;

  /* Named, though nobody opens it by name: the name is how every process that
   * maps it agrees on its identity (for word waits). Random, so never met by
   * chance; taken names are skipped. NULL security attributes: not inheritable. */
  for (int tries = 0; h == NULL && tries < 64; tries++) {
    swprintf(name, sizeof name / sizeof name[0], L"Local\\mproc-seg-%lu-%016llx",
             GetCurrentProcessId(), (unsigned long long)mproc__w32_random());
    h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sz >> 32),
                           (DWORD)sz, name);
    e = GetLastError();
    if (h != NULL && e == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      h = NULL;
    } else if (h == NULL) {
      break;
    }
  }
  if (h == NULL)
    return mproc__error_os((int)e, "CreateFileMappingW() of %zu bytes failed", size);
  *fd = MPROC__W32_FD(h);
  return 0;
}

/*
 * A named block ends with a trailer in its last page, past the bytes asked for. It
 * keeps what Windows does not: the exact size (a view spans whole pages) and whether
 * the block was unlinked (a mapping lives while anyone holds it, and Windows has no
 * unlink). With it, attach reports the size create was given and refuses an unlinked
 * block, as on POSIX. A block without the trailer (made by another program, Python's
 * SharedMemory say) is attached with its size in whole pages.
 */
#define TRAILER_MAGIC 0x6d70726f63736d31ull /* "mprocsm1" */

typedef struct shm_trailer {
  uint64_t magic;
  uint64_t size;
  volatile LONG unlinked;
} shm_trailer;

static size_t page_size(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}

/* The section's size for a block of size bytes: the bytes, then the trailer at the
 * very end of the last page. */
static uint64_t section_size(size_t size) {
  uint64_t page = page_size();
  return ((uint64_t)size + sizeof(shm_trailer) + page - 1) / page * page;
}

/* Maps all of h and returns the view and its trailer (NULL when it has none). */
static int map_whole(HANDLE h, const char *name, DWORD access, void **view,
                     shm_trailer **trailer) {
  MEMORY_BASIC_INFORMATION mbi;
  void *p = MapViewOfFile(h, access, 0, 0, 0);
  shm_trailer *t;
  if (p == NULL)
    return mproc__error_os((int)GetLastError(), "MapViewOfFile() of shared memory \"%s\" failed",
                           name);
  if (VirtualQuery(p, &mbi, sizeof mbi) != sizeof mbi) {
    DWORD e = GetLastError();
    UnmapViewOfFile(p);
    return mproc__error_os((int)e, "VirtualQuery() on shared memory \"%s\" failed", name);
  }
  t = (shm_trailer *)((char *)p + mbi.RegionSize - sizeof *t);
  *view = p;
  *trailer = mbi.RegionSize >= sizeof *t && t->magic == TRAILER_MAGIC &&
                     t->size <= mbi.RegionSize - sizeof *t
                 ? t
                 : NULL;
  if (*trailer == NULL) {
    /* No trailer: the region's own size stands in for it, in the field read below. */
    static MPROC__THREAD_LOCAL shm_trailer none;
    none.magic = 0;
    none.size = mbi.RegionSize;
    none.unlinked = 0;
    *trailer = &none;
  }
  return 0;
}

/* The size of a block opened by name; MPROC_ENOTFOUND once it was unlinked. */
static int mapping_size(HANDLE h, const char *name, size_t *size) {
  void *view;
  shm_trailer *t;
  int r = map_whole(h, name, FILE_MAP_READ, &view, &t);
  if (r != 0)
    return r;
  if (t->unlinked)
    r = mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\" (it was unlinked)", name);
  else
    *size = (size_t)t->size;
  UnmapViewOfFile(view);
  return r;
}

/* Writes the trailer of a block just created. */
static int write_trailer(HANDLE h, const char *name, size_t size) {
  uint64_t total = section_size(size);
  shm_trailer *t;
  char *view = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, (SIZE_T)total);
  if (view == NULL)
    return mproc__error_os((int)GetLastError(), "MapViewOfFile() of shared memory \"%s\" failed",
                           name);
  t = (shm_trailer *)(view + total - sizeof *t);
  t->size = size;
  t->unlinked = 0;
  t->magic = TRAILER_MAGIC;
  UnmapViewOfFile(view);
  return 0;
}

int mproc__os_shm_open(const char *name, bool create, size_t *size, mproc__fd *fd) {
  wchar_t *w = local_name(name[0] == '/' ? name + 1 : name);
  HANDLE h;
  DWORD e;
  int r = 0;

  if (w == NULL)
    return mproc__error(MPROC_EINVAL, "shared memory name \"%s\" is not UTF-8", name);
  if (create) {
    uint64_t sz = section_size(*size);
    h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sz >> 32),
                           (DWORD)sz, w);
    e = GetLastError();
    if (h != NULL && e == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      r = mproc__error(MPROC_ESTATE, "shared memory \"%s\" already exists", name);
    } else if (h == NULL) {
      r = mproc__error_os((int)e, "CreateFileMappingW(\"%s\") failed", name);
    } else if ((r = write_trailer(h, name, *size)) != 0) {
      CloseHandle(h);
    }
  } else {
    h = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE, w);
    if (h == NULL) {
      e = GetLastError();
      r = e == ERROR_FILE_NOT_FOUND
              ? mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\"", name)
              : mproc__error_os((int)e, "OpenFileMappingW(\"%s\") failed", name);
    } else if ((r = mapping_size(h, name, size)) != 0) {
      CloseHandle(h);
    }
  }
  free(w);
  if (r == 0)
    *fd = MPROC__W32_FD(h);
  return r;
}

/* Windows has no unlink: a mapping lives while any process holds it. The trailer
 * records it instead, and attach then refuses the name as POSIX would; a block
 * without one (not made by mproc) is left alone, as Python's unlink does there. */
int mproc__os_shm_unlink(const char *name) {
  wchar_t *w = local_name(name[0] == '/' ? name + 1 : name);
  HANDLE h;
  void *view;
  shm_trailer *t;
  int r;
  if (w == NULL)
    return mproc__error(MPROC_EINVAL, "shared memory name \"%s\" is not UTF-8", name);
  h = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE, w);
  free(w);
  if (h == NULL)
    return GetLastError() == ERROR_FILE_NOT_FOUND
               ? mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\"", name)
               : mproc__error_os((int)GetLastError(), "OpenFileMappingW(\"%s\") failed", name);
  r = map_whole(h, name, FILE_MAP_WRITE, &view, &t);
  if (r == 0) {
    if (t->magic == TRAILER_MAGIC &&
        InterlockedCompareExchange(&t->unlinked, 1, 0) != 0)
      r = mproc__error(MPROC_ENOTFOUND, "no shared memory named \"%s\" (it was unlinked)",
                       name);
    UnmapViewOfFile(view);
  }
  CloseHandle(h);
  return r;
}

/* ------------------------------------------------------ mapped views */

/* Per mapping: a table of sleepers, shared by every process that maps it. */
#define PARK_SLOTS 512

typedef struct park_slot {
  uint64_t offset1; /* the word's offset in the mapping, plus 1; 0: free */
  uint32_t pid, tid;
  uint64_t token; /* names the sleeper's event with pid and tid */
} park_slot;

typedef struct park_table {
  park_slot slot[PARK_SLOTS];
} park_table;

/* What this process knows of a view it mapped. */
typedef struct view {
  char *base;
  size_t size;
  wchar_t *ident;    /* the mapping's last name component; NULL: unnamed */
  HANDLE park_map;   /* the parking table and its lock, opened on first use */
  park_table *park;
  HANDLE park_lock;
  struct view *next;
} view;

static SRWLOCK views_lock = SRWLOCK_INIT;
static view *views;

static void park_close(view *v);
static void mutex_forget(const char *base, size_t size);

int mproc__os_shm_map(mproc__fd fd, size_t size, void **addr) {
  HANDLE h = MPROC__W32_HANDLE(fd);
  wchar_t *full;
  view *v = calloc(1, sizeof *v);
  void *p;

  if (v == NULL)
    return mproc__error(MPROC_ENOMEM, "out of memory");
  p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, size);
  if (p == NULL) {
    DWORD e = GetLastError();
    free(v);
    return mproc__error_os((int)e, "MapViewOfFile() of %zu bytes of shared memory failed", size);
  }
  v->base = p;
  v->size = size ? size : 1;
  if ((full = object_name(h)) != NULL) {
    const wchar_t *last = wcsrchr(full, L'\\');
    size_t n = wcslen(last ? last + 1 : full);
    if ((v->ident = malloc((n + 1) * sizeof *v->ident)) != NULL)
      memcpy(v->ident, last ? last + 1 : full, (n + 1) * sizeof *v->ident);
    free(full);
  }
  AcquireSRWLockExclusive(&views_lock);
  v->next = views;
  views = v;
  ReleaseSRWLockExclusive(&views_lock);
  *addr = p;
  return 0;
}

void mproc__os_shm_unmap(void *addr, size_t size) {
  view **pv, *v = NULL;
  (void)size;
  if (addr == NULL)
    return;
  AcquireSRWLockExclusive(&views_lock);
  for (pv = &views; *pv != NULL; pv = &(*pv)->next)
    if ((*pv)->base == addr) {
      v = *pv;
      *pv = v->next;
      break;
    }
  ReleaseSRWLockExclusive(&views_lock);
  if (v != NULL) {
    mutex_forget(v->base, v->size);
    park_close(v);
    free(v->ident);
    free(v);
  }
  UnmapViewOfFile(addr);
}

/* The view holding addr, or NULL (the word is in private memory). */
static view *view_of(const void *addr) {
  const char *a = addr;
  view *v;
  AcquireSRWLockShared(&views_lock);
  for (v = views; v != NULL; v = v->next)
    if (a >= v->base && a < v->base + v->size)
      break;
  ReleaseSRWLockShared(&views_lock);
  return v;
}

/* ------------------------------------------------------ robust mutex */

#define MUTEX_MAGIC 0x786d706du /* "mpmx" */

typedef struct wmutex {
  uint32_t magic;
  uint32_t recursive;
  /* The holder's thread id, for a non-recursive mutex: a Windows mutex lets its
   * owner in again, which a non-recursive one must refuse. Cleared before release,
   * so a stale value is only left by a holder that died (and then the next lock
   * reports the abandonment instead). */
  _Atomic uint32_t owner;
  uint32_t unused;
  char name[48]; /* of the kernel mutex, without "Local\" */
} wmutex;

_Static_assert(sizeof(wmutex) <= sizeof(mproc__os_mutex), "mproc__os_mutex is too small");

/* This process's handles of the mutexes it used, by the address of their opaque
 * and their name (an address may later hold another mutex). */
typedef struct mutex_handle {
  const void *at;
  char name[48];
  HANDLE h;
  struct mutex_handle *next;
} mutex_handle;

static SRWLOCK mutexes_lock = SRWLOCK_INIT;
static mutex_handle *mutexes;

static HANDLE mutex_find(const wmutex *w) {
  HANDLE h = NULL;
  AcquireSRWLockShared(&mutexes_lock);
  for (mutex_handle *m = mutexes; m != NULL; m = m->next)
    if (m->at == w && strcmp(m->name, w->name) == 0) {
      h = m->h;
      break;
    }
  ReleaseSRWLockShared(&mutexes_lock);
  return h;
}

/* The handle of the mutex w names, opened (or created) on first use. */
static int mutex_handle_of(wmutex *w, HANDLE *out) {
  mutex_handle *m;
  wchar_t *name;
  HANDLE h;

  if ((*out = mutex_find(w)) != NULL)
    return 0;
  if (w->magic != MUTEX_MAGIC || memchr(w->name, '\0', sizeof w->name) == NULL)
    return mproc__error(MPROC_EINVAL, "not an initialised shared mutex");
  if ((name = local_name(w->name)) == NULL || (m = calloc(1, sizeof *m)) == NULL) {
    free(name);
    return mproc__error(MPROC_ENOMEM, "out of memory");
  }
  /* Creates it should every other process have let it go: it is then free, and
   * nobody can be holding it. */
  h = CreateMutexW(NULL, FALSE, name);
  free(name);
  if (h == NULL) {
    DWORD e = GetLastError();
    free(m);
    return mproc__error_os((int)e, "CreateMutexW(\"%s\") failed", w->name);
  }
  m->at = w;
  memcpy(m->name, w->name, sizeof m->name);
  m->h = h;
  AcquireSRWLockExclusive(&mutexes_lock);
  m->next = mutexes;
  mutexes = m;
  ReleaseSRWLockExclusive(&mutexes_lock);
  *out = h;
  return 0;
}

/* Closes the handles of mutexes that lived in [base, base + size). */
static void mutex_forget(const char *base, size_t size) {
  AcquireSRWLockExclusive(&mutexes_lock);
  for (mutex_handle **pm = &mutexes; *pm != NULL;) {
    mutex_handle *m = *pm;
    if ((const char *)m->at >= base && (const char *)m->at < base + size) {
      *pm = m->next;
      CloseHandle(m->h);
      free(m);
    } else {
      pm = &m->next;
    }
  }
  ReleaseSRWLockExclusive(&mutexes_lock);
}

int mproc__os_mutex_init(mproc__os_mutex *m, bool recursive) {
  wmutex *w = (wmutex *)m->opaque;
  HANDLE h;

  memset(m, 0, sizeof *m);
  w->recursive = recursive;
  snprintf(w->name, sizeof w->name, "mproc-mx-%08lx-%016llx", GetCurrentProcessId(),
           (unsigned long long)mproc__w32_random());
  w->magic = MUTEX_MAGIC;
  /* Opened now and kept: the kernel mutex lives while a process holds it, and the
   * creator's handle keeps it (with its abandoned state) between users. */
  return mutex_handle_of(w, &h);
}

/* After a wait on the kernel mutex returned w: 0 with *recovered, or an error. */
static int mutex_taken(wmutex *w, HANDLE h, DWORD wr, bool *recovered) {
  uint32_t me = GetCurrentThreadId();
  *recovered = wr == WAIT_ABANDONED;
  if (!w->recursive && wr == WAIT_OBJECT_0 && atomic_load(&w->owner) == me) {
    /* Let in again by Windows: undo that, it would deadlock on POSIX. */
    ReleaseMutex(h);
    return MPROC_ETIMEDOUT;
  }
  if (!w->recursive)
    atomic_store(&w->owner, me);
  return 0;
}

int mproc__os_mutex_lock(mproc__os_mutex *m, int64_t deadline, bool *recovered) {
  wmutex *w = (wmutex *)m->opaque;
  HANDLE h;
  DWORD wr;
  int r;

  *recovered = false;
  if ((r = mutex_handle_of(w, &h)) != 0)
    return r;
  for (;;) {
    wr = WaitForSingleObject(h, mproc__w32_wait_ms(deadline));
    if (wr == WAIT_OBJECT_0 || wr == WAIT_ABANDONED)
      break;
    if (wr != WAIT_TIMEOUT)
      return mproc__error_os((int)GetLastError(), "cannot lock a shared mutex (%s)", w->name);
    if (mproc__remaining(deadline) == 0)
      return MPROC_ETIMEDOUT;
  }
  r = mutex_taken(w, h, wr, recovered);
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(MPROC_ESTATE, "locking a shared mutex the calling thread holds "
                                      "would deadlock");
  return r;
}

int mproc__os_mutex_trylock(mproc__os_mutex *m, bool *recovered) {
  wmutex *w = (wmutex *)m->opaque;
  HANDLE h;
  DWORD wr;
  int r;

  *recovered = false;
  if ((r = mutex_handle_of(w, &h)) != 0)
    return r;
  wr = WaitForSingleObject(h, 0);
  if (wr == WAIT_TIMEOUT)
    return MPROC_ETIMEDOUT;
  if (wr != WAIT_OBJECT_0 && wr != WAIT_ABANDONED)
    return mproc__error_os((int)GetLastError(), "cannot lock a shared mutex (%s)", w->name);
  return mutex_taken(w, h, wr, recovered);
}

int mproc__os_mutex_unlock(mproc__os_mutex *m) {
  wmutex *w = (wmutex *)m->opaque;
  HANDLE h;
  int r;

  if ((r = mutex_handle_of(w, &h)) != 0)
    return r;
  if (!w->recursive) {
    uint32_t me = GetCurrentThreadId();
    if (atomic_load(&w->owner) != me)
      return mproc__error(MPROC_ESTATE, "the lock is not held by this thread");
    atomic_store(&w->owner, 0);
  }
  if (!ReleaseMutex(h)) {
    DWORD e = GetLastError();
    if (e == ERROR_NOT_OWNER)
      return mproc__error(MPROC_ESTATE, "the lock is not held by this thread");
    return mproc__error_os((int)e, "cannot unlock a shared mutex (%s)", w->name);
  }
  return 0;
}

/* -------------------------------------------------------- word waits */

/* The calling thread's wake-up event, named so that a waker in any process can open
 * it: Local\mproc-wake-<pid>-<tid>-<token>. */
typedef struct sleeper {
  HANDLE event;
  uint64_t token;
} sleeper;

static INIT_ONCE sleeper_once = INIT_ONCE_STATIC_INIT;
static DWORD sleeper_slot = FLS_OUT_OF_INDEXES;

static void WINAPI sleeper_free(void *p) {
  sleeper *s = p;
  if (s != NULL) {
    CloseHandle(s->event);
    free(s);
  }
}

static BOOL CALLBACK sleeper_alloc_slot(INIT_ONCE *once, void *param, void **ctx) {
  (void)once;
  (void)param;
  (void)ctx;
  sleeper_slot = FlsAlloc(sleeper_free);
  return sleeper_slot != FLS_OUT_OF_INDEXES;
}

static void wake_name(wchar_t *buf, size_t cap, uint32_t pid, uint32_t tid, uint64_t token) {
  swprintf(buf, cap, L"Local\\mproc-wake-%lu-%lu-%016llx", (unsigned long)pid,
           (unsigned long)tid, (unsigned long long)token);
}

static sleeper *this_sleeper(void) {
  sleeper *s;
  wchar_t name[96];

  if (!InitOnceExecuteOnce(&sleeper_once, sleeper_alloc_slot, NULL, NULL))
    return NULL;
  if ((s = FlsGetValue(sleeper_slot)) != NULL)
    return s;
  if ((s = calloc(1, sizeof *s)) == NULL)
    return NULL;
  s->token = mproc__w32_random();
  wake_name(name, sizeof name / sizeof name[0], GetCurrentProcessId(), GetCurrentThreadId(),
            s->token);
  /* Auto-reset: one wake-up, one return. */
  s->event = CreateEventW(NULL, FALSE, FALSE, name);
  if (s->event == NULL || !FlsSetValue(sleeper_slot, s)) {
    if (s->event != NULL)
      CloseHandle(s->event);
    free(s);
    return NULL;
  }
  return s;
}

/* Opens the parking table of v and its lock (on first use; kept until unmapped). */
static bool park_open(view *v) {
  wchar_t *name;
  size_t n;
  HANDLE map, lock;
  park_table *t;

  if (v->park != NULL)
    return true;
  if (v->ident == NULL)
    return false;
  n = wcslen(v->ident) + 32;
  if ((name = malloc(n * sizeof *name)) == NULL)
    return false;
  swprintf(name, n, L"Local\\mproc-park-%ls", v->ident);
  /* Zeroed when new: every slot free. */
  map = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, sizeof(park_table), name);
  swprintf(name, n, L"Local\\mproc-parklock-%ls", v->ident);
  lock = CreateMutexW(NULL, FALSE, name);
  free(name);
  t = map ? MapViewOfFile(map, FILE_MAP_ALL_ACCESS, 0, 0, sizeof(park_table)) : NULL;
  if (t == NULL || lock == NULL) {
    if (t != NULL)
      UnmapViewOfFile(t);
    if (map != NULL)
      CloseHandle(map);
    if (lock != NULL)
      CloseHandle(lock);
    return false;
  }
  AcquireSRWLockExclusive(&views_lock);
  if (v->park == NULL) {
    v->park_map = map;
    v->park_lock = lock;
    v->park = t;
    map = lock = NULL;
  }
  ReleaseSRWLockExclusive(&views_lock);
  if (map != NULL) { /* another thread was first */
    UnmapViewOfFile(t);
    CloseHandle(map);
    CloseHandle(lock);
  }
  return true;
}

static void park_close(view *v) {
  if (v->park == NULL)
    return;
  UnmapViewOfFile(v->park);
  CloseHandle(v->park_map);
  CloseHandle(v->park_lock);
}

/* A holder that died leaves the table consistent enough: slots are written whole. */
static void park_lock(view *v) { (void)WaitForSingleObject(v->park_lock, INFINITE); }
static void park_unlock(view *v) { ReleaseMutex(v->park_lock); }

/* Without a shared name for the word (private memory, or a mapping that has none),
 * WaitOnAddress serves this process; a waker in another process is then noticed
 * within a slice. */
#define UNNAMED_SLICE_MS 10

static int wait_unnamed(uint32_t *word, uint32_t expected, int64_t deadline) {
  DWORD ms = mproc__w32_wait_ms(deadline);
  if (ms > UNNAMED_SLICE_MS)
    ms = UNNAMED_SLICE_MS;
  if (!WaitOnAddress(word, &expected, sizeof expected, ms) && GetLastError() == ERROR_TIMEOUT &&
      deadline >= 0 && mproc__remaining(deadline) == 0)
    return MPROC_ETIMEDOUT;
  return 0;
}

int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline) {
  view *v = view_of(word);
  sleeper *me;
  park_slot *slot = NULL;
  uint64_t off1;
  DWORD wr;

  if (deadline >= 0 && mproc__remaining(deadline) == 0)
    return MPROC_ETIMEDOUT;
  if (v == NULL || !park_open(v) || (me = this_sleeper()) == NULL)
    return wait_unnamed(word, expected, deadline);
  off1 = (uint64_t)((char *)word - v->base) + 1;
  park_lock(v);
  if (atomic_load((_Atomic uint32_t *)word) != expected) {
    park_unlock(v);
    return 0;
  }
  for (size_t i = 0; i < PARK_SLOTS && slot == NULL; i++)
    if (v->park->slot[i].offset1 == 0)
      slot = &v->park->slot[i];
  if (slot == NULL) {
    /* A full table: sleep a little instead; the caller looks again. */
    park_unlock(v);
    Sleep(1);
    return 0;
  }
  /* Wakers set events only under the lock, so any earlier one has arrived: drop it. */
  (void)WaitForSingleObject(me->event, 0);
  slot->pid = GetCurrentProcessId();
  slot->tid = GetCurrentThreadId();
  slot->token = me->token;
  slot->offset1 = off1;
  park_unlock(v);

  wr = WaitForSingleObject(me->event, mproc__w32_wait_ms(deadline));
  if (wr == WAIT_OBJECT_0)
    return 0;
  /* Timed out (or failed): leave the table, unless a waker took the slot meanwhile,
   * in which case its wake-up is ours (and must not linger for the next wait). */
  park_lock(v);
  if (slot->offset1 == off1 && slot->tid == GetCurrentThreadId() &&
      slot->pid == GetCurrentProcessId() && slot->token == me->token) {
    slot->offset1 = 0;
    park_unlock(v);
    /* The system's timers may end a wait a little early: only a deadline really
     * passed is a timeout, anything else a spurious return. */
    return wr == WAIT_TIMEOUT && mproc__remaining(deadline) == 0 ? MPROC_ETIMEDOUT : 0;
  }
  (void)WaitForSingleObject(me->event, 0);
  park_unlock(v);
  return 0;
}

void mproc__os_word_wake(uint32_t *word, int n) {
  view *v = view_of(word);
  uint64_t off1;
  int woken = 0;

  if (v == NULL || !park_open(v)) {
    WakeByAddressAll(word);
    return;
  }
  off1 = (uint64_t)((char *)word - v->base) + 1;
  park_lock(v);
  for (size_t i = 0; i < PARK_SLOTS && (n < 0 || woken < n); i++) {
    park_slot *s = &v->park->slot[i];
    wchar_t name[96];
    HANDLE ev;
    if (s->offset1 != off1)
      continue;
    wake_name(name, sizeof name / sizeof name[0], s->pid, s->tid, s->token);
    s->offset1 = 0;
    /* A sleeper whose process is gone has no event left: its slot is just freed. */
    if ((ev = OpenEventW(EVENT_MODIFY_STATE, FALSE, name)) != NULL) {
      SetEvent(ev);
      CloseHandle(ev);
      woken++;
    }
  }
  park_unlock(v);
}
