/* Connections: framed messages over a pipe or socket pair (Python's Pipe() and
 * Connection). A frame is a 16-byte header, then the payload:
 *   uint32 magic "MPRM" | uint32 flags (0) | uint64 payload length, little-endian.
 * The magic lets a receiver tell a real frame from garbage instead of trusting a
 * random length; 64-bit lengths let any message move whole. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FRAME_MAGIC 0x4d50524du /* "MPRM" */
#define FRAME_HEADER 16
/* No real message is this large; a header announcing more is garbage. */
#define FRAME_LENGTH_MAX ((uint64_t)1 << 62)

struct mproc_conn {
  mproc__obj hdr;
  mproc__fd fd;
  bool readable, writable, duplex;
  bool closed;
  bool broken;          /* a malformed frame put the stream out of step */
  bool have_header;     /* a frame's header was read and its payload not yet */
  uint64_t pending_len; /* that frame's payload length */
  size_t max_message;   /* 0: no limit */
  /* Bytes read ahead: small frames arrive header and payload in one read, and
   * several at a time. rbuf[rpos..rlen) is what is buffered. */
  unsigned char *rbuf;
  size_t rpos, rlen;
};

#define READ_AHEAD ((size_t)16384)

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

int mproc__conn_wrap(mproc_conn **out, mproc__fd fd, bool readable, bool writable, bool duplex) {
  mproc_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a connection");
  c->hdr.magic = MPROC__MAGIC;
  c->hdr.kind = MPROC__KIND_CONN;
  c->fd = fd;
  c->readable = readable;
  c->writable = writable;
  c->duplex = duplex;
  *out = c;
  return 0;
}

int mproc_pipe(mproc_conn **a, mproc_conn **b, bool duplex) {
  mproc__fd fds[2];
  int r;

  if (a == NULL || b == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_pipe: a and b must not be NULL");
  *a = *b = NULL;
  if ((r = mproc__check_init("mproc_pipe")) != 0)
    return r;
  if ((r = mproc__os_pipe(fds, duplex)) != 0)
    return r;
  if ((r = mproc__conn_wrap(a, fds[0], true, duplex, duplex)) != 0 ||
      (r = mproc__conn_wrap(b, fds[1], duplex, true, duplex)) != 0) {
    free(*a);
    *a = NULL;
    mproc__os_close(fds[0]);
    mproc__os_close(fds[1]);
  }
  return r;
}

/* The checks every operation starts with. */
static int conn_check(const mproc_conn *c, const char *fn, bool reading) {
  if (c == NULL || c->hdr.magic != MPROC__MAGIC || c->hdr.kind != MPROC__KIND_CONN)
    return mproc__error(MPROC_EINVAL, "%s: not a connection (NULL or freed)", fn);
  if (c->closed)
    return mproc__error(MPROC_ECLOSED, "%s: the connection is closed", fn);
  if (reading && !c->readable)
    return mproc__error(MPROC_EINVAL, "%s: this end of a one-way pipe only sends", fn);
  if (!reading && !c->writable)
    return mproc__error(MPROC_EINVAL, "%s: this end of a one-way pipe only receives", fn);
  if (reading && c->broken)
    return mproc__error(MPROC_EPROTO, "%s: an earlier malformed frame put the stream out of step",
                        fn);
  return 0;
}

int mproc_conn_send(mproc_conn *c, const void *data, size_t len) {
  unsigned char head[FRAME_HEADER];
  int r;

  if ((r = conn_check(c, "mproc_conn_send", false)) != 0)
    return r;
  if (data == NULL && len > 0)
    return mproc__error(MPROC_EINVAL, "mproc_conn_send: data is NULL but len is %zu", len);
  put_le(head, FRAME_MAGIC, 4);
  put_le(head + 4, 0, 4);
  put_le(head + 8, (uint64_t)len, 8);
  return mproc__os_write2(c->fd, c->duplex, head, sizeof head, data, len);
}

/* Reads up to want bytes, from the read-ahead first; large reads go straight to
 * dst. *got is 0 only at end of stream. */
static int conn_read(mproc_conn *c, void *dst, size_t want, size_t *got) {
  int r;
  if (c->rpos == c->rlen && want < READ_AHEAD) {
    if (c->rbuf == NULL && (c->rbuf = malloc(READ_AHEAD)) == NULL)
      return mproc__os_read(c->fd, dst, want, got);
    c->rpos = c->rlen = 0;
    if ((r = mproc__os_read(c->fd, c->rbuf, READ_AHEAD, &c->rlen)) != 0)
      return r;
  }
  if (c->rpos < c->rlen) {
    size_t n = c->rlen - c->rpos < want ? c->rlen - c->rpos : want;
    memcpy(dst, c->rbuf + c->rpos, n);
    c->rpos += n;
    *got = n;
    return 0;
  }
  return mproc__os_read(c->fd, dst, want, got);
}

/* Reads exactly len bytes; MPROC_EOF if the stream ends first. */
static int read_full(mproc_conn *c, void *buf, uint64_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    size_t got;
    size_t want = len > SIZE_MAX ? SIZE_MAX : (size_t)len;
    int r = conn_read(c, p, want, &got);
    if (r != 0)
      return r;
    if (got == 0)
      return MPROC_EOF;
    p += got;
    len -= got;
  }
  return 0;
}

/* Makes the next frame's header current: afterwards c->pending_len is its length. */
static int next_header(mproc_conn *c, const char *fn) {
  unsigned char head[FRAME_HEADER];
  uint64_t magic, flags;
  size_t got;
  int r;

  if (c->have_header)
    return 0;
  /* The first read tells a clean end of stream (nothing at all) from a frame. */
  if ((r = conn_read(c, head, sizeof head, &got)) != 0)
    return r;
  if (got == 0)
    return mproc__error(MPROC_EOF, "%s: the peer closed the connection", fn);
  if (got < sizeof head && (r = read_full(c, head + got, sizeof head - got)) != 0)
    return r == MPROC_EOF ? mproc__error(r, "%s: the peer closed the connection in the middle "
                                            "of a frame header", fn)
                          : r;
  magic = get_le(head, 4);
  flags = get_le(head + 4, 4);
  c->pending_len = get_le(head + 8, 8);
  if (magic != FRAME_MAGIC || flags != 0 || c->pending_len > FRAME_LENGTH_MAX) {
    c->broken = true;
    return mproc__error(MPROC_EPROTO,
                        "%s: malformed frame header (magic %#llx, flags %#llx, length %llu): "
                        "the descriptor carries data that mproc did not send",
                        fn, (unsigned long long)magic, (unsigned long long)flags,
                        (unsigned long long)c->pending_len);
  }
  c->have_header = true;
  if (c->max_message != 0 && c->pending_len > c->max_message) {
    /* Refuse the frame but read past it, so that the next frame starts in step. */
    uint64_t len = c->pending_len;
    unsigned char sink[16384];
    c->have_header = false;
    while (len > 0) {
      uint64_t step = len < sizeof sink ? len : sizeof sink;
      if ((r = read_full(c, sink, step)) == MPROC_EOF)
        return mproc__error(r, "%s: the peer closed the connection in the middle of a "
                               "%llu-byte message over this connection's limit", fn,
                            (unsigned long long)c->pending_len);
      if (r != 0)
        return r;
      len -= step;
    }
    return mproc__error(MPROC_EMSGSIZE,
                        "%s: a %llu-byte message exceeds this connection's limit of %zu bytes; "
                        "it was discarded",
                        fn, (unsigned long long)c->pending_len, c->max_message);
  }
  if (c->pending_len > SIZE_MAX) {
    c->have_header = false;
    c->broken = true;
    return mproc__error(MPROC_EMSGSIZE, "%s: a %llu-byte message does not fit in memory here", fn,
                        (unsigned long long)c->pending_len);
  }
  return 0;
}

/* Reads the current frame's payload into buf. A peer that dies mid-message yields
 * MPROC_EOF and nothing partial. */
static int read_payload(mproc_conn *c, void *buf, const char *fn) {
  int r = read_full(c, buf, c->pending_len);
  c->have_header = false;
  if (r == MPROC_EOF)
    return mproc__error(MPROC_EOF,
                        "%s: the peer closed the connection in the middle of a %llu-byte "
                        "message; nothing of it is delivered",
                        fn, (unsigned long long)c->pending_len);
  return r;
}

int mproc_conn_recv(mproc_conn *c, void **data, size_t *len, size_t maxlen) {
  void *buf;
  int r;

  if (data == NULL || len == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_conn_recv: data and len must not be NULL");
  if ((r = conn_check(c, "mproc_conn_recv", true)) != 0 ||
      (r = next_header(c, "mproc_conn_recv")) != 0)
    return r;
  if (maxlen != 0 && c->pending_len > maxlen) {
    *len = (size_t)c->pending_len;
    return mproc__error(MPROC_EMSGSIZE,
                        "mproc_conn_recv: the next message has %llu bytes, more than maxlen %zu; "
                        "it stays readable",
                        (unsigned long long)c->pending_len, maxlen);
  }
  buf = malloc(c->pending_len ? (size_t)c->pending_len : 1);
  if (buf == NULL)
    return mproc__error(MPROC_ENOMEM,
                        "mproc_conn_recv: cannot allocate %llu bytes; the message stays readable",
                        (unsigned long long)c->pending_len);
  *len = (size_t)c->pending_len;
  if ((r = read_payload(c, buf, "mproc_conn_recv")) != 0) {
    free(buf);
    return r;
  }
  *data = buf;
  return 0;
}

int mproc_conn_recv_into(mproc_conn *c, void *buf, size_t cap, size_t *len) {
  int r;

  if (len == NULL || (buf == NULL && cap > 0))
    return mproc__error(MPROC_EINVAL, "mproc_conn_recv_into: len must not be NULL, nor buf "
                                      "when cap is not 0");
  if ((r = conn_check(c, "mproc_conn_recv_into", true)) != 0 ||
      (r = next_header(c, "mproc_conn_recv_into")) != 0)
    return r;
  *len = (size_t)c->pending_len;
  if (c->pending_len > cap)
    return mproc__error(MPROC_EMSGSIZE,
                        "mproc_conn_recv_into: the next message has %llu bytes, the buffer %zu; "
                        "it stays readable",
                        (unsigned long long)c->pending_len, cap);
  return read_payload(c, buf, "mproc_conn_recv_into");
}

int mproc__conn_recv_buf(mproc_conn *c, mproc__buf *b, size_t *len) {
  int r = mproc_conn_recv_into(c, b->data, b->cap, len);
  if (r == MPROC_EMSGSIZE) {
    if (!mproc__buf_room(b, *len))
      return b->err;
    r = mproc_conn_recv_into(c, b->data, b->cap, len);
  }
  return r;
}

/* A frame whose header was read and whose payload is empty is ready without the
 * descriptor saying so. */
static bool ready_in_memory(const mproc_conn *c) {
  size_t buffered = c->rlen - c->rpos;
  uint64_t need;
  if (c->have_header)
    return buffered >= c->pending_len;
  if (buffered < FRAME_HEADER)
    return false;
  /* A whole frame read ahead (or a malformed header, which recv reports at once). */
  need = get_le(c->rbuf + c->rpos + 8, 8);
  return get_le(c->rbuf + c->rpos, 4) != FRAME_MAGIC || buffered - FRAME_HEADER >= need;
}

bool mproc__conn_buffered(const mproc_conn *c) { return ready_in_memory(c); }

int mproc_conn_poll(mproc_conn *c, double timeout) {
  unsigned char ready;
  size_t nready;
  int r;

  if ((r = conn_check(c, "mproc_conn_poll", true)) != 0)
    return r;
  /* A message whose header a refused recv_into already read has begun to arrive, even
   * when the rest is not in the pipe yet (a writer that sent the header on its own). */
  if (c->have_header || ready_in_memory(c))
    return 1;
  if ((r = mproc__os_poll_read(&c->fd, 1, timeout, &ready, &nready)) != 0)
    return r;
  return nready > 0;
}

int mproc_wait(mproc_conn *const *conns, size_t n, double timeout, size_t *ready, size_t *nready) {
  mproc__fd *fds;
  unsigned char *flags;
  bool early = false;
  int r;

  if ((conns == NULL && n > 0) || (ready == NULL && n > 0) || nready == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_wait: conns, ready and nready must not be NULL");
  for (size_t i = 0; i < n; i++) {
    if ((r = conn_check(conns[i], "mproc_wait", true)) != 0) {
      char why[256]; /* the message is rewritten from itself: copy it first */
      snprintf(why, sizeof why, "%s", mproc_last_error());
      return mproc__error(r, "mproc_wait: connection %zu: %s", i, why);
    }
    early |= ready_in_memory(conns[i]);
  }
  *nready = 0;
  fds = calloc(n ? n : 1, sizeof *fds);
  flags = calloc(n ? n : 1, 1);
  if (fds == NULL || flags == NULL) {
    r = mproc__error(MPROC_ENOMEM, "mproc_wait: cannot allocate for %zu connections", n);
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    fds[i] = conns[i]->fd;
  if ((r = mproc__os_poll_read(fds, n, early ? 0 : timeout, flags, nready)) != 0)
    goto out;
  *nready = 0;
  for (size_t i = 0; i < n; i++)
    if (flags[i] || ready_in_memory(conns[i]))
      ready[(*nready)++] = i;
out:
  free(fds);
  free(flags);
  return r;
}

int mproc_conn_set_max_message(mproc_conn *c, size_t max) {
  if (c == NULL || c->hdr.magic != MPROC__MAGIC || c->hdr.kind != MPROC__KIND_CONN)
    return mproc__error(MPROC_EINVAL, "mproc_conn_set_max_message: not a connection");
  c->max_message = max;
  return 0;
}

bool mproc_conn_readable(const mproc_conn *c) { return c != NULL && !c->closed && c->readable; }

bool mproc_conn_writable(const mproc_conn *c) { return c != NULL && !c->closed && c->writable; }

intptr_t mproc_conn_fileno(const mproc_conn *c) {
  if (c == NULL || c->closed)
    return -1;
  return (intptr_t)c->fd;
}

int mproc_conn_close(mproc_conn *c) {
  if (c == NULL || c->hdr.magic != MPROC__MAGIC || c->hdr.kind != MPROC__KIND_CONN)
    return mproc__error(MPROC_EINVAL, "mproc_conn_close: not a connection (NULL or freed)");
  if (!c->closed) {
    mproc__os_close(c->fd);
    c->fd = MPROC__FD_INVALID;
    c->closed = true;
  }
  return 0;
}

void mproc_conn_free(mproc_conn *c) {
  if (c == NULL)
    return;
  if (!c->closed)
    mproc__os_close(c->fd);
  free(c->rbuf);
  c->hdr.magic = 0; /* so that a stale pointer in a share list is caught */
  free(c);
}

/* ----------------------------------------------- crossing a spawn */

static size_t conn_fds(const void *obj, mproc__fd *fds) {
  const mproc_conn *c = obj;
  fds[0] = c->fd;
  return 1;
}

static void conn_encode(const void *obj, mproc__buf *b) {
  const mproc_conn *c = obj;
  mproc__buf_put_u64(b, (uint64_t)c->readable | (uint64_t)c->writable << 1 |
                            (uint64_t)c->duplex << 2 | (uint64_t)c->broken << 3 |
                            (uint64_t)c->have_header << 4);
  mproc__buf_put_u64(b, c->pending_len);
  mproc__buf_put_u64(b, c->max_message);
  /* What was read ahead belongs to the child's copy now. */
  mproc__buf_put_bytes(b, c->rbuf ? c->rbuf + c->rpos : NULL, c->rlen - c->rpos);
}

static int conn_decode(const mproc__kind_ops *ops, mproc__rd *rd, const mproc__fd *fds,
                       size_t nfds, void **obj) {
  uint64_t bits = mproc__rd_u64(rd);
  uint64_t pending = mproc__rd_u64(rd);
  uint64_t max = mproc__rd_u64(rd);
  size_t ahead;
  const void *bytes = mproc__rd_bytes(rd, &ahead);
  mproc_conn *c = NULL;
  int r;

  (void)ops;
  if (rd->err || nfds != 1)
    return mproc__error(MPROC_EPROTO, "malformed connection state in the spawn bootstrap");
  if ((r = mproc__conn_wrap(&c, fds[0], bits & 1, (bits >> 1) & 1, (bits >> 2) & 1)) != 0)
    return r;
  c->broken = (bits >> 3) & 1;
  c->have_header = (bits >> 4) & 1;
  c->pending_len = pending;
  c->max_message = (size_t)max;
  if (ahead > 0) {
    if ((c->rbuf = malloc(ahead > READ_AHEAD ? ahead : READ_AHEAD)) == NULL) {
      mproc_conn_free(c);
      return mproc__error(MPROC_ENOMEM, "cannot allocate a connection's buffer");
    }
    memcpy(c->rbuf, bytes, ahead);
    c->rlen = ahead;
  }
  *obj = c;
  return 0;
}

const mproc__kind_ops mproc__conn_ops = {
    .name = "connection",
    .kind = MPROC__KIND_CONN,
    .fds = conn_fds,
    .encode = conn_encode,
    .decode = conn_decode,
};
