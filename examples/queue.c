/*
 * The tutorial's Queue program in C. In Python:
 *
 *   def f(q):
 *       print('(%s) process starts putting data...' % multiprocessing.current_process().pid)
 *       q.put('Python')
 *
 *   if __name__ == '__main__':
 *       q = multiprocessing.Queue()
 *       p = multiprocessing.Process(target=f, args=(q,))
 *       p.start()
 *       print('(%s) process starts getting data...' % multiprocessing.current_process().pid)
 *       print(q.get())  # Python
 *       p.join()
 *
 * Run it as `queue` (fork) or `queue spawn`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static int f(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0); /* args=(q,) */
  (void)arg;
  (void)len;
  printf("(%ld) process starts putting data...\n", mproc_getpid());
  fflush(stdout);
  return mproc_queue_put(q, "Python", strlen("Python"), MPROC_FOREVER) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  mproc_queue *q;
  mproc_process *p;
  void *msg;
  size_t len;
  int r;

  if ((r = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  if ((r = mproc_queue_create(&q, NULL)) != 0)
    goto fail;
  void *share[] = {q};
  mproc_process_opts opts = {.share = share, .nshare = 1};
  if ((r = mproc_process_start(&p, f, NULL, 0, &opts)) != 0)
    goto fail;
  printf("(%ld) process starts getting data...\n", mproc_getpid());
  if ((r = mproc_queue_get(q, &msg, &len, MPROC_FOREVER)) != 0)
    goto fail;
  printf("%.*s\n", (int)len, (const char *)msg);
  free(msg);
  if ((r = mproc_process_join(p, MPROC_FOREVER)) != 0)
    goto fail;
  mproc_process_free(p);
  mproc_queue_free(q);
  return 0;
fail:
  fprintf(stderr, "queue: %s\n", mproc_last_error());
  return 1;
}
