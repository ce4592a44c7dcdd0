/*
 * mproc: Python's multiprocessing for C.
 *
 * Every call that can fail returns int: 0 on success or a negative MPROC_E*
 * code. mproc_strerror() names the code; mproc_last_error() gives the detailed
 * message of the last failure on the calling thread (with the OS error text
 * behind an MPROC_ESYS). Timeouts are double seconds: MPROC_FOREVER (any
 * negative value) blocks, 0 does not block.
 *
 * mproc_init(&argc, &argv) must be the first line of main(): in a child started
 * with the spawn method it runs the child's work and never returns.
 */
#ifndef MPROC_H
#define MPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mproc/export.h"
#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* X(name, message): one table yields the enum, mproc_strerror and mproc_err_name. */
#define MPROC_ERRNO_MAP(X)                                                                 \
  X(ESYS, "operating system error")                                                        \
  X(EINVAL, "invalid argument")                                                            \
  X(ENOMEM, "out of memory")                                                               \
  X(ENOTINIT, "mproc_init() has not been called")                                          \
  X(ENOTFOUND, "function cannot be resolved in a child process")                          \
  X(EMSGSIZE, "message too large")                                                         \
  X(EOF, "end of file: the peer closed the connection")                                    \
  X(ETIMEDOUT, "timed out")                                                                \
  X(ECLOSED, "object is closed")                                                           \
  X(ESTATE, "operation not valid in the object's current state")                           \
  X(EFULL, "queue is full")                                                                \
  X(EEMPTY, "queue is empty")                                                              \
  X(EWORKER, "worker process died")                                                        \
  X(ENOTSUP, "operation not supported on this platform")                                  \
  X(EPROTO, "protocol error: malformed data on the connection")                            \
  X(EFAILED, "the task reported a failure")                                                \
  X(ECANCELED, "operation canceled")

/* Position of each code in the table; the codes are -1 - position. */
enum mproc__err_index {
#define MPROC__ERR_INDEX(name, msg) MPROC__ERRIDX_##name,
  MPROC_ERRNO_MAP(MPROC__ERR_INDEX)
#undef MPROC__ERR_INDEX
  MPROC__ERRIDX_COUNT
};

typedef enum mproc_errno {
  MPROC_OK = 0,
#define MPROC__ERR_CODE(name, msg) MPROC_##name = -1 - MPROC__ERRIDX_##name,
  MPROC_ERRNO_MAP(MPROC__ERR_CODE)
#undef MPROC__ERR_CODE
} mproc_errno;

/* "invalid argument" for MPROC_EINVAL; "unknown error" for a value outside the table. */
MPROC_EXTERN const char *mproc_strerror(int err);
/* "MPROC_EINVAL" for MPROC_EINVAL; "MPROC_UNKNOWN" for a value outside the table. */
MPROC_EXTERN const char *mproc_err_name(int err);
/* The detailed message of the last failing call on this thread ("" if none). For
 * MPROC_ESYS it ends with the OS error's text. The string stays valid until the next
 * mproc call on this thread. */
MPROC_EXTERN const char *mproc_last_error(void);
/* The OS error (errno, or GetLastError() on Windows) behind the last MPROC_ESYS on
 * this thread, 0 if the last failure had none. */
MPROC_EXTERN int mproc_last_oserror(void);

/* ----------------------------------------------------------------- runtime */

#define MPROC_FOREVER (-1.0)

MPROC_EXTERN unsigned mproc_version(void);           /* MPROC_VERSION_HEX of the library */
MPROC_EXTERN const char *mproc_version_string(void); /* "0.1.0" */

/* First line of main(). In the parent it returns 0 (or an error); in a child
 * started with the spawn method it runs the child's function and exits. */
MPROC_EXTERN int mproc_init(int *argc, char ***argv);

typedef enum {
  MPROC_START_DEFAULT = 0, /* the process-wide default: fork on POSIX, spawn on Windows */
  MPROC_START_FORK = 1,    /* the child is a copy of the parent (POSIX only) */
  MPROC_START_SPAWN = 2    /* the child re-executes the program and runs the function */
} mproc_start_method;

/* Sets the process-wide default start method (Python's set_start_method).
 * MPROC_ENOTSUP for fork where there is none. */
MPROC_EXTERN int mproc_set_start_method(mproc_start_method method);
MPROC_EXTERN mproc_start_method mproc_get_start_method(void);
/* Number of CPUs usable by this process. */
MPROC_EXTERN int mproc_cpu_count(void);

/* What a function running in a child sees. */
typedef struct mproc_ctx mproc_ctx;
/* A function run in a child. Its return value is the process's exit code for a
 * Process (0-255 reach the parent on POSIX). arg/len are a copy of the bytes given
 * at start. */
typedef int (*mproc_fn)(mproc_ctx *ctx, const void *arg, size_t len);

/* The i-th object of the share list this child was started with (the same handle
 * type as in the parent: mproc_conn *, ...), NULL if i is out of range. */
MPROC_EXTERN void *mproc_shared(mproc_ctx *ctx, size_t i);
MPROC_EXTERN size_t mproc_shared_count(const mproc_ctx *ctx);
/* The name of the process this function runs in. */
MPROC_EXTERN const char *mproc_ctx_name(const mproc_ctx *ctx);
/* The task's result, copied (pool tasks). A Process has no result channel:
 * MPROC_ESTATE there; send results over a Pipe or Queue. */
MPROC_EXTERN int mproc_return(mproc_ctx *ctx, const void *data, size_t len);
/* The task's error with a message (pool tasks); in a Process the message is
 * written to stderr. Returns MPROC_EFAILED so that `return mproc_fail(...)` works. */
MPROC_EXTERN int mproc_fail(mproc_ctx *ctx, const char *fmt, ...)
#if defined(__MINGW32__)
    /* MinGW's C99 printf formats it (%zu and the like), whatever the caller's own
     * printf is; its plain `printf` archetype would check for msvcrt's. */
    __attribute__((format(gnu_printf, 2, 3)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* --------------------------------------------------------------- Process */

typedef struct mproc_process mproc_process;

typedef struct mproc_process_opts {
  mproc_start_method start_method; /* 0: the process-wide default */
  const char *name;                /* NULL: "Process-N" */
  bool daemon;                     /* terminated when the parent frees it or exits */
  void *const *share;              /* objects handed to the child (mproc_conn *, ...) */
  size_t nshare;
} mproc_process_opts;

/* Starts target(ctx, copy of arg[0..len)) in a new process. */
MPROC_EXTERN int mproc_process_start(mproc_process **p, mproc_fn target, const void *arg,
                                     size_t len, const mproc_process_opts *opts);
/* Waits for the process to exit: 0 when it has, MPROC_ETIMEDOUT otherwise. */
MPROC_EXTERN int mproc_process_join(mproc_process *p, double timeout);
/* SIGTERM (TerminateProcess on Windows). Does nothing once the process has exited. */
MPROC_EXTERN int mproc_process_terminate(mproc_process *p);
/* SIGKILL. Does nothing once the process has exited. */
MPROC_EXTERN int mproc_process_kill(mproc_process *p);
/* The exit code once the process has exited: the function's return value or exit()
 * status, -N when killed by signal N. MPROC_ESTATE while it is still running. */
MPROC_EXTERN int mproc_process_exitcode(mproc_process *p, int *code);
MPROC_EXTERN bool mproc_process_is_alive(mproc_process *p);
MPROC_EXTERN long mproc_process_pid(const mproc_process *p);
MPROC_EXTERN const char *mproc_process_name(const mproc_process *p);
MPROC_EXTERN bool mproc_process_daemon(const mproc_process *p);
/* Frees the handle (NULL is fine). A daemon still running is terminated and reaped;
 * a non-daemon one is left running and reaped later (at the latest when the parent
 * exits, which waits for it as Python does). */
MPROC_EXTERN void mproc_process_free(mproc_process *p);

/* ------------------------------------------------------- Pipe / Connection */

typedef struct mproc_conn mproc_conn;

/* Python's Pipe(duplex). Duplex: both ends send and receive. Simplex: a receives,
 * b sends; the wrong direction is MPROC_EINVAL. */
MPROC_EXTERN int mproc_pipe(mproc_conn **a, mproc_conn **b, bool duplex);
/* send_bytes: the message is written whole (0 bytes to more than 4 GiB). */
MPROC_EXTERN int mproc_conn_send(mproc_conn *c, const void *data, size_t len);
/* recv_bytes: *data is malloc()ed (free() it; never NULL on success, even for 0
 * bytes). maxlen 0 means no limit; a longer message gives MPROC_EMSGSIZE and stays
 * readable. MPROC_EOF once the peer closed and nothing is left. */
MPROC_EXTERN int mproc_conn_recv(mproc_conn *c, void **data, size_t *len, size_t maxlen);
/* recv_bytes_into: the message into buf. If it does not fit, MPROC_EMSGSIZE, *len
 * tells its size, and the message stays readable. */
MPROC_EXTERN int mproc_conn_recv_into(mproc_conn *c, void *buf, size_t cap, size_t *len);
/* 1 when a message (or EOF) can be received without blocking, 0 when the timeout
 * passed first, negative on error. */
MPROC_EXTERN int mproc_conn_poll(mproc_conn *c, double timeout);
/* multiprocessing.connection.wait: waits until at least one of conns is ready (or the
 * timeout passes). ready (capacity n) receives the indices of the ready ones, *nready
 * their count (0 on timeout). No limit on n. */
MPROC_EXTERN int mproc_wait(mproc_conn *const *conns, size_t n, double timeout, size_t *ready,
                            size_t *nready);
/* Refuses received frames larger than max with MPROC_EMSGSIZE (the frame is
 * discarded and the stream stays in step). 0: no limit (the default). */
MPROC_EXTERN int mproc_conn_set_max_message(mproc_conn *c, size_t max);
MPROC_EXTERN bool mproc_conn_readable(const mproc_conn *c);
MPROC_EXTERN bool mproc_conn_writable(const mproc_conn *c);
/* The OS descriptor (a file descriptor, or a HANDLE on Windows); -1 when closed. */
MPROC_EXTERN intptr_t mproc_conn_fileno(const mproc_conn *c);
/* Closes the descriptor; later calls give MPROC_ECLOSED. The handle stays valid
 * until mproc_conn_free. */
MPROC_EXTERN int mproc_conn_close(mproc_conn *c);
/* Closes (if open) and frees; NULL is fine. */
MPROC_EXTERN void mproc_conn_free(mproc_conn *c);

/* ----------------------------------------------------------------- Queue */

/*
 * Python's Queue, JoinableQueue and SimpleQueue in one type. Messages live in a
 * ring in shared memory; there is no feeder thread: put returns once the message
 * is in the queue, so a process may exit right after it and nothing is lost.
 * Any number of processes put and get; each message is delivered once, whole,
 * and in order per producer. A process killed inside put or get does not wedge
 * the queue, and a half-written message is never delivered.
 *
 * A message larger than the ring streams through it while other producers wait.
 * Even an unbounded queue (maxsize 0) holds at most buffer_size bytes at a time:
 * put waits for room as a pipe's writer does (put_nowait gives MPROC_EFULL).
 * Once a consumer has begun receiving a message larger than the ring, both the
 * put and the get run to its end whatever their timeouts.
 */
typedef struct mproc_queue mproc_queue;

typedef struct mproc_queue_opts {
  size_t maxsize;     /* most messages held at once; 0: unbounded */
  bool joinable;      /* JoinableQueue: task_done and join */
  size_t max_message; /* larger puts give MPROC_EMSGSIZE; 0: no limit */
  size_t buffer_size; /* bytes of shared ring (rounded up to a power of 2); 0: 4 MiB */
} mproc_queue_opts;

MPROC_EXTERN int mproc_queue_create(mproc_queue **q, const mproc_queue_opts *opts);
/* timeout 0 is put_nowait (MPROC_EFULL when it would wait); a positive timeout
 * that passes gives MPROC_ETIMEDOUT; MPROC_ECLOSED after close. */
MPROC_EXTERN int mproc_queue_put(mproc_queue *q, const void *data, size_t len, double timeout);
/* *data is malloc()ed (free() it). timeout 0 is get_nowait (MPROC_EEMPTY); once
 * the queue is closed and drained, MPROC_EOF. */
MPROC_EXTERN int mproc_queue_get(mproc_queue *q, void **data, size_t *len, double timeout);
/* Into buf: a message larger than cap gives MPROC_EMSGSIZE with *len set, and stays
 * in the queue. */
MPROC_EXTERN int mproc_queue_get_into(mproc_queue *q, void *buf, size_t cap, size_t *len,
                                      double timeout);
/* Exact number of messages in the queue, on every platform. */
MPROC_EXTERN size_t mproc_queue_qsize(const mproc_queue *q);
MPROC_EXTERN bool mproc_queue_empty(const mproc_queue *q);
MPROC_EXTERN bool mproc_queue_full(const mproc_queue *q);
/* JoinableQueue: one call per message got; more calls than puts give MPROC_ESTATE. */
MPROC_EXTERN int mproc_queue_task_done(mproc_queue *q);
/* Waits until every message put has been marked done: 0 or MPROC_ETIMEDOUT. */
MPROC_EXTERN int mproc_queue_join(mproc_queue *q, double timeout);
/* Closes the queue for every process: later puts give MPROC_ECLOSED; gets drain what
 * is there, then give MPROC_EOF. Blocked callers wake up. */
MPROC_EXTERN int mproc_queue_close(mproc_queue *q);
/* Releases this process's handle (NULL is fine); the queue lives on in the others. */
MPROC_EXTERN void mproc_queue_free(mproc_queue *q);

/* -------------------------------------------------------- synchronization */

/*
 * Lock, RLock, Semaphore, BoundedSemaphore, Event and Condition across processes,
 * handed to children through the share list like queues. A timeout of 0 tries
 * once; MPROC_ETIMEDOUT says the wait did not succeed.
 */

/* Lock (recursive false) and RLock (true). Owned by the thread that acquired it:
 * only that thread may release it (MPROC_ESTATE otherwise), which is what lets a
 * process killed while holding it be detected: the next acquirer gets the lock. */
typedef struct mproc_lock mproc_lock;
MPROC_EXTERN int mproc_lock_create(mproc_lock **l, bool recursive);
MPROC_EXTERN int mproc_lock_acquire(mproc_lock *l, double timeout);
MPROC_EXTERN int mproc_lock_release(mproc_lock *l);
MPROC_EXTERN void mproc_lock_free(mproc_lock *l);

/* Semaphore (bounded false) and BoundedSemaphore (true: releasing above the
 * initial value gives MPROC_ESTATE). */
typedef struct mproc_sem mproc_sem;
MPROC_EXTERN int mproc_sem_create(mproc_sem **s, unsigned value, bool bounded);
MPROC_EXTERN int mproc_sem_acquire(mproc_sem *s, double timeout);
MPROC_EXTERN int mproc_sem_release(mproc_sem *s);
MPROC_EXTERN int mproc_sem_value(const mproc_sem *s, unsigned *value);
MPROC_EXTERN void mproc_sem_free(mproc_sem *s);

typedef struct mproc_event mproc_event;
MPROC_EXTERN int mproc_event_create(mproc_event **e);
MPROC_EXTERN int mproc_event_set(mproc_event *e);
MPROC_EXTERN int mproc_event_clear(mproc_event *e);
MPROC_EXTERN bool mproc_event_is_set(const mproc_event *e);
/* 0 once the event is set (even if cleared again before the waiter ran, as in
 * Python), MPROC_ETIMEDOUT if the timeout passed first. */
MPROC_EXTERN int mproc_event_wait(mproc_event *e, double timeout);
MPROC_EXTERN void mproc_event_free(mproc_event *e);

/* Condition over lock (NULL: a new RLock of its own). wait, notify and notify_all
 * need the lock held (MPROC_ESTATE otherwise). wait returns 0 when notified,
 * MPROC_ETIMEDOUT when the timeout passed; it holds the lock again either way. */
typedef struct mproc_cond mproc_cond;
MPROC_EXTERN int mproc_cond_create(mproc_cond **c, mproc_lock *lock);
MPROC_EXTERN int mproc_cond_acquire(mproc_cond *c, double timeout);
MPROC_EXTERN int mproc_cond_release(mproc_cond *c);
MPROC_EXTERN int mproc_cond_wait(mproc_cond *c, double timeout);
/* Waits until pred(arg) is true (checked first, and after each wake-up). */
MPROC_EXTERN int mproc_cond_wait_for(mproc_cond *c, bool (*pred)(void *arg), void *arg,
                                     double timeout);
MPROC_EXTERN int mproc_cond_notify(mproc_cond *c, size_t n);
MPROC_EXTERN int mproc_cond_notify_all(mproc_cond *c);
MPROC_EXTERN void mproc_cond_free(mproc_cond *c);

/* Python's shared_memory.SharedMemory: a named block any process can attach. */
typedef struct mproc_shm mproc_shm;
/* name NULL: a generated unique name (see mproc_shm_name). MPROC_ESTATE if the
 * name exists. */
MPROC_EXTERN int mproc_shm_create(mproc_shm **m, const char *name, size_t size);
/* MPROC_ENOTFOUND if there is no block of that name. */
MPROC_EXTERN int mproc_shm_attach(mproc_shm **m, const char *name);
MPROC_EXTERN void *mproc_shm_buf(const mproc_shm *m);
MPROC_EXTERN size_t mproc_shm_size(const mproc_shm *m);
MPROC_EXTERN const char *mproc_shm_name(const mproc_shm *m);
/* Removes the name; attached processes keep their mapping until they free it. */
MPROC_EXTERN int mproc_shm_unlink(mproc_shm *m);
/* Unmaps and releases this process's handle (Python's close()); NULL is fine. */
MPROC_EXTERN void mproc_shm_free(mproc_shm *m);

/* ------------------------------------------------------------------ Pool */

/*
 * Python's Pool. Tasks are mproc_fn functions: a task's result is what it passes to
 * mproc_return (copied; any size), its failure what it passes to mproc_fail (or a
 * non-zero return value). Unlike Python's, the pool never hangs on a dead worker: a
 * worker that dies while running a task fails that task with MPROC_EWORKER (the
 * message names the signal or exit status) and is replaced; items the worker had
 * not started, or had finished but not yet reported, run again elsewhere. A task
 * over opts.task_timeout fails with MPROC_ETIMEDOUT and its worker is replaced.
 *
 * Under fork, workers (and their replacements) are forked from a single-threaded
 * fork server made when the pool is created, never from the pool's threaded
 * process; they see the program as it was at mproc_pool_create.
 *
 * starmap is map over an array of argument structs: each element is one task's
 * (arg, len). Callbacks run on the pool's dispatcher thread, one at a time, in
 * completion order; blocking calls on the pool from a callback give MPROC_ESTATE.
 */
typedef struct mproc_pool mproc_pool;
typedef struct mproc_result mproc_result; /* AsyncResult, and map/imap state */
typedef struct mproc_iter mproc_iter;     /* imap / imap_unordered */

typedef struct mproc_pool_opts {
  int processes;                   /* 0: mproc_cpu_count() */
  mproc_start_method start_method; /* 0: the process-wide default */
  mproc_fn initializer;            /* run once in each new worker; non-zero: pool broken */
  const void *initarg;
  size_t initarg_len;
  size_t maxtasksperchild; /* 0: workers live as long as the pool */
  double task_timeout;     /* seconds; 0: none */
  void *const *share;      /* objects every worker receives (mproc_shared(ctx, i)) */
  size_t nshare;
} mproc_pool_opts;

typedef struct mproc_callbacks {
  /* Success: the result (apply: the task's bytes; map: the output array). */
  void (*callback)(void *user, mproc_result *r);
  /* Failure: the first failing task's error; mproc_result_message says more. */
  void (*error_callback)(void *user, mproc_result *r);
  void *user;
} mproc_callbacks;

MPROC_EXTERN int mproc_pool_create(mproc_pool **p, const mproc_pool_opts *opts);

/* apply: runs fn(arg) in a worker and waits; *out is malloc()ed (free() it). */
MPROC_EXTERN int mproc_pool_apply(mproc_pool *p, mproc_fn fn, const void *arg, size_t len,
                                  void **out, size_t *outlen);
/* apply_async: arg is copied. cb may be NULL. */
MPROC_EXTERN int mproc_pool_apply_async(mproc_pool *p, mproc_fn fn, const void *arg, size_t len,
                                        const mproc_callbacks *cb, mproc_result **r);

/* map: fn over n elements of in_size bytes each at in; element i's result (exactly
 * out_size bytes, or a task fails with MPROC_EMSGSIZE; out_size 0 discards results)
 * goes to out + i * out_size. chunksize 0 is Python's rule, ceil(n / (4 * processes)).
 * Returns the first failing element's error (the others still ran). */
MPROC_EXTERN int mproc_pool_map(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                size_t in_size, void *out, size_t out_size, size_t chunksize);
/* map_async: in and out must stay valid until the result is ready. */
MPROC_EXTERN int mproc_pool_map_async(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                      size_t in_size, void *out, size_t out_size,
                                      size_t chunksize, const mproc_callbacks *cb,
                                      mproc_result **r);

/* One item of variable size, for the _v entry points. */
typedef struct mproc_item {
  const void *data;
  size_t len;
} mproc_item;

/* map over items of any size; results of any size, read with mproc_result_item. The
 * items (not their data) are copied; the data must stay valid until ready. */
MPROC_EXTERN int mproc_pool_map_v(mproc_pool *p, mproc_fn fn, const mproc_item *items, size_t n,
                                  size_t chunksize, const mproc_callbacks *cb, mproc_result **r);

/* imap and imap_unordered over an array (as map). in must stay valid until the
 * iterator is freed. */
MPROC_EXTERN int mproc_pool_imap(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                 size_t in_size, size_t chunksize, mproc_iter **it);
MPROC_EXTERN int mproc_pool_imap_unordered(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                           size_t in_size, size_t chunksize, mproc_iter **it);

/* A lazy input: called on the pool's thread for item `index`; sets *data and *len (valid
 * until the next call) and returns 1, or returns 0 at the end, or a negative code.
 * Items are drawn only as workers need them, so memory stays bounded however many
 * there are: results the consumer has not taken yet hold back new items (CPython's
 * imap keeps every untaken result, and its map lists the whole input first). */
typedef int (*mproc_source)(void *user, size_t index, const void **data, size_t *len);
MPROC_EXTERN int mproc_pool_imap_source(mproc_pool *p, mproc_fn fn, mproc_source src, void *user,
                                        size_t chunksize, bool ordered, mproc_iter **it);

/* The next result: *index is its item's position, *data and *len its bytes (valid until
 * the next call or mproc_iter_free). MPROC_EOF after the last; MPROC_ETIMEDOUT if
 * none came in time; a failed item gives its error (with *index set), and the
 * iteration goes on with the next call. */
MPROC_EXTERN int mproc_iter_next(mproc_iter *it, double timeout, size_t *index, const void **data,
                                 size_t *len);
/* Stops the iteration: items not yet started are dropped. NULL is fine. */
MPROC_EXTERN void mproc_iter_free(mproc_iter *it);

/* No more submissions; workers exit once every task is done. */
MPROC_EXTERN int mproc_pool_close(mproc_pool *p);
/* Kills the workers now; unfinished results fail with MPROC_ECANCELED. */
MPROC_EXTERN int mproc_pool_terminate(mproc_pool *p);
/* Waits for the workers to exit; MPROC_ESTATE before close or terminate. */
MPROC_EXTERN int mproc_pool_join(mproc_pool *p);
/* A running pool is terminated and joined first, as Python's `with` block does. */
MPROC_EXTERN void mproc_pool_free(mproc_pool *p);

/* AsyncResult. wait: 0 once ready, MPROC_ETIMEDOUT. get: waits, then 0 and the
 * result (apply: the task's bytes; map: out and n * out_size), or the error. */
MPROC_EXTERN int mproc_result_wait(mproc_result *r, double timeout);
MPROC_EXTERN int mproc_result_get(mproc_result *r, double timeout, const void **data,
                                  size_t *len);
MPROC_EXTERN bool mproc_result_ready(mproc_result *r);
/* 1 if every task succeeded, 0 if not, MPROC_ESTATE until ready. */
MPROC_EXTERN int mproc_result_successful(mproc_result *r);
/* The first failure's message ("" when none). */
MPROC_EXTERN const char *mproc_result_message(mproc_result *r);
/* Item i of a map (once ready): 0 with its result bytes, or its error. */
MPROC_EXTERN int mproc_result_item(mproc_result *r, size_t i, const void **data, size_t *len);
/* Cancels what has not run yet, and what runs now (its worker is replaced); those
 * items fail with MPROC_ECANCELED. */
MPROC_EXTERN int mproc_result_cancel(mproc_result *r);
/* Releases the caller's hold on r (NULL is fine); the pool keeps what it needs. */
MPROC_EXTERN void mproc_result_free(mproc_result *r);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_H */
