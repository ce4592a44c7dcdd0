/* Uses the packaged mproc through its public header: init, then one task through a
 * pool of one worker, which proves the library, its APR and the worker start-up link
 * and run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

/* Runs in the worker: returns its argument, doubled. */
static int twice(mproc_ctx *ctx, const void *arg, size_t len) {
  int n;
  if (len != sizeof n) return mproc_fail(ctx, "expected an int, got %zu bytes", len);
  memcpy(&n, arg, sizeof n);
  n *= 2;
  return mproc_return(ctx, &n, sizeof n);
}

static int fail(const char *what, int r) {
  fprintf(stderr, "test_package: %s: %s (%s)\n", what, mproc_strerror(r), mproc_last_error());
  return EXIT_FAILURE;
}

int main(int argc, char **argv) {
  /* Under the spawn start method a worker re-executes this program, and mproc_init
   * runs the worker there instead of returning. */
  int r = mproc_init(&argc, &argv);
  if (r != 0) return fail("mproc_init", r);
  printf("mproc %s\n", mproc_version_string());

  mproc_pool *pool = NULL;
  r = mproc_pool_create(&pool, &(mproc_pool_opts){.processes = 1});
  if (r != 0) return fail("mproc_pool_create", r);

  int status = EXIT_FAILURE;
  int in = 21;
  void *out = NULL;
  size_t outlen = 0;
  r = mproc_pool_apply(pool, twice, &in, sizeof in, &out, &outlen);
  if (r != 0) {
    fail("mproc_pool_apply", r);
    goto out;
  }
  int got;
  if (outlen != sizeof got) {
    fprintf(stderr, "test_package: %zu bytes back, expected %zu\n", outlen, sizeof got);
    goto out;
  }
  memcpy(&got, out, sizeof got);
  if (got != 42) {
    fprintf(stderr, "test_package: twice(21) returned %d\n", got);
    goto out;
  }
  printf("pool of 1: twice(21) = %d\n", got);
  status = EXIT_SUCCESS;

out:
  free(out);
  mproc_pool_free(pool);
  return status;
}
