/*
 * Queue: a ring of bytes in shared memory, written by one producer at a time
 * (the write lock) and read by one consumer at a time (the read lock), so the
 * ring itself is single-producer single-consumer and moves data without a lock.
 *
 * A record is: uint64 length | payload | padding to 8 | uint64 trailer. Positions
 * (head, tail) count bytes since creation and never wrap; the ring index is the
 * position modulo the capacity. A record that fits in the ring is written whole
 * and then published with one store of the tail, so a consumer sees all of it or
 * nothing. A record larger than the ring streams through it; its trailer tells
 * the consumer whether it was completed (COMMIT) or abandoned (ABORT).
 *
 * Crash safety rests on the robust locks: whoever takes a lock from a dead owner
 * repairs the state that lock guards. Every multi-word update is written first as
 * an intent (the values it will store) and then applied, so the repair simply
 * applies the intent again. A streamed record whose writer died or gave up is
 * finished with filler and an ABORT trailer; one whose reader died is skipped.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define Q_MAGIC 0x6d70726f71756575ull  /* "mproqueu" */
#define Q_COMMIT 0x54494d4d4f435051ull /* "QPCOMMIT" */
#define Q_ABORT 0x54524f4241515051ull  /* "QPABORT" */
#define Q_DEFAULT_BUFFER ((size_t)4 << 20)
#define Q_MIN_BUFFER ((size_t)4096)
#define Q_HEAD 8
#define Q_TRAILER 8
/* How long a waiter spins before sleeping, in microseconds: a peer on another
 * core usually answers within this, while a sleep costs a system call on both
 * sides (tens of microseconds on a virtual machine), and once the waiter sleeps
 * every put must pay for a wake-up. */
#define Q_SPIN_US 200
/* How often a streaming side checks that its peer is still there. */
#define Q_SLICE 0.05

typedef struct qshm {
  uint64_t magic, capacity, maxsize, max_message, joinable;
  mproc__os_mutex wlock, rlock;

  /* Producer side: written under wlock. */
  _Alignas(64) _Atomic uint64_t tail;
  _Atomic uint64_t published;   /* messages made visible */
  _Atomic uint64_t w_stream_end; /* end of a streamed record not fully written; 0: none */
  uint64_t w_stream_len;         /* and its length */
  /* A publish in progress: the tail it stores, plus 1 (0: none), and its count. */
  _Atomic uint64_t intent_tail;
  uint64_t intent_published;
  _Atomic uint32_t data_seq, data_waiters;

  /* Consumer side: written under rlock. */
  _Alignas(64) _Atomic uint64_t head;
  _Atomic uint64_t taken;        /* messages taken out */
  _Atomic uint64_t r_stream_end; /* end of a streamed record being read; 0: none */
  uint64_t r_stream_len;
  _Atomic uint64_t intent_head; /* as intent_tail, for a take */
  uint64_t intent_taken;
  _Atomic uint32_t space_seq, space_waiters;
  _Atomic uint64_t space_want; /* free bytes a sleeping producer waits for */

  _Alignas(64) _Atomic uint64_t done; /* task_done calls */
  _Atomic uint32_t done_seq, done_waiters;
  _Atomic uint32_t closed;

  _Alignas(64) unsigned char ring[];
} qshm;

struct mproc_queue {
  mproc__segobj base; /* the segment holds a qshm */
  qshm *s;
};

static uint64_t rec_size(uint64_t len) { return Q_HEAD + ((len + 7) & ~(uint64_t)7) + Q_TRAILER; }

/* ------------------------------------------------------- ring bytes */

static void ring_copy_in(qshm *s, uint64_t pos, const void *src, size_t n) {
  size_t at = (size_t)(pos & (s->capacity - 1));
  if (n == 0)
    return;
  size_t first = n < s->capacity - at ? n : (size_t)s->capacity - at;
  if (src) {
    memcpy(s->ring + at, src, first);
    memcpy(s->ring, (const unsigned char *)src + first, n - first);
  } else {
    memset(s->ring + at, 0, first);
    memset(s->ring, 0, n - first);
  }
}

static void ring_copy_out(qshm *s, uint64_t pos, void *dst, size_t n) {
  size_t at = (size_t)(pos & (s->capacity - 1));
  if (n == 0)
    return; /* dst may be NULL (an empty message into no buffer) */
  size_t first = n < s->capacity - at ? n : (size_t)s->capacity - at;
  memcpy(dst, s->ring + at, first);
  memcpy((unsigned char *)dst + first, s->ring, n - first);
}

static void le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* Writes bytes [off, off+n) of the record (len, data, trailer) at ring position pos.
 * data NULL writes zeros in the payload (filler for an abandoned record). */
static void record_write(qshm *s, uint64_t pos, uint64_t off, uint64_t n, uint64_t len,
                         const void *data, uint64_t trailer) {
  unsigned char word[8];
  uint64_t body_end = rec_size(len) - Q_TRAILER;
  while (n > 0) {
    uint64_t k;
    if (off < Q_HEAD) {
      le64(word, len);
      k = Q_HEAD - off < n ? Q_HEAD - off : n;
      ring_copy_in(s, pos, word + off, (size_t)k);
    } else if (off < body_end) {
      uint64_t data_end = Q_HEAD + len;
      k = (off < data_end ? data_end : body_end) - off;
      if (k > n)
        k = n;
      if (off < data_end && data != NULL)
        ring_copy_in(s, pos, (const unsigned char *)data + (off - Q_HEAD), (size_t)k);
      else
        ring_copy_in(s, pos, NULL, (size_t)k);
    } else {
      le64(word, trailer);
      k = n;
      ring_copy_in(s, pos, word + (off - body_end), (size_t)k);
    }
    pos += k;
    off += k;
    n -= k;
  }
}

/* ------------------------------------------------------ notification */

/* Called after a change a waiter may be waiting for. The fence orders the change
 * before the look at the waiter count (and pairs with the waiter's increment then
 * re-check), so a waiter either sees the change or is seen and woken; with nobody
 * waiting, which is the common case, no shared counter is written at all. */
static void notify(_Atomic uint32_t *seq, _Atomic uint32_t *waiters) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(waiters, memory_order_relaxed) != 0) {
    atomic_fetch_add(seq, 1);
    mproc__os_word_wake((uint32_t *)seq, -1);
  }
}

typedef bool (*ready_fn)(qshm *s, const void *arg);

typedef struct spin_arg {
  qshm *s;
  ready_fn ready;
  const void *arg;
  bool close_ends;
} spin_arg;

/* Stop spinning once ready, or once closed when that ends the wait. */
static bool spin_done(const void *arg) {
  const spin_arg *a = arg;
  return a->ready(a->s, a->arg) ||
         (a->close_ends && atomic_load_explicit(&a->s->closed, memory_order_relaxed));
}

/* How a wait treats the queue being closed, and whether it wakes up now and then. */
enum { W_CLOSE_ENDS = 1, W_SLICED = 2 };

/* Waits until ready(s, arg), the deadline (MPROC_ETIMEDOUT), the queue's closing
 * (MPROC_ECLOSED, with W_CLOSE_ENDS) or, with W_SLICED, at most Q_SLICE (then
 * returns 1, so that the caller can check on its peer). */
static int wait_for(qshm *s, _Atomic uint32_t *seq, _Atomic uint32_t *waiters, ready_fn ready,
                    const void *arg, int64_t deadline, int how) {
  bool slice = how & W_SLICED, close_ends = how & W_CLOSE_ENDS;
  int64_t until = deadline;
  /* No spinning for a call that may not wait (put_nowait, get_nowait). */
  if (deadline < 0 || mproc__remaining(deadline) > 0) {
    spin_arg sa = {s, ready, arg, close_ends};
    if (mproc__spin(spin_done, &sa, deadline, Q_SPIN_US) && ready(s, arg))
      return 0;
  }
  if (slice) {
    int64_t step = mproc__deadline(Q_SLICE);
    if (until < 0 || step < until)
      until = step;
  }
  for (;;) {
    uint32_t v = atomic_load(seq);
    int r = 0;
    if (ready(s, arg))
      return 0;
    /* Closed outranks a timeout, so that get_nowait on a drained queue says EOF. */
    if (close_ends && atomic_load(&s->closed))
      return MPROC_ECLOSED;
    if (until >= 0 && mproc__remaining(until) == 0)
      return until == deadline ? MPROC_ETIMEDOUT : 1;
    /* Announce the sleep before the last look, so that a notifier either sees
     * the waiter or the waiter sees its change (both sides use seq_cst). */
    atomic_fetch_add(waiters, 1);
    if (!ready(s, arg) && !(close_ends && atomic_load(&s->closed)))
      r = mproc__os_word_wait((uint32_t *)seq, v, until);
    atomic_fetch_sub(waiters, 1);
    if (close_ends && atomic_load(&s->closed) && !ready(s, arg))
      return MPROC_ECLOSED;
    (void)r;
  }
}

/* ------------------------------------------------- publish and take */

static uint64_t space(qshm *s) {
  return s->capacity - (atomic_load(&s->tail) - atomic_load(&s->head));
}

/* Release stores keep the steps in order for whoever repairs after a death (and
 * make the ring bytes visible before the tail that covers them). */
#define STORE(var, v) atomic_store_explicit(&(var), (v), memory_order_release)
#define LOAD(var) atomic_load_explicit(&(var), memory_order_acquire)

static void publish(qshm *s, uint64_t new_tail, uint64_t nmsg) {
  s->intent_published = LOAD(s->published) + nmsg;
  STORE(s->intent_tail, new_tail + 1);
  STORE(s->published, s->intent_published);
  STORE(s->tail, new_tail);
  STORE(s->intent_tail, 0);
  notify(&s->data_seq, &s->data_waiters);
}

static void take(qshm *s, uint64_t new_head, uint64_t nmsg) {
  s->intent_taken = LOAD(s->taken) + nmsg;
  STORE(s->intent_head, new_head + 1);
  STORE(s->taken, s->intent_taken);
  STORE(s->head, new_head);
  STORE(s->intent_head, 0);
  /* A sleeping producer is woken only once there is the room it asked for, not
   * for every message taken (each wake-up is a system call on both sides). */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&s->space_waiters, memory_order_relaxed) != 0 &&
      space(s) >= atomic_load_explicit(&s->space_want, memory_order_relaxed)) {
    atomic_fetch_add(&s->space_seq, 1);
    mproc__os_word_wake((uint32_t *)&s->space_seq, -1);
  }
}

/* Finishes one side's update whose writer died holding that side's lock: stores
 * the intended position (pos_intent holds it plus 1; 0: nothing was in progress)
 * and message count again, then wakes the other side. */
static void side_repair(_Atomic uint64_t *pos_intent, uint64_t count_intent,
                        _Atomic uint64_t *count, _Atomic uint64_t *pos, _Atomic uint32_t *seq,
                        _Atomic uint32_t *waiters) {
  uint64_t intent = atomic_load(pos_intent);
  if (intent != 0) {
    atomic_store(count, count_intent);
    if (atomic_load(pos) < intent - 1)
      atomic_store(pos, intent - 1);
    atomic_store(pos_intent, 0);
    notify(seq, waiters);
  }
}

/* After a producer that died holding wlock: finish its publish. */
static void producer_repair(qshm *s) {
  side_repair(&s->intent_tail, s->intent_published, &s->published, &s->tail, &s->data_seq,
              &s->data_waiters);
}

/* After a consumer that died holding rlock: finish its take. */
static void consumer_repair(qshm *s) {
  side_repair(&s->intent_head, s->intent_taken, &s->taken, &s->head, &s->space_seq,
              &s->space_waiters);
}

/* A message that was taken but will never be delivered (its record was aborted)
 * counts as done, or join() would wait for it forever. */
static void count_discarded(qshm *s) {
  if (s->joinable) {
    atomic_fetch_add(&s->done, 1);
    notify(&s->done_seq, &s->done_waiters);
  }
}

/* With both locks held and a streamed record in flight whose other side is gone:
 * skip what is left of it on both sides at once. */
static void fast_forward(qshm *s, uint64_t end) {
  /* As intents first, so that a death halfway is repaired by the next locker of
   * each side, like a publish or a take. */
  s->intent_published = LOAD(s->published);
  s->intent_taken = LOAD(s->taken);
  STORE(s->intent_tail, end + 1);
  STORE(s->intent_head, end + 1);
  STORE(s->w_stream_end, 0);
  STORE(s->r_stream_end, 0);
  STORE(s->tail, end);
  STORE(s->head, end);
  STORE(s->intent_tail, 0);
  STORE(s->intent_head, 0);
  notify(&s->data_seq, &s->data_waiters);
  notify(&s->space_seq, &s->space_waiters);
}


/* ----------------------------------------------------------- create */

static int queue_check(const mproc_queue *q, const char *fn) {
  return mproc__segobj_check(q, MPROC__KIND_QUEUE, fn);
}

typedef struct queue_init_arg {
  const mproc_queue_opts *o;
  size_t cap;
} queue_init_arg;

static int queue_init(void *addr, const void *arg) {
  const queue_init_arg *a = arg;
  qshm *s = addr;
  int r;
  /* The memory is new and zeroed: only the non-zero fields need setting. */
  s->capacity = a->cap;
  s->maxsize = a->o->maxsize;
  s->max_message = a->o->max_message;
  s->joinable = a->o->joinable;
  if ((r = mproc__os_mutex_init(&s->wlock, false)) != 0 ||
      (r = mproc__os_mutex_init(&s->rlock, false)) != 0)
    return r;
  return 0;
}

int mproc_queue_create(mproc_queue **out, const mproc_queue_opts *opts) {
  static const mproc_queue_opts defaults;
  const mproc_queue_opts *o = opts ? opts : &defaults;
  size_t want = o->buffer_size ? o->buffer_size : Q_DEFAULT_BUFFER, cap;
  void *obj;
  int r;

  if (out == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_queue_create: q must not be NULL");
  *out = NULL;
  if ((r = mproc__check_init("mproc_queue_create")) != 0)
    return r;
  if (want > ((size_t)1 << (sizeof(size_t) * 8 - 2)))
    return mproc__error(MPROC_EINVAL, "mproc_queue_create: buffer_size %zu is too large", want);
  for (cap = Q_MIN_BUFFER; cap < want; cap *= 2)
    ;
  queue_init_arg a = {o, cap};
  if ((r = mproc__segobj_create(&mproc__queue_ops, sizeof(qshm) + cap, queue_init, &a, &obj)) !=
      0)
    return r;
  *out = obj;
  (*out)->s = (*out)->base.seg.addr;
  return 0;
}

void mproc_queue_free(mproc_queue *q) { mproc__segobj_free(q); }

int mproc_queue_close(mproc_queue *q) {
  int r = queue_check(q, "mproc_queue_close");
  if (r != 0)
    return r;
  atomic_store(&q->s->closed, 1);
  /* Everyone asleep re-checks and sees the queue closed. */
  notify(&q->s->data_seq, &q->s->data_waiters);
  notify(&q->s->space_seq, &q->s->space_waiters);
  notify(&q->s->done_seq, &q->s->done_waiters);
  return 0;
}

size_t mproc_queue_qsize(const mproc_queue *q) {
  uint64_t taken, published;
  if (queue_check(q, "mproc_queue_qsize") != 0)
    return 0;
  /* taken first: published only grows, so the difference is never negative. */
  taken = atomic_load(&q->s->taken);
  published = atomic_load(&q->s->published);
  return (size_t)(published - taken);
}

bool mproc_queue_empty(const mproc_queue *q) { return mproc_queue_qsize(q) == 0; }

bool mproc_queue_full(const mproc_queue *q) {
  return q != NULL && queue_check(q, "mproc_queue_full") == 0 && q->s->maxsize != 0 &&
         mproc_queue_qsize(q) >= q->s->maxsize;
}

/* ----------------------------------------------------------- locks */

/* Takes a queue lock as the timeout says: 0 tries once (busy gives `busy`). */
static int lock(mproc__os_mutex *m, double timeout, int64_t deadline, bool *recovered, int busy) {
  int r = timeout == 0 ? mproc__os_mutex_trylock(m, recovered)
                       : mproc__os_mutex_lock(m, deadline, recovered);
  if (r == MPROC_ETIMEDOUT)
    return timeout == 0 ? busy : MPROC_ETIMEDOUT;
  return r;
}

/* Looks at the other side's lock: true (with it held) if its owner died or left a
 * stream unfinished, i.e. the lock could be taken while a stream was in flight. */
static bool peer_gone(mproc__os_mutex *m, void (*repair)(qshm *), qshm *s) {
  bool recovered;
  if (mproc__os_mutex_trylock(m, &recovered) != 0)
    return false;
  if (recovered)
    repair(s);
  return true;
}

/* ------------------------------------------------------------- put */

typedef struct put_need {
  uint64_t bytes;
} put_need;

static bool has_space(qshm *s, const void *arg) {
  const put_need *n = arg;
  return space(s) >= n->bytes &&
         (s->maxsize == 0 || atomic_load(&s->published) - atomic_load(&s->taken) < s->maxsize);
}

static bool any_space(qshm *s, const void *arg) {
  (void)arg;
  return space(s) > 0;
}

/* Waits for room. Should it come to sleeping, the producer asks to be woken only
 * when a quarter of the ring is free (or what it needs, if more), so that a
 * producer faster than its consumers is woken once per batch. */
static int wait_space(qshm *s, ready_fn ready, const void *arg, uint64_t need, int64_t deadline,
                      int how) {
  uint64_t want = s->capacity / 4 > need ? s->capacity / 4 : need;
  if (s->maxsize != 0)
    want = need; /* waiting on the message count, woken at each take */
  atomic_store(&s->space_want, want);
  return wait_for(s, &s->space_seq, &s->space_waiters, ready, arg, deadline, how);
}

/* Takes back the published part of a streamed record that was given up, when no
 * consumer has started on it: the tail goes back to the record's start, as if it
 * had never been put. Needs wlock; false when a consumer holds rlock (it may be
 * looking at the record), and the record must then be finished with filler. */
static bool retract_stream(qshm *s) {
  uint64_t end = atomic_load(&s->w_stream_end);
  bool recovered;
  if (end == 0)
    return true;
  if (atomic_load(&s->tail) >= end) {
    /* Whole after all: its writer died after the last piece went out. */
    atomic_store(&s->w_stream_end, 0);
    return true;
  }
  if (mproc__os_mutex_trylock(&s->rlock, &recovered) != 0)
    return false;
  if (recovered)
    consumer_repair(s);
  if (atomic_load(&s->r_stream_end) == end) {
    /* A consumer began it and died (rlock was free): skip it on both sides. */
    fast_forward(s, end);
  } else if (atomic_load(&s->head) > end - rec_size(s->w_stream_len)) {
    /* Some of it was read: it can only be finished, not taken back. */
    (void)mproc__os_mutex_unlock(&s->rlock);
    return false;
  } else {
    atomic_store(&s->tail, end - rec_size(s->w_stream_len));
    atomic_store(&s->w_stream_end, 0);
  }
  (void)mproc__os_mutex_unlock(&s->rlock);
  return true;
}

/* Finishes a streamed record its writer left unfinished, with filler and an ABORT
 * trailer. Called with wlock held; may time out, leaving the rest for later. */
static int finish_abandoned(qshm *s, int64_t deadline) {
  uint64_t end;
  if (retract_stream(s))
    return 0;
  end = atomic_load(&s->w_stream_end);
  while (end != 0 && atomic_load(&s->tail) < end) {
    uint64_t tail = atomic_load(&s->tail), n;
    int r;
    if (atomic_load(&s->r_stream_end) == end && peer_gone(&s->rlock, consumer_repair, s)) {
      fast_forward(s, end);
      mproc__os_mutex_unlock(&s->rlock);
      return 0;
    }
    r = wait_space(s, any_space, NULL, 1, deadline, W_SLICED);
    if (r < 0)
      return r;
    if (r == 1)
      continue;
    n = space(s);
    if (n > end - tail)
      n = end - tail;
    /* The rest of the record: its length word if it never went out, zeros for the
     * payload, and an ABORT trailer. An aborted record is never counted. */
    record_write(s, tail, tail - (end - rec_size(s->w_stream_len)), n, s->w_stream_len, NULL,
                 Q_ABORT);
    publish(s, tail + n, 0);
  }
  atomic_store(&s->w_stream_end, 0);
  return 0;
}

/* A record larger than the ring, streamed through it. */
static int put_streamed(qshm *s, const void *data, uint64_t len, int64_t deadline) {
  uint64_t start = atomic_load(&s->tail), rec = rec_size(len), end = start + rec;
  uint64_t pos = start;
  put_need first = {Q_HEAD};
  int r;

  /* The first piece holds at least the whole length word, so that a record's
   * length is never half written, even when it is abandoned. */
  if ((r = wait_space(s, has_space, &first, first.bytes, deadline, W_CLOSE_ENDS)) != 0)
    return r;
  s->w_stream_len = len;
  atomic_store(&s->w_stream_end, end);
  while (pos < end) {
    uint64_t n;
    bool begun = atomic_load(&s->r_stream_end) == end;
    if (begun && peer_gone(&s->rlock, consumer_repair, s)) {
      /* The consumer that took this message died with it. */
      fast_forward(s, end);
      mproc__os_mutex_unlock(&s->rlock);
      return 0;
    }
    /* Until a consumer is receiving it, the put may still give up: the part written
     * is then finished as an aborted record by whoever comes next. */
    r = wait_space(s, any_space, NULL, 1, begun ? -1 : deadline, W_SLICED);
    if (r < 0) {
      /* Given up before any consumer began it: take it back if nobody looks. */
      if (pos == start)
        atomic_store(&s->w_stream_end, 0);
      else
        retract_stream(s);
      return r;
    }
    if (r == 1)
      continue;
    n = space(s);
    if (n > end - pos)
      n = end - pos;
    record_write(s, pos, pos - start, n, len, data, Q_COMMIT);
    pos += n;
    /* Counted (qsize) once whole, with its last piece: until then it may still be
     * given up and aborted. */
    publish(s, pos, pos == end ? 1 : 0);
  }
  atomic_store(&s->w_stream_end, 0);
  return 0;
}

int mproc_queue_put(mproc_queue *q, const void *data, size_t len, double timeout) {
  int64_t deadline = mproc__deadline(timeout);
  bool recovered;
  qshm *s;
  uint64_t rec;
  int r;

  if ((r = queue_check(q, "mproc_queue_put")) != 0)
    return r;
  s = q->s;
  if (data == NULL && len > 0)
    return mproc__error(MPROC_EINVAL, "mproc_queue_put: data is NULL but len is %zu", len);
  if (s->max_message != 0 && len > s->max_message)
    return mproc__error(MPROC_EMSGSIZE,
                        "mproc_queue_put: a %zu-byte message exceeds the queue's maximum of %llu",
                        len, (unsigned long long)s->max_message);
  if (atomic_load(&s->closed))
    return mproc__error(MPROC_ECLOSED, "mproc_queue_put: the queue is closed");
  rec = rec_size(len);
  if ((r = lock(&s->wlock, timeout, deadline, &recovered, MPROC_EFULL)) != 0)
    goto fail;
  if (recovered)
    producer_repair(s);
  if ((r = finish_abandoned(s, deadline)) != 0)
    goto unlock;
  if (atomic_load(&s->closed)) {
    r = MPROC_ECLOSED;
    goto unlock;
  }
  if (rec <= s->capacity) {
    put_need need = {rec};
    uint64_t tail;
    if ((r = wait_space(s, has_space, &need, need.bytes, deadline, W_CLOSE_ENDS)) != 0)
      goto unlock;
    tail = atomic_load(&s->tail);
    record_write(s, tail, 0, rec, len, data, Q_COMMIT);
    publish(s, tail + rec, 1);
  } else {
    r = put_streamed(s, data, len, deadline);
  }
unlock:
  (void)mproc__os_mutex_unlock(&s->wlock);
fail:
  switch (r) {
  case 0:
    return 0;
  case MPROC_ETIMEDOUT:
    if (timeout == 0)
      r = MPROC_EFULL;
    return mproc__error(r, "mproc_queue_put: no room for a %zu-byte message within %gs", len,
                        timeout);
  case MPROC_EFULL:
    return mproc__error(r, "mproc_queue_put: no room for a %zu-byte message right now", len);
  case MPROC_ECLOSED:
    return mproc__error(r, "mproc_queue_put: the queue is closed");
  default:
    return r;
  }
}

/* ------------------------------------------------------------- get */

static bool has_header(qshm *s, const void *arg) {
  (void)arg;
  return atomic_load(&s->tail) - atomic_load(&s->head) >= Q_HEAD;
}

static bool any_data(qshm *s, const void *arg) {
  (void)arg;
  return atomic_load(&s->tail) != atomic_load(&s->head);
}

/* Reads the rest of the streamed record that ends at end (payload into dst, if
 * any). Runs to the end whatever the time: a producer is writing it. Returns
 * whether the record was completed (its trailer says COMMIT). */
static bool get_streamed(qshm *s, uint64_t end, uint64_t len, unsigned char *dst) {
  uint64_t rec = rec_size(len), start = end - rec;
  unsigned char trailer[8] = {0};

  for (;;) {
    uint64_t head = atomic_load(&s->head), avail, off, n;
    if (head >= end)
      break;
    avail = atomic_load(&s->tail) - head;
    if (avail == 0) {
      int r = wait_for(s, &s->data_seq, &s->data_waiters, any_data, NULL, -1, W_SLICED);
      if (r == 1 && atomic_load(&s->w_stream_end) == end &&
          peer_gone(&s->wlock, producer_repair, s)) {
        bool done = atomic_load(&s->tail) >= end;
        if (!done)
          fast_forward(s, end);
        mproc__os_mutex_unlock(&s->wlock);
        if (!done)
          return false;
      }
      continue;
    }
    off = head - start;
    n = end - head < avail ? end - head : avail;
    /* Copy out the part of [off, off+n) that is payload, and the trailer. */
    for (uint64_t o = off, p = head; o < off + n;) {
      uint64_t k;
      if (o >= Q_HEAD && o < Q_HEAD + len) {
        k = (Q_HEAD + len < off + n ? Q_HEAD + len : off + n) - o;
        if (dst)
          ring_copy_out(s, p, dst + (o - Q_HEAD), (size_t)k);
      } else if (o >= rec - Q_TRAILER) {
        k = off + n - o;
        ring_copy_out(s, p, trailer + (o - (rec - Q_TRAILER)), (size_t)k);
      } else {
        k = o < Q_HEAD ? Q_HEAD - o : rec - Q_TRAILER - o;
        if (k > off + n - o)
          k = off + n - o;
      }
      o += k;
      p += k;
    }
    /* Counted as taken with its last piece, if it was ever whole (COMMIT). */
    take(s, head + n, head + n == end && get64(trailer) == Q_COMMIT ? 1 : 0);
  }
  atomic_store(&s->r_stream_end, 0);
  return get64(trailer) == Q_COMMIT;
}

/* One get. Into buf when cap_or_alloc is set (cap), else malloc()ed. */
static int queue_get(mproc_queue *q, void **data, void *buf, size_t cap, bool into, size_t *lenp,
                     double timeout, const char *fn) {
  int64_t deadline = mproc__deadline(timeout);
  bool recovered;
  qshm *s;
  int r;

  if ((r = queue_check(q, fn)) != 0)
    return r;
  s = q->s;
  if (lenp == NULL || (!into && data == NULL) || (into && buf == NULL && cap > 0))
    return mproc__error(MPROC_EINVAL, "%s: NULL output argument", fn);
  if ((r = lock(&s->rlock, timeout, deadline, &recovered, MPROC_EEMPTY)) != 0)
    goto fail;
  if (recovered) {
    consumer_repair(s);
    /* The dead consumer was in the middle of a streamed record: skip the rest. */
    uint64_t end = atomic_load(&s->r_stream_end);
    if (end != 0 && get_streamed(s, end, s->r_stream_len, NULL))
      count_discarded(s); /* put, and lost with its consumer: done */
  }
  for (;;) {
    unsigned char word[8];
    uint64_t head, len, rec;
    unsigned char *dst;

    r = wait_for(s, &s->data_seq, &s->data_waiters, has_header, NULL, deadline, W_CLOSE_ENDS);
    if (r == MPROC_ECLOSED) {
      r = MPROC_EOF;
      goto unlock;
    }
    if (r != 0)
      goto unlock;
    head = atomic_load(&s->head);
    ring_copy_out(s, head, word, sizeof word);
    len = get64(word);
    rec = rec_size(len);
    *lenp = (size_t)len;
    if (len > SIZE_MAX - 16 || (into && len > cap)) {
      r = MPROC_EMSGSIZE;
      goto unlock;
    }
    if (into) {
      dst = buf;
    } else if ((dst = malloc(len ? (size_t)len : 1)) == NULL) {
      r = MPROC_ENOMEM;
      goto unlock;
    }
    if (rec <= s->capacity) {
      ring_copy_out(s, head + Q_HEAD, dst, (size_t)len);
      take(s, head + rec, 1);
    } else {
      s->r_stream_len = len;
      atomic_store(&s->r_stream_end, head + rec);
      if (!get_streamed(s, head + rec, len, dst)) {
        /* Its producer died or gave up: the message was never put (nor counted). */
        if (!into)
          free(dst);
        continue;
      }
    }
    if (!into)
      *data = dst;
    r = 0;
    break;
  }
unlock:
  (void)mproc__os_mutex_unlock(&s->rlock);
fail:
  switch (r) {
  case 0:
    return 0;
  case MPROC_ETIMEDOUT:
    if (timeout == 0)
      r = MPROC_EEMPTY;
    return mproc__error(r, "%s: no message within %gs", fn, timeout);
  case MPROC_EEMPTY:
    return mproc__error(r, "%s: the queue is empty", fn);
  case MPROC_EOF:
    return mproc__error(r, "%s: the queue is closed and drained", fn);
  case MPROC_EMSGSIZE:
    return mproc__error(r, "%s: the next message has %zu bytes, more than the buffer's %zu; it "
                           "stays in the queue",
                        fn, *lenp, cap);
  case MPROC_ENOMEM:
    return mproc__error(r, "%s: cannot allocate %zu bytes; the message stays in the queue", fn,
                        *lenp);
  default:
    return r;
  }
}

int mproc_queue_get(mproc_queue *q, void **data, size_t *len, double timeout) {
  return queue_get(q, data, NULL, 0, false, len, timeout, "mproc_queue_get");
}

int mproc_queue_get_into(mproc_queue *q, void *buf, size_t cap, size_t *len, double timeout) {
  return queue_get(q, NULL, buf, cap, true, len, timeout, "mproc_queue_get_into");
}

/* ----------------------------------------------------- JoinableQueue */

int mproc_queue_task_done(mproc_queue *q) {
  uint64_t done;
  int r;

  if ((r = queue_check(q, "mproc_queue_task_done")) != 0)
    return r;
  if (!q->s->joinable)
    return mproc__error(MPROC_ESTATE, "mproc_queue_task_done: the queue is not joinable");
  done = atomic_load(&q->s->done);
  do {
    if (done >= atomic_load(&q->s->published))
      return mproc__error(MPROC_ESTATE, "mproc_queue_task_done: called more times than there "
                                        "were messages put");
  } while (!atomic_compare_exchange_weak(&q->s->done, &done, done + 1));
  notify(&q->s->done_seq, &q->s->done_waiters);
  return 0;
}

static bool all_done(qshm *s, const void *arg) {
  (void)arg;
  return atomic_load(&s->done) >= atomic_load(&s->published);
}

int mproc_queue_join(mproc_queue *q, double timeout) {
  int r;

  if ((r = queue_check(q, "mproc_queue_join")) != 0)
    return r;
  if (!q->s->joinable)
    return mproc__error(MPROC_ESTATE, "mproc_queue_join: the queue is not joinable");
  r = wait_for(q->s, &q->s->done_seq, &q->s->done_waiters, all_done, NULL,
               mproc__deadline(timeout), 0);
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(r, "mproc_queue_join: tasks still unfinished after %gs", timeout);
  return r;
}

/* ------------------------------------------------ crossing a spawn */

static int queue_decode(const mproc__kind_ops *ops, mproc__rd *rd, const mproc__fd *fds,
                        size_t nfds, void **obj) {
  int r = mproc__segobj_decode(ops, rd, fds, nfds, obj);
  if (r == 0)
    ((mproc_queue *)*obj)->s = ((mproc_queue *)*obj)->base.seg.addr;
  return r;
}

const mproc__kind_ops mproc__queue_ops = {
    .name = "queue",
    .kind = MPROC__KIND_QUEUE,
    .seg_magic = Q_MAGIC,
    .handle_size = sizeof(mproc_queue),
    .fds = mproc__segobj_fds,
    .encode = mproc__segobj_encode,
    .decode = queue_decode,
};
