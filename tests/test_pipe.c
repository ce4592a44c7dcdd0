/* Pipe and Connection: in one process, then across processes under the run's start
 * method (--start=fork or --start=spawn). --large runs only the > 4 GiB messages. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

#define MiB ((size_t)1 << 20)

/* ---------------------------------------------------------------- frames */

/* The wire format of src/conn.c, kept here in one place: a 16-byte header,
 *   uint32 magic "MPRM" (0x4d50524d) | uint32 flags (0) | uint64 payload length,
 * little-endian, then the payload. The raw-frame tests below check that it is right. */
#define FRAME_HEADER 16

static void frame_header(unsigned char h[FRAME_HEADER], uint64_t len) {
  const uint32_t magic = 0x4d50524du;
  for (int i = 0; i < 4; i++)
    h[i] = (unsigned char)(magic >> (8 * i));
  memset(h + 4, 0, 4);
  for (int i = 0; i < 8; i++)
    h[8 + i] = (unsigned char)(len >> (8 * i));
}

/* ---------------------------------------------------------------- helpers */

/* A message of more than a pipe buffer blocks its sender until it is read, so in one
 * process big messages are sent from a thread. */
typedef struct sender {
  test_thread th;
  mproc_conn *c;
  const void *data;
  size_t len;
  int r;
} sender;

static void *sender_main(void *arg) {
  sender *s = arg;
  s->r = mproc_conn_send(s->c, s->data, s->len);
  return NULL;
}

static void send_async(sender *s, mproc_conn *c, const void *data, size_t len) {
  s->c = c;
  s->data = data;
  s->len = len;
  s->r = 1;
  assert_int_equal(test_thread_start(&s->th, sender_main, s), 0);
}

static int send_wait(sender *s) {
  assert_int_equal(test_thread_join(&s->th, NULL), 0);
  return s->r;
}

/* Receives one message and checks it is len bytes of the pattern seed. */
static void recv_expect(mproc_conn *c, size_t len, uint32_t seed) {
  void *data = NULL;
  size_t got = (size_t)-1, bad;
  assert_ok(mproc_conn_recv(c, &data, &got, 0));
  assert_non_null(data);
  assert_int_equal(got, len);
  bad = check_pattern(data, got, seed);
  free(data);
  if (bad != SIZE_MAX)
    fail_msg("a %zu-byte message differs from what was sent at offset %zu", len, bad);
}

static void recv_expect_str(mproc_conn *c, const char *s) {
  void *data = NULL;
  size_t got = 0;
  assert_ok(mproc_conn_recv(c, &data, &got, 0));
  assert_int_equal(got, strlen(s));
  assert_memory_equal(data, s, got);
  free(data);
}

static void send_str(mproc_conn *c, const char *s) { assert_ok(mproc_conn_send(c, s, strlen(s))); }

/* Sends len bytes of pattern seed from a thread and receives them on r. */
static void round_trip(mproc_conn *w, mproc_conn *r, size_t len, uint32_t seed) {
  unsigned char *msg = pattern_alloc(len, seed);
  sender s;
  send_async(&s, w, msg, len);
  recv_expect(r, len, seed);
  assert_mproc(send_wait(&s), 0);
  free(msg);
}

static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 64 * MiB};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ------------------------------------------------------------ one process */

static void test_pipe_null_args(void **state) {
  mproc_conn *a = NULL, *b = NULL;
  (void)state;
  assert_mproc(mproc_pipe(NULL, &b, true), MPROC_EINVAL);
  assert_mproc(mproc_pipe(&a, NULL, true), MPROC_EINVAL);
  assert_mproc(mproc_pipe(NULL, NULL, false), MPROC_EINVAL);
  assert_last_error_mentions("mproc_pipe");
  assert_null(a);
  assert_null(b);
}

static void test_fileno_and_cloexec(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    intptr_t fa, fb;
    make_pipe(&a, &b, duplex);
    fa = mproc_conn_fileno(a);
    fb = mproc_conn_fileno(b);
    assert_true(fa >= 0);
    assert_true(fb >= 0);
    assert_int_not_equal(fa, fb);
    /* Never inherited by a program the user starts. */
    assert_int_equal(fd_state(fa), FD_PRIVATE);
    assert_int_equal(fd_state(fb), FD_PRIVATE);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

static void test_readable_writable(void **state) {
  mproc_conn *a, *b;
  (void)state;
  make_pipe(&a, &b, true);
  assert_true(mproc_conn_readable(a) && mproc_conn_writable(a));
  assert_true(mproc_conn_readable(b) && mproc_conn_writable(b));
  mproc_conn_free(a);
  mproc_conn_free(b);
  make_pipe(&a, &b, false);
  assert_true(mproc_conn_readable(a));
  assert_false(mproc_conn_writable(a));
  assert_false(mproc_conn_readable(b));
  assert_true(mproc_conn_writable(b));
  mproc_conn_free(a);
  mproc_conn_free(b);
  assert_false(mproc_conn_readable(NULL));
  assert_false(mproc_conn_writable(NULL));
}

static void test_duplex_both_ways(void **state) {
  mproc_conn *a, *b;
  (void)state;
  make_pipe(&a, &b, true);
  send_str(a, "to b");
  send_str(b, "to a");
  send_str(a, "to b again");
  recv_expect_str(b, "to b");
  recv_expect_str(a, "to a");
  recv_expect_str(b, "to b again");
  assert_int_equal(mproc_conn_poll(a, 0), 0);
  assert_int_equal(mproc_conn_poll(b, 0), 0);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_simplex_wrong_direction(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len = 0;
  char buf[8];
  (void)state;
  make_pipe(&a, &b, false);
  /* Each returns at once: nothing would ever arrive. */
  assert_mproc(mproc_conn_send(a, "x", 1), MPROC_EINVAL);
  assert_last_error_mentions("mproc_conn_send");
  assert_mproc(mproc_conn_recv(b, &data, &len, 0), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv_into(b, buf, sizeof buf, &len), MPROC_EINVAL);
  assert_mproc(mproc_conn_poll(b, 0), MPROC_EINVAL);
  assert_mproc(mproc_conn_poll(b, MPROC_FOREVER), MPROC_EINVAL);
  assert_null(data);
  /* The right direction still works afterwards. */
  send_str(b, "a receives");
  recv_expect_str(a, "a receives");
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_message_sizes(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    make_pipe(&a, &b, duplex);
    for (size_t i = 0; i < NSIZES; i++) {
      round_trip(b, a, sizes[i], (uint32_t)i + 1);
      if (duplex)
        round_trip(a, b, sizes[i], (uint32_t)i + 100);
    }
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

static void test_message_sizes_recv_into(void **state) {
  mproc_conn *a, *b;
  unsigned char *buf = malloc(64 * MiB);
  (void)state;
  assert_non_null(buf);
  make_pipe(&a, &b, false);
  for (size_t i = 0; i < NSIZES; i++) {
    unsigned char *msg = pattern_alloc(sizes[i], (uint32_t)i + 7);
    size_t len = (size_t)-1;
    sender s;
    send_async(&s, b, msg, sizes[i]);
    /* A buffer of exactly the message's size is enough. */
    assert_ok(mproc_conn_recv_into(a, buf, sizes[i], &len));
    assert_mproc(send_wait(&s), 0);
    assert_int_equal(len, sizes[i]);
    assert_int_equal(check_pattern(buf, len, (uint32_t)i + 7), SIZE_MAX);
    free(msg);
  }
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(buf);
}

static void test_zero_length_message(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len = 99;
  char buf[1];
  (void)state;
  make_pipe(&a, &b, true);
  assert_ok(mproc_conn_send(b, NULL, 0));
  assert_ok(mproc_conn_send(b, "", 0));
  assert_int_equal(mproc_conn_poll(a, 0), 1);
  /* Never NULL on success, even for 0 bytes. */
  assert_ok(mproc_conn_recv(a, &data, &len, 0));
  assert_non_null(data);
  assert_int_equal(len, 0);
  free(data);
  len = 99;
  assert_ok(mproc_conn_recv_into(a, buf, 0, &len));
  assert_int_equal(len, 0);
  assert_int_equal(mproc_conn_poll(a, 0), 0);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_recv_maxlen_too_small(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len = 0;
  unsigned char *big = pattern_alloc(MiB, 3);
  sender s;
  (void)state;
  make_pipe(&a, &b, true);

  {
    unsigned char *msg = pattern_alloc(100, 2);
    assert_ok(mproc_conn_send(b, msg, 100));
    free(msg);
  }
  assert_mproc(mproc_conn_recv(a, &data, &len, 99), MPROC_EMSGSIZE);
  assert_null(data);
  assert_mproc(mproc_conn_recv(a, &data, &len, 1), MPROC_EMSGSIZE);
  /* Still readable, and whole. */
  assert_int_equal(mproc_conn_poll(a, 0), 1);
  assert_ok(mproc_conn_recv(a, &data, &len, 100));
  assert_int_equal(len, 100);
  assert_int_equal(check_pattern(data, 100, 2), SIZE_MAX);
  free(data);

  /* A message larger than any pipe buffer: refused while its sender is blocked. */
  send_async(&s, b, big, MiB);
  data = NULL;
  assert_mproc(mproc_conn_recv(a, &data, &len, 10), MPROC_EMSGSIZE);
  assert_null(data);
  assert_mproc(mproc_conn_recv(a, &data, &len, MiB - 1), MPROC_EMSGSIZE);
  recv_expect(a, MiB, 3);
  assert_mproc(send_wait(&s), 0);

  /* The stream is in step: the next message is the next one sent. */
  send_str(b, "next");
  recv_expect_str(a, "next");
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(big);
}

static void test_recv_into_too_small(void **state) {
  mproc_conn *a, *b;
  unsigned char small[10], *big = malloc(2 * MiB);
  unsigned char *msg = pattern_alloc(MiB + 5, 4);
  size_t len = 0;
  sender s;
  (void)state;
  assert_non_null(big);
  make_pipe(&a, &b, false);

  send_async(&s, b, msg, MiB + 5);
  assert_mproc(mproc_conn_recv_into(a, small, sizeof small, &len), MPROC_EMSGSIZE);
  assert_int_equal(len, MiB + 5);
  len = 0;
  assert_mproc(mproc_conn_recv_into(a, big, MiB + 4, &len), MPROC_EMSGSIZE);
  assert_int_equal(len, MiB + 5);
  assert_int_equal(mproc_conn_poll(a, 0), 1);
  len = 0;
  assert_ok(mproc_conn_recv_into(a, big, 2 * MiB, &len));
  assert_int_equal(len, MiB + 5);
  assert_int_equal(check_pattern(big, len, 4), SIZE_MAX);
  assert_mproc(send_wait(&s), 0);

  /* A message refused by recv_into can be taken by recv, and vice versa. */
  send_str(b, "0123456789abcdef");
  assert_mproc(mproc_conn_recv_into(a, small, sizeof small, &len), MPROC_EMSGSIZE);
  assert_int_equal(len, 16);
  recv_expect_str(a, "0123456789abcdef");
  send_str(b, "fits");
  len = 0;
  assert_ok(mproc_conn_recv_into(a, small, sizeof small, &len));
  assert_int_equal(len, 4);
  assert_memory_equal(small, "fits", 4);

  mproc_conn_free(a);
  mproc_conn_free(b);
  free(big);
  free(msg);
}

static void test_set_max_message(void **state) {
  mproc_conn *a, *b;
  unsigned char *big = pattern_alloc(4 * MiB, 5), buf[64];
  void *data = NULL;
  size_t len = 0;
  sender s;
  (void)state;
  make_pipe(&a, &b, true);
  assert_ok(mproc_conn_set_max_message(a, 1000));

  /* At the limit: accepted. One byte more: refused and discarded. */
  assert_ok(mproc_conn_send(b, big, 1000));
  recv_expect(a, 1000, 5);
  assert_ok(mproc_conn_send(b, big, 1001));
  send_str(b, "after 1001");
  assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EMSGSIZE);
  assert_null(data);
  recv_expect_str(a, "after 1001");

  /* A frame far larger than the pipe buffer, while the sender is still writing it. */
  send_async(&s, b, big, 4 * MiB);
  assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EMSGSIZE);
  assert_mproc(send_wait(&s), 0);
  send_str(b, "after 4 MiB");
  recv_expect_str(a, "after 4 MiB");

  /* recv_into refuses it too, and the frame is gone afterwards. */
  assert_ok(mproc_conn_send(b, big, 2000));
  send_str(b, "after 2000");
  assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, &len), MPROC_EMSGSIZE);
  len = 0;
  assert_ok(mproc_conn_recv_into(a, buf, sizeof buf, &len));
  assert_int_equal(len, 10);
  assert_memory_equal(buf, "after 2000", 10);
  assert_int_equal(mproc_conn_poll(a, 0), 0);

  /* 0 lifts the limit. */
  assert_ok(mproc_conn_set_max_message(a, 0));
  round_trip(b, a, 4 * MiB, 5);
  assert_mproc(mproc_conn_set_max_message(NULL, 10), MPROC_EINVAL);
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(big);
}

static void test_poll(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    unsigned char buf[4];
    size_t len;
    make_pipe(&a, &b, duplex);
    assert_int_equal(mproc_conn_poll(a, 0), 0);
    assert_int_equal(mproc_conn_poll(a, 0.05), 0);
    send_str(b, "hi");
    assert_int_equal(mproc_conn_poll(a, 0), 1);
    assert_int_equal(mproc_conn_poll(a, 0.05), 1);
    assert_int_equal(mproc_conn_poll(a, MPROC_FOREVER), 1);
    /* Polling does not consume. */
    recv_expect_str(a, "hi");
    assert_int_equal(mproc_conn_poll(a, 0), 0);
    /* A message recv_into refused is still ready. */
    send_str(b, "too long");
    assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, &len), MPROC_EMSGSIZE);
    assert_int_equal(mproc_conn_poll(a, 0), 1);
    recv_expect_str(a, "too long");
    assert_int_equal(mproc_conn_poll(a, 0), 0);
    /* End of file counts as ready. */
    assert_ok(mproc_conn_close(b));
    assert_int_equal(mproc_conn_poll(a, 0), 1);
    assert_int_equal(mproc_conn_poll(a, MPROC_FOREVER), 1);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

static void test_eof_after_peer_close(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    void *data = NULL;
    size_t len;
    char buf[16];
    make_pipe(&a, &b, duplex);
    send_str(b, "first");
    assert_ok(mproc_conn_send(b, NULL, 0));
    send_str(b, "last");
    assert_ok(mproc_conn_close(b));
    /* What was sent before the close comes first. */
    recv_expect_str(a, "first");
    recv_expect_str(a, "");
    recv_expect_str(a, "last");
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_null(data);
    assert_true(strlen(mproc_last_error()) > 0);
    /* And stays at end of file. */
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, &len), MPROC_EOF);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

/* The other end of a duplex pipe sees end of file too, and free closes. */
static void test_eof_duplex_reverse_and_free(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len;
  (void)state;
  make_pipe(&a, &b, true);
  send_str(a, "before free");
  mproc_conn_free(a);
  recv_expect_str(b, "before free");
  assert_mproc(mproc_conn_recv(b, &data, &len, 0), MPROC_EOF);
  mproc_conn_free(b);
}

#ifdef _WIN32
/* Windows has no SIGPIPE: there only the error is checked. */
typedef int sigpipe_watch;
static void sigpipe_watch_start(sigpipe_watch *w) { *w = 0; }
static void sigpipe_watch_check(sigpipe_watch *w) { (void)w; }
#else
/* SIGPIPE's disposition and mask before the sends, to compare after them. */
typedef struct sigpipe_watch {
  struct sigaction original, before;
  sigset_t mask_before;
} sigpipe_watch;

static bool same_disposition(const struct sigaction *x, const struct sigaction *y) {
  return x->sa_handler == y->sa_handler && x->sa_flags == y->sa_flags;
}

static void sigpipe_watch_start(sigpipe_watch *w) {
  struct sigaction dfl;
  /* The default disposition kills: that is the case worth testing. */
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  assert_int_equal(sigaction(SIGPIPE, &dfl, &w->original), 0);
  assert_int_equal(sigaction(SIGPIPE, NULL, &w->before), 0);
  assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &w->mask_before), 0);
}

static void sigpipe_watch_check(sigpipe_watch *w) {
  struct sigaction after;
  sigset_t mask_after, pending;
  assert_int_equal(sigaction(SIGPIPE, NULL, &after), 0);
  assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask_after), 0);
  assert_int_equal(sigpending(&pending), 0);
  assert_int_equal(sigaction(SIGPIPE, &w->original, NULL), 0);
  assert_true(same_disposition(&w->before, &after));
  assert_int_equal(sigismember(&w->mask_before, SIGPIPE), sigismember(&mask_after, SIGPIPE));
  assert_int_equal(sigismember(&pending, SIGPIPE), 0);
}
#endif

/* Sending to a pipe whose reader is gone: an error, never the SIGPIPE that would kill
 * the process, and the disposition, mask and pending set are as they were. */
static void test_send_to_closed_reader_no_sigpipe(void **state) {
  sigpipe_watch w;
  unsigned char *big = pattern_alloc(8 * MiB, 6);
  (void)state;

  sigpipe_watch_start(&w);
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    make_pipe(&a, &b, duplex);
    assert_ok(mproc_conn_close(a));
    /* A closed peer is the end of the connection: MPROC_EOF. */
    assert_mproc(mproc_conn_send(b, "x", 1), MPROC_EOF);
    assert_mproc(mproc_conn_send(b, NULL, 0), MPROC_EOF);
    assert_mproc(mproc_conn_send(b, big, 8 * MiB), MPROC_EOF);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
  /* The reader goes away in the middle of a large message. */
  {
    mproc_conn *a, *b;
    sender s;
    make_pipe(&a, &b, false);
    send_async(&s, b, big, 8 * MiB);
    sleep_seconds(0.05);
    mproc_conn_free(a);
    assert_mproc(send_wait(&s), MPROC_EOF);
    mproc_conn_free(b);
  }

  sigpipe_watch_check(&w);
  free(big);
}

static void test_closed_connection(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len, ready[1], nready = 7;
  char buf[8];
  intptr_t fd;
  (void)state;
  make_pipe(&a, &b, true);
  send_str(b, "unread");
  fd = mproc_conn_fileno(a);
  assert_ok(mproc_conn_close(a));
  assert_int_equal(mproc_conn_fileno(a), -1);
  /* The descriptor itself is closed. */
  assert_int_equal(fd_state(fd), FD_CLOSED);
  assert_mproc(mproc_conn_send(a, "x", 1), MPROC_ECLOSED);
  assert_last_error_mentions("mproc_conn_send");
  assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_ECLOSED);
  assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, &len), MPROC_ECLOSED);
  assert_mproc(mproc_conn_poll(a, 0), MPROC_ECLOSED);
  assert_mproc(mproc_conn_poll(a, MPROC_FOREVER), MPROC_ECLOSED);
  assert_mproc(mproc_wait(&a, 1, 0, ready, &nready), MPROC_ECLOSED);
  assert_false(mproc_conn_readable(a));
  assert_false(mproc_conn_writable(a));
  /* Closing twice is harmless. */
  {
    int r = mproc_conn_close(a);
    assert_true(r == 0 || r == MPROC_ECLOSED);
  }
  assert_int_equal(mproc_conn_fileno(a), -1);
  assert_null(data);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_null_connection_args(void **state) {
  mproc_conn *a, *b;
  void *data = NULL;
  size_t len = 0, ready[2], nready = 0;
  char buf[8];
  (void)state;
  make_pipe(&a, &b, true);
  mproc_conn *both[2] = {a, NULL};

  assert_mproc(mproc_conn_send(NULL, "x", 1), MPROC_EINVAL);
  assert_mproc(mproc_conn_send(a, NULL, 5), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv(NULL, &data, &len, 0), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv(a, NULL, &len, 0), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv(a, &data, NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv_into(NULL, buf, sizeof buf, &len), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv_into(a, NULL, 5, &len), MPROC_EINVAL);
  assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, NULL), MPROC_EINVAL);
  assert_mproc(mproc_conn_poll(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_wait(NULL, 1, 0, ready, &nready), MPROC_EINVAL);
  assert_mproc(mproc_wait(both, 1, 0, NULL, &nready), MPROC_EINVAL);
  assert_mproc(mproc_wait(both, 1, 0, ready, NULL), MPROC_EINVAL);
  assert_mproc(mproc_wait(both, 2, 0, ready, &nready), MPROC_EINVAL);
  assert_mproc(mproc_conn_close(NULL), MPROC_EINVAL);
  assert_mproc(mproc_conn_set_max_message(NULL, 0), MPROC_EINVAL);
  assert_int_equal(mproc_conn_fileno(NULL), -1);
  mproc_conn_free(NULL);
  assert_null(data);

  /* None of it disturbed the pipe. */
  send_str(b, "still fine");
  recv_expect_str(a, "still fine");
  mproc_conn_free(a);
  mproc_conn_free(b);
}

/* Bytes mproc did not send: a clear error, not a crash or an allocation of the
 * "length" the garbage happens to hold. */
static void test_garbage_is_eproto(void **state) {
  /* Not the magic, and a length field of about 2^63. */
  static const unsigned char garbage[16] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    void *data = NULL;
    size_t len;
    char buf[8];
    make_pipe(&a, &b, duplex);
    assert_true(write_fd_all(mproc_conn_fileno(b), garbage, sizeof garbage));
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EPROTO);
    assert_null(data);
    assert_true(strlen(mproc_last_error()) > 0);
    /* The stream cannot be trusted any more; later calls fail the same way rather than
     * block or read the rest as frames. */
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EPROTO);
    assert_mproc(mproc_conn_recv_into(a, buf, sizeof buf, &len), MPROC_EPROTO);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

/* A frame written by hand with frame_header() is read as a message: the helper the
 * next tests rely on matches the library. */
static void test_raw_frame_is_read(void **state) {
  unsigned char frames[3 * FRAME_HEADER + 10];
  mproc_conn *a, *b;
  (void)state;
  frame_header(frames, 5);
  memcpy(frames + FRAME_HEADER, "hello", 5);
  frame_header(frames + FRAME_HEADER + 5, 0);
  frame_header(frames + 2 * FRAME_HEADER + 5, 5);
  memcpy(frames + 3 * FRAME_HEADER + 5, "world", 5);
  for (int duplex = 0; duplex < 2; duplex++) {
    make_pipe(&a, &b, duplex);
    assert_true(write_fd_all(mproc_conn_fileno(b), frames, sizeof frames));
    recv_expect_str(a, "hello");
    recv_expect_str(a, "");
    recv_expect_str(a, "world");
    assert_int_equal(mproc_conn_poll(a, 0), 0);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

/* The writer stops in the middle of a header, or of a payload: end of file, nothing
 * partial. */
static void test_truncated_frame_is_eof(void **state) {
  unsigned char head[FRAME_HEADER];
  unsigned char *payload = pattern_alloc(1000, 8);
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    void *data = NULL;
    size_t len;

    make_pipe(&a, &b, duplex);
    frame_header(head, 10);
    assert_true(write_fd_all(mproc_conn_fileno(b), head, 5));
    assert_ok(mproc_conn_close(b));
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_null(data);
    mproc_conn_free(a);
    mproc_conn_free(b);

    make_pipe(&a, &b, duplex);
    send_str(b, "whole");
    frame_header(head, MiB);
    assert_true(write_fd_all(mproc_conn_fileno(b), head, sizeof head));
    assert_true(write_fd_all(mproc_conn_fileno(b), payload, 1000));
    assert_ok(mproc_conn_close(b));
    recv_expect_str(a, "whole");
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_null(data);
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
  free(payload);
}

static int cmp_size(const void *x, const void *y) {
  size_t a = *(const size_t *)x, b = *(const size_t *)y;
  return a < b ? -1 : a > b;
}

/* mproc_wait over n simplex pipes, with the ones at indices marked[] ready (a message,
 * or end of file for every third of them). */
static void wait_case(size_t n, const size_t *marked, size_t nmarked) {
  mproc_conn **r = calloc(n, sizeof *r), **w = calloc(n, sizeof *w);
  size_t *ready = calloc(n, sizeof *ready), nready = 99;
  assert_non_null(r);
  assert_non_null(w);
  assert_non_null(ready);
  for (size_t i = 0; i < n; i++)
    make_pipe(&r[i], &w[i], false);

  /* None ready: timeout 0, then a short positive one. */
  assert_ok(mproc_wait(r, n, 0, ready, &nready));
  assert_int_equal(nready, 0);
  nready = 99;
  assert_ok(mproc_wait(r, n, 0.05, ready, &nready));
  assert_int_equal(nready, 0);

  for (size_t k = 0; k < nmarked; k++) {
    if (k % 3 == 2)
      assert_ok(mproc_conn_close(w[marked[k]]));
    else
      send_str(w[marked[k]], "ready");
  }
  nready = 0;
  assert_ok(mproc_wait(r, n, 0, ready, &nready));
  assert_int_equal(nready, nmarked);
  qsort(ready, nready, sizeof *ready, cmp_size);
  for (size_t k = 0; k < nmarked; k++)
    assert_int_equal(ready[k], marked[k]);
  nready = 0;
  assert_ok(mproc_wait(r, n, MPROC_FOREVER, ready, &nready));
  assert_int_equal(nready, nmarked);
  nready = 0;
  assert_ok(mproc_wait(r, n, 1.0, ready, &nready));
  assert_int_equal(nready, nmarked);

  for (size_t i = 0; i < n; i++) {
    mproc_conn_free(r[i]);
    mproc_conn_free(w[i]);
  }
  free(r);
  free(w);
  free(ready);
}

static void test_wait_several(void **state) {
  static const size_t marked[] = {1, 4, 5};
  (void)state;
  wait_case(7, marked, 3);
}

static void test_wait_one_and_duplex(void **state) {
  mproc_conn *a, *b;
  mproc_conn *set[2];
  size_t ready[2], nready = 9;
  (void)state;
  make_pipe(&a, &b, true);
  set[0] = a;
  set[1] = b;
  assert_ok(mproc_wait(set, 2, 0, ready, &nready));
  assert_int_equal(nready, 0);
  send_str(a, "for b");
  assert_ok(mproc_wait(set, 2, MPROC_FOREVER, ready, &nready));
  assert_int_equal(nready, 1);
  assert_int_equal(ready[0], 1);
  recv_expect_str(b, "for b");
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static void test_wait_more_than_64(void **state) {
  static const size_t marked[] = {0, 62, 63, 64, 65, 69};
  (void)state;
  if (!raise_nofile((size_t)count_open_fds() + 2 * 70 + 64))
    skip();
  wait_case(70, marked, 6);
}

static void test_wait_more_than_1024(void **state) {
  static const size_t marked[] = {0, 63, 64, 511, 1023, 1024, 1025, 1099};
  (void)state;
  /* FD_SETSIZE is 1024: a select()-based wait would fail beyond it. */
  if (!raise_nofile((size_t)count_open_fds() + 2 * 1100 + 64))
    skip();
  wait_case(1100, marked, 8);
}

/* ---------------------------------------------------- across processes */

static int child_tutorial(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  if (conn == NULL)
    return 10;
  return mproc_conn_send(conn, "Python", 6) == 0 ? 0 : 11;
}

/* The tutorial's program: the child sends "Python" over its end. */
static void test_tutorial_program(void **state) {
  mproc_conn *parent_conn, *child_conn;
  mproc_process *p;
  void *share[1];
  (void)state;
  make_pipe(&parent_conn, &child_conn, true);
  share[0] = child_conn;
  assert_ok(tstart(&p, child_tutorial, NULL, 0, share, 1));
  recv_expect_str(parent_conn, "Python");
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(parent_conn);
  mproc_conn_free(child_conn);
}

/* Echoes every message until end of file; the exit code counts them. */
static int child_echo(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  int n = 0, r;
  (void)arg;
  (void)len;
  child_enter();
  for (;;) {
    void *data;
    size_t got;
    r = mproc_conn_recv(conn, &data, &got, 0);
    if (r == MPROC_EOF)
      return n;
    if (r != 0)
      return 200;
    r = mproc_conn_send(conn, data, got);
    free(data);
    if (r != 0)
      return 201;
    n++;
  }
}

static void test_echo_server(void **state) {
  static const size_t echo_sizes[] = {0, 1, 65535, 65536, 65537, MiB, 64 * MiB, 3};
  const size_t n = sizeof echo_sizes / sizeof echo_sizes[0];
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  (void)state;
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_echo, NULL, 0, share, 1));
  /* The parent's copy of the child's end must go, or the child never sees EOF. */
  assert_ok(mproc_conn_close(b));
  for (size_t i = 0; i < n; i++) {
    unsigned char *msg = pattern_alloc(echo_sizes[i], (uint32_t)i + 20);
    assert_ok(mproc_conn_send(a, msg, echo_sizes[i]));
    free(msg);
    recv_expect(a, echo_sizes[i], (uint32_t)i + 20);
  }
  assert_ok(mproc_conn_close(a));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), (int)n);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_wait_for_eof(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  int r;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(conn, "ready", 5) != 0)
    return 10;
  r = mproc_conn_recv(conn, &data, &got, 0);
  return r == MPROC_EOF ? 42 : 11;
}

/* The child sees end of file when the parent closes its end. */
static void test_child_sees_eof(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  (void)state;
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_wait_for_eof, NULL, 0, share, 1));
  recv_expect_str(a, "ready");
  assert_ok(mproc_conn_close(a));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 42);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_send_bye(mproc_ctx *ctx, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  child_enter();
  return mproc_conn_send(mproc_shared(ctx, 0), "bye", 3) == 0 ? 0 : 10;
}

/* The parent sees end of file once the child exited and the parent's own copy of the
 * child's end is closed. */
static void test_parent_sees_eof(void **state) {
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    mproc_process *p;
    void *share[1], *data = NULL;
    size_t len;
    make_pipe(&a, &b, duplex);
    share[0] = b;
    assert_ok(tstart(&p, child_send_bye, NULL, 0, share, 1));
    assert_ok(mproc_conn_close(b));
    recv_expect_str(a, "bye");
    /* Bounded, so that a leaked copy of b fails the test instead of hanging it. */
    assert_int_equal(mproc_conn_poll(a, 20), 1);
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_null(data);
    assert_ok(tjoin(p, 30));
    assert_int_equal(texitcode(p), 0);
    tfree(p);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
  (void)state;
}

/* Writes the header of a 1 MiB frame and only 1000 bytes of it, then exits. */
static int child_die_mid_message(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  unsigned char head[FRAME_HEADER], payload[1000];
  intptr_t fd = mproc_conn_fileno(conn);
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(conn, "whole", 5) != 0)
    return 10;
  frame_header(head, MiB);
  memset(payload, 'p', sizeof payload);
  if (!write_fd_all(fd, head, sizeof head) || !write_fd_all(fd, payload, sizeof payload))
    return 11;
  return 0;
}

static void test_peer_dies_mid_message(void **state) {
  (void)state;
  for (int duplex = 0; duplex < 2; duplex++) {
    mproc_conn *a, *b;
    mproc_process *p;
    void *share[1], *data = NULL;
    size_t len = 0;
    make_pipe(&a, &b, duplex);
    share[0] = b;
    assert_ok(tstart(&p, child_die_mid_message, NULL, 0, share, 1));
    assert_ok(mproc_conn_close(b));
    recv_expect_str(a, "whole");
    assert_ok(tjoin(p, 30));
    assert_int_equal(texitcode(p), 0);
    assert_int_equal(mproc_conn_poll(a, 20), 1);
    assert_mproc(mproc_conn_recv(a, &data, &len, 0), MPROC_EOF);
    assert_null(data);
    tfree(p);
    mproc_conn_free(a);
    mproc_conn_free(b);
  }
}

/* Receives three pattern messages on a simplex read end; 0 when all were right. */
static int child_simplex_reader(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  static const size_t lens[] = {0, 65537, 8 * MiB};
  (void)arg;
  (void)len;
  child_enter();
  if (!mproc_conn_readable(conn) || mproc_conn_writable(conn))
    return 9;
  if (mproc_conn_send(conn, "x", 1) != MPROC_EINVAL)
    return 10;
  for (size_t i = 0; i < 3; i++) {
    void *data;
    size_t got;
    if (mproc_conn_recv(conn, &data, &got, 0) != 0)
      return 20 + (int)i;
    if (got != lens[i] || check_pattern(data, got, 30 + (uint32_t)i) != SIZE_MAX)
      return 30 + (int)i;
    free(data);
  }
  return 0;
}

static void test_simplex_to_child(void **state) {
  static const size_t lens[] = {0, 65537, 8 * MiB};
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  (void)state;
  make_pipe(&a, &b, false);
  share[0] = a;
  assert_ok(tstart(&p, child_simplex_reader, NULL, 0, share, 1));
  for (size_t i = 0; i < 3; i++) {
    unsigned char *msg = pattern_alloc(lens[i], 30 + (uint32_t)i);
    assert_ok(mproc_conn_send(b, msg, lens[i]));
    free(msg);
  }
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_recv_pending(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_recv(conn, &data, &got, 0) != 0)
    return 10;
  if (got != 1000 || check_pattern(data, got, 40) != SIZE_MAX)
    return 11;
  free(data);
  /* Then the next one, in step. */
  if (mproc_conn_recv(conn, &data, &got, 0) != 0)
    return 12;
  if (got != 4 || memcmp(data, "next", 4) != 0)
    return 13;
  free(data);
  return 0;
}

/* A message the parent refused with recv_into (too small) stays readable for the child
 * the connection is handed to. */
static void test_refused_message_survives_handover(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  unsigned char small[10], *msg = pattern_alloc(1000, 40);
  size_t len = 0;
  (void)state;
  make_pipe(&a, &b, true);
  assert_ok(mproc_conn_send(b, msg, 1000));
  send_str(b, "next");
  assert_mproc(mproc_conn_recv_into(a, small, sizeof small, &len), MPROC_EMSGSIZE);
  assert_int_equal(len, 1000);
  share[0] = a;
  assert_ok(tstart(&p, child_recv_pending, NULL, 0, share, 1));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(msg);
}

static int child_max_message(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_recv(conn, &data, &got, 0) != MPROC_EMSGSIZE)
    return 10;
  if (mproc_conn_recv(conn, &data, &got, 0) != 0)
    return 11;
  if (got != 2 || memcmp(data, "ok", 2) != 0)
    return 12;
  free(data);
  return 0;
}

/* The limit set with mproc_conn_set_max_message travels with the connection. */
static void test_max_message_crosses(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  unsigned char *msg = pattern_alloc(MiB, 41);
  (void)state;
  make_pipe(&a, &b, false);
  assert_ok(mproc_conn_set_max_message(a, 100));
  share[0] = a;
  assert_ok(tstart(&p, child_max_message, NULL, 0, share, 1));
  assert_ok(mproc_conn_send(b, msg, MiB));
  send_str(b, "ok");
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
  free(msg);
}

/* Two shared connections; the child waits on both and answers on the one that spoke. */
static int child_wait_two(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *c[2];
  size_t ready[2], nready = 0;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_shared_count(ctx) != 2 || mproc_shared(ctx, 2) != NULL)
    return 10;
  c[0] = mproc_shared(ctx, 0);
  c[1] = mproc_shared(ctx, 1);
  if (c[0] == NULL || c[1] == NULL || c[0] == c[1])
    return 11;
  if (mproc_wait(c, 2, 0, ready, &nready) != 0 || nready != 0)
    return 12;
  if (mproc_conn_send(c[0], "go", 2) != 0)
    return 13;
  if (mproc_wait(c, 2, 30, ready, &nready) != 0 || nready != 1 || ready[0] != 1)
    return 14;
  if (mproc_conn_send(c[1], "one", 3) != 0)
    return 15;
  return 0;
}

static void test_two_shared_connections(void **state) {
  mproc_conn *a0, *b0, *a1, *b1;
  mproc_process *p;
  void *share[2];
  (void)state;
  make_pipe(&a0, &b0, true);
  make_pipe(&a1, &b1, true);
  share[0] = b0;
  share[1] = b1;
  assert_ok(tstart(&p, child_wait_two, NULL, 0, share, 2));
  recv_expect_str(a0, "go");
  send_str(a1, "to 1");
  recv_expect_str(a1, "one");
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a0);
  mproc_conn_free(b0);
  mproc_conn_free(a1);
  mproc_conn_free(b1);
}

/* ------------------------------------------------ > 4 GiB (--large only) */

#define LARGE ((((size_t)4) << 30) + 17)

static bool enough_memory(size_t need) { return available_memory() >= need; }

static int child_send_large(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  unsigned char *msg;
  int r;
  (void)arg;
  (void)len;
  child_enter();
  msg = malloc(LARGE);
  if (msg == NULL)
    return 10;
  fill_pattern(msg, LARGE, 50);
  r = mproc_conn_send(conn, msg, LARGE);
  free(msg);
  return r == 0 ? 0 : 11;
}

static void test_large_child_to_parent(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  (void)state;
  if (sizeof(size_t) < 8 || !enough_memory(2 * LARGE + ((size_t)1 << 30)))
    skip();
  make_pipe(&a, &b, true);
  share[0] = b;
  assert_ok(tstart(&p, child_send_large, NULL, 0, share, 1));
  recv_expect(a, LARGE, 50);
  assert_ok(tjoin(p, 60));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static int child_recv_large(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_conn *conn = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_recv(conn, &data, &got, 0) != 0)
    return 10;
  if (got != LARGE)
    return 11;
  if (check_pattern(data, got, 51) != SIZE_MAX)
    return 12;
  free(data);
  return 0;
}

static void test_large_parent_to_child(void **state) {
  mproc_conn *a, *b;
  mproc_process *p;
  void *share[1];
  unsigned char *msg;
  (void)state;
  if (sizeof(size_t) < 8 || !enough_memory(2 * LARGE + ((size_t)1 << 30)))
    skip();
  make_pipe(&a, &b, false);
  share[0] = a;
  assert_ok(tstart(&p, child_recv_large, NULL, 0, share, 1));
  msg = pattern_alloc(LARGE, 51);
  assert_ok(mproc_conn_send(b, msg, LARGE));
  free(msg);
  assert_ok(tjoin(p, 60));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_conn_free(a);
  mproc_conn_free(b);
}

static const struct CMUnitTest pipe_tests[] = {
    T(test_pipe_null_args),
    T(test_fileno_and_cloexec),
    T(test_readable_writable),
    T(test_duplex_both_ways),
    T(test_simplex_wrong_direction),
    T(test_message_sizes),
    T(test_message_sizes_recv_into),
    T(test_zero_length_message),
    T(test_recv_maxlen_too_small),
    T(test_recv_into_too_small),
    T(test_set_max_message),
    T(test_poll),
    T(test_eof_after_peer_close),
    T(test_eof_duplex_reverse_and_free),
    T(test_send_to_closed_reader_no_sigpipe),
    T(test_closed_connection),
    T(test_null_connection_args),
    T(test_garbage_is_eproto),
    T(test_raw_frame_is_read),
    T(test_truncated_frame_is_eof),
    T(test_wait_several),
    T(test_wait_one_and_duplex),
    T(test_wait_more_than_64),
    T(test_wait_more_than_1024),
};

static const struct CMUnitTest cross_tests[] = {
    T(test_tutorial_program),
    T(test_echo_server),
    T(test_child_sees_eof),
    T(test_parent_sees_eof),
    T(test_peer_dies_mid_message),
    T(test_simplex_to_child),
    T(test_refused_message_survives_handover),
    T(test_max_message_crosses),
    T(test_two_shared_connections),
};

static const struct CMUnitTest large_tests[] = {
    T(test_large_child_to_parent),
    T(test_large_parent_to_child),
};

const test_group test_groups[] = {
    TEST_GROUP("pipe", pipe_tests, TEST_NORMAL),
    TEST_GROUP("pipe across processes", cross_tests, TEST_NORMAL),
    TEST_GROUP("pipe > 4 GiB", large_tests, TEST_LARGE),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
const test_role *const test_roles = NULL;
const size_t test_nroles = 0;
