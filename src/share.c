/* The share list: mproc handles a child receives explicitly, the same way under
 * fork and spawn. */
#include "internal.h"

static const mproc__kind_ops *const kinds[] = {
    [MPROC__KIND_CONN] = &mproc__conn_ops,
    [MPROC__KIND_QUEUE] = &mproc__queue_ops,
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
