/*
 * The tutorial's Pipe program in C. In Python:
 *
 *   def f(conn):
 *       print('(%s) process starts sending data...' % multiprocessing.current_process().pid)
 *       conn.send('Python')
 *
 *   if __name__ == '__main__':
 *       parent_conn, child_conn = multiprocessing.Pipe()
 *       p = multiprocessing.Process(target=f, args=(child_conn, ))
 *       p.start()
 *       print('(%s) process starts receiving data...' % multiprocessing.current_process().pid)
 *       print(parent_conn.recv())
 *       p.join()
 *
 * Run it as `pipe` (fork) or `pipe spawn`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static int f(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0); /* args=(child_conn, ) */
  (void)arg;
  (void)len;
  printf("(%ld) process starts sending data...\n", mproc_getpid());
  fflush(stdout);
  return mproc_conn_send(conn, "Python", strlen("Python")) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  mproc_conn *parent_conn, *child_conn;
  mproc_process *p;
  void *msg;
  size_t len;
  int r;

  if ((r = mproc_init(&argc, &argv)) != 0)
    goto fail;
  if (argc > 1 && strcmp(argv[1], "spawn") == 0)
    mproc_set_start_method(MPROC_START_SPAWN);

  if ((r = mproc_pipe(&parent_conn, &child_conn, true)) != 0)
    goto fail;
  void *share[] = {child_conn};
  mproc_process_opts opts = {.share = share, .nshare = 1};
  if ((r = mproc_process_start(&p, f, NULL, 0, &opts)) != 0)
    goto fail;
  printf("(%ld) process starts receiving data...\n", mproc_getpid());
  if ((r = mproc_conn_recv(parent_conn, &msg, &len, 0)) != 0)
    goto fail;
  printf("%.*s\n", (int)len, (const char *)msg);
  free(msg);
  if ((r = mproc_process_join(p, MPROC_FOREVER)) != 0)
    goto fail;
  mproc_process_free(p);
  mproc_conn_free(parent_conn);
  mproc_conn_free(child_conn);
  return 0;
fail:
  fprintf(stderr, "pipe: %s\n", mproc_last_error());
  return 1;
}
