/* What the pool's parent side (pool.c) and its workers and fork server
 * (pool_worker.c) share: message types, the progress slots, worker settings. */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <stdatomic.h>

#include "internal.h"

/* Messages, each one frame; the first word is the type. */
enum {
  /* parent -> worker: u64 chunk id, str module, u64 offset, u64 count, u64 size, then
   * count x bytes, or, when size is not UINT64_MAX, count x size raw bytes (an array) */
  MSG_TASK = 1,
  /* worker -> parent: u64 chunk id, u64 first, u64 k, u64 (unused), k x (u64 status,
   * bytes) where the bytes are the result, or the error message when status is not 0 */
  MSG_RESULTS,
  /* worker -> parent: u64 chunk id, u64 first, u64 k, u64 size, k x size raw bytes:
   * k successes of one size (a map's usual answer, with no per-item framing) */
  MSG_RESULTS_PACKED,
  /* worker -> parent: str message; the worker then exits */
  MSG_INITFAIL,
  /* parent -> fork server: u64 slot; a descriptor follows (mproc__os_send_fd) */
  MSG_SPAWN,
  /* parent -> fork server: u64 slot, u64 force */
  MSG_KILL,
  /* fork server -> parent: u64 slot, u64 pid (0: failed), str error */
  MSG_SPAWNED,
  /* fork server -> parent: u64 slot, u64 pid, u64 exit code (as int64) */
  MSG_EXITED,
};

/* Where each worker says what it is running, so that the parent knows which task a
 * dead worker held, and which one overstays its timeout, without a message per task. */
typedef struct pool_slot {
  _Atomic uint64_t seq;   /* bumped when a task starts */
  _Atomic uint64_t chunk; /* the running task: chunk id ... */
  _Atomic uint64_t index; /* ... and position in the chunk */
  _Atomic uint32_t running;
  char pad[36];
} pool_slot;

#define POOLSEG_MAGIC 0x6d70726f706f6f6cull /* "mpropool" */

typedef struct pool_seg {
  uint64_t magic;
  uint64_t nslots;
  _Alignas(64) pool_slot slots[];
} pool_seg;

/* The shared segment of slots, as a share-list object (kind MPROC__KIND_POOLSEG). */
typedef struct mproc__poolseg {
  mproc__segobj base;
} mproc__poolseg;

extern const mproc__kind_ops mproc__poolseg_ops;

/* What a worker is started with (its argument), encoded with mproc__buf. Share list:
 * [0] its channel, [1] the slots, then the user's objects. */
typedef struct worker_conf {
  uint64_t slot;
  uint64_t maxtasks;
  bool flush_each; /* report each task at once (a task timeout is set) */
  char *init_module; /* NULL: no initializer */
  uint64_t init_offset;
  const void *initarg;
  size_t initarg_len;
} worker_conf;

void mproc__worker_conf_encode(const worker_conf *c, mproc__buf *b);
int mproc__worker_conf_decode(mproc__rd *r, worker_conf *c);

#endif /* MPROC_POOL_H */
