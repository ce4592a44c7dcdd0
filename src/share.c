/* The share list: mproc handles a child receives explicitly, the same way under
 * fork and spawn. */
#include <stdlib.h>

#include "internal.h"
#include "pool.h"

static const mproc__kind_ops *const kinds[MPROC__KIND_COUNT] = {
    [MPROC__KIND_CONN] = &mproc__conn_ops,   [MPROC__KIND_QUEUE] = &mproc__queue_ops,
    [MPROC__KIND_LOCK] = &mproc__lock_ops,   [MPROC__KIND_SEM] = &mproc__sem_ops,
    [MPROC__KIND_EVENT] = &mproc__event_ops, [MPROC__KIND_COND] = &mproc__cond_ops,
    [MPROC__KIND_SHM] = &mproc__shm_ops,   [MPROC__KIND_POOLSEG] = &mproc__poolseg_ops,
};

const mproc__kind_ops *mproc__kind_ops_get(uint64_t kind) {
  return kind < sizeof kinds / sizeof kinds[0] ? kinds[kind] : NULL;
}

int mproc__share_ops(const void *obj, size_t i, const mproc__kind_ops **ops) {
  const mproc__obj *h = obj;
  mproc__fd fds[MPROC__MAX_OBJ_FDS];
  size_t n;

  if (h == NULL)
    return mproc__error(MPROC_EINVAL, "share list entry %zu is NULL", i);
  if (h->magic != MPROC__MAGIC || mproc__kind_ops_get(h->kind) == NULL)
    return mproc__error(MPROC_EINVAL,
                        "share list entry %zu (%p) is not an mproc handle (or was freed)", i, obj);
  *ops = kinds[h->kind];
  n = (*ops)->fds(obj, fds);
  for (size_t k = 0; k < n; k++)
    if (fds[k] == MPROC__FD_INVALID)
      return mproc__error(MPROC_ECLOSED, "share list entry %zu (a %s) is closed", i,
                          (*ops)->name);
  return 0;
}

/* ------------------------------------------------ shared segments */

int mproc__seg_create(mproc__seg *g, size_t size) {
  mproc__fd fd;
  int r = mproc__os_shm_create(size, &fd);
  if (r != 0)
    return r;
  if ((r = mproc__seg_map(g, fd, size)) != 0)
    mproc__os_close(fd);
  return r;
}

int mproc__seg_map(mproc__seg *g, mproc__fd fd, size_t size) {
  int r = mproc__os_shm_map(fd, size, &g->addr);
  if (r != 0)
    return r;
  g->fd = fd;
  g->size = size;
  return 0;
}

void mproc__seg_release(mproc__seg *g) {
  mproc__os_shm_unmap(g->addr, g->size);
  mproc__os_close(g->fd);
  g->addr = NULL;
  g->fd = MPROC__FD_INVALID;
}

int mproc__segobj_create(const mproc__kind_ops *ops, size_t size,
                         int (*init)(void *addr, const void *arg), const void *arg, void **obj) {
  mproc__segobj *h = calloc(1, ops->handle_size);
  int r;

  if (h == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a %s", ops->name);
  if ((r = mproc__seg_create(&h->seg, size)) != 0) {
    free(h);
    return r;
  }
  if (init != NULL && (r = init(h->seg.addr, arg)) != 0) {
    mproc__seg_release(&h->seg);
    free(h);
    return r;
  }
  *(uint64_t *)h->seg.addr = ops->seg_magic;
  h->hdr.magic = MPROC__MAGIC;
  h->hdr.kind = ops->kind;
  *obj = h;
  return 0;
}

int mproc__segobj_check(const void *obj, uint32_t kind, const char *fn) {
  const mproc__obj *h = obj;
  if (h == NULL || h->magic != MPROC__MAGIC || h->kind != kind)
    return mproc__error(MPROC_EINVAL, "%s: not a %s (NULL or freed)", fn, kinds[kind]->name);
  return 0;
}

void mproc__segobj_free(void *obj) {
  mproc__segobj *h = obj;
  if (h == NULL || h->hdr.magic != MPROC__MAGIC)
    return;
  mproc__seg_release(&h->seg);
  h->hdr.magic = 0;
  free(h);
}

size_t mproc__segobj_fds(const void *obj, mproc__fd *fds) {
  fds[0] = ((const mproc__segobj *)obj)->seg.fd;
  return 1;
}

void mproc__segobj_encode(const void *obj, mproc__buf *b) {
  mproc__buf_put_u64(b, ((const mproc__segobj *)obj)->seg.size);
}

int mproc__segobj_decode(const mproc__kind_ops *ops, mproc__rd *r, const mproc__fd *fds,
                         size_t nfds, void **obj) {
  uint64_t size = mproc__rd_u64(r);
  mproc__segobj *h;
  int e;

  if (r->err || nfds < 1 || size < sizeof(uint64_t))
    return mproc__error(MPROC_EPROTO, "malformed %s state in the spawn bootstrap", ops->name);
  h = calloc(1, ops->handle_size);
  if (h == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a %s", ops->name);
  if ((e = mproc__seg_map(&h->seg, fds[0], (size_t)size)) != 0) {
    free(h);
    return e;
  }
  if (*(const uint64_t *)h->seg.addr != ops->seg_magic) {
    mproc__seg_release(&h->seg);
    free(h);
    return mproc__error(MPROC_EPROTO, "the shared memory handed over is not a %s", ops->name);
  }
  h->hdr.magic = MPROC__MAGIC;
  h->hdr.kind = ops->kind;
  *obj = h;
  return 0;
}
