/*
 * A producer/consumer pipeline with a JoinableQueue: the parent puts work items,
 * three worker processes take them, compute, and report on a result queue; the
 * parent waits with join() until every item is marked done, then closes the queue
 * so the workers see the end (MPROC_EOF) and exit.
 *
 * Run it as `pipeline` (fork) or `pipeline spawn`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#define WORKERS 3
#define ITEMS 1000

typedef struct result {
  uint64_t n, collatz_steps;
} result;

static uint64_t collatz_steps(uint64_t n) {
  uint64_t steps = 0;
  while (n > 1) {
    n = n % 2 ? 3 * n + 1 : n / 2;
    steps++;
  }
  return steps;
}

static int worker(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *tasks = mproc_shared(ctx, 0), *results = mproc_shared(ctx, 1);
  uint64_t n;
  size_t got;
  int r;
  (void)arg;
  (void)len;
  /* Until the parent closes the queue and it is drained. */
  while ((r = mproc_queue_get_into(tasks, &n, sizeof n, &got, MPROC_FOREVER)) == 0) {
    result res = {n, collatz_steps(n)};
    if (mproc_queue_put(results, &res, sizeof res, MPROC_FOREVER) != 0 ||
        mproc_queue_task_done(tasks) != 0)
      return 1;
  }
  return r == MPROC_EOF ? 0 : 1;
}

int main(int argc, char **argv) {
  mproc_queue *tasks, *results;
  mproc_process *workers[WORKERS];
  result best = {0, 0}, res;
  size_t got;
  int r;

  if ((r = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  mproc_queue_opts joinable = {.joinable = true};
  if ((r = mproc_queue_create(&tasks, &joinable)) != 0 ||
      (r = mproc_queue_create(&results, NULL)) != 0)
    goto fail;
  void *share[] = {tasks, results};
  mproc_process_opts opts = {.share = share, .nshare = 2};
  for (int i = 0; i < WORKERS; i++)
    if ((r = mproc_process_start(&workers[i], worker, NULL, 0, &opts)) != 0)
      goto fail;

  for (uint64_t n = 1; n <= ITEMS; n++)
    if ((r = mproc_queue_put(tasks, &n, sizeof n, MPROC_FOREVER)) != 0)
      goto fail;
  /* Every item taken and marked done. */
  if ((r = mproc_queue_join(tasks, MPROC_FOREVER)) != 0)
    goto fail;
  printf("all %d items done; %zu results waiting\n", ITEMS, mproc_queue_qsize(results));
  for (int i = 0; i < ITEMS; i++) {
    if ((r = mproc_queue_get_into(results, &res, sizeof res, &got, MPROC_FOREVER)) != 0)
      goto fail;
    if (res.collatz_steps > best.collatz_steps)
      best = res;
  }
  printf("longest Collatz chain below %d: %" PRIu64 " (%" PRIu64 " steps)\n", ITEMS + 1, best.n,
         best.collatz_steps);

  mproc_queue_close(tasks); /* the workers' gets now end with MPROC_EOF */
  for (int i = 0; i < WORKERS; i++) {
    int code;
    if ((r = mproc_process_join(workers[i], MPROC_FOREVER)) != 0 ||
        (r = mproc_process_exitcode(workers[i], &code)) != 0)
      goto fail;
    if (code != 0)
      fprintf(stderr, "worker %d exited with %d\n", i, code);
    mproc_process_free(workers[i]);
  }
  mproc_queue_free(tasks);
  mproc_queue_free(results);
  return 0;
fail:
  fprintf(stderr, "pipeline: %s\n", mproc_last_error());
  return 1;
}
