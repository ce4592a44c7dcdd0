/* Process: a function run in a child process, under fork or spawn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_pools.h>
#include <apr_thread_mutex.h>

#include "internal.h"

/* First word of a spawn bootstrap: its format's version. */
#define BOOT_MAGIC 0x6d70726f63000001ull

struct mproc_process {
  mproc__os_proc os;
  char *name;
  bool daemon;
  bool detached; /* freed by the user while running; reaped by the registry */
  long owner;    /* the pid that started it: only that process may wait for it */
  struct mproc_process *prev, *next;
};

/* Every started process that is not yet freed (or freed while running), so that
 * exit can join or terminate it and nothing is left a zombie. */
static struct {
  apr_pool_t *pool;
  apr_thread_mutex_t *lock;
  long owner; /* the pid this registry belongs to */
  mproc_process *head;
} reg;

static volatile apr_uint32_t process_counter;

static int registry_ready(void) {
  if (reg.lock != NULL && reg.owner == mproc__os_getpid())
    return 0;
  /* In a fork child the parent's lock may have been held by another thread: start
   * over with a fresh one and an empty list. */
  reg.head = NULL;
  reg.lock = NULL;
  if (reg.pool == NULL && apr_pool_create(&reg.pool, NULL) != APR_SUCCESS)
    return mproc__error(MPROC_ENOMEM, "cannot create the process registry's pool");
  if (apr_thread_mutex_create(&reg.lock, APR_THREAD_MUTEX_DEFAULT, reg.pool) != APR_SUCCESS)
    return mproc__error(MPROC_ESYS, "cannot create the process registry's lock");
  reg.owner = mproc__os_getpid();
  return 0;
}

static void registry_unlink(mproc_process *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    reg.head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void process_destroy(mproc_process *p) {
  mproc__os_proc_release(&p->os);
  free(p->name);
  free(p);
}

/* Reaps detached children that have exited; called whenever a process starts. */
static void registry_reap_detached(void) {
  apr_thread_mutex_lock(reg.lock);
  for (mproc_process *p = reg.head, *next; p != NULL; p = next) {
    next = p->next;
    if (p->detached && mproc__os_proc_wait(&p->os, 0) == 0) {
      registry_unlink(p);
      process_destroy(p);
    }
  }
  apr_thread_mutex_unlock(reg.lock);
}

/* Made while the process has one thread (mproc_init, a fork child's start), so that
 * two threads starting their first children at once do not both make it. */
int mproc__processes_init(void) { return registry_ready(); }

void mproc__processes_after_fork(void) {
  reg.owner = 0; /* the parent's: start a new one */
  (void)registry_ready(); /* on failure, the first start reports it */
}

void mproc__processes_at_exit(void) {
  if (reg.lock == NULL || reg.owner != mproc__os_getpid())
    return;
  apr_thread_mutex_lock(reg.lock);
  /* As Python does: daemon children are terminated, the others waited for. */
  for (mproc_process *p = reg.head; p != NULL; p = p->next)
    if (p->daemon && !p->os.reaped)
      mproc__os_proc_signal(&p->os, false);
  for (mproc_process *p = reg.head, *next; p != NULL; p = next) {
    next = p->next;
    if (p->daemon && mproc__os_proc_wait(&p->os, 1.0) == MPROC_ETIMEDOUT)
      mproc__os_proc_signal(&p->os, true);
    mproc__os_proc_wait(&p->os, MPROC_FOREVER);
    if (p->detached) {
      registry_unlink(p);
      process_destroy(p);
    }
  }
  apr_thread_mutex_unlock(reg.lock);
}

/* ------------------------------------------------------------- ctx */

void *mproc_shared(mproc_ctx *ctx, size_t i) {
  return ctx != NULL && i < ctx->nshared ? ctx->shared[i] : NULL;
}

size_t mproc_shared_count(const mproc_ctx *ctx) { return ctx ? ctx->nshared : 0; }

const char *mproc_ctx_name(const mproc_ctx *ctx) { return ctx ? ctx->name : NULL; }

int mproc_return(mproc_ctx *ctx, const void *data, size_t len) {
  if (ctx == NULL || (data == NULL && len > 0))
    return mproc__error(MPROC_EINVAL, "mproc_return: ctx is NULL, or data is NULL with len %zu",
                        len);
  if (!ctx->is_task)
    return mproc__error(MPROC_ESTATE, "mproc_return: a Process has no result channel; send "
                                      "the result over a Pipe or Queue");
  /* A second call replaces the first result. */
  ctx->result.len = 0;
  mproc__buf_put(&ctx->result, data, len);
  if (ctx->result.err) {
    int r = ctx->result.err;
    ctx->result.err = 0;
    return r;
  }
  ctx->returned = true;
  return 0;
}

int mproc_fail(mproc_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  if (ctx == NULL || fmt == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_fail: ctx and fmt must not be NULL");
  va_start(ap, fmt);
  if (ctx->is_task) {
    vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    ctx->failed = true;
  } else {
    fprintf(stderr, "mproc: %s failed: ", ctx->name ? ctx->name : "process");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
  }
  va_end(ap);
  return MPROC_EFAILED;
}

mproc__fd mproc__process_waitfd(const mproc_process *p) { return p->os.waitfd; }

/* A function's return value as an exit status: a negative mproc code means failure,
 * which exits 1 as a Python target that raised does. */
static int exit_status(int ret) { return ret < 0 ? 1 : ret; }

/* ----------------------------------------------------------- start */

/* The descriptors a child must hold: [boot (spawn only), lifeline, objects' ...]. */
typedef struct keep_list {
  mproc__fd *fds;
  size_t n;
  size_t *first; /* index in fds of each shared object's first descriptor */
} keep_list;

static int collect_keep(const mproc_process_opts *o, mproc__fd boot, mproc__fd life,
                        keep_list *k) {
  size_t cap = 2 + o->nshare * MPROC__MAX_OBJ_FDS;
  k->n = 0;
  k->fds = malloc(cap * sizeof *k->fds);
  k->first = malloc((o->nshare ? o->nshare : 1) * sizeof *k->first);
  if (k->fds == NULL || k->first == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate the child's descriptor list");
  if (boot != MPROC__FD_INVALID)
    k->fds[k->n++] = boot;
  k->fds[k->n++] = life;
  for (size_t i = 0; i < o->nshare; i++) {
    const mproc__kind_ops *ops;
    int r = mproc__share_ops(o->share[i], i, &ops);
    if (r != 0)
      return r;
    k->first[i] = k->n;
    k->n += ops->fds(o->share[i], k->fds + k->n);
  }
  return 0;
}

static void keep_free(keep_list *k) {
  free(k->fds);
  free(k->first);
}

static int run_forked_child(mproc_fn target, const void *arg, size_t len,
                            const mproc_process_opts *o, const char *name) {
  mproc_ctx ctx;
  mproc__after_fork_child();
  memset(&ctx, 0, sizeof ctx);
  ctx.shared = (void **)o->share;
  ctx.nshared = o->nshare;
  ctx.name = (char *)name;
  mproc__child_exit(exit_status(target(&ctx, arg, len)));
  return 0;
}

/* Sends the child what it needs to run: the function, argument, name and objects. */
static int send_bootstrap(mproc__fd boot_w, mproc_fn target, const void *arg, size_t len,
                          const mproc_process_opts *o, const char *name, const keep_list *k,
                          const mproc__fd *child_fds) {
  mproc__buf b = {0};
  mproc_conn *c = NULL;
  char *module = NULL;
  uint64_t offset = 0;
  int r;

  if ((r = mproc__os_addr_to_ref((const void *)(uintptr_t)target, &module, &offset)) != 0)
    return r;
  mproc__buf_put_u64(&b, BOOT_MAGIC);
  mproc__buf_put_str(&b, module);
  mproc__buf_put_u64(&b, offset);
  mproc__buf_put_bytes(&b, arg, len);
  mproc__buf_put_str(&b, name);
  mproc__buf_put_u64(&b, (uint64_t)mproc__os_getpid());
  mproc__buf_put_u64(&b, (uint64_t)child_fds[1]); /* the lifeline */
  mproc__buf_put_u64(&b, mproc__os_death_signal_usable());
  mproc__buf_put_u64(&b, o->nshare);
  for (size_t i = 0; i < o->nshare; i++) {
    const mproc__kind_ops *ops;
    mproc__buf state = {0};
    size_t end = i + 1 < o->nshare ? k->first[i + 1] : k->n;
    mproc__share_ops(o->share[i], i, &ops); /* checked by collect_keep */
    mproc__buf_put_u64(&b, ((const mproc__obj *)o->share[i])->kind);
    mproc__buf_put_u64(&b, end - k->first[i]);
    for (size_t j = k->first[i]; j < end; j++)
      mproc__buf_put_u64(&b, (uint64_t)child_fds[j]);
    ops->encode(o->share[i], &state);
    if (state.err && !b.err)
      b.err = state.err;
    mproc__buf_put_bytes(&b, state.data, state.len);
    mproc__buf_free(&state);
  }
  free(module);
  if (b.err) {
    r = b.err;
  } else if ((r = mproc__conn_wrap(&c, boot_w, false, true, false)) == 0) {
    r = mproc_conn_send(c, b.data, b.len);
    free(c); /* the descriptor is the caller's */
  }
  mproc__buf_free(&b);
  return r;
}

static int start_spawn(mproc_process *p, mproc_fn target, const void *arg, size_t len,
                       const mproc_process_opts *o, mproc__fd life) {
  mproc__fd boot[2] = {MPROC__FD_INVALID, MPROC__FD_INVALID};
  mproc__fd *child_fds = NULL;
  keep_list k = {0};
  mproc__os_start start;
  char *module = NULL;
  uint64_t offset;
  int r;

  /* Refuse an unresolvable function here, not in the child. */
  if ((r = mproc__os_addr_to_ref((const void *)(uintptr_t)target, &module, &offset)) != 0)
    return r;
  free(module);
  if ((r = mproc__os_pipe(boot, false)) != 0)
    return r;
  if ((r = collect_keep(o, boot[0], life, &k)) != 0)
    goto out;
  child_fds = malloc(k.n * sizeof *child_fds);
  if (child_fds == NULL) {
    r = mproc__error(MPROC_ENOMEM, "cannot allocate the child's descriptor table");
    goto out;
  }
  start.keep = k.fds;
  start.nkeep = k.n;
  start.lifeline = life;
  if ((r = mproc__os_spawn(&p->os, mproc__exe, mproc__argv0, &start, child_fds)) != 0)
    goto out;
  mproc__os_close(boot[0]);
  boot[0] = MPROC__FD_INVALID;
  r = send_bootstrap(boot[1], target, arg, len, o, p->name, &k, child_fds);
  if (r != 0) {
    /* A child that cannot get its bootstrap must not linger. */
    mproc__os_proc_signal(&p->os, true);
    mproc__os_proc_wait(&p->os, MPROC_FOREVER);
    mproc__os_proc_release(&p->os);
  }
out:
  mproc__os_close(boot[0]);
  mproc__os_close(boot[1]);
  free(child_fds);
  keep_free(&k);
  return r;
}

static int start_fork(mproc_process *p, mproc_fn target, const void *arg, size_t len,
                      const mproc_process_opts *o, mproc__fd life) {
  keep_list k = {0};
  mproc__os_start start;
  int r;

  if ((r = collect_keep(o, MPROC__FD_INVALID, life, &k)) != 0)
    goto out;
  start.keep = k.fds;
  start.nkeep = k.n;
  start.lifeline = life;
  r = mproc__os_fork(&p->os, &start);
  if (r == 1)
    run_forked_child(target, arg, len, o, p->name); /* does not return */
out:
  keep_free(&k);
  return r;
}

int mproc_process_start(mproc_process **out, mproc_fn target, const void *arg, size_t len,
                        const mproc_process_opts *opts) {
  static const mproc_process_opts defaults;
  const mproc_process_opts *o = opts ? opts : &defaults;
  mproc_start_method method;
  mproc_process *p;
  mproc__fd life;
  int r;

  if (out == NULL || target == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_process_start: p and target must not be NULL");
  *out = NULL;
  if (arg == NULL && len > 0)
    return mproc__error(MPROC_EINVAL, "mproc_process_start: arg is NULL but len is %zu", len);
  if (o->share == NULL && o->nshare > 0)
    return mproc__error(MPROC_EINVAL, "mproc_process_start: share is NULL but nshare is %zu",
                        o->nshare);
  if ((r = mproc__check_init("mproc_process_start")) != 0 || (r = registry_ready()) != 0 ||
      (r = mproc__lifeline(&life)) != 0)
    return r;
  method = mproc__resolve_start(o->start_method);
  if (method != MPROC_START_FORK && method != MPROC_START_SPAWN)
    return mproc__error(MPROC_EINVAL, "mproc_process_start: unknown start method %d",
                        (int)o->start_method);
  registry_reap_detached();

  p = calloc(1, sizeof *p);
  if (p == NULL)
    return mproc__error(MPROC_ENOMEM, "cannot allocate a process");
  p->os.waitfd = MPROC__FD_INVALID;
  p->daemon = o->daemon;
  p->owner = mproc__os_getpid();
  if (o->name != NULL) {
    p->name = strdup(o->name);
  } else {
    char buf[32];
    snprintf(buf, sizeof buf, "Process-%u", apr_atomic_inc32(&process_counter) + 1);
    p->name = strdup(buf);
  }
  if (p->name == NULL) {
    free(p);
    return mproc__error(MPROC_ENOMEM, "cannot allocate a process name");
  }
  r = method == MPROC_START_FORK ? start_fork(p, target, arg, len, o, life)
                                 : start_spawn(p, target, arg, len, o, life);
  if (r != 0) {
    free(p->name);
    free(p);
    return r;
  }
  apr_thread_mutex_lock(reg.lock);
  p->next = reg.head;
  if (reg.head)
    reg.head->prev = p;
  reg.head = p;
  apr_thread_mutex_unlock(reg.lock);
  *out = p;
  return 0;
}

/* ------------------------------------------------------------ child */

static _Noreturn void child_die(const char *what, int r) {
  fprintf(stderr, "mproc: spawned child %ld: %s: %s\n", mproc__os_getpid(), what,
          r ? mproc_last_error() : "");
  mproc__os_exit(127);
}

void mproc__spawn_child_main(mproc__fd boot) {
  mproc_conn *c = NULL;
  void *msg = NULL;
  size_t len, nfds_total = 0;
  mproc__rd rd;
  mproc_ctx ctx;
  mproc__fd *keep = NULL;
  char *module;
  uint64_t offset, parent, life, n;
  bool use_signal;
  const void *arg;
  size_t arglen;
  void *fn;
  int r;

  if ((r = mproc__conn_wrap(&c, boot, true, false, false)) != 0 ||
      (r = mproc_conn_recv(c, &msg, &len, 0)) != 0)
    child_die("cannot read the bootstrap", r);
  mproc_conn_free(c);
  rd.p = msg;
  rd.end = rd.p + len;
  rd.err = 0;
  memset(&ctx, 0, sizeof ctx);
  if (mproc__rd_u64(&rd) != BOOT_MAGIC)
    child_die("the bootstrap is from another mproc version", 0);
  module = mproc__rd_str(&rd);
  offset = mproc__rd_u64(&rd);
  arg = mproc__rd_bytes(&rd, &arglen);
  ctx.name = mproc__rd_str(&rd);
  parent = mproc__rd_u64(&rd);
  life = mproc__rd_u64(&rd);
  use_signal = mproc__rd_u64(&rd) != 0;
  n = mproc__rd_u64(&rd);
  if (rd.err || module == NULL || n > (uint64_t)(rd.end - rd.p))
    child_die("malformed bootstrap", 0);
  ctx.shared = calloc(n ? (size_t)n : 1, sizeof *ctx.shared);
  keep = malloc((1 + (size_t)n * MPROC__MAX_OBJ_FDS) * sizeof *keep);
  if (ctx.shared == NULL || keep == NULL)
    child_die("out of memory", 0);
  ctx.nshared = (size_t)n;
  keep[nfds_total++] = (mproc__fd)life;
  for (size_t i = 0; i < ctx.nshared; i++) {
    uint64_t kind = mproc__rd_u64(&rd), nf = mproc__rd_u64(&rd);
    mproc__fd fds[MPROC__MAX_OBJ_FDS];
    mproc__kind_ops const *ops = NULL;
    mproc__rd state;
    size_t slen;
    const void *s;

    if (nf > MPROC__MAX_OBJ_FDS || (ops = mproc__kind_ops_get(kind)) == NULL)
      child_die("malformed bootstrap object", 0);
    for (size_t j = 0; j < nf; j++)
      keep[nfds_total++] = fds[j] = (mproc__fd)mproc__rd_u64(&rd);
    s = mproc__rd_bytes(&rd, &slen);
    if (rd.err)
      child_die("malformed bootstrap object", 0);
    state.p = s;
    state.end = state.p + slen;
    state.err = 0;
    if ((r = ops->decode(ops, &state, fds, (size_t)nf, &ctx.shared[i])) != 0)
      child_die("cannot rebuild a shared object", r);
  }
  if ((r = mproc__os_child_setup(keep, nfds_total, (long)parent, (mproc__fd)life,
                                  use_signal)) != 0)
    child_die("cannot set up the child", r);
  free(keep);
  if ((r = mproc__os_ref_to_addr(module, offset, &fn)) != 0)
    child_die("cannot find the function", r);
  free(module);
  mproc__child_exit(exit_status(((mproc_fn)(uintptr_t)fn)(&ctx, arg, arglen)));
}

/* ---------------------------------------------------------- control */

static int check_proc(const mproc_process *p, const char *fn) {
  if (p == NULL)
    return mproc__error(MPROC_EINVAL, "%s: p is NULL", fn);
  if (p->owner != mproc__os_getpid())
    return mproc__error(MPROC_ESTATE, "%s: %s is not a child of this process (a handle "
                                      "inherited through fork)", fn, p->name);
  return 0;
}

int mproc_process_join(mproc_process *p, double timeout) {
  int r = check_proc(p, "mproc_process_join");
  if (r != 0)
    return r;
  r = mproc__os_proc_wait(&p->os, timeout);
  if (r == MPROC_ETIMEDOUT)
    return mproc__error(r, "mproc_process_join: %s (pid %ld) still runs after %gs", p->name,
                        p->os.pid, timeout);
  return r;
}

int mproc_process_terminate(mproc_process *p) {
  int r = check_proc(p, "mproc_process_terminate");
  return r ? r : mproc__os_proc_signal(&p->os, false);
}

int mproc_process_kill(mproc_process *p) {
  int r = check_proc(p, "mproc_process_kill");
  return r ? r : mproc__os_proc_signal(&p->os, true);
}

int mproc_process_exitcode(mproc_process *p, int *code) {
  int r = check_proc(p, "mproc_process_exitcode");
  if (r != 0)
    return r;
  if (code == NULL)
    return mproc__error(MPROC_EINVAL, "mproc_process_exitcode: code is NULL");
  if (!p->os.reaped && (r = mproc__os_proc_wait(&p->os, 0)) != 0 && r != MPROC_ETIMEDOUT)
    return r;
  if (!p->os.reaped)
    return mproc__error(MPROC_ESTATE, "mproc_process_exitcode: %s (pid %ld) is still running",
                        p->name, p->os.pid);
  *code = p->os.exitcode;
  return 0;
}

bool mproc_process_is_alive(mproc_process *p) {
  if (p == NULL || p->os.reaped)
    return false;
  return mproc__os_proc_wait(&p->os, 0) == MPROC_ETIMEDOUT;
}

long mproc_process_pid(const mproc_process *p) { return p ? p->os.pid : -1; }

const char *mproc_process_name(const mproc_process *p) { return p ? p->name : NULL; }

bool mproc_process_daemon(const mproc_process *p) { return p != NULL && p->daemon; }

void mproc_process_free(mproc_process *p) {
  if (p == NULL)
    return;
  if (p->owner != mproc__os_getpid()) {
    /* A copy inherited through fork: the child is our parent's, not ours. */
    free(p->name);
    free(p);
    return;
  }
  if (p->daemon && !p->os.reaped) {
    mproc__os_proc_signal(&p->os, false);
    if (mproc__os_proc_wait(&p->os, 1.0) == MPROC_ETIMEDOUT)
      mproc__os_proc_signal(&p->os, true);
    mproc__os_proc_wait(&p->os, MPROC_FOREVER);
  }
  apr_thread_mutex_lock(reg.lock);
  if (!p->os.reaped && mproc__os_proc_wait(&p->os, 0) == MPROC_ETIMEDOUT) {
    p->detached = true; /* reaped later, at the latest at exit */
    p = NULL;
  } else {
    registry_unlink(p);
  }
  apr_thread_mutex_unlock(reg.lock);
  if (p != NULL)
    process_destroy(p);
}
