/*
 * Pool, the parent side. One dispatcher thread owns a duplex channel to each
 * worker and waits on all of them (and on the workers' exits) at once. It keeps
 * each worker fed with a small window of chunks, so it always knows what every
 * worker holds: a worker that dies fails exactly the task it was running (its
 * progress slot in shared memory tells which), the rest of its chunks run
 * elsewhere, and it is replaced. User threads only queue jobs and wait.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_pools.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "pool.h"

/* Chunks in flight per worker: enough queued behind the running one that a worker
 * never waits for its next task while its results travel, as long as they add up
 * to SMALL bytes at most. Beyond that a chunk goes only to an idle worker, so the
 * dispatcher never blocks writing to a worker that is blocked writing to it (a
 * socket buffer holds more than SMALL). */
#define WINDOW 8
#define SMALL ((size_t)64 * 1024)
/* A chunk that runs longer than this (microseconds) gains nothing from having the
 * next one queued behind it, and a queued chunk cannot move to a worker that frees
 * up sooner: workers of such jobs hold one chunk at a time, as Python's pull from
 * a shared queue. Until a chunk has been timed, they hold two. */
#define SLOW_CHUNK_US 2000
/* Task messages' buffers are kept for the next chunks, up to this many bytes in all:
 * memory freed and allocated again is paged in again, which costs more than the
 * copying (tens of microseconds a page on a virtual machine). */
#define SPARE_BYTES ((size_t)8 * 1024 * 1024)
#define SPARES 16

typedef enum { J_APPLY, J_MAP, J_MAPV, J_ITER } job_kind;
typedef enum { P_RUN, P_CLOSE, P_TERMINATE } pool_state;

typedef struct item_out {
  int status;
  void *data; /* result, or error message (NUL-terminated) */
  size_t len;
} item_out;

/* A delivered imap result waiting for mproc_iter_next. */
typedef struct iter_entry {
  size_t index;
  item_out out;
  bool present;
} iter_entry;

struct mproc_result {
  mproc_pool *pool;
  job_kind kind;
  int refs; /* the user's and, while unfinished, the pool's */
  struct mproc_result *next_pending; /* in the pool's list of jobs with undispatched items */
  struct mproc_result *live_prev, *live_next; /* in the pool's list of unfinished jobs */
  bool pending_listed;
  char *module; /* the task function, as (module, offset) */
  uint64_t offset;

  /* Input: n items (SIZE_MAX while a source has not ended). */
  size_t n;
  const unsigned char *in;
  size_t in_size;
  mproc_item *items; /* J_MAPV */
  void *arg_copy;    /* J_APPLY */
  size_t arg_len;
  mproc_source src;
  void *src_user;
  size_t chunksize;
  size_t next; /* next item to dispatch */
  bool src_done;
  int src_err; /* what the source returned when it failed; given once by iter_next */

  /* Output. */
  void *out;
  size_t out_size;
  item_out *outs; /* J_APPLY, J_MAPV: every item; J_MAP: failures only */
  size_t done;    /* items finished */
  size_t failed;
  int first_err;
  size_t first_err_index;
  char *message;
  bool ready, cancelled;
  struct worker *direct_w; /* apply: the worker whose reply its waiter may read itself */
  mproc_callbacks cb;

  /* J_ITER */
  bool ordered;
  iter_entry *ring; /* results waiting, at index % window */
  size_t window;    /* most items dispatched ahead of the consumer */
  size_t consumed;  /* ordered: next index to hand out; unordered: handed out count */
  size_t *fifo;     /* unordered: ring positions in completion order */
  size_t fifo_head, fifo_len;
  size_t *free_slots; /* unordered: ring positions not in use */
  size_t nfree;
  item_out current; /* what the last mproc_iter_next returned */
};

struct mproc_iter {
  mproc_result r;
};

/* A run of items of one job sent to one worker as one message. */
typedef struct chunk {
  mproc_result *job;
  uint64_t id;
  size_t start, count; /* its items are the job's start .. start + count - 1 */
  size_t reported;  /* items whose results came back */
  size_t count_pos; /* where the item count sits in msg */
  size_t items_pos; /* where the first item's bytes start in msg */
  uint64_t item_size; /* every item's size, or UINT64_MAX when they vary (framed) */
  mproc__buf msg;   /* the encoded task message */
  int64_t sent_at;  /* when it went to its worker */
  struct chunk *next;
} chunk;

typedef struct worker {
  int slot;
  bool alive, eof;
  bool have_code;
  int64_t code;
  long pid;
  mproc_process *proc; /* spawn: ours; fork: the server's */
  mproc_conn *ch;
  chunk *inflight[WINDOW];
  int ninflight;
  size_t inflight_bytes;
  size_t assigned; /* tasks sent (maxtasksperchild) */
  uint64_t seen_seq;
  int64_t seen_at;
  int kill_reason; /* 0, MPROC_ETIMEDOUT or MPROC_ECANCELED once we killed it */
  bool sending;    /* a thread writes to ch without the lock: nobody else may */
  chunk *on_wire;  /* the chunk being written; its results may come back first */
  bool wire_done;  /* they did: the writer frees it */
  /* A lone apply handed straight to this worker: the thread that waits for it reads
   * the reply itself, sparing a hop through the dispatcher, which leaves the channel
   * alone meanwhile and sends the worker nothing else. */
  mproc_result *direct;
  bool reading; /* that thread is reading ch without the lock */
  unsigned gen; /* counts the slot's workers: a replacement is not its predecessor */
  mproc__buf rx; /* messages from the worker, received into the same memory each time */
  int64_t last_done; /* when its last chunk finished */
} worker;

struct mproc_pool {
  mproc__obj hdr;
  apr_pool_t *apr;
  apr_thread_mutex_t *mu;
  apr_thread_cond_t *changed;
  apr_thread_t *thread;
  int refs; /* the user's and each live result's */
  pool_state state;
  bool joining, joined, dispatcher_done; /* joining: a thread is in mproc_pool_join */
  bool broken;
  char *broken_msg;
  mproc_start_method method;
  int nworkers;
  worker *w;
  mproc__poolseg *seg;
  mproc_conn *server; /* fork: the fork server's control channel */
  mproc_conn *fdchan; /* fork: where the workers' descriptors go to the server */
  mproc_process *server_proc;
  bool server_done; /* its channel closed early: no worker needs it any more */
  mproc__fd wake[2];
  bool wake_pending;
  int send_waiters; /* threads waiting for a worker's `sending` to clear */
  bool waiters_due;  /* results changed: broadcast `changed` after unlocking */
  mproc__buf conf; /* encoded worker_conf (slot filled per worker) */
  worker_conf wconf;
  void **share; /* [channel placeholder, slots, user's ...] */
  size_t nshare;
  double task_timeout;
  size_t maxtasks;
  mproc_result *pending, *pending_tail; /* jobs with items to dispatch */
  chunk *retry, *retry_tail;             /* items to dispatch again */
  uint64_t next_chunk_id;
  int64_t chunk_us; /* how long chunks take to run, smoothed; 0: none timed yet */
  size_t live_jobs; /* unfinished */
  mproc_result *live; /* the unfinished jobs */
  mproc_result **callbacks; /* finished jobs whose callbacks are due */
  size_t ncallbacks, capcallbacks;
  mproc__buf spare[SPARES]; /* task message buffers to use again (SPARE_BYTES) */
  int nspare;
  size_t spare_bytes;
};

static MPROC__THREAD_LOCAL mproc_pool *dispatcher_of;

/* ------------------------------------------------------------ helpers */

static int pool_check(const mproc_pool *p, const char *fn) {
  if (p == NULL || p->hdr.magic != MPROC__MAGIC)
    return mproc__error(MPROC_EINVAL, "%s: not a pool (NULL or freed)", fn);
  return 0;
}

/* Blocking on the pool from its own thread (a callback) would wait forever. */
static int not_dispatcher(const mproc_pool *p, const char *fn) {
  if (dispatcher_of == p)
    return mproc__error(MPROC_ESTATE, "%s: would block the pool's own thread (called from a "
                                      "callback); use the _async form",
                        fn);
  return 0;
}

static void wake_dispatcher(mproc_pool *p) {
  if (!p->wake_pending) {
    char c = 1;
    p->wake_pending = true;
    mproc__os_write2(p->wake[1], false, &c, 1, NULL, 0);
  }
}

static void pool_unref(mproc_pool *p);

static void out_free(item_out *o) {
  free(o->data);
  o->data = NULL;
}

static void job_destroy(mproc_result *j) {
  if (j->outs != NULL)
    for (size_t i = 0; i < (j->kind == J_MAP ? 0 : j->n); i++)
      out_free(&j->outs[i]);
  if (j->ring != NULL)
    for (size_t i = 0; i < j->window; i++)
      out_free(&j->ring[i].out);
  out_free(&j->current);
  free(j->outs);
  free(j->ring);
  free(j->fifo);
  free(j->free_slots);
  free(j->items);
  free(j->arg_copy);
  free(j->module);
  free(j->message);
  free(j);
}

/* Drops a reference; called with p->mu held. */
static void job_unref(mproc_result *j) {
  if (--j->refs == 0) {
    mproc_pool *p = j->pool;
    job_destroy(j);
    pool_unref(p);
  }
}

/* ----------------------------------------------------- job outcomes */

static void record_error(mproc_result *j, size_t index, int status, const char *msg) {
  j->failed++;
  if (j->message == NULL || index < j->first_err_index) {
    free(j->message);
    j->message = strdup(msg ? msg : mproc_strerror(status));
    j->first_err = status;
    j->first_err_index = index;
  }
}

/* Wakes the threads waiting on results. The dispatcher does it once it has let go
 * of the lock (before it polls), or each woken thread would at once block on the
 * lock it still holds. */
static void notify_waiters(mproc_pool *p) {
  if (dispatcher_of == p)
    p->waiters_due = true;
  else
    apr_thread_cond_broadcast(p->changed);
}

static void live_unlink(mproc_pool *p, mproc_result *j) {
  if (j->live_prev)
    j->live_prev->live_next = j->live_next;
  else
    p->live = j->live_next;
  if (j->live_next)
    j->live_next->live_prev = j->live_prev;
  j->live_prev = j->live_next = NULL;
}

static void pending_unlink(mproc_pool *p, mproc_result *j);

static void job_finish(mproc_pool *p, mproc_result *j) {
  j->ready = true;
  p->live_jobs--;
  live_unlink(p, j);
  pending_unlink(p, j);
  if (j->cb.callback || j->cb.error_callback) {
    if (p->ncallbacks == p->capcallbacks) {
      size_t cap = p->capcallbacks * 2;
      mproc_result **grown = realloc(p->callbacks, cap * sizeof *grown);
      if (grown != NULL) {
        p->callbacks = grown;
        p->capcallbacks = cap;
      }
    }
    if (p->ncallbacks < p->capcallbacks) {
      j->refs++;
      p->callbacks[p->ncallbacks++] = j;
    }
  }
  job_unref(j); /* the pool's hold */
  notify_waiters(p);
}

/* A copy of data with a NUL after it (results may be read as strings, messages are);
 * on failure, status turns into MPROC_ENOMEM. */
static void *keep_copy(const void *data, size_t len, int *status) {
  char *copy = len < SIZE_MAX ? malloc(len + 1) : NULL;
  if (copy == NULL) {
    *status = MPROC_ENOMEM;
    return NULL;
  }
  if (len)
    memcpy(copy, data, len);
  copy[len] = '\0';
  return copy;
}

/* k more items of j are done: waiters of an iterator hear of it, a job with all its
 * items done finishes. */
static void items_counted(mproc_pool *p, mproc_result *j, size_t k) {
  j->done += k;
  if (j->kind == J_ITER)
    notify_waiters(p);
  if (j->done == j->n)
    job_finish(p, j);
}

/* Stores the outcome of item index: its result bytes, or its error message (a
 * string) when status is not 0. */
static void item_done(mproc_pool *p, mproc_result *j, size_t index, int status, const void *data,
                      size_t len) {
  if (status != 0) {
    len = data ? strlen(data) : 0;
    record_error(j, index, status, data);
  }
  switch (j->kind) {
  case J_APPLY:
  case J_MAPV: {
    void *copy = keep_copy(data, len, &status);
    j->outs[index] = (item_out){status, copy, copy ? len : 0};
    break;
  }
  case J_MAP:
    if (status == 0 && j->out_size != 0 && len != j->out_size) {
      char msg[160];
      snprintf(msg, sizeof msg, "item %zu's result has %zu bytes; map expects %zu", index, len,
               j->out_size);
      status = MPROC_EMSGSIZE;
      record_error(j, index, status, msg);
    }
    if (status == 0 && j->out_size != 0)
      memcpy((unsigned char *)j->out + index * j->out_size, data, len);
    if (status != 0) {
      if (j->outs == NULL)
        j->outs = calloc(j->n, sizeof *j->outs);
      if (j->outs != NULL)
        j->outs[index].status = status;
    }
    break;
  case J_ITER: {
    /* Ordered: the items in flight are the window after the next to hand out, so
     * index % window is theirs alone. Unordered: any free position. */
    size_t at = j->ordered ? index % j->window : j->free_slots[--j->nfree];
    iter_entry *e = &j->ring[at];
    void *copy = keep_copy(data, len, &status);
    e->index = index;
    e->out = (item_out){status, copy, copy ? len : 0};
    e->present = true;
    if (!j->ordered)
      j->fifo[(j->fifo_head + j->fifo_len++) % j->window] = at;
    break;
  }
  }
  items_counted(p, j, 1);
}

/* Every item not yet done fails with status (terminate, cancel, broken pool). */
static void job_fail_rest(mproc_pool *p, mproc_result *j, int status, const char *msg) {
  size_t end = j->src || j->kind == J_ITER ? j->next : j->n;
  /* An iteration just ends early: what was not started is dropped. */
  if (j->src || j->kind == J_ITER) {
    j->n = j->next; /* no more items will be drawn */
    j->src_done = true;
  }
  for (size_t i = j->next; i < end; i++)
    item_done(p, j, i, status, msg, 0);
  j->next = end;
  if (!j->ready && j->done == j->n)
    job_finish(p, j);
}

/* ----------------------------------------------------------- chunks */

static void chunk_free(mproc_pool *p, chunk *c) {
  if (p->nspare < SPARES && c->msg.err == 0 && c->msg.cap <= SPARE_BYTES - p->spare_bytes) {
    p->spare_bytes += c->msg.cap;
    p->spare[p->nspare++] = c->msg;
  } else {
    mproc__buf_free(&c->msg);
  }
  free(c);
}

/* Items of a map over an array all have one size: they travel unframed. */
static uint64_t job_item_size(const mproc_result *j) {
  return j->kind == J_MAP || (j->kind == J_ITER && j->src == NULL) ? (uint64_t)j->in_size
                                                                     : UINT64_MAX;
}

/* A chunk of count items of j from its item start. */
static chunk *chunk_new(mproc_pool *p, mproc_result *j, size_t start, size_t count) {
  chunk *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  if (p->nspare > 0) {
    c->msg = p->spare[--p->nspare];
    p->spare_bytes -= c->msg.cap;
    c->msg.len = 0;
  }
  c->job = j;
  c->id = ++p->next_chunk_id;
  c->start = start;
  c->count = count;
  mproc__buf_put_u64(&c->msg, MSG_TASK);
  mproc__buf_put_u64(&c->msg, c->id);
  mproc__buf_put_str(&c->msg, j->module);
  mproc__buf_put_u64(&c->msg, j->offset);
  c->count_pos = c->msg.len;
  mproc__buf_put_u64(&c->msg, count);
  c->item_size = job_item_size(j);
  mproc__buf_put_u64(&c->msg, c->item_size);
  c->items_pos = c->msg.len;
  if (c->item_size != UINT64_MAX && c->item_size <= SIZE_MAX / (count ? count : 1))
    mproc__buf_reserve(&c->msg, count * (size_t)c->item_size);
  return c;
}

/* Appends the chunk's next item. */
static void chunk_add(chunk *c, const void *data, size_t len) {
  if (c->item_size == UINT64_MAX)
    mproc__buf_put_bytes(&c->msg, data, len);
  else
    mproc__buf_put(&c->msg, data, len);
}

/* A reader at item k of a chunk's message (walking the framed items before it). */
static mproc__rd chunk_items_from(const chunk *c, size_t k) {
  mproc__rd r = {c->msg.data + c->items_pos, c->msg.data + c->msg.len, 0};
  if (c->item_size != UINT64_MAX) {
    r.p += k * (size_t)c->item_size;
    return r;
  }
  for (size_t x = 0; x < k; x++) {
    size_t len;
    mproc__rd_bytes(&r, &len);
  }
  return r;
}

/* The next item's bytes from such a reader. */
static const void *chunk_item_next(const chunk *c, mproc__rd *r, size_t *len) {
  if (c->item_size != UINT64_MAX) {
    *len = (size_t)c->item_size;
    return mproc__rd_raw(r, *len);
  }
  return mproc__rd_bytes(r, len);
}

static void push_retry(mproc_pool *p, chunk *c) {
  c->next = NULL;
  if (p->retry_tail)
    p->retry_tail->next = c;
  else
    p->retry = c;
  p->retry_tail = c;
}

static void list_pending(mproc_pool *p, mproc_result *j) {
  if (j->pending_listed)
    return;
  j->pending_listed = true;
  j->next_pending = NULL;
  if (p->pending_tail)
    p->pending_tail->next_pending = j;
  else
    p->pending = j;
  p->pending_tail = j;
}

/* A finished job leaves the list: the pool no longer holds it. */
static void pending_unlink(mproc_pool *p, mproc_result *j) {
  mproc_result *prev = NULL;
  if (!j->pending_listed)
    return;
  for (mproc_result *x = p->pending; x; prev = x, x = x->next_pending)
    if (x == j) {
      if (prev)
        prev->next_pending = j->next_pending;
      else
        p->pending = j->next_pending;
      if (p->pending_tail == j)
        p->pending_tail = prev;
      break;
    }
  j->pending_listed = false;
}

static bool has_undispatched(const mproc_result *j) {
  if (j->cancelled || j->ready)
    return false;
  if (j->kind == J_ITER && j->next - (j->ordered ? j->consumed : j->consumed) >= j->window)
    return false; /* the consumer is behind: hold back (bounded memory) */
  return j->src ? !j->src_done : j->next < j->n;
}

/* Builds the next chunk to send: requeued items first, then new ones. limit caps its
 * item count (maxtasksperchild). Called with mu held; drops it around a source. */
static void requeue_rest(mproc_pool *p, chunk *c, size_t from);

static chunk *next_chunk(mproc_pool *p, size_t limit) {
  if (p->retry != NULL && p->retry->count > limit) {
    /* More than this worker may still run (maxtasksperchild): split it. */
    chunk *c = p->retry;
    p->retry = c->next;
    if (p->retry == NULL)
      p->retry_tail = NULL;
    requeue_rest(p, c, limit);
    c->count = limit;
    requeue_rest(p, c, 0);
    chunk_free(p, c);
  }
  if (p->retry != NULL && p->retry->count <= limit) {
    chunk *c = p->retry;
    p->retry = c->next;
    if (p->retry == NULL)
      p->retry_tail = NULL;
    return c;
  }
  while (p->pending != NULL) {
    mproc_result *j = p->pending;
    if (!has_undispatched(j)) {
      /* Off the list; an iterator comes back when its consumer catches up. */
      p->pending = j->next_pending;
      if (p->pending == NULL)
        p->pending_tail = NULL;
      j->pending_listed = false;
      continue;
    }
    size_t count = j->chunksize, room;
    if (count > limit)
      count = limit;
    if (!j->src && count > j->n - j->next)
      count = j->n - j->next;
    if (j->kind == J_ITER) {
      room = j->window - (j->next - j->consumed);
      if (count > room)
        count = room;
    }
    chunk *c = chunk_new(p, j, j->next, count);
    if (c == NULL)
      return NULL;
    size_t k = 0;
    if (j->src) {
      /* The source is user code: call it without the pool's lock. Only this thread
       * draws from it; a reference keeps the job while a cancel may finish it. */
      size_t first = j->next;
      int r = 1;
      j->refs++;
      apr_thread_mutex_unlock(p->mu);
      for (; k < count; k++) {
        const void *data;
        size_t len;
        if ((r = j->src(j->src_user, first + k, &data, &len)) <= 0)
          break;
        chunk_add(c, data, len);
      }
      apr_thread_mutex_lock(p->mu);
      if (j->ready || j->cancelled) {
        /* Canceled meanwhile: what was drawn is dropped, like the rest. */
        chunk_free(p, c);
        job_unref(j);
        continue;
      }
      j->refs--;
      if (r <= 0) {
        j->src_done = true;
        j->n = first + k;
        if (r < 0)
          j->src_err = r;
      }
      j->next = first + k;
      if (k == 0) {
        chunk_free(p, c);
        if (j->src_done && j->done == j->n && !j->ready)
          job_finish(p, j);
        continue;
      }
      /* Patch the item count now that it is known. */
      for (int b = 0; b < 8 && !c->msg.err; b++)
        c->msg.data[c->count_pos + (size_t)b] = (unsigned char)((uint64_t)k >> (8 * b));
      c->count = k;
    } else {
      if (c->item_size != UINT64_MAX) /* an array's items: in one piece */
        mproc__buf_put(&c->msg, j->in + j->next * j->in_size, count * j->in_size);
      else
        for (; k < count; k++) {
          size_t i = j->next + k;
          if (j->kind == J_APPLY)
            chunk_add(c, j->arg_copy, j->arg_len);
          else
            chunk_add(c, j->items[i].data, j->items[i].len);
        }
      j->next += count;
    }
    if (c->msg.err) {
      chunk_free(p, c);
      return NULL;
    }
    return c;
  }
  return NULL;
}

/* A chunk of the items [from, c->count) of c, to run again. */
static void requeue_rest(mproc_pool *p, chunk *c, size_t from) {
  mproc_result *j = c->job;
  if (from >= c->count)
    return;
  if (j->cancelled) {
    for (size_t k = from; k < c->count; k++)
      item_done(p, j, c->start + k, MPROC_ECANCELED, "canceled", 0);
    return;
  }
  chunk *n = chunk_new(p, j, c->start + from, c->count - from);
  if (n != NULL) {
    mproc__rd r = chunk_items_from(c, from);
    for (size_t k = from; k < c->count; k++) {
      size_t len;
      const void *d = chunk_item_next(c, &r, &len);
      chunk_add(n, d, len);
    }
    if (n->msg.err == 0) {
      push_retry(p, n);
      return;
    }
    chunk_free(p, n);
  }
  for (size_t k = from; k < c->count; k++)
    item_done(p, j, c->start + k, MPROC_ENOMEM, "out of memory requeueing", 0);
}

/* ---------------------------------------------------------- workers */

/* Starts the worker of w's slot. Under spawn, and under fork for the first workers
 * (forked by the creating thread, exactly when the fork server is), it is our own
 * child; later fork workers come from the fork server, never from this process,
 * whose threads (the pool's own, and maybe the program's) may hold locks. */
static int worker_start(mproc_pool *p, worker *w, bool own) {
  mproc_conn *mine = NULL, *theirs = NULL;
  int r;

  pool_seg *seg = p->seg->base.seg.addr;
  atomic_store(&seg->slots[w->slot].running, 0);
  w->gen++;
  w->alive = w->eof = w->have_code = false;
  w->ninflight = 0;
  w->inflight_bytes = 0;
  w->assigned = 0;
  w->kill_reason = 0;
  w->seen_seq = atomic_load(&seg->slots[w->slot].seq);
  w->seen_at = mproc__deadline(0);
  if ((r = mproc_pipe(&mine, &theirs, true)) != 0)
    return r;
  w->proc = NULL;
  if (own || p->method == MPROC_START_SPAWN) {
    mproc__buf cb = {0};
    p->wconf.slot = (uint64_t)w->slot;
    mproc__worker_conf_encode(&p->wconf, &cb);
    p->share[0] = theirs;
    mproc_process_opts o = {.start_method = p->method,
                            .name = "PoolWorker",
                            .daemon = true,
                            .share = p->share,
                            .nshare = p->nshare};
    r = cb.err ? cb.err : mproc_process_start(&w->proc, mproc__pool_worker_main, cb.data, cb.len, &o);
    mproc__buf_free(&cb);
    if (r == 0)
      w->pid = mproc_process_pid(w->proc);
  } else {
    mproc__buf b = {0};
    mproc__buf_put_u64(&b, MSG_SPAWN);
    mproc__buf_put_u64(&b, (uint64_t)w->slot);
    r = b.err ? b.err : mproc_conn_send(p->server, b.data, b.len);
    if (r == 0)
      r = mproc__os_send_fd((mproc__fd)mproc_conn_fileno(p->fdchan),
                            (mproc__fd)mproc_conn_fileno(theirs));
    mproc__buf_free(&b);
    w->pid = 0; /* told by MSG_SPAWNED */
  }
  mproc_conn_free(theirs);
  if (r != 0) {
    mproc_conn_free(mine);
    return r;
  }
  w->ch = mine;
  w->alive = true;
  return 0;
}

static void worker_kill(mproc_pool *p, worker *w, int reason) {
  if (!w->alive || w->eof)
    return;
  if (w->kill_reason == 0)
    w->kill_reason = reason;
  if (w->proc) {
    mproc_process_kill(w->proc);
  } else {
    mproc__buf b = {0};
    mproc__buf_put_u64(&b, MSG_KILL);
    mproc__buf_put_u64(&b, (uint64_t)w->slot);
    mproc__buf_put_u64(&b, 1);
    if (!b.err)
      mproc_conn_send(p->server, b.data, b.len);
    mproc__buf_free(&b);
  }
}

/* A signal's name, from the numbers this system defines; strsignal() is not in every C
 * library. 9 and 15 are also what Windows reports for a kill and a terminate, which it
 * has no signals for. */
static const char *signal_name(int sig) {
  static const struct {
    int sig;
    const char *name;
  } names[] = {
#ifdef SIGHUP
      {SIGHUP, "SIGHUP"},
#endif
      {SIGINT, "SIGINT"},   {SIGILL, "SIGILL"},   {SIGABRT, "SIGABRT"},
      {SIGFPE, "SIGFPE"},   {SIGSEGV, "SIGSEGV"}, {SIGTERM, "SIGTERM"},
#ifdef SIGKILL
      {SIGKILL, "SIGKILL"},
#endif
#ifdef SIGBUS
      {SIGBUS, "SIGBUS"},
#endif
#ifdef SIGPIPE
      {SIGPIPE, "SIGPIPE"},
#endif
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].sig == sig)
      return names[i].name;
  return sig == 9 ? "SIGKILL" : sig == 15 ? "SIGTERM" : "unknown signal";
}

/* A negative code is a signal only while it is small: a Windows process that crashed
 * ends with its exception code (0xC0000005 for an access violation), which is negative
 * as an int and is shown in hex, as Windows writes it. */
static void describe_exit(char *buf, size_t cap, long pid, int64_t code) {
  if (code < 0 && code >= -128)
    snprintf(buf, cap, "worker pid %ld died running this task: killed by signal %d (%s)", pid,
             (int)-code, signal_name((int)-code));
  else if (code < 0 || code > 255)
    snprintf(buf, cap, "worker pid %ld died running this task: exited with status 0x%08x", pid,
             (unsigned)code);
  else
    snprintf(buf, cap, "worker pid %ld died running this task: exited with status %d", pid,
             (int)code);
}

/* The worker's channel ended and its exit code is known: settle what it held, and
 * replace it if the pool still needs workers. */
static void worker_dead(mproc_pool *p, worker *w) {
  /* The channel is freed below: let a thread writing to it finish first. */
  while (w->sending) {
    p->send_waiters++;
    apr_thread_cond_wait(p->changed, p->mu);
    p->send_waiters--;
  }
  pool_seg *seg = p->seg->base.seg.addr;
  pool_slot *s = &seg->slots[w->slot];
  bool running = atomic_load(&s->running) != 0;
  uint64_t rchunk = atomic_load(&s->chunk), rindex = atomic_load(&s->index);
  char msg[256];

  for (int i = 0; i < w->ninflight; i++) {
    chunk *c = w->inflight[i];
    size_t from = c->reported;
    if (running && c->id == rchunk && rindex >= c->reported && rindex < c->count) {
      int status = w->kill_reason ? w->kill_reason : MPROC_EWORKER;
      /* Items it finished but had not reported run again, with the rest. */
      if (status == MPROC_ETIMEDOUT)
        snprintf(msg, sizeof msg, "the task ran over the pool's task_timeout of %gs; worker pid "
                                  "%ld was killed",
                 p->task_timeout, w->pid);
      else if (status == MPROC_ECANCELED)
        snprintf(msg, sizeof msg, "canceled while running; worker pid %ld was killed", w->pid);
      else
        describe_exit(msg, sizeof msg, w->pid, w->code);
      requeue_rest(p, c, (size_t)rindex + 1);
      c->count = (size_t)rindex; /* what stays before the failed item */
      requeue_rest(p, c, from);
      item_done(p, c->job, c->start + rindex, status, msg, 0);
    } else {
      requeue_rest(p, c, from);
    }
    chunk_free(p, c);
  }
  w->ninflight = 0;
  w->inflight_bytes = 0;
  w->alive = false;
  mproc_conn_free(w->ch);
  w->ch = NULL;
  if (w->proc) {
    mproc_process_free(w->proc);
    w->proc = NULL;
  }
  if (p->state != P_TERMINATE && !p->broken && (p->live_jobs > 0 || p->state == P_RUN)) {
    if (worker_start(p, w, false) != 0 && p->live_jobs > 0) {
      /* Without a worker nothing runs: report it rather than wait forever. */
      p->broken = true;
      free(p->broken_msg);
      p->broken_msg = strdup(mproc_last_error());
    }
  }
}

/* The pool cannot run tasks (an initializer failed, a worker cannot start): every
 * unfinished item fails with the reason. */
static void fail_everything(mproc_pool *p, int status, const char *msg) {
  while (p->retry) {
    chunk *c = p->retry;
    p->retry = c->next;
    for (size_t k = 0; k < c->count; k++)
      item_done(p, c->job, c->start + k, status, msg, 0);
    chunk_free(p, c);
  }
  p->retry_tail = NULL;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    for (int k = 0; k < w->ninflight; k++) {
      chunk *c = w->inflight[k];
      for (size_t x = c->reported; x < c->count; x++)
        item_done(p, c->job, c->start + x, status, msg, 0);
      chunk_free(p, c);
    }
    w->ninflight = 0;
    w->inflight_bytes = 0;
  }
  for (mproc_result *j = p->pending; j; j = j->next_pending)
    j->pending_listed = false;
  p->pending = p->pending_tail = NULL;
  /* What was never dispatched, in every unfinished job. */
  for (mproc_result *j = p->live, *next; j; j = next) {
    next = j->live_next;
    j->refs++;
    job_fail_rest(p, j, status, msg);
    if (!j->ready && j->done == j->n)
      job_finish(p, j);
    next = j->live_next ? j->live_next : next;
    job_unref(j);
  }
}

/* ---------------------------------------------------------- messages */

static void on_results(mproc_pool *p, worker *w, mproc__rd *rd, bool packed) {
  uint64_t id = mproc__rd_u64(rd), first = mproc__rd_u64(rd), k = mproc__rd_u64(rd);
  uint64_t size = mproc__rd_u64(rd);
  chunk *c = NULL;
  int at = -1;

  for (int i = 0; i < w->ninflight; i++)
    if (w->inflight[i]->id == id) {
      c = w->inflight[i];
      at = i;
    }
  if (c == NULL || rd->err || first != c->reported || k > c->count - c->reported)
    return;
  mproc_result *j = c->job;
  if (packed && j->kind == J_MAP && (j->out_size == 0 || size == j->out_size)) {
    /* A map's results of the expected size: one copy into the output array. */
    const void *d = size && k > (uint64_t)(rd->end - rd->p) / size ? NULL
                                                                   : mproc__rd_raw(rd, k * size);
    if (d == NULL && size)
      return;
    if (j->out_size != 0)
      memcpy((unsigned char *)j->out + (c->start + c->reported) * j->out_size, d, k * size);
    c->reported += (size_t)k;
    items_counted(p, j, (size_t)k);
    k = 0;
  }
  for (uint64_t x = 0; x < k; x++) {
    int status = packed ? 0 : (int)(int64_t)mproc__rd_u64(rd);
    size_t len;
    const void *d;
    char msg[512];
    if (packed) {
      len = (size_t)size;
      d = mproc__rd_raw(rd, len);
    } else if (status != 0) {
      /* The message comes as a string of its own: make it NUL-terminated. */
      d = mproc__rd_bytes(rd, &len);
      snprintf(msg, sizeof msg, "%.*s", (int)(len < sizeof msg ? len : sizeof msg - 1),
               (const char *)d);
      d = msg;
    } else {
      d = mproc__rd_bytes(rd, &len);
    }
    if (rd->err)
      return;
    c->reported++;
    item_done(p, c->job, c->start + c->reported - 1, status, d, len);
  }
  if (c->reported == c->count) {
    /* It ran from when it was sent or when the worker finished the one before. */
    int64_t now = mproc__deadline(0);
    int64_t ran = now - (c->sent_at > w->last_done ? c->sent_at : w->last_done);
    w->last_done = now;
    p->chunk_us = p->chunk_us ? (3 * p->chunk_us + ran) / 4 : (ran > 0 ? ran : 1);
    memmove(&w->inflight[at], &w->inflight[at + 1],
            (size_t)(w->ninflight - at - 1) * sizeof *w->inflight);
    w->ninflight--;
    w->inflight_bytes -= c->msg.len;
    if (c == w->on_wire)
      w->wire_done = true;
    else
      chunk_free(p, c);
  }
}

/* ----------------------------------------------------------- dispatch */

/* Hands c to w and writes it, without the lock during the write. Non-zero when the
 * write failed: the worker is going away, and its death requeues the chunk. */
static int send_chunk(mproc_pool *p, worker *w, chunk *c) {
  int r;
  w->inflight[w->ninflight++] = c;
  w->inflight_bytes += c->msg.len;
  c->sent_at = mproc__deadline(0);
  w->assigned += c->count;
  if (w->ninflight == 1)
    w->seen_at = mproc__deadline(0);
  w->sending = true;
  w->on_wire = c;
  apr_thread_mutex_unlock(p->mu);
  r = mproc_conn_send(w->ch, c->msg.data, c->msg.len);
  apr_thread_mutex_lock(p->mu);
  w->sending = false;
  w->on_wire = NULL;
  if (w->wire_done) {
    w->wire_done = false;
    chunk_free(p, c);
  }
  if (p->send_waiters > 0)
    apr_thread_cond_broadcast(p->changed);
  return r;
}

/* How many chunks a worker may hold (see SLOW_CHUNK_US). */
static int window(const mproc_pool *p) {
  return p->chunk_us == 0 ? 2 : p->chunk_us > SLOW_CHUNK_US ? 1 : WINDOW;
}

/* Whether the chunk w runs now has run long enough that nothing more should queue
 * behind it (another worker may be free before it ends). */
static bool stuck_on_slow(const worker *w) {
  if (w->ninflight == 0)
    return false;
  int64_t started = w->inflight[0]->sent_at > w->last_done ? w->inflight[0]->sent_at
                                                            : w->last_done;
  return mproc__deadline(0) - started > SLOW_CHUNK_US;
}

static bool can_send(const mproc_pool *p, const worker *w) {
  return w->alive && !w->eof && !w->sending && w->direct == NULL && w->ninflight < window(p) &&
         !stuck_on_slow(w) &&
         p->state != P_TERMINATE && !p->broken &&
         (p->maxtasks == 0 || w->assigned < p->maxtasks);
}

/* Whether w's end shows without its channel: through a wait descriptor of ours, or
 * the fork server's report. Only then may the dispatcher leave the channel unread. */
static bool exit_visible(const mproc_pool *p, const worker *w) {
  return w->proc ? mproc__process_waitfd(w->proc) != MPROC__FD_INVALID
                 : p->server != NULL && !p->server_done;
}

/* Whether the dispatcher reads w's channel: while chunks it sent are in flight, or
 * when nothing else would show the worker's end; never while another thread does. */
static bool dispatcher_reads(const mproc_pool *p, const worker *w) {
  return !w->reading && ((w->direct == NULL && w->ninflight > 0) || !exit_visible(p, w));
}

/* The dispatcher reads w's reply from now on (nobody is reading it). */
static void unreserve(worker *w) {
  if (w->direct) {
    w->direct->direct_w = NULL;
    w->direct = NULL;
  }
}

/* Feeds the workers, always the least busy one next, so that tasks spread over
 * every worker before any gets a second one. */
static void send_work(mproc_pool *p) {
  for (;;) {
    worker *w = NULL;
    size_t limit = SIZE_MAX;
    chunk *c;
    for (int i = 0; i < p->nworkers; i++) {
      worker *x = &p->w[i];
      /* At most SMALL bytes queued at a worker, but any size to an idle one. */
      if (can_send(p, x) && (x->ninflight == 0 || x->inflight_bytes < SMALL) &&
          (w == NULL || x->ninflight < w->ninflight))
        w = x;
    }
    if (w == NULL)
      return;
    if (p->maxtasks != 0)
      limit = p->maxtasks - w->assigned;
    c = next_chunk(p, limit);
    if (c == NULL)
      return;
    if (w->ninflight > 0 && w->inflight_bytes + c->msg.len > SMALL) {
      /* Keep it for an idle worker. */
      c->next = p->retry;
      p->retry = c;
      if (p->retry_tail == NULL)
        p->retry_tail = c;
      return;
    }
    if (send_chunk(p, w, c) != 0)
      return;
  }
}

/* Kills workers whose current task ran over the timeout; returns how long until the
 * next could (seconds, < 0: none). */
static double check_timeouts(mproc_pool *p) {
  pool_seg *seg = p->seg->base.seg.addr;
  double next = -1;
  int64_t now = mproc__deadline(0);
  if (p->task_timeout <= 0)
    return -1;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    pool_slot *s = &seg->slots[w->slot];
    uint64_t seq = atomic_load(&s->seq);
    double left;
    if (!w->alive || w->eof || w->ninflight == 0)
      continue;
    if (seq != w->seen_seq) {
      w->seen_seq = seq;
      w->seen_at = now;
    }
    left = p->task_timeout - (double)(now - w->seen_at) / 1e6;
    if (left <= 0) {
      worker_kill(p, w, MPROC_ETIMEDOUT);
      continue;
    }
    if (next < 0 || left < next)
      next = left;
  }
  return next;
}

static void on_server_message(mproc_pool *p);
static void on_worker_message(mproc_pool *p, worker *w);
static void worker_ended(mproc_pool *p, worker *w);
static void worker_drain(mproc_pool *p, worker *w);

/* Every message there is: those read ahead as well as the one that woke us. */
static void on_server(mproc_pool *p) {
  do
    on_server_message(p);
  while (p->server && !p->broken && mproc__conn_buffered(p->server));
}

static void on_server_message(mproc_pool *p) {
  void *msg;
  size_t len;
  mproc__rd rd;
  if (mproc_conn_recv(p->server, &msg, &len, 0) != 0) {
    /* The fork server died: nothing can be started any more. */
    p->broken = true;
    free(p->broken_msg);
    p->broken_msg = strdup("the pool's fork server died");
    return;
  }
  rd.p = msg;
  rd.end = rd.p + len;
  rd.err = 0;
  uint64_t type = mproc__rd_u64(&rd), slot = mproc__rd_u64(&rd), pid = mproc__rd_u64(&rd);
  if (slot < (uint64_t)p->nworkers) {
    worker *w = &p->w[slot];
    if (type == MSG_SPAWNED) {
      if (pid == 0) {
        char *err = mproc__rd_str(&rd);
        p->broken = true;
        free(p->broken_msg);
        p->broken_msg = err;
        w->alive = false;
      } else {
        w->pid = (long)pid;
      }
    } else if (type == MSG_EXITED) {
      w->code = (int64_t)mproc__rd_u64(&rd);
      w->have_code = true;
      /* Dead once its channel ended too (or we closed it, the pool closing). */
      if (w->eof || mproc_conn_fileno(w->ch) < 0)
        worker_dead(p, w);
      else if (w->alive && !w->reading && !dispatcher_reads(p, w))
        worker_drain(p, w);
    }
  }
  free(msg);
}

static void on_worker_message(mproc_pool *p, worker *w);

static void on_worker_readable(mproc_pool *p, worker *w) {
  do
    on_worker_message(p, w);
  while (w->alive && !w->eof && w->ch && mproc__conn_buffered(w->ch));
}

static void on_worker_message(mproc_pool *p, worker *w) {
  size_t len;
  int r;
  apr_thread_mutex_unlock(p->mu);
  r = mproc__conn_recv_buf(w->ch, &w->rx, &len);
  apr_thread_mutex_lock(p->mu);
  if (r == 0) {
    mproc__rd rd = {w->rx.data, w->rx.data + len, 0};
    uint64_t type = mproc__rd_u64(&rd);
    if (type == MSG_RESULTS || type == MSG_RESULTS_PACKED) {
      on_results(p, w, &rd, type == MSG_RESULTS_PACKED);
    } else if (type == MSG_INITFAIL) {
      char *why = mproc__rd_str(&rd);
      char buf[600];
      snprintf(buf, sizeof buf, "the pool's initializer failed in worker pid %ld: %s", w->pid,
               why ? why : "");
      free(why);
      p->broken = true;
      free(p->broken_msg);
      p->broken_msg = strdup(buf);
    }
    return;
  }
  if (dispatcher_of != p) {
    /* A waiter reading its own reply met the end: the dispatcher settles the death.
     * Only it frees a worker's process and channel, which it may be waiting on. */
    w->eof = true;
    unreserve(w);
    wake_dispatcher(p);
    return;
  }
  worker_ended(p, w);
}

/* End of w's channel: the worker exited or died. */
static void worker_ended(mproc_pool *p, worker *w) {
  w->eof = true;
  unreserve(w);
  if (w->proc) {
    int code = 0;
    mproc_process_join(w->proc, MPROC_FOREVER);
    mproc_process_exitcode(w->proc, &code);
    w->code = code;
    worker_dead(p, w);
  } else if (w->have_code) {
    worker_dead(p, w);
  }
}

/* Reads what a worker that exited left in its channel, to the end. A channel still
 * open with nothing in it (a process the task started holds it) counts as ended. */
static void worker_drain(mproc_pool *p, worker *w) {
  /* Only once it has exited: what woke us may be about the slot's previous worker. */
  if (w->proc ? mproc_process_join(w->proc, 0) != 0 : !w->have_code)
    return;
  unsigned gen = w->gen;
  unreserve(w);
  while (w->gen == gen && w->alive && !w->eof) {
    mproc__fd fd = (mproc__fd)mproc_conn_fileno(w->ch);
    unsigned char rd = 0;
    size_t nready = 0;
    if (mproc__conn_buffered(w->ch) ||
        (mproc__os_poll_read(&fd, 1, 0, &rd, &nready) == 0 && nready > 0))
      on_worker_message(p, w);
    else
      worker_ended(p, w);
  }
}

/* The pool is closing with nothing left to run: the fork server can end now, at the
 * same time as the workers, unless it still has workers of its own to report on. */
static void server_shutdown(mproc_pool *p) {
  if (p->server == NULL || p->server_done)
    return;
  for (int i = 0; i < p->nworkers; i++)
    if (p->w[i].alive && p->w[i].proc == NULL)
      return;
  p->server_done = true;
  mproc_conn_close(p->server);
}

static bool all_workers_gone(mproc_pool *p) {
  for (int i = 0; i < p->nworkers; i++)
    if (p->w[i].alive)
      return false;
  return true;
}

static void run_callbacks(mproc_pool *p) {
  /* In completion order; callbacks may finish more jobs, which join the end. */
  for (size_t i = 0; i < p->ncallbacks; i++) {
    mproc_result *j = p->callbacks[i];
    bool ok = j->failed == 0;
    apr_thread_mutex_unlock(p->mu);
    if (ok && j->cb.callback)
      j->cb.callback(j->cb.user, j);
    else if (!ok && j->cb.error_callback)
      j->cb.error_callback(j->cb.user, j);
    apr_thread_mutex_lock(p->mu);
    job_unref(j);
  }
  p->ncallbacks = 0;
}

static void *APR_THREAD_FUNC dispatcher(apr_thread_t *t, void *arg) {
  mproc_pool *p = arg;
  mproc__fd *fds = malloc(((size_t)p->nworkers * 2 + 2) * sizeof *fds);
  unsigned char *ready = malloc((size_t)p->nworkers * 2 + 2);
  int *who = malloc(((size_t)p->nworkers * 2 + 2) * sizeof *who);
  bool closing_sent = false;
  char failed[600] = ""; /* why the loop ended before its time */

  dispatcher_of = p;
  apr_thread_mutex_lock(p->mu);
  if (fds == NULL || ready == NULL || who == NULL)
    snprintf(failed, sizeof failed, "the pool's thread is out of memory");
  while (fds && ready && who) {
    size_t n = 0, nready;
    double timeout;

    /* A reserved worker whose waiter is not reading is needed for other work. */
    for (int i = 0; i < p->nworkers; i++)
      if (p->w[i].direct && !p->w[i].reading &&
          (p->pending || p->retry || p->state != P_RUN || p->broken))
        unreserve(&p->w[i]);
    /* Ends a waiter met on a reserved worker's channel (see on_worker_message). */
    for (int i = 0; i < p->nworkers; i++)
      if (p->w[i].alive && p->w[i].eof && !p->w[i].reading)
        worker_ended(p, &p->w[i]);
    if (p->broken && p->broken_msg)
      fail_everything(p, MPROC_EFAILED, p->broken_msg);
    if (p->state == P_TERMINATE) {
      fail_everything(p, MPROC_ECANCELED, "the pool was terminated");
      for (int i = 0; i < p->nworkers; i++)
        worker_kill(p, &p->w[i], MPROC_ECANCELED);
    } else {
      send_work(p);
    }
    run_callbacks(p);
    /* Closing and done: end the workers by closing their channels. */
    if (p->state != P_RUN && p->live_jobs == 0) {
      /* A channel a waiter is still reading is closed once it is done. */
      for (int i = 0; i < p->nworkers; i++)
        if (p->w[i].alive && p->state == P_CLOSE && !p->w[i].reading &&
            mproc_conn_fileno(p->w[i].ch) >= 0)
          mproc_conn_close(p->w[i].ch);
      if (!closing_sent)
        server_shutdown(p);
      closing_sent = true;
    }
    if (p->state != P_RUN && p->live_jobs == 0 && all_workers_gone(p))
      break;
    if (p->state != P_RUN && p->broken && all_workers_gone(p) && p->live_jobs == 0)
      break;

    /* The fork server told of this worker's exit while we still read its channel. */
    for (int i = 0; i < p->nworkers; i++) {
      worker *w = &p->w[i];
      if (w->alive && w->have_code && !w->eof && !w->reading && !dispatcher_reads(p, w) &&
          mproc_conn_fileno(w->ch) >= 0)
        worker_drain(p, w);
    }
    fds[n] = p->wake[0];
    who[n++] = -1;
    if (p->server && !p->server_done) {
      fds[n] = (mproc__fd)mproc_conn_fileno(p->server);
      who[n++] = -2;
    }
    for (int i = 0; i < p->nworkers; i++) {
      worker *w = &p->w[i];
      if (!w->alive || w->reading)
        continue; /* reading: the waiter hands it back when done */
      if (!w->eof && mproc_conn_fileno(w->ch) >= 0) {
        if (dispatcher_reads(p, w)) {
          fds[n] = (mproc__fd)mproc_conn_fileno(w->ch);
          who[n++] = i;
        } else if (w->proc) {
          /* Idle or reserved: only its exit matters (the fork server reports its own). */
          fds[n] = mproc__process_waitfd(w->proc);
          who[n++] = i + p->nworkers;
        }
      } else {
        /* A closed channel (pool closing): wait for the process itself. */
        if (w->proc) {
          fds[n] = mproc__process_waitfd(w->proc);
          who[n++] = i + p->nworkers;
        }
      }
    }
    timeout = check_timeouts(p);
    for (int i = 0; i < p->nworkers; i++)
      if (p->w[i].alive && p->w[i].proc && mproc_conn_fileno(p->w[i].ch) < 0 &&
          mproc__process_waitfd(p->w[i].proc) == MPROC__FD_INVALID)
        timeout = 0.05; /* no wait descriptor: look again soon */
    bool due = p->waiters_due;
    p->waiters_due = false;
    apr_thread_mutex_unlock(p->mu);
    if (due)
      apr_thread_cond_broadcast(p->changed);
    int r = mproc__os_poll_read(fds, n, timeout, ready, &nready);
    apr_thread_mutex_lock(p->mu);
    if (r != 0) {
      snprintf(failed, sizeof failed, "the pool's thread cannot wait for its workers: %s",
               mproc_last_error());
      break;
    }
    for (size_t i = 0; i < n; i++) {
      if (!ready[i] && who[i] < p->nworkers)
        continue;
      if (who[i] == -1) {
        char buf[64];
        size_t got;
        mproc__os_read(p->wake[0], buf, sizeof buf, &got);
        p->wake_pending = false;
      } else if (who[i] == -2) {
        on_server(p);
      } else if (who[i] < p->nworkers) {
        worker *w = &p->w[who[i]];
        if (w->alive && !w->eof)
          on_worker_readable(p, w);
      } else {
        worker *w = &p->w[who[i] - p->nworkers];
        if (!w->alive || w->reading)
          continue;
        if (w->eof) {
          worker_ended(p, w); /* its waiter met the channel's end meanwhile */
        } else if (mproc_conn_fileno(w->ch) >= 0) {
          /* An idle or reserved worker exited: what it wrote is still to be read. */
          if (ready[i])
            worker_drain(p, w);
        } else if (w->proc && mproc_process_join(w->proc, 0) == 0) {
          /* A worker whose channel we closed: reaped when it exits. */
          w->alive = false;
          mproc_process_free(w->proc);
          w->proc = NULL;
        }
      }
    }
  }
  if (failed[0] != '\0') {
    /* The pool cannot go on: everything unfinished fails with the reason, and so does
     * whatever is submitted from now on; the workers go, and the waiters reading a
     * worker's reply get the channel's end before it is freed. */
    p->broken = true;
    free(p->broken_msg);
    p->broken_msg = strdup(failed);
    fail_everything(p, MPROC_EFAILED, failed);
    run_callbacks(p);
    for (int i = 0; i < p->nworkers; i++)
      worker_kill(p, &p->w[i], MPROC_EFAILED);
    for (int i = 0; i < p->nworkers; i++)
      while (p->w[i].reading)
        apr_thread_cond_timedwait(p->changed, p->mu, 1000);
  }
  /* Leave nothing behind. A worker's channel goes first: a worker still waiting for
   * work ends when it reads the end. */
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    mproc_conn_free(w->ch);
    w->ch = NULL;
    if (w->proc) {
      if (p->state == P_TERMINATE || failed[0] != '\0')
        mproc_process_kill(w->proc);
      mproc_process_join(w->proc, MPROC_FOREVER);
      mproc_process_free(w->proc);
      w->proc = NULL;
    }
    w->alive = false;
  }
  p->dispatcher_done = true;
  apr_thread_cond_broadcast(p->changed);
  apr_thread_mutex_unlock(p->mu);
  free(fds);
  free(ready);
  free(who);
  dispatcher_of = NULL;
  /* Returning, not apr_thread_exit(): pthread_exit's unwinding gains nothing here
   * and trips AddressSanitizer's thread teardown. */
  (void)t;
  return NULL;
}

/* ------------------------------------------------------------ create */

static void pool_destroy(mproc_pool *p) {
  for (int i = 0; p->w && i < p->nworkers; i++)
    mproc__buf_free(&p->w[i].rx);
  while (p->nspare > 0)
    mproc__buf_free(&p->spare[--p->nspare]);
  mproc__os_close(p->wake[0]);
  mproc__os_close(p->wake[1]);
  mproc__segobj_free(p->seg);
  mproc__buf_free(&p->conf);
  free(p->wconf.init_module);
  free(p->w);
  free(p->share);
  free(p->callbacks);
  free(p->broken_msg);
  p->hdr.magic = 0;
  if (p->apr)
    apr_pool_destroy(p->apr);
  free(p);
}

static void pool_unref(mproc_pool *p) {
  if (--p->refs == 0) {
    apr_thread_mutex_unlock(p->mu);
    pool_destroy(p);
    /* The caller held mu: make its unlock a no-op by re-creating nothing; callers
     * check dispatcher_done / the returned state instead. */
  }
}

static int seg_init(void *addr, const void *arg) {
  ((pool_seg *)addr)->nslots = *(const size_t *)arg;
  return 0;
}

int mproc_pool_create(mproc_pool **out, const mproc_pool_opts *opts) {
  static const mproc_pool_opts defaults;
  const mproc_pool_opts *o = opts ? opts : &defaults;
  mproc_pool *p;
  size_t nslots;
  int r;

  if (out == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_pool_create: p must not be NULL");
  *out = NULL;
  if ((r = mproc__check_init("mproc_pool_create")) != 0)
    return r;
  if (o->processes < 0 || o->task_timeout < 0 || (o->share == NULL && o->nshare > 0) ||
      (o->initarg == NULL && o->initarg_len > 0))
    return mproc__error(MPROC_EINVAL, "mproc_pool_create: invalid options (negative processes "
                                      "or timeout, or NULL share/initarg with a length)");
  for (size_t i = 0; i < o->nshare; i++) {
    const mproc__kind_ops *ops;
    if ((r = mproc__share_ops(o->share[i], i, &ops)) != 0)
      return r;
  }
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a pool");
  p->hdr.magic = MPROC__MAGIC;
  p->refs = 1;
  p->wake[0] = p->wake[1] = MPROC__FD_INVALID;
  p->nworkers = o->processes ? o->processes : mproc_cpu_count();
  p->method = mproc__resolve_start(o->start_method);
  p->task_timeout = o->task_timeout;
  p->maxtasks = o->maxtasksperchild;
  p->capcallbacks = 1024;
  p->callbacks = malloc(p->capcallbacks * sizeof *p->callbacks);
  p->w = calloc((size_t)p->nworkers, sizeof *p->w);
  p->nshare = o->nshare + 2;
  p->share = calloc(p->nshare, sizeof *p->share);
  if (p->callbacks == NULL || p->w == NULL || p->share == NULL) {
    r = mproc__error(MPROC_ENOMEM, "cannot allocate a pool");
    goto fail;
  }
  if (apr_pool_create(&p->apr, NULL) != APR_SUCCESS ||
      apr_thread_mutex_create(&p->mu, APR_THREAD_MUTEX_DEFAULT, p->apr) != APR_SUCCESS ||
      apr_thread_cond_create(&p->changed, p->apr) != APR_SUCCESS) {
    r = mproc__error(MPROC_ESYS, "cannot create the pool's lock");
    goto fail;
  }
  if ((r = mproc__os_pipe(p->wake, false)) != 0)
    goto fail;
  nslots = (size_t)p->nworkers;
  void *seg;
  if ((r = mproc__segobj_create(&mproc__poolseg_ops, sizeof(pool_seg) + nslots * sizeof(pool_slot),
                                seg_init, &nslots, &seg)) != 0)
    goto fail;
  p->seg = seg;
  p->share[1] = seg;
  if (o->nshare)
    memcpy(p->share + 2, o->share, o->nshare * sizeof *p->share);
  p->wconf.maxtasks = o->maxtasksperchild;
  p->wconf.flush_each = o->task_timeout > 0;
  p->wconf.initarg = o->initarg;
  p->wconf.initarg_len = o->initarg_len;
  if (o->initializer &&
      (r = mproc__os_addr_to_ref((const void *)(uintptr_t)o->initializer, &p->wconf.init_module,
                                 &p->wconf.init_offset)) != 0)
    goto fail;
  for (int i = 0; i < p->nworkers; i++)
    p->w[i].slot = i;

  /* The first workers, then (fork) the fork server: both before the pool's thread
   * exists. The workers first, so that the first task need not wait for the server. */
  apr_thread_mutex_lock(p->mu);
  for (int i = 0; i < p->nworkers && r == 0; i++)
    r = worker_start(p, &p->w[i], true);
  apr_thread_mutex_unlock(p->mu);
  if (r != 0)
    goto fail_workers;
  if (p->method == MPROC_START_FORK) {
    mproc_conn *theirs = NULL, *theirs_fd = NULL;
    mproc__buf cb = {0};
    void **sshare = malloc((p->nshare + 1) * sizeof *sshare);
    if (sshare == NULL) {
      r = mproc__error(MPROC_ENOMEM, "cannot allocate a pool");
      goto fail;
    }
    if ((r = mproc_pipe(&p->server, &theirs, true)) != 0 ||
        (r = mproc_pipe(&p->fdchan, &theirs_fd, true)) != 0) {
      free(sshare);
      mproc_conn_free(theirs);
      goto fail;
    }
    mproc__worker_conf_encode(&p->wconf, &cb);
    memcpy(sshare, p->share, p->nshare * sizeof *sshare);
    sshare[0] = theirs;
    sshare[p->nshare] = theirs_fd;
    mproc_process_opts so = {.start_method = MPROC_START_FORK,
                             .name = "PoolForkServer",
                             .daemon = true,
                             .share = sshare,
                             .nshare = p->nshare + 1};
    r = cb.err ? cb.err
               : mproc_process_start(&p->server_proc, mproc__pool_server_main, cb.data, cb.len,
                                     &so);
    mproc__buf_free(&cb);
    mproc_conn_free(theirs);
    mproc_conn_free(theirs_fd);
    free(sshare);
    if (r != 0)
      goto fail_workers;
  }
  if (apr_thread_create(&p->thread, NULL, dispatcher, p, p->apr) != APR_SUCCESS) {
    r = mproc__error(MPROC_ESYS, "cannot start the pool's thread");
    goto fail_workers;
  }
  *out = p;
  return 0;

fail_workers:
  for (int i = 0; i < p->nworkers; i++) {
    if (p->w[i].proc) {
      mproc_process_kill(p->w[i].proc);
      mproc_process_join(p->w[i].proc, MPROC_FOREVER);
      mproc_process_free(p->w[i].proc);
    }
    mproc_conn_free(p->w[i].ch);
  }
fail:
  mproc_conn_free(p->fdchan);
  mproc_conn_free(p->server); /* the fork server, if any, ends with it */
  if (p->server_proc) {
    mproc_process_join(p->server_proc, MPROC_FOREVER);
    mproc_process_free(p->server_proc);
  }
  pool_destroy(p);
  return r;
}

/* ------------------------------------------------------------ submit */

/* A lone task with an idle worker goes straight from the submitting thread to the
 * worker: waking the dispatcher to do it would add a thread switch to every round
 * trip. The dispatcher sees the results as usual. */
static bool direct_dispatch(mproc_pool *p, mproc_result *j) {
  if (j->kind != J_APPLY || p->pending != j || p->retry != NULL || p->task_timeout > 0 ||
      j->cb.callback || j->cb.error_callback)
    return false;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    /* Idle, so the dispatcher is not reading its channel now, and leaves it be. */
    if (can_send(p, w) && w->ninflight == 0 && exit_visible(p, w)) {
      chunk *c = next_chunk(p, 1);
      if (c == NULL)
        return false;
      pending_unlink(p, j);
      w->direct = j;
      j->direct_w = w;
      send_chunk(p, w, c);
      return true;
    }
  }
  return false;
}

/* The waiter of r reads its reply from r's reserved worker: one message, or none
 * before `left` seconds pass. Called with mu held; drops it while waiting. */
static void read_own_reply(mproc_pool *p, mproc_result *r, double left) {
  worker *w = r->direct_w;
  mproc__fd fd = (mproc__fd)mproc_conn_fileno(w->ch);
  unsigned char rd = 0;
  size_t nready = 0;
  int e = 0;
  w->reading = true;
  if (!mproc__conn_buffered(w->ch)) {
    apr_thread_mutex_unlock(p->mu);
    e = mproc__os_poll_read(&fd, 1, left, &rd, &nready);
    apr_thread_mutex_lock(p->mu);
  } else {
    nready = 1;
  }
  if (e == 0 && nready > 0)
    on_worker_message(p, w); /* the reply, or the channel's end (the worker died) */
  w->reading = false;
  if (e != 0 || r->ready || !w->alive || w->eof) {
    /* Done with the worker: the dispatcher has it back. It is woken only if it has
     * something to do: work for the worker, a death to handle, a pool to close. */
    bool changed = w->direct != r; /* a death (it unreserved) */
    unreserve(w);
    if (changed || e != 0 || p->pending || p->retry || p->state != P_RUN || p->broken)
      wake_dispatcher(p);
  }
}

/* The waiter gives up (a timeout): the dispatcher reads the reply when it comes. */
static void hand_back(mproc_pool *p, mproc_result *r) {
  if (r->direct_w && !r->direct_w->reading) {
    unreserve(r->direct_w);
    wake_dispatcher(p);
  }
}

static int submit(mproc_pool *p, mproc_result *j, const char *fn) {
  int r;
  apr_thread_mutex_lock(p->mu);
  if (p->state != P_RUN) {
    apr_thread_mutex_unlock(p->mu);
    return mproc__error(MPROC_ESTATE, "%s: the pool is %s", fn,
                        p->state == P_CLOSE ? "closed" : "terminated");
  }
  if (p->broken) {
    r = mproc__error(MPROC_EFAILED, "%s: %s", fn, p->broken_msg ? p->broken_msg : "pool broken");
    apr_thread_mutex_unlock(p->mu);
    return r;
  }
  j->pool = p;
  p->refs++;
  j->refs = 2; /* the caller's and the pool's */
  p->live_jobs++;
  j->live_next = p->live;
  if (p->live)
    p->live->live_prev = j;
  p->live = j;
  if (j->n == 0 && !j->src) {
    j->refs--;
    j->ready = true;
    p->live_jobs--;
    live_unlink(p, j);
  } else {
    list_pending(p, j);
    if (!direct_dispatch(p, j))
      wake_dispatcher(p);
  }
  apr_thread_mutex_unlock(p->mu);
  return 0;
}

static int job_new(mproc_pool *p, mproc_fn fn, job_kind kind, const mproc_callbacks *cb,
                   mproc_result **out, const char *fname) {
  mproc_result *j = NULL;
  int r;
  if ((r = pool_check(p, fname)) != 0)
    return r;
  if (fn == NULL)
    return mproc__error(MPROC_EINVAL, "%s: fn must not be NULL", fname);
  j = calloc(1, kind == J_ITER ? sizeof(mproc_iter) : sizeof *j);
  if (j == NULL)
    return mproc__error(MPROC_ENOMEM, "%s: out of memory", fname);
  j->kind = kind;
  if (cb)
    j->cb = *cb;
  if ((r = mproc__os_addr_to_ref((const void *)(uintptr_t)fn, &j->module, &j->offset)) != 0) {
    free(j);
    return r;
  }
  *out = j;
  return 0;
}

static size_t default_chunksize(mproc_pool *p, size_t n, size_t chunksize) {
  if (chunksize)
    return chunksize;
  /* Python's rule. */
  size_t c = (n + 4 * (size_t)p->nworkers - 1) / (4 * (size_t)p->nworkers);
  return c ? c : 1;
}

int mproc_pool_apply_async(mproc_pool *p, mproc_fn fn, const void *arg, size_t len,
                           const mproc_callbacks *cb, mproc_result **r) {
  mproc_result *j = NULL;
  int e;
  if (r == NULL || (arg == NULL && len > 0))
    return mproc__error(MPROC_EINVAL, "mproc_pool_apply_async: r is NULL, or arg NULL with len");
  *r = NULL;
  if ((e = job_new(p, fn, J_APPLY, cb, &j, "mproc_pool_apply_async")) != 0)
    return e;
  j->n = 1;
  j->chunksize = 1;
  j->arg_len = len;
  j->arg_copy = malloc(len ? len : 1);
  j->outs = calloc(1, sizeof *j->outs);
  if (j->arg_copy == NULL || j->outs == NULL) {
    job_destroy(j);
    return mproc__error(MPROC_ENOMEM, "mproc_pool_apply_async: cannot copy a %zu-byte argument",
                        len);
  }
  if (len)
    memcpy(j->arg_copy, arg, len);
  if ((e = submit(p, j, "mproc_pool_apply_async")) != 0) {
    job_destroy(j);
    return e;
  }
  *r = j;
  return 0;
}

int mproc_pool_map_async(mproc_pool *p, mproc_fn fn, const void *in, size_t n, size_t in_size,
                         void *out, size_t out_size, size_t chunksize, const mproc_callbacks *cb,
                         mproc_result **r) {
  mproc_result *j = NULL;
  int e;
  if (r == NULL || (in == NULL && n > 0 && in_size > 0) || (out == NULL && n > 0 && out_size > 0))
    return mproc__error(MPROC_EINVAL, "mproc_pool_map_async: r, in or out is NULL");
  *r = NULL;
  if ((e = job_new(p, fn, J_MAP, cb, &j, "mproc_pool_map_async")) != 0)
    return e;
  j->n = n;
  j->in = in;
  j->in_size = in_size;
  j->out = out;
  j->out_size = out_size;
  j->chunksize = default_chunksize(p, n, chunksize);
  if ((e = submit(p, j, "mproc_pool_map_async")) != 0) {
    job_destroy(j);
    return e;
  }
  *r = j;
  return 0;
}

int mproc_pool_map_v(mproc_pool *p, mproc_fn fn, const mproc_item *items, size_t n,
                     size_t chunksize, const mproc_callbacks *cb, mproc_result **r) {
  mproc_result *j = NULL;
  int e;
  if (r == NULL || (items == NULL && n > 0))
    return mproc__error(MPROC_EINVAL, "mproc_pool_map_v: r or items is NULL");
  *r = NULL;
  if ((e = job_new(p, fn, J_MAPV, cb, &j, "mproc_pool_map_v")) != 0)
    return e;
  j->n = n;
  j->chunksize = default_chunksize(p, n, chunksize);
  j->items = malloc((n ? n : 1) * sizeof *j->items);
  j->outs = calloc(n ? n : 1, sizeof *j->outs);
  if (j->items == NULL || j->outs == NULL) {
    job_destroy(j);
    return mproc__error(MPROC_ENOMEM, "mproc_pool_map_v: out of memory for %zu items", n);
  }
  if (n)
    memcpy(j->items, items, n * sizeof *items);
  if ((e = submit(p, j, "mproc_pool_map_v")) != 0) {
    job_destroy(j);
    return e;
  }
  *r = j;
  return 0;
}

static int iter_new(mproc_pool *p, mproc_fn fn, const void *in, size_t n, size_t in_size,
                    mproc_source src, void *user, size_t chunksize, bool ordered,
                    mproc_iter **it, const char *fname) {
  mproc_result *j = NULL;
  int e;
  if (it == NULL || (!src && in == NULL && n > 0 && in_size > 0))
    return mproc__error(MPROC_EINVAL, "%s: it or in is NULL", fname);
  *it = NULL;
  if ((e = job_new(p, fn, J_ITER, NULL, &j, fname)) != 0)
    return e;
  j->ordered = ordered;
  j->in = in;
  j->in_size = in_size;
  j->src = src;
  j->src_user = user;
  j->n = src ? SIZE_MAX : n;
  j->chunksize = src ? (chunksize ? chunksize : 1) : default_chunksize(p, n, chunksize);
  /* Results may run ahead of the consumer by this many items, no more. */
  j->window = 4 * (size_t)p->nworkers * WINDOW * j->chunksize;
  if (j->window < 64)
    j->window = 64;
  j->ring = calloc(j->window, sizeof *j->ring);
  j->fifo = calloc(j->window, sizeof *j->fifo);
  j->free_slots = calloc(j->window, sizeof *j->free_slots);
  if (j->ring == NULL || j->fifo == NULL || j->free_slots == NULL) {
    job_destroy(j);
    return mproc__error(MPROC_ENOMEM, "%s: out of memory", fname);
  }
  for (size_t i = 0; i < j->window; i++)
    j->free_slots[j->nfree++] = j->window - 1 - i;
  if ((e = submit(p, j, fname)) != 0) {
    job_destroy(j);
    return e;
  }
  *it = (mproc_iter *)j;
  return 0;
}

int mproc_pool_imap(mproc_pool *p, mproc_fn fn, const void *in, size_t n, size_t in_size,
                    size_t chunksize, mproc_iter **it) {
  return iter_new(p, fn, in, n, in_size, NULL, NULL, chunksize, true, it, "mproc_pool_imap");
}

int mproc_pool_imap_unordered(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                              size_t in_size, size_t chunksize, mproc_iter **it) {
  return iter_new(p, fn, in, n, in_size, NULL, NULL, chunksize, false, it,
                  "mproc_pool_imap_unordered");
}

int mproc_pool_imap_source(mproc_pool *p, mproc_fn fn, mproc_source src, void *user,
                           size_t chunksize, bool ordered, mproc_iter **it) {
  if (src == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_pool_imap_source: src must not be NULL");
  return iter_new(p, fn, NULL, 0, 0, src, user, chunksize, ordered, it, "mproc_pool_imap_source");
}

/* ------------------------------------------------------------ results */

static int result_check(const mproc_result *r, const char *fn) {
  if (r == NULL || r->pool == NULL)
    return mproc__error(MPROC_EINVAL, "%s: not a result (NULL)", fn);
  return 0;
}

/* Waits with mu held until r is ready: 0 or MPROC_ETIMEDOUT. */
static int wait_ready(mproc_result *r, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  mproc_pool *p = r->pool;
  while (!r->ready) {
    double left = mproc__remaining(deadline);
    if (deadline >= 0 && left == 0) {
      hand_back(p, r);
      return MPROC_ETIMEDOUT;
    }
    if (r->direct_w && !r->direct_w->reading && dispatcher_of != p) {
      read_own_reply(p, r, left);
      continue;
    }
    if (left < 0)
      apr_thread_cond_wait(p->changed, p->mu);
    else
      apr_thread_cond_timedwait(p->changed, p->mu, (apr_interval_time_t)(left * 1e6) + 1);
  }
  return 0;
}

int mproc_result_wait(mproc_result *r, double timeout) {
  int e;
  if ((e = result_check(r, "mproc_result_wait")) != 0)
    return e;
  if (timeout != 0 && (e = not_dispatcher(r->pool, "mproc_result_wait")) != 0)
    return e;
  apr_thread_mutex_lock(r->pool->mu);
  e = wait_ready(r, timeout);
  apr_thread_mutex_unlock(r->pool->mu);
  if (e == MPROC_ETIMEDOUT)
    return mproc__error(e, "mproc_result_wait: not ready within %gs", timeout);
  return 0;
}

int mproc_result_get(mproc_result *r, double timeout, const void **data, size_t *len) {
  int e = mproc_result_wait(r, timeout);
  if (e != 0)
    return e;
  if (r->failed)
    return mproc__error(r->first_err, "%s", r->message ? r->message : "task failed");
  if (data && len) {
    switch (r->kind) {
    case J_APPLY:
      *data = r->outs[0].data;
      *len = r->outs[0].len;
      break;
    case J_MAP:
      *data = r->out;
      *len = r->n * r->out_size;
      break;
    default:
      *data = NULL;
      *len = r->n;
    }
  }
  return 0;
}

bool mproc_result_ready(mproc_result *r) {
  bool ready;
  if (r == NULL || r->pool == NULL)
    return false;
  apr_thread_mutex_lock(r->pool->mu);
  ready = r->ready;
  if (!ready)
    hand_back(r->pool, r); /* polled, not waited for: the dispatcher reads the reply */
  apr_thread_mutex_unlock(r->pool->mu);
  return ready;
}

int mproc_result_successful(mproc_result *r) {
  int e;
  if ((e = result_check(r, "mproc_result_successful")) != 0)
    return e;
  if (!mproc_result_ready(r))
    return mproc__error(MPROC_ESTATE, "mproc_result_successful: the result is not ready");
  return r->failed == 0;
}

const char *mproc_result_message(mproc_result *r) {
  if (r == NULL || !mproc_result_ready(r) || r->message == NULL)
    return "";
  return r->message;
}

int mproc_result_item(mproc_result *r, size_t i, const void **data, size_t *len) {
  int e;
  if ((e = result_check(r, "mproc_result_item")) != 0)
    return e;
  if (!mproc_result_ready(r))
    return mproc__error(MPROC_ESTATE, "mproc_result_item: the result is not ready");
  if (i >= r->n || r->kind == J_ITER)
    return mproc__error(MPROC_EINVAL, "mproc_result_item: no item %zu", i);
  if (r->kind == J_MAP) {
    int st = r->outs ? r->outs[i].status : 0;
    if (st != 0)
      return mproc__error(st, "mproc_result_item: item %zu failed", i);
    if (data)
      *data = (unsigned char *)r->out + i * r->out_size;
    if (len)
      *len = r->out_size;
    return 0;
  }
  if (r->outs[i].status != 0)
    return mproc__error(r->outs[i].status, "%s", (const char *)r->outs[i].data);
  if (data)
    *data = r->outs[i].data;
  if (len)
    *len = r->outs[i].len;
  return 0;
}

int mproc_result_cancel(mproc_result *r) {
  mproc_pool *p;
  int e;
  if ((e = result_check(r, "mproc_result_cancel")) != 0)
    return e;
  p = r->pool;
  apr_thread_mutex_lock(p->mu);
  if (!r->ready && !r->cancelled) {
    r->cancelled = true;
    r->refs++;
    job_fail_rest(p, r, MPROC_ECANCELED, "canceled");
    for (int i = 0; i < p->nworkers; i++)
      for (int k = 0; k < p->w[i].ninflight; k++)
        if (p->w[i].inflight[k]->job == r) {
          worker_kill(p, &p->w[i], MPROC_ECANCELED);
          break;
        }
    wake_dispatcher(p);
    job_unref(r);
  }
  apr_thread_mutex_unlock(p->mu);
  return 0;
}

void mproc_result_free(mproc_result *r) {
  mproc_pool *p;
  if (r == NULL || r->pool == NULL)
    return;
  p = r->pool;
  apr_thread_mutex_lock(p->mu);
  hand_back(p, r);
  bool last_pool_ref = p->refs == 1 && r->refs == 1;
  job_unref(r);
  if (!last_pool_ref)
    apr_thread_mutex_unlock(p->mu);
}

/* -------------------------------------------------------- iteration */

int mproc_iter_next(mproc_iter *it, double timeout, size_t *index, const void **data,
                    size_t *len) {
  mproc_result *j = (mproc_result *)it;
  int64_t deadline = mproc__deadline(timeout);
  mproc_pool *p;
  int e;

  if (j == NULL || j->pool == NULL || index == NULL || data == NULL || len == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_iter_next: NULL argument");
  p = j->pool;
  if (timeout != 0 && (e = not_dispatcher(p, "mproc_iter_next")) != 0)
    return e;
  apr_thread_mutex_lock(p->mu);
  out_free(&j->current);
  for (;;) {
    iter_entry *e2 = NULL;
    if (j->ordered) {
      iter_entry *c = &j->ring[j->consumed % j->window];
      if (j->consumed < j->n && c->present && c->index == j->consumed)
        e2 = c;
    } else if (j->fifo_len > 0) {
      e2 = &j->ring[j->fifo[j->fifo_head]];
      j->free_slots[j->nfree++] = j->fifo[j->fifo_head];
      j->fifo_head = (j->fifo_head + 1) % j->window;
      j->fifo_len--;
    }
    if (e2 != NULL) {
      e2->present = false;
      j->current = e2->out;
      e2->out.data = NULL;
      j->consumed++;
      *index = e2->index;
      /* The consumer caught up: the pool may draw more. */
      if (!j->ready && !j->cancelled) {
        list_pending(p, j);
        wake_dispatcher(p);
      }
      apr_thread_mutex_unlock(p->mu);
      if (j->current.status != 0)
        return mproc__error(j->current.status, "item %zu: %s", *index,
                            (const char *)j->current.data);
      *data = j->current.data;
      *len = j->current.len;
      return 0;
    }
    if (j->consumed >= j->n && (j->src == NULL || j->src_done)) {
      int err = j->src_err;
      /* A source that failed ends the iteration with its error, once. */
      j->src_err = 0;
      *index = j->n;
      apr_thread_mutex_unlock(p->mu);
      if (err != 0)
        return mproc__error(err, "mproc_iter_next: the source failed at item %zu (%s)",
                            *index, mproc_strerror(err));
      return mproc__error(MPROC_EOF, "mproc_iter_next: no more results");
    }
    double left = mproc__remaining(deadline);
    if (deadline >= 0 && left == 0) {
      apr_thread_mutex_unlock(p->mu);
      return mproc__error(MPROC_ETIMEDOUT, "mproc_iter_next: no result within %gs", timeout);
    }
    if (left < 0)
      apr_thread_cond_wait(p->changed, p->mu);
    else
      apr_thread_cond_timedwait(p->changed, p->mu, (apr_interval_time_t)(left * 1e6) + 1);
  }
}

void mproc_iter_free(mproc_iter *it) {
  mproc_result *j = (mproc_result *)it;
  if (j == NULL || j->pool == NULL)
    return;
  mproc_result_cancel(j);
  mproc_result_free(j);
}

/* ------------------------------------------------------------ control */

int mproc_pool_apply(mproc_pool *p, mproc_fn fn, const void *arg, size_t len, void **out,
                     size_t *outlen) {
  mproc_result *r;
  const void *data;
  size_t n;
  int e;
  if (out == NULL || outlen == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_pool_apply: out and outlen must not be NULL");
  if ((e = pool_check(p, "mproc_pool_apply")) != 0 || (e = not_dispatcher(p, "mproc_pool_apply")) != 0 ||
      (e = mproc_pool_apply_async(p, fn, arg, len, NULL, &r)) != 0)
    return e;
  e = mproc_result_get(r, MPROC_FOREVER, &data, &n);
  if (e == 0) {
    /* Hand over the result's buffer instead of copying it. */
    *out = r->outs[0].data ? r->outs[0].data : malloc(1);
    r->outs[0].data = NULL;
    *outlen = n;
    if (*out == NULL)
      e = mproc__error(MPROC_ENOMEM, "mproc_pool_apply: out of memory");
  }
  mproc_result_free(r);
  return e;
}

int mproc_pool_map(mproc_pool *p, mproc_fn fn, const void *in, size_t n, size_t in_size,
                   void *out, size_t out_size, size_t chunksize) {
  mproc_result *r;
  int e;
  if ((e = pool_check(p, "mproc_pool_map")) != 0 || (e = not_dispatcher(p, "mproc_pool_map")) != 0 ||
      (e = mproc_pool_map_async(p, fn, in, n, in_size, out, out_size, chunksize, NULL, &r)) != 0)
    return e;
  e = mproc_result_get(r, MPROC_FOREVER, NULL, NULL);
  mproc_result_free(r);
  return e;
}

int mproc_pool_close(mproc_pool *p) {
  int e;
  if ((e = pool_check(p, "mproc_pool_close")) != 0)
    return e;
  apr_thread_mutex_lock(p->mu);
  if (p->state == P_RUN)
    p->state = P_CLOSE;
  wake_dispatcher(p);
  apr_thread_mutex_unlock(p->mu);
  return 0;
}

int mproc_pool_terminate(mproc_pool *p) {
  int e;
  if ((e = pool_check(p, "mproc_pool_terminate")) != 0)
    return e;
  apr_thread_mutex_lock(p->mu);
  p->state = P_TERMINATE;
  wake_dispatcher(p);
  apr_thread_mutex_unlock(p->mu);
  return 0;
}

int mproc_pool_join(mproc_pool *p) {
  apr_status_t st;
  int e;
  if ((e = pool_check(p, "mproc_pool_join")) != 0 || (e = not_dispatcher(p, "mproc_pool_join")) != 0)
    return e;
  apr_thread_mutex_lock(p->mu);
  if (p->state == P_RUN) {
    apr_thread_mutex_unlock(p->mu);
    return mproc__error(MPROC_ESTATE, "mproc_pool_join: call mproc_pool_close or "
                                      "mproc_pool_terminate first");
  }
  if (p->joining) {
    /* Another thread joins: wait for it to be done. */
    while (!p->joined)
      apr_thread_cond_wait(p->changed, p->mu);
    apr_thread_mutex_unlock(p->mu);
    return 0;
  }
  p->joining = true;
  apr_thread_mutex_unlock(p->mu);
  apr_thread_join(&st, p->thread);
  if (p->server_proc) {
    /* The fork server ends when its channel does; its workers with it. */
    mproc_conn_free(p->server);
    mproc_conn_free(p->fdchan);
    p->server = p->fdchan = NULL;
    mproc_process_join(p->server_proc, MPROC_FOREVER);
    mproc_process_free(p->server_proc);
    p->server_proc = NULL;
  }
  apr_thread_mutex_lock(p->mu);
  p->joined = true;
  apr_thread_cond_broadcast(p->changed);
  apr_thread_mutex_unlock(p->mu);
  return 0;
}

void mproc_pool_free(mproc_pool *p) {
  if (p == NULL || p->hdr.magic != MPROC__MAGIC)
    return;
  if (!p->joined) {
    mproc_pool_terminate(p);
    mproc_pool_join(p);
  }
  apr_thread_mutex_lock(p->mu);
  p->hdr.magic = 0;
  bool last = p->refs == 1;
  pool_unref(p);
  if (!last)
    apr_thread_mutex_unlock(p->mu);
}
