/*
 * The tutorial's apply_async program in C. In Python:
 *
 *   def action(name='default'):
 *       print('(%s) process running, argument: %s' % (os.getpid(), name))
 *       time.sleep(3)
 *
 *   if __name__ == '__main__':
 *       pool = multiprocessing.Pool(processes=4)
 *       pool.apply_async(action)
 *       pool.apply_async(action, args=('positional argument', ))
 *       pool.apply_async(action, kwds={'name': 'keyword argument'})
 *       pool.close()
 *       pool.join()
 *
 * C has no keyword arguments: the argument is bytes, here a string (or none for the
 * default). The sleep is shortened to 1 s. Run as `pool_apply_async` or with `spawn`.
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int action(mproc_ctx *ctx, const void *arg, size_t len) {
  const char *name = len ? arg : "default";
  int n = len ? (int)len : (int)strlen(name);
  (void)ctx;
  printf("(%ld) process running, argument: %.*s\n", mproc_getpid(), n, name);
  fflush(stdout);
  mproc_sleep(1);
  return 0;
}

int main(int argc, char **argv) {
  mproc_pool *pool;
  mproc_result *r[3];
  int e;

  if ((e = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  mproc_pool_opts opts = {.processes = 4};
  if ((e = mproc_pool_create(&pool, &opts)) != 0)
    goto fail;
  const char *positional = "positional argument", *keyword = "keyword argument";
  if ((e = mproc_pool_apply_async(pool, action, NULL, 0, NULL, &r[0])) != 0 ||
      (e = mproc_pool_apply_async(pool, action, positional, strlen(positional), NULL, &r[1])) !=
          0 ||
      (e = mproc_pool_apply_async(pool, action, keyword, strlen(keyword), NULL, &r[2])) != 0)
    goto fail;
  if ((e = mproc_pool_close(pool)) != 0 || (e = mproc_pool_join(pool)) != 0)
    goto fail;
  for (int i = 0; i < 3; i++) {
    if (mproc_result_successful(r[i]) != 1)
      fprintf(stderr, "task %d failed: %s\n", i, mproc_result_message(r[i]));
    mproc_result_free(r[i]);
  }
  mproc_pool_free(pool);
  return 0;
fail:
  fprintf(stderr, "pool_apply_async: %s\n", mproc_last_error());
  return 1;
}
