/*
 * The tutorial's map program in C. In Python:
 *
 *   def action(max):
 *       my_sum = 0
 *       for i in range(max):
 *           print('(%s) process running: %d' % (os.getpid(), i))
 *           my_sum += i
 *       return my_sum
 *
 *   if __name__ == '__main__':
 *       with multiprocessing.Pool(processes=4) as pool:
 *           results = pool.map(action, (50, 100, 150))
 *           print('--------------')
 *           for r in results:
 *               print(r)
 *
 * The per-step print is kept to every tenth step. Run as `pool_map` or with `spawn`.
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int action(mproc_ctx *ctx, const void *arg, size_t len) {
  long max, my_sum = 0;
  memcpy(&max, arg, len < sizeof max ? len : sizeof max);
  for (long i = 0; i < max; i++) {
    if (i % 10 == 0)
      printf("(%ld) process running: %ld\n", mproc_getpid(), i);
    my_sum += i;
  }
  fflush(stdout);
  return mproc_return(ctx, &my_sum, sizeof my_sum);
}

int main(int argc, char **argv) {
  const long maxes[] = {50, 100, 150};
  long results[3];
  mproc_pool *pool;
  int e;

  if ((e = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  mproc_pool_opts opts = {.processes = 4};
  if ((e = mproc_pool_create(&pool, &opts)) != 0)
    goto fail;
  /* Three elements of sizeof(long) in, three out; chunksize 0 is Python's default. */
  if ((e = mproc_pool_map(pool, action, maxes, 3, sizeof maxes[0], results, sizeof results[0],
                          0)) != 0)
    goto fail;
  printf("--------------\n");
  for (int i = 0; i < 3; i++)
    printf("%ld\n", results[i]);
  /* Leaving Python's `with` block terminates the pool; mproc_pool_free does the same. */
  mproc_pool_free(pool);
  return 0;
fail:
  fprintf(stderr, "pool_map: %s\n", mproc_last_error());
  return 1;
}
