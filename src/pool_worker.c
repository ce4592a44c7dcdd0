/* The pool's child side: the worker loop, and the fork server that forks workers
 * under the fork start method. Both run as Processes started by pool.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

void mproc__worker_conf_encode(const worker_conf *c, mproc__buf *b) {
  mproc__buf_put_u64(b, c->slot);
  mproc__buf_put_u64(b, c->maxtasks);
  mproc__buf_put_u64(b, c->flush_each);
  mproc__buf_put_str(b, c->init_module);
  mproc__buf_put_u64(b, c->init_offset);
  mproc__buf_put_bytes(b, c->initarg, c->initarg_len);
}

int mproc__worker_conf_decode(mproc__rd *r, worker_conf *c) {
  c->slot = mproc__rd_u64(r);
  c->maxtasks = mproc__rd_u64(r);
  c->flush_each = mproc__rd_u64(r) != 0;
  c->init_module = mproc__rd_str(r);
  c->init_offset = mproc__rd_u64(r);
  c->initarg = mproc__rd_bytes(r, &c->initarg_len);
  return r->err ? mproc__error(MPROC_EPROTO, "malformed pool worker settings") : 0;
}

const mproc__kind_ops mproc__poolseg_ops = {
    .name = "pool slot table",
    .kind = MPROC__KIND_POOLSEG,
    .seg_magic = POOLSEG_MAGIC,
    .handle_size = sizeof(mproc__poolseg),
    .fds = mproc__segobj_fds,
    .encode = mproc__segobj_encode,
    .decode = mproc__segobj_decode,
};

/* --------------------------------------------------------------- worker */

/* The task function last used, so that a map resolves its function once. */
typedef struct fn_cache {
  char *module;
  uint64_t offset;
  mproc_fn fn;
} fn_cache;

static int resolve(fn_cache *c, const char *module, uint64_t offset, mproc_fn *fn) {
  void *addr;
  int r;
  if (c->module != NULL && c->offset == offset && strcmp(c->module, module) == 0) {
    *fn = c->fn;
    return 0;
  }
  if ((r = mproc__os_ref_to_addr(module, offset, &addr)) != 0)
    return r;
  free(c->module);
  c->module = strdup(module);
  c->offset = offset;
  c->fn = (mproc_fn)(uintptr_t)addr;
  *fn = c->fn;
  return c->module ? 0 : MPROC_ENOMEM;
}

/* Results of a chunk, gathered and sent in one message: packed while every task
 * succeeds with results of one size, general otherwise. */
typedef struct results {
  mproc__buf b;
  uint64_t chunk, first, k;
  int mode; /* 0 none yet, MSG_RESULTS or MSG_RESULTS_PACKED */
  uint64_t size;
} results;

static void results_start(results *res, uint64_t chunk, uint64_t first) {
  res->b.len = 0;
  res->chunk = chunk;
  res->first = first;
  res->k = 0;
  res->mode = 0;
  res->size = 0;
  for (int i = 0; i < 5; i++)
    mproc__buf_put_u64(&res->b, 0); /* type, chunk, first, k, size: set at send */
}

static void put_at(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* Sends what was gathered and starts over after it. */
static int results_flush(results *res, mproc_conn *ch) {
  int r;
  if (res->k == 0)
    return 0;
  if (res->b.err)
    return res->b.err;
  put_at(res->b.data, (uint64_t)res->mode);
  put_at(res->b.data + 8, res->chunk);
  put_at(res->b.data + 16, res->first);
  put_at(res->b.data + 24, res->k);
  put_at(res->b.data + 32, res->size);
  r = mproc_conn_send(ch, res->b.data, res->b.len);
  results_start(res, res->chunk, res->first + res->k);
  return r;
}

/* Runs one task and appends its outcome to res (sending first when the outcome
 * does not fit the message's form). */
static int run_task(mproc_ctx *ctx, mproc_fn fn, const void *arg, size_t len, results *res,
                    mproc_conn *ch) {
  int rc, r, mode;
  size_t rlen;
  ctx->result.len = 0;
  ctx->returned = ctx->failed = false;
  ctx->message[0] = '\0';
  rc = fn(ctx, arg, len);
  rlen = ctx->returned ? ctx->result.len : 0;
  mode = rc == 0 && !ctx->failed ? MSG_RESULTS_PACKED : MSG_RESULTS;
  if (mode == MSG_RESULTS_PACKED && res->mode == MSG_RESULTS_PACKED && rlen != res->size)
    mode = MSG_RESULTS;
  if (res->mode != 0 && res->mode != mode && (r = results_flush(res, ch)) != 0)
    return r;
  if (res->mode == 0) {
    res->mode = mode;
    res->size = rlen;
  }
  if (mode == MSG_RESULTS_PACKED) {
    mproc__buf_put(&res->b, ctx->result.data, rlen);
  } else if (rc == 0 && !ctx->failed) {
    mproc__buf_put_u64(&res->b, 0);
    mproc__buf_put_bytes(&res->b, ctx->result.data, rlen);
  } else {
    int code = rc < 0 ? rc : MPROC_EFAILED;
    if (!ctx->failed)
      snprintf(ctx->message, sizeof ctx->message, "the task returned %d (%s)", rc,
               rc < 0 ? mproc_strerror(rc) : "non-zero");
    mproc__buf_put_u64(&res->b, (uint64_t)(int64_t)code);
    mproc__buf_put_str(&res->b, ctx->message);
  }
  res->k++;
  return 0;
}

int mproc__pool_worker_main(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc__rd rd = {arg, (const unsigned char *)arg + len, 0};
  mproc_conn *ch = mproc_shared(ctx, 0);
  mproc__poolseg *seg = mproc_shared(ctx, 1);
  mproc_ctx task;
  pool_slot *slot;
  worker_conf conf;
  fn_cache cache = {0};
  results res = {0};
  mproc__buf rx = {0}; /* task messages, received into the same memory each time */
  uint64_t done = 0, seq;
  int r;

  if (ch == NULL || seg == NULL || mproc__worker_conf_decode(&rd, &conf) != 0)
    return 2;
  slot = &((pool_seg *)seg->base.seg.addr)->slots[conf.slot];
  seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
  /* Tasks see only the user's share list. */
  memset(&task, 0, sizeof task);
  task.shared = ctx->shared + 2;
  task.nshared = ctx->nshared - 2;
  task.name = ctx->name;
  task.is_task = true;
  if (conf.init_module != NULL) {
    mproc_fn init;
    mproc__buf b = {0};
    if ((r = resolve(&cache, conf.init_module, conf.init_offset, &init)) != 0) {
      snprintf(task.message, sizeof task.message, "%s", mproc_last_error());
      r = -1;
    } else {
      r = init(&task, conf.initarg, conf.initarg_len);
      if (r != 0 && !task.failed)
        snprintf(task.message, sizeof task.message, "the initializer returned %d", r);
      if (task.failed)
        r = -1;
    }
    if (r != 0) {
      mproc__buf_put_u64(&b, MSG_INITFAIL);
      mproc__buf_put_str(&b, task.message);
      if (!b.err)
        mproc_conn_send(ch, b.data, b.len);
      mproc__buf_free(&b);
      return 3;
    }
  }

  for (;;) {
    size_t mlen, n;
    uint64_t chunk, offset, count, size;
    char *module;
    mproc_fn fn;

    r = mproc__conn_recv_buf(ch, &rx, &mlen);
    if (r == MPROC_EOF)
      break; /* the pool is closing */
    if (r != 0)
      return 4;
    rd.p = rx.data;
    rd.end = rd.p + mlen;
    rd.err = 0;
    if (mproc__rd_u64(&rd) != MSG_TASK)
      return 5;
    chunk = mproc__rd_u64(&rd);
    module = mproc__rd_str(&rd);
    offset = mproc__rd_u64(&rd);
    count = mproc__rd_u64(&rd);
    size = mproc__rd_u64(&rd);
    if (rd.err || module == NULL || resolve(&cache, module, offset, &fn) != 0)
      return 6;
    free(module);
    results_start(&res, chunk, 0);
    for (uint64_t i = 0; i < count; i++) {
      const void *item;
      if (size == UINT64_MAX) {
        item = mproc__rd_bytes(&rd, &n);
      } else {
        n = (size_t)size;
        item = mproc__rd_raw(&rd, n);
      }
      if (rd.err)
        return 7;
      atomic_store_explicit(&slot->chunk, chunk, memory_order_relaxed);
      atomic_store_explicit(&slot->index, i, memory_order_relaxed);
      atomic_store_explicit(&slot->running, 1, memory_order_relaxed);
      /* Only this process writes its slot: a store, not a locked add. */
      atomic_store_explicit(&slot->seq, ++seq, memory_order_release);
      if (run_task(&task, fn, item, n, &res, ch) != 0)
        return 8;
      atomic_store_explicit(&slot->running, 0, memory_order_release);
      /* With a timeout, each result goes at once (the parent restarts the clock). */
      if ((conf.flush_each || res.b.len > ((size_t)1 << 20)) && results_flush(&res, ch) != 0)
        return 8;
    }
    if (results_flush(&res, ch) != 0)
      return 8;
    done += count;
    /* maxtasksperchild: the parent sent no more than this; leave cleanly. */
    if (conf.maxtasks != 0 && done >= conf.maxtasks)
      break;
  }
  mproc__buf_free(&rx);
  mproc__buf_free(&res.b);
  return 0;
}

/* ---------------------------------------------------------- fork server */

/* Started (forked) once per pool before the pool's thread exists, it forks every
 * worker from its single thread, so no worker is a fork of a threaded process. */
typedef struct served {
  mproc_process *p;
  uint64_t slot;
} served;

static int server_say(mproc_conn *ctl, uint64_t type, uint64_t slot, uint64_t pid, uint64_t code,
                      const char *err) {
  mproc__buf b = {0};
  int r;
  mproc__buf_put_u64(&b, type);
  mproc__buf_put_u64(&b, slot);
  mproc__buf_put_u64(&b, pid);
  if (type == MSG_EXITED)
    mproc__buf_put_u64(&b, code);
  else
    mproc__buf_put_str(&b, err);
  r = b.err ? b.err : mproc_conn_send(ctl, b.data, b.len);
  mproc__buf_free(&b);
  return r;
}

/* Share list: [0] the control channel, [1] the slots, the user's objects, and last
 * the channel that carries only the workers' descriptors (kept apart because a
 * connection reads ahead, which would swallow a descriptor sent beside a frame). */
int mproc__pool_server_main(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *ctl = mproc_shared(ctx, 0);
  mproc_conn *fdchan = mproc_shared(ctx, ctx->nshared - 1);
  size_t nworker_share = ctx->nshared - 1; /* the worker's list: its channel, slots, user's */
  mproc__rd rd = {arg, (const unsigned char *)arg + len, 0};
  worker_conf conf;
  served *w = NULL;
  size_t nw = 0;
  int r = 0;

  if (ctl == NULL || fdchan == NULL || ctx->nshared < 3 ||
      mproc__worker_conf_decode(&rd, &conf) != 0)
    return 2;
  for (;;) {
    /* Wait on the parent and on every worker's exit at once. */
    mproc__fd *fds = malloc((nw + 1) * sizeof *fds);
    unsigned char *ready = malloc(nw + 1);
    size_t nready;
    if (fds == NULL || ready == NULL)
      return 9;
    bool polled = false;
    fds[0] = (mproc__fd)mproc_conn_fileno(ctl);
    for (size_t i = 0; i < nw; i++) {
      fds[i + 1] = mproc__process_waitfd(w[i].p);
      polled |= fds[i + 1] == MPROC__FD_INVALID;
    }
    /* A message read ahead with the last one is not on the descriptor any more. */
    bool buffered = mproc__conn_buffered(ctl);
    /* Without a wait descriptor (no pidfd), exits are found by looking every 50 ms,
     * as the dispatcher does: the pool reports a dead worker's task only then. */
    r = mproc__os_poll_read(fds, nw + 1, buffered ? 0 : polled ? 0.05 : nw ? 1.0 : -1, ready,
                            &nready);
    ready[0] |= buffered;
    for (size_t i = 0; r == 0 && i < nw;) {
      int code;
      if ((ready[i + 1] || fds[i + 1] == MPROC__FD_INVALID) &&
          mproc_process_join(w[i].p, 0) == 0 && mproc_process_exitcode(w[i].p, &code) == 0) {
        server_say(ctl, MSG_EXITED, w[i].slot, (uint64_t)mproc_process_pid(w[i].p),
                   (uint64_t)(int64_t)code, NULL);
        mproc_process_free(w[i].p);
        w[i] = w[--nw];
        memmove(ready + i + 1, ready + i + 2, nw - i);
        continue;
      }
      i++;
    }
    free(fds);
    if (r != 0 || !ready[0]) {
      free(ready);
      if (r != 0)
        break;
      continue;
    }
    free(ready);

    void *msg;
    size_t mlen;
    if ((r = mproc_conn_recv(ctl, &msg, &mlen, 0)) != 0)
      break; /* the pool is gone */
    rd.p = msg;
    rd.end = rd.p + mlen;
    rd.err = 0;
    uint64_t type = mproc__rd_u64(&rd), slot = mproc__rd_u64(&rd);
    uint64_t force = type == MSG_KILL ? mproc__rd_u64(&rd) : 0;
    free(msg);
    if (type == MSG_SPAWN) {
      mproc__fd fd;
      mproc_conn *ch = NULL;
      mproc_process *p = NULL;
      served *grown;
      void **share = malloc(nworker_share * sizeof *share);
      mproc__buf cb = {0};
      if (share == NULL ||
          (r = mproc__os_recv_fd((mproc__fd)mproc_conn_fileno(fdchan), &fd)) != 0)
        break;
      conf.slot = slot;
      mproc__worker_conf_encode(&conf, &cb);
      r = mproc__conn_wrap(&ch, fd, true, true, true);
      if (r == 0) {
        share[0] = ch;
        memcpy(share + 1, ctx->shared + 1, (nworker_share - 1) * sizeof *share);
        mproc_process_opts o = {.start_method = MPROC_START_FORK,
                                .name = "PoolWorker",
                                .daemon = true,
                                .share = share,
                                .nshare = nworker_share};
        r = cb.err ? cb.err
                   : mproc_process_start(&p, mproc__pool_worker_main, cb.data, cb.len, &o);
      }
      mproc_conn_free(ch); /* the worker has it now */
      mproc__buf_free(&cb);
      free(share);
      grown = r == 0 ? realloc(w, (nw + 1) * sizeof *w) : NULL;
      if (grown == NULL) {
        server_say(ctl, MSG_SPAWNED, slot, 0, 0, r ? mproc_last_error() : "out of memory");
        mproc_process_free(p);
        continue;
      }
      w = grown;
      w[nw].p = p;
      w[nw++].slot = slot;
      server_say(ctl, MSG_SPAWNED, slot, (uint64_t)mproc_process_pid(p), 0, "");
    } else if (type == MSG_KILL) {
      for (size_t i = 0; i < nw; i++)
        if (w[i].slot == slot)
          force ? mproc_process_kill(w[i].p) : mproc_process_terminate(w[i].p);
    }
  }
  /* The pool is gone: so are its workers. */
  for (size_t i = 0; i < nw; i++) {
    mproc_process_kill(w[i].p);
    mproc_process_join(w[i].p, MPROC_FOREVER);
    mproc_process_free(w[i].p);
  }
  free(w);
  return 0;
}
