/* Uses an installed mproc through its public header only: init, version, one pipe round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static int fail(const char *what, int r) {
  fprintf(stderr, "consumer: %s: %s (%s)\n", what, mproc_strerror(r), mproc_last_error());
  return 1;
}

int main(int argc, char **argv) {
  int r = mproc_init(&argc, &argv);
  if (r != 0) return fail("mproc_init", r);

  printf("mproc %s\n", mproc_version_string());
  if (mproc_version() != MPROC_VERSION_HEX) {
    fprintf(stderr, "consumer: library version %#x, header version %#x\n", mproc_version(),
            (unsigned)MPROC_VERSION_HEX);
    return 1;
  }

  mproc_conn *a = NULL;
  mproc_conn *b = NULL;
  r = mproc_pipe(&a, &b, true);
  if (r != 0) return fail("mproc_pipe", r);

  int status = 1;
  void *data = NULL;
  size_t len = 0;
  r = mproc_conn_send(b, "ping", 4);
  if (r != 0) {
    fail("mproc_conn_send", r);
    goto out;
  }
  r = mproc_conn_recv(a, &data, &len, 0);
  if (r != 0) {
    fail("mproc_conn_recv", r);
    goto out;
  }
  if (len != 4 || memcmp(data, "ping", 4) != 0) {
    fprintf(stderr, "consumer: received %zu bytes, not \"ping\"\n", len);
    goto out;
  }
  printf("pipe round trip: ok\n");
  status = 0;

out:
  free(data);
  mproc_conn_free(a);
  mproc_conn_free(b);
  return status;
}
