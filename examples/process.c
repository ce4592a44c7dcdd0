/*
 * Process basics: start, join with a timeout, terminate, exit codes, daemon
 * children, as with Python's multiprocessing.Process.
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int worker(mproc_ctx *ctx, const void *arg, size_t len) {
  int n;
  memcpy(&n, arg, len < sizeof n ? len : sizeof n);
  printf("(%ld) %s: computing with %d\n", mproc_getpid(), mproc_ctx_name(ctx), n);
  return n * 2; /* the exit code the parent reads */
}

static int sleeper(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)ctx;
  (void)arg;
  (void)len;
  for (;;)
    mproc_sleep(3600);
  return 0; /* not reached: the parent terminates it */
}

int main(int argc, char **argv) {
  mproc_process *p, *s;
  int code, r, n = 21;

  if ((r = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  mproc_process_opts named = {.name = "doubler"};
  if ((r = mproc_process_start(&p, worker, &n, sizeof n, &named)) != 0 ||
      (r = mproc_process_join(p, MPROC_FOREVER)) != 0 ||
      (r = mproc_process_exitcode(p, &code)) != 0)
    goto fail;
  printf("%s (pid %ld) exited with %d\n", mproc_process_name(p), mproc_process_pid(p), code);
  mproc_process_free(p);

  mproc_process_opts daemon = {.daemon = true};
  if ((r = mproc_process_start(&s, sleeper, NULL, 0, &daemon)) != 0)
    goto fail;
  r = mproc_process_join(s, 0.2);
  printf("join(0.2) on a sleeper: %s, alive: %s\n", mproc_err_name(r),
         mproc_process_is_alive(s) ? "yes" : "no");
  if ((r = mproc_process_terminate(s)) != 0 || (r = mproc_process_join(s, MPROC_FOREVER)) != 0 ||
      (r = mproc_process_exitcode(s, &code)) != 0)
    goto fail;
  printf("after terminate: exit code %d (-SIGTERM)\n", code);
  mproc_process_free(s);
  return 0;
fail:
  fprintf(stderr, "process: %s\n", mproc_last_error());
  return 1;
}
