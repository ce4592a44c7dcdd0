/* Little-endian encoding of the bootstrap and object state that cross a spawn. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool buf_reserve(mproc__buf *b, size_t more) {
  size_t need, cap;
  unsigned char *p;

  if (b->err)
    return false;
  if (more > SIZE_MAX - b->len) {
    b->err = MPROC_ENOMEM;
    return false;
  }
  need = b->len + more;
  if (need <= b->cap)
    return true;
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (p == NULL) {
    b->err = mproc__error(MPROC_ENOMEM, "cannot grow an encoding buffer to %zu bytes", cap);
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

bool mproc__buf_reserve(mproc__buf *b, size_t more) { return buf_reserve(b, more); }

bool mproc__buf_room(mproc__buf *b, size_t len) {
  b->len = 0;
  return buf_reserve(b, len ? len : 1);
}

void mproc__buf_put_u64(mproc__buf *b, uint64_t v) {
  unsigned char le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (unsigned char)(v >> (8 * i));
  mproc__buf_put(b, le, sizeof le);
}

void mproc__buf_put_bytes(mproc__buf *b, const void *data, size_t len) {
  mproc__buf_put_u64(b, len);
  mproc__buf_put(b, data, len);
}

/* NULL is encoded as the length UINT64_MAX, so that it comes back as NULL. */
void mproc__buf_put_str(mproc__buf *b, const char *s) {
  if (s == NULL)
    mproc__buf_put_u64(b, UINT64_MAX);
  else
    mproc__buf_put_bytes(b, s, strlen(s));
}

void mproc__buf_free(mproc__buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

uint64_t mproc__rd_u64(mproc__rd *r) {
  const unsigned char *p = (const unsigned char *)mproc__rd_raw(r, 8);
  uint64_t v = 0;
  if (p == NULL)
    return 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

const void *mproc__rd_bytes(mproc__rd *r, size_t *len) {
  uint64_t n = mproc__rd_u64(r);
  const unsigned char *p = (const unsigned char *)mproc__rd_raw(r, n);
  *len = p ? (size_t)n : 0;
  return p;
}

char *mproc__rd_str(mproc__rd *r) {
  uint64_t n = mproc__rd_u64(r);
  const unsigned char *p;
  char *s;

  if (r->err || n == UINT64_MAX)
    return NULL;
  p = (const unsigned char *)mproc__rd_raw(r, n);
  if (p == NULL)
    return NULL;
  s = malloc((size_t)n + 1);
  if (s == NULL) {
    r->err = MPROC_ENOMEM;
    return NULL;
  }
  memcpy(s, p, (size_t)n);
  s[n] = '\0';
  return s;
}
