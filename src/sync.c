/* Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and SharedMemory
 * across processes. Each lives in a shared segment handed to children through the
 * share list; waits sleep on words in it. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "internal.h"

#define LOCK_MAGIC 0x6d70726f6c6f636bull  /* "mprolock" */
#define SEM_MAGIC 0x6d70726f73656d61ull   /* "mprosema" */
#define EVENT_MAGIC 0x6d70726f6576656eull /* "mproeven" */
#define COND_MAGIC 0x6d70726f636f6e64ull  /* "mprocond" */

/* ------------------------------------------------- raw semaphore */

/* A counting semaphore on shared words: the building block of Semaphore and of
 * Condition (as in Python's multiprocessing, whose Condition is made of three). */
typedef struct raw_sem {
  _Atomic uint32_t value;
  _Atomic uint32_t waiters;
} raw_sem;

static int raw_sem_acquire(raw_sem *s, int64_t deadline) {
  for (;;) {
    uint32_t v = atomic_load(&s->value);
    int r = 0;
    while (v > 0)
      if (atomic_compare_exchange_weak(&s->value, &v, v - 1))
        return 0;
    if (deadline >= 0 && mproc__remaining(deadline) == 0)
      return MPROC_ETIMEDOUT;
    /* Announced before the last look (seq_cst on both sides, as in queue.c). */
    atomic_fetch_add(&s->waiters, 1);
    if (atomic_load(&s->value) == 0)
      r = mproc__os_word_wait((uint32_t *)&s->value, 0, deadline);
    atomic_fetch_sub(&s->waiters, 1);
    if (r == MPROC_ETIMEDOUT && atomic_load(&s->value) == 0)
      return MPROC_ETIMEDOUT;
  }
}

static bool raw_sem_try(raw_sem *s) { return raw_sem_acquire(s, mproc__deadline(0)) == 0; }

/* max 0: no bound. */
static int raw_sem_release(raw_sem *s, uint32_t max) {
  uint32_t v = atomic_load(&s->value);
  do {
    if ((max != 0 && v >= max) || v == UINT32_MAX)
      return MPROC_ESTATE;
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
  if (atomic_load(&s->waiters) != 0)
    mproc__os_word_wake((uint32_t *)&s->value, 1);
  return 0;
}

/* ------------------------------------------------------- Lock, RLock */

typedef struct lockshm {
  uint64_t magic;
  uint64_t recursive;
  mproc__os_mutex m;
  /* Written by the owner only. */
  /* mproc__os_thread_id() of the holder, 0 when free. Read without the mutex (to
   * refuse a release by another thread), hence atomic; relaxed is enough, as a
   * thread only ever compares it with its own id, which only it writes. */
  _Atomic uint64_t owner;
  uint64_t depth; /* acquisitions by the owner (RLock) */
} lockshm;

struct mproc_lock {
  mproc__segobj base;
};

static lockshm *lock_shm(const mproc_lock *l) { return l->base.seg.addr; }

static int lock_init(void *addr, const void *arg) {
  lockshm *s = addr;
  s->recursive = *(const bool *)arg;
  return mproc__os_mutex_init(&s->m, s->recursive != 0);
}

int mproc_lock_create(mproc_lock **l, bool recursive) {
  void *obj;
  int r;
  if (l == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_lock_create: l must not be NULL");
  *l = NULL;
  if ((r = mproc__check_init("mproc_lock_create")) != 0 ||
      (r = mproc__segobj_create(&mproc__lock_ops, sizeof(lockshm), lock_init, &recursive, &obj)) !=
          0)
    return r;
  *l = obj;
  return 0;
}

static int lock_take(lockshm *s, double timeout, int64_t deadline) {
  bool recovered;
  uint64_t me = mproc__os_thread_id();
  int r;

  if (!s->recursive && atomic_load_explicit(&s->owner, memory_order_relaxed) == me)
    return mproc__error(MPROC_ESTATE, "acquiring a Lock this thread already holds would "
                                      "deadlock (use an RLock)");
  r = timeout == 0 ? mproc__os_mutex_trylock(&s->m, &recovered)
                   : mproc__os_mutex_lock(&s->m, deadline, &recovered);
  if (r != 0)
    return r;
  if (recovered) {
    /* Its holder died: the lock is ours now, and its count starts over. */
    s->depth = 0;
  }
  atomic_store_explicit(&s->owner, me, memory_order_relaxed);
  s->depth++;
  return 0;
}

static int lock_give(lockshm *s) {
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) != mproc__os_thread_id())
    return mproc__error(MPROC_ESTATE, "release of a lock this thread does not hold");
  if (--s->depth == 0)
    atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  return mproc__os_mutex_unlock(&s->m);
}

int mproc_lock_acquire(mproc_lock *l, double timeout) {
  int r = mproc__segobj_check(l, MPROC__KIND_LOCK, "mproc_lock_acquire");
  if (r != 0)
    return r;
  r = lock_take(lock_shm(l), timeout, mproc__deadline(timeout));
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(r, "mproc_lock_acquire: the lock is still held after %gs", timeout);
  return r;
}

int mproc_lock_release(mproc_lock *l) {
  int r = mproc__segobj_check(l, MPROC__KIND_LOCK, "mproc_lock_release");
  return r ? r : lock_give(lock_shm(l));
}

void mproc_lock_free(mproc_lock *l) { mproc__segobj_free(l); }

const mproc__kind_ops mproc__lock_ops = {
    .name = "lock",
    .kind = MPROC__KIND_LOCK,
    .seg_magic = LOCK_MAGIC,
    .handle_size = sizeof(mproc_lock),
    .fds = mproc__segobj_fds,
    .encode = mproc__segobj_encode,
    .decode = mproc__segobj_decode,
};

/* ------------------------------------------ Semaphore, BoundedSemaphore */

typedef struct semshm {
  uint64_t magic;
  uint32_t max; /* BoundedSemaphore: the initial value; 0 for a Semaphore */
  raw_sem sem;
} semshm;

struct mproc_sem {
  mproc__segobj base;
};

static semshm *sem_shm(const mproc_sem *s) { return s->base.seg.addr; }

typedef struct sem_init_arg {
  unsigned value;
  bool bounded;
} sem_init_arg;

static int sem_init(void *addr, const void *arg) {
  const sem_init_arg *a = arg;
  semshm *s = addr;
  atomic_store(&s->sem.value, a->value);
  s->max = a->bounded ? a->value : 0;
  return 0;
}

int mproc_sem_create(mproc_sem **s, unsigned value, bool bounded) {
  sem_init_arg a = {value, bounded};
  void *obj;
  int r;
  if (s == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_sem_create: s must not be NULL");
  *s = NULL;
  if (value > UINT32_MAX - 1 || (bounded && value == 0))
    return mproc__error(MPROC_EINVAL, "mproc_sem_create: value %u is out of range%s", value,
                        bounded ? " (a BoundedSemaphore needs at least 1)" : "");
  if ((r = mproc__check_init("mproc_sem_create")) != 0 ||
      (r = mproc__segobj_create(&mproc__sem_ops, sizeof(semshm), sem_init, &a, &obj)) != 0)
    return r;
  *s = obj;
  return 0;
}

int mproc_sem_acquire(mproc_sem *s, double timeout) {
  int r = mproc__segobj_check(s, MPROC__KIND_SEM, "mproc_sem_acquire");
  if (r != 0)
    return r;
  r = raw_sem_acquire(&sem_shm(s)->sem, mproc__deadline(timeout));
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(r, "mproc_sem_acquire: the semaphore stayed at 0 for %gs", timeout);
  return r;
}

int mproc_sem_release(mproc_sem *s) {
  int r = mproc__segobj_check(s, MPROC__KIND_SEM, "mproc_sem_release");
  if (r != 0)
    return r;
  if (raw_sem_release(&sem_shm(s)->sem, sem_shm(s)->max) != 0)
    return mproc__error(MPROC_ESTATE, "mproc_sem_release: %s",
                        sem_shm(s)->max ? "a BoundedSemaphore released too many times"
                                        : "the semaphore's value would overflow");
  return 0;
}

int mproc_sem_value(const mproc_sem *s, unsigned *value) {
  int r = mproc__segobj_check(s, MPROC__KIND_SEM, "mproc_sem_value");
  if (r != 0)
    return r;
  if (value == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_sem_value: value must not be NULL");
  *value = atomic_load(&sem_shm(s)->sem.value);
  return 0;
}

void mproc_sem_free(mproc_sem *s) { mproc__segobj_free(s); }

const mproc__kind_ops mproc__sem_ops = {
    .name = "semaphore",
    .kind = MPROC__KIND_SEM,
    .seg_magic = SEM_MAGIC,
    .handle_size = sizeof(mproc_sem),
    .fds = mproc__segobj_fds,
    .encode = mproc__segobj_encode,
    .decode = mproc__segobj_decode,
};

/* ------------------------------------------------------------- Event */

typedef struct eventshm {
  uint64_t magic;
  _Atomic uint32_t flag;
  _Atomic uint32_t gen; /* bumped by every set: a waiter woken by one returns even if
                           the event was cleared again before it ran (as Python's) */
  _Atomic uint32_t waiters;
} eventshm;

struct mproc_event {
  mproc__segobj base;
};

static eventshm *event_shm(const mproc_event *e) { return e->base.seg.addr; }

int mproc_event_create(mproc_event **e) {
  void *obj;
  int r;
  if (e == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_event_create: e must not be NULL");
  *e = NULL;
  if ((r = mproc__check_init("mproc_event_create")) != 0 ||
      (r = mproc__segobj_create(&mproc__event_ops, sizeof(eventshm), NULL, NULL, &obj)) != 0)
    return r;
  *e = obj;
  return 0;
}

int mproc_event_set(mproc_event *e) {
  int r = mproc__segobj_check(e, MPROC__KIND_EVENT, "mproc_event_set");
  if (r != 0)
    return r;
  atomic_store(&event_shm(e)->flag, 1);
  atomic_fetch_add(&event_shm(e)->gen, 1);
  if (atomic_load(&event_shm(e)->waiters) != 0)
    mproc__os_word_wake((uint32_t *)&event_shm(e)->gen, -1);
  return 0;
}

int mproc_event_clear(mproc_event *e) {
  int r = mproc__segobj_check(e, MPROC__KIND_EVENT, "mproc_event_clear");
  if (r != 0)
    return r;
  atomic_store(&event_shm(e)->flag, 0);
  return 0;
}

bool mproc_event_is_set(const mproc_event *e) {
  return mproc__segobj_check(e, MPROC__KIND_EVENT, "mproc_event_is_set") == 0 &&
         atomic_load(&event_shm(e)->flag) != 0;
}

int mproc_event_wait(mproc_event *e, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  eventshm *s;
  int r = mproc__segobj_check(e, MPROC__KIND_EVENT, "mproc_event_wait");
  if (r != 0)
    return r;
  s = event_shm(e);
  uint32_t gen = atomic_load(&s->gen);
  while (atomic_load(&s->flag) == 0 && atomic_load(&s->gen) == gen) {
    if (deadline >= 0 && mproc__remaining(deadline) == 0)
      return mproc__error(MPROC_ETIMEDOUT, "mproc_event_wait: not set within %gs", timeout);
    atomic_fetch_add(&s->waiters, 1);
    if (atomic_load(&s->flag) == 0)
      mproc__os_word_wait((uint32_t *)&s->gen, gen, deadline);
    atomic_fetch_sub(&s->waiters, 1);
  }
  return 0;
}

void mproc_event_free(mproc_event *e) { mproc__segobj_free(e); }

const mproc__kind_ops mproc__event_ops = {
    .name = "event",
    .kind = MPROC__KIND_EVENT,
    .seg_magic = EVENT_MAGIC,
    .handle_size = sizeof(mproc_event),
    .fds = mproc__segobj_fds,
    .encode = mproc__segobj_encode,
    .decode = mproc__segobj_decode,
};

/* --------------------------------------------------------- Condition */

/* Python's algorithm (multiprocessing/synchronize.py): waiters count themselves in
 * `sleeping`, sleep on `wait`, and confirm in `woken`, so notify(n) wakes exactly n
 * of those asleep and waits until they are on their way. */
typedef struct condshm {
  uint64_t magic;
  raw_sem sleeping, woken, wait;
} condshm;

struct mproc_cond {
  mproc__segobj base;
  mproc_lock *lock;
  bool own_lock;
};

static condshm *cond_shm(const mproc_cond *c) { return c->base.seg.addr; }

int mproc_cond_create(mproc_cond **c, mproc_lock *lock) {
  void *obj;
  int r;
  if (c == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_cond_create: c must not be NULL");
  *c = NULL;
  if (lock != NULL && (r = mproc__segobj_check(lock, MPROC__KIND_LOCK, "mproc_cond_create")) != 0)
    return r;
  if ((r = mproc__check_init("mproc_cond_create")) != 0 ||
      (r = mproc__segobj_create(&mproc__cond_ops, sizeof(condshm), NULL, NULL, &obj)) != 0)
    return r;
  *c = obj;
  if (lock == NULL) {
    if ((r = mproc_lock_create(&lock, true)) != 0) {
      mproc__segobj_free(obj);
      *c = NULL;
      return r;
    }
    (*c)->own_lock = true;
  }
  (*c)->lock = lock;
  return 0;
}

static int cond_check(const mproc_cond *c, const char *fn, bool need_owned) {
  int r = mproc__segobj_check(c, MPROC__KIND_COND, fn);
  if (r != 0)
    return r;
  if (need_owned && atomic_load_explicit(&lock_shm(c->lock)->owner, memory_order_relaxed) !=
                        mproc__os_thread_id())
    return mproc__error(MPROC_ESTATE, "%s: the condition's lock is not held by this thread", fn);
  return 0;
}

int mproc_cond_acquire(mproc_cond *c, double timeout) {
  int r = cond_check(c, "mproc_cond_acquire", false);
  return r ? r : mproc_lock_acquire(c->lock, timeout);
}

int mproc_cond_release(mproc_cond *c) {
  int r = cond_check(c, "mproc_cond_release", false);
  return r ? r : mproc_lock_release(c->lock);
}

int mproc_cond_wait(mproc_cond *c, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  lockshm *ls;
  condshm *s;
  uint64_t depth;
  int r = cond_check(c, "mproc_cond_wait", true);

  if (r != 0)
    return r;
  s = cond_shm(c);
  ls = lock_shm(c->lock);
  raw_sem_release(&s->sleeping, 0);
  /* Release the lock completely, however deep an RLock is held, and take it back
   * as deep afterwards. */
  depth = ls->depth;
  for (uint64_t i = 0; i < depth; i++)
    lock_give(ls);
  r = raw_sem_acquire(&s->wait, deadline);
  raw_sem_release(&s->woken, 0);
  for (uint64_t i = 0; i < depth; i++) {
    int lr = lock_take(ls, MPROC_FOREVER, -1);
    if (lr != 0)
      return lr; /* the lock could not be taken back: that outranks the wait's outcome */
  }
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(r, "mproc_cond_wait: not notified within %gs", timeout);
  return r;
}

int mproc_cond_wait_for(mproc_cond *c, bool (*pred)(void *arg), void *arg, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  int r = cond_check(c, "mproc_cond_wait_for", true);
  if (r != 0)
    return r;
  if (pred == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_cond_wait_for: pred must not be NULL");
  while (!pred(arg)) {
    double left = mproc__remaining(deadline);
    if (deadline >= 0 && left == 0)
      return mproc__error(MPROC_ETIMEDOUT, "mproc_cond_wait_for: predicate still false after %gs",
                          timeout);
    r = mproc_cond_wait(c, left);
    if (r != 0 && r != MPROC_ETIMEDOUT)
      return r;
  }
  return 0;
}

int mproc_cond_notify(mproc_cond *c, size_t n) {
  size_t sleepers = 0;
  condshm *s;
  int r = cond_check(c, "mproc_cond_notify", true);

  if (r != 0)
    return r;
  s = cond_shm(c);
  /* Waiters that timed out since the last notify confirmed in `woken` without
   * having been woken: take them off the sleeping count. */
  while (raw_sem_try(&s->woken))
    raw_sem_try(&s->sleeping);
  while (sleepers < n && raw_sem_try(&s->sleeping)) {
    raw_sem_release(&s->wait, 0);
    sleepers++;
  }
  for (size_t i = 0; i < sleepers; i++)
    raw_sem_acquire(&s->woken, -1);
  /* Wake-ups that met a waiter already gone by its timeout are taken back. */
  while (raw_sem_try(&s->wait))
    ;
  return 0;
}

int mproc_cond_notify_all(mproc_cond *c) { return mproc_cond_notify(c, SIZE_MAX); }

void mproc_cond_free(mproc_cond *c) {
  if (c == NULL || c->base.hdr.magic != MPROC__MAGIC || c->base.hdr.kind != MPROC__KIND_COND)
    return;
  if (c->own_lock)
    mproc_lock_free(c->lock);
  mproc__segobj_free(c);
}

static size_t cond_fds(const void *obj, mproc__fd *fds) {
  const mproc_cond *c = obj;
  fds[0] = c->base.seg.fd;
  fds[1] = c->lock->base.seg.fd;
  return 2;
}

static void cond_encode(const void *obj, mproc__buf *b) {
  const mproc_cond *c = obj;
  mproc__segobj_encode(c, b);
  mproc__segobj_encode(c->lock, b);
}

static int cond_decode(const mproc__kind_ops *ops, mproc__rd *rd, const mproc__fd *fds,
                       size_t nfds, void **obj) {
  void *lock;
  int r;
  if (nfds != 2)
    return mproc__error(MPROC_EPROTO, "malformed condition state in the spawn bootstrap");
  if ((r = mproc__segobj_decode(ops, rd, fds, 1, obj)) != 0)
    return r;
  if ((r = mproc__segobj_decode(&mproc__lock_ops, rd, fds + 1, 1, &lock)) != 0) {
    mproc__segobj_free(*obj);
    return r;
  }
  ((mproc_cond *)*obj)->lock = lock;
  ((mproc_cond *)*obj)->own_lock = true;
  return 0;
}

const mproc__kind_ops mproc__cond_ops = {
    .name = "condition",
    .kind = MPROC__KIND_COND,
    .seg_magic = COND_MAGIC,
    .handle_size = sizeof(mproc_cond),
    .fds = cond_fds,
    .encode = cond_encode,
    .decode = cond_decode,
};

/* ------------------------------------------------------ SharedMemory */

struct mproc_shm {
  mproc__segobj base;
  char *name;
};

static int shm_new(mproc_shm **m, const char *name, mproc__fd fd, size_t size) {
  mproc_shm *h = calloc(1, sizeof *h);
  int r;
  if (h == NULL || (h->name = strdup(name)) == NULL) {
    free(h);
    return mproc__error(MPROC_ENOMEM, "cannot allocate a shared memory handle");
  }
  if ((r = mproc__seg_map(&h->base.seg, fd, size)) != 0) {
    free(h->name);
    free(h);
    return r;
  }
  h->base.hdr.magic = MPROC__MAGIC;
  h->base.hdr.kind = MPROC__KIND_SHM;
  *m = h;
  return 0;
}

/* One component, with or without its leading slash, as POSIX shm names are. */
static bool shm_name_ok(const char *name) {
  return name[name[0] == '/'] != '\0' && strchr(name + 1, '/') == NULL &&
         strlen(name) < 250;
}

int mproc_shm_create(mproc_shm **m, const char *name, size_t size) {
  char generated[64];
  mproc__fd fd;
  int r;

  if (m == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_shm_create: m must not be NULL");
  *m = NULL;
  if (size == 0)
    return mproc__error(MPROC_EINVAL, "mproc_shm_create: size must be positive");
  if (name != NULL && !shm_name_ok(name))
    return mproc__error(MPROC_EINVAL, "mproc_shm_create: \"%s\" is not a valid name", name);
  if ((r = mproc__check_init("mproc_shm_create")) != 0)
    return r;
  if (name == NULL) {
    /* Like Python's "psm_" names: random, so that unrelated programs never meet. */
    unsigned char rnd[8];
    if (apr_generate_random_bytes(rnd, sizeof rnd) != APR_SUCCESS)
      return mproc__error(MPROC_ESYS, "mproc_shm_create: no random bytes for a name");
    snprintf(generated, sizeof generated, "mproc_%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    name = generated;
  }
  if ((r = mproc__os_shm_open(name, true, &size, &fd)) != 0)
    return r;
  if ((r = shm_new(m, name, fd, size)) != 0) {
    mproc__os_close(fd);
    mproc__os_shm_unlink(name);
  }
  return r;
}

int mproc_shm_attach(mproc_shm **m, const char *name) {
  size_t size = 0;
  mproc__fd fd;
  int r;

  if (m != NULL)
    *m = NULL;
  if (m == NULL || name == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_shm_attach: m and name must not be NULL");
  if (!shm_name_ok(name))
    return mproc__error(MPROC_EINVAL, "mproc_shm_attach: \"%s\" is not a valid name", name);
  if ((r = mproc__check_init("mproc_shm_attach")) != 0 ||
      (r = mproc__os_shm_open(name, false, &size, &fd)) != 0)
    return r;
  if ((r = shm_new(m, name, fd, size)) != 0)
    mproc__os_close(fd);
  return r;
}

void *mproc_shm_buf(const mproc_shm *m) {
  return mproc__segobj_check(m, MPROC__KIND_SHM, "mproc_shm_buf") == 0 ? m->base.seg.addr : NULL;
}

size_t mproc_shm_size(const mproc_shm *m) {
  return mproc__segobj_check(m, MPROC__KIND_SHM, "mproc_shm_size") == 0 ? m->base.seg.size : 0;
}

const char *mproc_shm_name(const mproc_shm *m) {
  return mproc__segobj_check(m, MPROC__KIND_SHM, "mproc_shm_name") == 0 ? m->name : NULL;
}

int mproc_shm_unlink(mproc_shm *m) {
  int r = mproc__segobj_check(m, MPROC__KIND_SHM, "mproc_shm_unlink");
  return r ? r : mproc__os_shm_unlink(m->name);
}

void mproc_shm_free(mproc_shm *m) {
  if (m == NULL || m->base.hdr.magic != MPROC__MAGIC || m->base.hdr.kind != MPROC__KIND_SHM)
    return;
  free(m->name);
  mproc__segobj_free(m);
}

static void shm_encode(const void *obj, mproc__buf *b) {
  mproc__segobj_encode(obj, b);
  mproc__buf_put_str(b, ((const mproc_shm *)obj)->name);
}

static int shm_decode(const mproc__kind_ops *ops, mproc__rd *rd, const mproc__fd *fds, size_t nfds,
                      void **obj) {
  uint64_t size = mproc__rd_u64(rd);
  char *name = mproc__rd_str(rd);
  int r;
  if (rd->err || name == NULL || nfds != 1) {
    free(name);
    return mproc__error(MPROC_EPROTO, "malformed %s state in the spawn bootstrap", ops->name);
  }
  r = shm_new((mproc_shm **)obj, name, fds[0], (size_t)size);
  free(name);
  return r;
}

const mproc__kind_ops mproc__shm_ops = {
    .name = "shared memory block",
    .kind = MPROC__KIND_SHM,
    .handle_size = sizeof(mproc_shm),
    .fds = mproc__segobj_fds,
    .encode = shm_encode,
    .decode = shm_decode,
};
