/* Declarations shared by the portable core (src/). Not installed. */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mproc.h"
#include "platform.h"

/* ------------------------------------------------------------- errors */

/* Records code with a formatted message as this thread's last error; returns code. */
int mproc__error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(MPROC__PRINTF_FORMAT, 2, 3)))
#endif
    ;
/* The same for an OS error: MPROC_ESYS (or MPROC_ENOMEM) keeping oserr, with the OS
 * text appended to the message. Used by platform/. */
int mproc__error_os(int oserr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(MPROC__PRINTF_FORMAT, 2, 3)))
#endif
    ;
/* The text of an OS error (strerror / FormatMessage), in buf. */
const char *mproc__os_strerror(int oserr, char *buf, size_t cap);

/* ------------------------------------------------------------ runtime */

/* MPROC_ENOTINIT (with a message naming fn) until mproc_init ran. */
int mproc__check_init(const char *fn);
mproc_start_method mproc__resolve_start(mproc_start_method m);
/* The absolute deadline for a timeout (seconds, < 0: none), in microseconds of
 * apr_time_now(); and the time left until it (< 0: forever). */
int64_t mproc__deadline(double timeout);
double mproc__remaining(int64_t deadline);
/* Busy-waits until done(arg), for at most us microseconds and not past deadline
 * (< 0: none): true if done. A peer on another core often answers sooner than a
 * sleep and its wake-up would take (tens of microseconds on a virtual machine).
 * Never spins on a single CPU, where it would only delay the peer. */
bool mproc__spin(bool (*done)(const void *arg), const void *arg, int64_t deadline, int64_t us);

/* ------------------------------------------------------ wire encoding */

/* A growable byte buffer used to encode the spawn bootstrap and object state. */
typedef struct mproc__buf {
  unsigned char *data;
  size_t len, cap;
  int err; /* first error (MPROC_ENOMEM), so callers check once at the end */
} mproc__buf;

void mproc__buf_put_u64(mproc__buf *b, uint64_t v);
void mproc__buf_put_bytes(mproc__buf *b, const void *data, size_t len); /* length + data */
void mproc__buf_put_str(mproc__buf *b, const char *s);                  /* NULL allowed */
void mproc__buf_free(mproc__buf *b);
/* Makes room for len bytes from the start (keeping none): capacity is kept between
 * uses, so a buffer received into again and again is not allocated and paged in each
 * time. False (with b->err) when out of memory. */
bool mproc__buf_room(mproc__buf *b, size_t len);
/* Makes room for `more` bytes after what b holds (one allocation instead of doublings). */
bool mproc__buf_reserve(mproc__buf *b, size_t more);

/* Appends len bytes. Inline, with up to 16 bytes copied in fixed-size moves: a pool
 * worker appends every task's result, often a number. */
static inline void mproc__buf_put(mproc__buf *b, const void *data, size_t len) {
  unsigned char *d;
  const unsigned char *s = (const unsigned char *)data;
  if (len == 0 || b->err || (b->cap - b->len < len && !mproc__buf_reserve(b, len)))
    return;
  d = b->data + b->len;
  b->len += len;
  if (len >= 8 && len <= 16) { /* two overlapping 8-byte moves */
    memcpy(d, s, 8);
    memcpy(d + len - 8, s + len - 8, 8);
  } else if (len >= 4 && len < 8) {
    memcpy(d, s, 4);
    memcpy(d + len - 4, s + len - 4, 4);
  } else {
    memcpy(d, s, len);
  }
}

/* A reader over received bytes; any overrun sets err to MPROC_EPROTO. */
typedef struct mproc__rd {
  const unsigned char *p, *end;
  int err;
} mproc__rd;

/* len bytes with no length word, pointing into the buffer (inline, as above). */
static inline const void *mproc__rd_raw(mproc__rd *r, uint64_t len) {
  const unsigned char *p = r->p;
  if (r->err || len > (uint64_t)(r->end - r->p)) {
    r->err = MPROC_EPROTO;
    return NULL;
  }
  r->p += len;
  return p;
}
uint64_t mproc__rd_u64(mproc__rd *r);
const void *mproc__rd_bytes(mproc__rd *r, size_t *len); /* points into the buffer */
char *mproc__rd_str(mproc__rd *r);                       /* malloc()ed, NULL for NULL */

/* -------------------------------------------------------- share list */

/* Every shareable handle starts with this header, so a share list of void * can
 * be checked and handed over. */
#define MPROC__MAGIC 0x6d70726fu /* "mpro" */

typedef enum {
  MPROC__KIND_CONN = 1,
  MPROC__KIND_QUEUE,
  MPROC__KIND_LOCK,
  MPROC__KIND_SEM,
  MPROC__KIND_EVENT,
  MPROC__KIND_COND,
  MPROC__KIND_SHM,
  MPROC__KIND_POOLSEG,
  MPROC__KIND_COUNT
} mproc__kind;

typedef struct mproc__obj {
  uint32_t magic;
  uint32_t kind;
} mproc__obj;

/* What each shareable kind provides to cross a spawn. */
typedef struct mproc__kind_ops mproc__kind_ops;
struct mproc__kind_ops {
  const char *name;
  uint32_t kind;
  uint64_t seg_magic; /* for objects in one shared segment: its first word */
  size_t handle_size; /* and the size of their handle (a mproc__segobj first) */
  /* The descriptors the child must hold for obj (at most MPROC__MAX_OBJ_FDS). */
  size_t (*fds)(const void *obj, mproc__fd *fds);
  /* The object's state, apart from its descriptors. */
  void (*encode)(const void *obj, mproc__buf *b);
  /* Rebuilds the object in the child from its state and its descriptors. */
  int (*decode)(const mproc__kind_ops *ops, mproc__rd *r, const mproc__fd *fds, size_t nfds,
                void **obj);
};

/* A shared memory segment, mapped in this process. */
typedef struct mproc__seg {
  mproc__fd fd;
  void *addr;
  size_t size;
} mproc__seg;

/* A new anonymous segment of size zeroed bytes. */
int mproc__seg_create(mproc__seg *g, size_t size);
/* Maps the segment behind fd (which it then owns). */
int mproc__seg_map(mproc__seg *g, mproc__fd fd, size_t size);
void mproc__seg_release(mproc__seg *g);

/* The start of every handle whose object lives in one segment (queue, lock, ...):
 * such kinds share one way of crossing a spawn (mproc__segobj_* below). */
typedef struct mproc__segobj {
  mproc__obj hdr;
  mproc__seg seg;
} mproc__segobj;

/* A handle of ops's kind over a new segment of size zeroed bytes, initialised by
 * init(addr, arg) if given; its first word is set to ops->seg_magic after that. */
int mproc__segobj_create(const mproc__kind_ops *ops, size_t size,
                         int (*init)(void *addr, const void *arg), const void *arg, void **obj);
/* Checks that obj is a live handle of kind. */
int mproc__segobj_check(const void *obj, uint32_t kind, const char *fn);
void mproc__segobj_free(void *obj);
size_t mproc__segobj_fds(const void *obj, mproc__fd *fds);
void mproc__segobj_encode(const void *obj, mproc__buf *b);
int mproc__segobj_decode(const mproc__kind_ops *ops, mproc__rd *r, const mproc__fd *fds,
                         size_t nfds, void **obj);

#define MPROC__MAX_OBJ_FDS 8

/* The ops of a share-list entry; MPROC_EINVAL (naming index i) if it is not a live
 * mproc handle. */
int mproc__share_ops(const void *obj, size_t i, const mproc__kind_ops **ops);

/* The ops of a kind number; NULL for an unknown one. */
const mproc__kind_ops *mproc__kind_ops_get(uint64_t kind);

extern const mproc__kind_ops mproc__conn_ops, mproc__queue_ops, mproc__lock_ops,
    mproc__sem_ops, mproc__event_ops, mproc__cond_ops, mproc__shm_ops;

/* Whether a whole frame was already read ahead: a loop that polls descriptors
 * must drain these first, since the descriptor will not say so. */
bool mproc__conn_buffered(const mproc_conn *c);
/* mproc_conn_recv into b (grown as needed, its capacity reused): the message is
 * b->data[0 .. *len). */
int mproc__conn_recv_buf(mproc_conn *c, mproc__buf *b, size_t *len);
/* A connection over an existing descriptor (the spawn bootstrap's pipe). */
int mproc__conn_wrap(mproc_conn **c, mproc__fd fd, bool readable, bool writable, bool duplex);

/* ---------------------------------------------------------- children */

struct mproc_ctx {
  void **shared;
  size_t nshared;
  char *name;
  bool is_task; /* a pool task with a result channel (not a plain Process) */
  /* A pool task's outcome, set by mproc_return / mproc_fail. */
  mproc__buf result;
  bool returned, failed;
  char message[512];
};

/* The function pool workers (and the fork server) run, started as Processes; being
 * plain functions of the library, they cross a spawn like the user's. */
int mproc__pool_worker_main(mproc_ctx *ctx, const void *arg, size_t len);
int mproc__pool_server_main(mproc_ctx *ctx, const void *arg, size_t len);
/* The descriptor that becomes readable when a started process exits (or invalid). */
mproc__fd mproc__process_waitfd(const mproc_process *p);

/* Runs in a spawned child: reads the bootstrap from fd, runs the function, exits. */
void mproc__spawn_child_main(mproc__fd boot);

/* argv[1] of a spawned child; argv[2] is the descriptor its bootstrap arrives on. */
#define MPROC__SPAWN_FLAG "--mproc-spawn-child"

/* The running executable (what spawn starts) and the argv[0] it was given. */
extern char *mproc__exe;
extern const char *mproc__argv0;

/* Process bookkeeping the runtime drives: at exit (join non-daemon children,
 * terminate daemon ones) and in a fork child (forget the parent's children). */
void mproc__processes_at_exit(void);
void mproc__processes_after_fork(void);
int mproc__processes_init(void);
/* Ends a child process once its function returned: joins its own non-daemon
 * children and terminates its daemon ones, then exits without atexit handlers. */
void mproc__child_exit(int code);
/* Resets per-process runtime state in a new fork child. */
void mproc__after_fork_child(void);
/* The read end of this process's lifeline (created on first use): children watch it
 * to exit when this process is gone. */
int mproc__lifeline(mproc__fd *read_end);

#endif /* MPROC_INTERNAL_H */
