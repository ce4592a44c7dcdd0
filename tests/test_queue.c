/* Queue: the API and its errors in one process, then across processes under the run's
 * start method (--start=fork or --start=spawn): many producers and consumers, and
 * producers and consumers killed at random moments. --large runs only the > 4 GiB
 * messages and the full-size stress.
 *
 * MPROC_QUEUE_STRESS_N sets the messages per producer of the 4 x 4 stress (2,000 by
 * default, 200,000 in the --large run); MPROC_TEST_SEED fixes the random choices of the
 * crash tests (printed at their start, so that a failure can be replayed). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---------------------------------------------------------------- helpers */

static mproc_queue *make_queue(size_t maxsize, bool joinable, size_t max_message,
                               size_t buffer_size) {
  mproc_queue_opts o = {0};
  mproc_queue *q = NULL;
  o.maxsize = maxsize;
  o.joinable = joinable;
  o.max_message = max_message;
  o.buffer_size = buffer_size;
  assert_ok(mproc_queue_create(&q, &o));
  assert_non_null(q);
  return q;
}

/* Puts len bytes of the pattern seed (within timeout seconds). */
static void put_pattern(mproc_queue *q, size_t len, uint32_t seed, double timeout) {
  unsigned char *msg = pattern_alloc(len, seed);
  assert_ok(mproc_queue_put(q, msg, len, timeout));
  free(msg);
}

/* Gets one message and checks that it is len bytes of the pattern seed. */
static void get_expect(mproc_queue *q, size_t len, uint32_t seed) {
  void *data = NULL;
  size_t got = (size_t)-1, bad;
  assert_ok(mproc_queue_get(q, &data, &got, 30));
  assert_non_null(data);
  if (got != len)
    fail_msg("got a %zu-byte message, expected %zu bytes", got, len);
  bad = check_pattern(data, got, seed);
  free(data);
  if (bad != SIZE_MAX)
    fail_msg("a %zu-byte message differs from what was put at offset %zu", len, bad);
}

static void put_str(mproc_queue *q, const char *s) {
  assert_ok(mproc_queue_put(q, s, strlen(s), 30));
}

static void get_expect_str(mproc_queue *q, const char *s, double timeout) {
  void *data = NULL;
  size_t got = (size_t)-1;
  assert_ok(mproc_queue_get(q, &data, &got, timeout));
  assert_non_null(data);
  if (got != strlen(s) || memcmp(data, s, got) != 0)
    fail_msg("got \"%.*s\" (%zu bytes), expected \"%s\"", (int)(got < 200 ? got : 200),
             (const char *)data, got, s);
  free(data);
}

/* A message larger than the ring cannot be put in one process without a consumer, so
 * such puts run on a thread while the test's thread gets. */
typedef struct qputter {
  test_thread th;
  mproc_queue *q;
  const void *const *msgs;
  const size_t *lens;
  size_t n;
  double timeout;
  int r;
} qputter;

static void *qputter_main(void *arg) {
  qputter *p = arg;
  p->r = 0;
  for (size_t i = 0; i < p->n && p->r == 0; i++)
    p->r = mproc_queue_put(p->q, p->msgs[i], p->lens[i], p->timeout);
  return NULL;
}

/* Puts msgs[0..n) in order from a thread. */
static void put_async(qputter *p, mproc_queue *q, const void *const *msgs, const size_t *lens,
                      size_t n) {
  p->q = q;
  p->msgs = msgs;
  p->lens = lens;
  p->n = n;
  p->timeout = 60;
  p->r = 1;
  assert_int_equal(test_thread_start(&p->th, qputter_main, p), 0);
}

static int put_wait(qputter *p) {
  assert_int_equal(test_thread_join(&p->th, NULL), 0);
  return p->r;
}

/* Puts one pattern message from a thread and gets it here. */
static void round_trip_async(mproc_queue *q, size_t len, uint32_t seed) {
  unsigned char *msg = pattern_alloc(len, seed);
  const void *msgs[1] = {msg};
  qputter p;
  put_async(&p, q, msgs, &len, 1);
  get_expect(q, len, seed);
  assert_mproc(put_wait(&p), 0);
  free(msg);
}

static void spin_us(uint64_t us) {
  double end = now_seconds() + (double)us / 1e6;
  while (now_seconds() < end)
    ;
}

/* Waits until pid sleeps in the kernel (blocked in a wait), up to seconds; on Windows,
 * which cannot show it, a fixed short while (runner.h). */
static bool wait_sleeping(long pid, double seconds) { return wait_asleep(pid, seconds); }

/* splitmix64: the tests' random numbers. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi) {
  return lo + rng_next(s) % (hi - lo + 1);
}

/* Log-uniform in [lo, hi] (lo >= 1): as many small messages as large ones. */
static unsigned top_bit(uint64_t x) {
  unsigned b = 0;
  while (x >>= 1)
    b++;
  return b;
}

static uint64_t rng_size(uint64_t *s, uint64_t lo, uint64_t hi) {
  unsigned blo = top_bit(lo), bhi = top_bit(hi);
  unsigned b = (unsigned)rng_range(s, blo, bhi);
  uint64_t a = (uint64_t)1 << b, z = b == 63 ? UINT64_MAX : ((uint64_t)1 << (b + 1)) - 1;
  if (a < lo)
    a = lo;
  if (z > hi)
    z = hi;
  return rng_range(s, a, z);
}

static uint64_t test_seed(void) {
  const char *e = getenv("MPROC_TEST_SEED");
  uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)test_getpid() << 32);
  print_message("    seed %llu (MPROC_TEST_SEED replays it)\n", (unsigned long long)seed);
  return seed;
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *e = getenv(name);
  return e && *e ? strtoull(e, NULL, 0) : dflt;
}

/* ------------------------------------------------ self-checking messages */

/* Messages of the cross-process tests carry who put them and a checksum:
 *   header (32 bytes) | payload, the pattern of seed msg_seed(producer, seq)
 * so that a message that is truncated, mixed with another or not the one its header
 * names shows. */
#define MSG_MAGIC 0x4d534751u /* a message */
#define END_MAGIC 0x454e4451u /* a producer's last message, or a marker */
#define HDR_SIZE 32

typedef struct msg_hdr {
  uint32_t magic;
  uint32_t producer;
  uint64_t seq;
  uint64_t len; /* of the whole message */
  uint64_t sum; /* of the payload */
} msg_hdr;
_Static_assert(sizeof(msg_hdr) == HDR_SIZE, "the header is 32 bytes");

static uint32_t msg_seed(uint32_t producer, uint64_t seq) {
  return (uint32_t)(seq * 2654435761u) ^ (producer << 24) ^ (uint32_t)(seq >> 32) ^ 0x5eedu;
}

static uint64_t payload_sum(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* Builds a len-byte message (len >= HDR_SIZE) in buf. */
static void msg_build(unsigned char *buf, size_t len, uint32_t magic, uint32_t producer,
                      uint64_t seq) {
  msg_hdr h;
  h.magic = magic;
  h.producer = producer;
  h.seq = seq;
  h.len = len;
  fill_pattern(buf + HDR_SIZE, len - HDR_SIZE, msg_seed(producer, seq));
  h.sum = payload_sum(buf + HDR_SIZE, len - HDR_SIZE);
  memcpy(buf, &h, sizeof h);
}

/* NULL when the message is whole, else what is wrong with it. */
static const char *msg_verify(const void *data, size_t len, msg_hdr *h) {
  const unsigned char *p = data;
  memset(h, 0, sizeof *h);
  if (len < HDR_SIZE)
    return "shorter than its header";
  memcpy(h, p, sizeof *h);
  if (h->magic != MSG_MAGIC && h->magic != END_MAGIC)
    return "bad magic";
  if (h->len != len)
    return "its length differs from its header's";
  if (payload_sum(p + HDR_SIZE, len - HDR_SIZE) != h->sum)
    return "checksum mismatch";
  if (check_pattern(p + HDR_SIZE, len - HDR_SIZE, msg_seed(h->producer, h->seq)) != SIZE_MAX)
    return "the payload is not the one its header names";
  return NULL;
}

/* The exit code a child gives for each msg_verify() failure: 40 + its index. */
static int verify_code(const char *what) {
  static const char *const whats[] = {"shorter than its header", "bad magic",
                                      "its length differs from its header's",
                                      "checksum mismatch",
                                      "the payload is not the one its header names"};
  for (int i = 0; i < 5; i++)
    if (strcmp(what, whats[i]) == 0)
      return 40 + i;
  return 49;
}

/* In the parent: gets one self-checking message (failing the test if there is none
 * within timeout or it is not whole) into *h. */
static void get_msg(mproc_queue *q, double timeout, msg_hdr *h) {
  void *data = NULL;
  size_t len = 0;
  const char *bad;
  int r = mproc_queue_get(q, &data, &len, timeout);
  if (r != 0)
    fail_msg("no message within %gs: %s (%s); the queue is wedged", timeout, mproc_err_name(r),
             mproc_last_error());
  bad = msg_verify(data, len, h);
  free(data);
  if (bad != NULL)
    fail_msg("a %zu-byte message is not whole: %s (header: magic %#x producer %u seq %llu len "
             "%llu)",
             len, bad, h->magic, h->producer, (unsigned long long)h->seq,
             (unsigned long long)h->len);
}

/* ============================================================ one process */

static void test_create_defaults_and_options(void **state) {
  mproc_queue *q = NULL;
  mproc_queue_opts o = {0};
  (void)state;

  /* NULL options: Python's defaults, an unbounded queue. */
  assert_ok(mproc_queue_create(&q, NULL));
  assert_non_null(q);
  assert_int_equal(mproc_queue_qsize(q), 0);
  assert_true(mproc_queue_empty(q));
  assert_false(mproc_queue_full(q));
  put_str(q, "default");
  assert_int_equal(mproc_queue_qsize(q), 1);
  assert_false(mproc_queue_empty(q));
  get_expect_str(q, "default", 0);
  assert_true(mproc_queue_empty(q));
  /* Not joinable by default. */
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  mproc_queue_free(q);

  /* All-zero options are the defaults too. */
  q = NULL;
  assert_ok(mproc_queue_create(&q, &o));
  put_str(q, "zero");
  get_expect_str(q, "zero", 0);
  mproc_queue_free(q);

  /* Every option at once; a buffer size that is not a power of two is rounded up. */
  o.maxsize = 3;
  o.joinable = true;
  o.max_message = 5000;
  o.buffer_size = 5000;
  q = NULL;
  assert_ok(mproc_queue_create(&q, &o));
  for (uint32_t i = 0; i < 3; i++)
    put_pattern(q, 1500, i, 0);
  assert_true(mproc_queue_full(q));
  for (uint32_t i = 0; i < 3; i++) {
    get_expect(q, 1500, i);
    assert_ok(mproc_queue_task_done(q));
  }
  assert_ok(mproc_queue_join(q, 0));
  mproc_queue_free(q);

  /* A buffer smaller than the minimum works (it is raised). */
  o = (mproc_queue_opts){0};
  o.buffer_size = 1;
  q = NULL;
  assert_ok(mproc_queue_create(&q, &o));
  put_pattern(q, 100, 9, 0);
  get_expect(q, 100, 9);
  mproc_queue_free(q);
  mproc_queue_free(NULL);
}

static void test_null_and_bad_args(void **state) {
  mproc_queue *q = NULL;
  mproc_queue_opts o = {0};
  void *data = NULL;
  size_t len = 77;
  char buf[16];
  (void)state;

  assert_mproc(mproc_queue_create(NULL, NULL), MPROC_EINVAL);
  assert_last_error_mentions("mproc_queue_create");
  o.buffer_size = SIZE_MAX;
  q = (mproc_queue *)buf; /* must be reset */
  assert_mproc(mproc_queue_create(&q, &o), MPROC_EINVAL);
  assert_null(q);

  assert_ok(mproc_queue_create(&q, NULL));
  put_str(q, "keep");

  assert_mproc(mproc_queue_put(NULL, "x", 1, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_queue_put");
  assert_mproc(mproc_queue_put(q, NULL, 1, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_queue_put");
  assert_mproc(mproc_queue_put(q, NULL, 1, MPROC_FOREVER), MPROC_EINVAL);
  assert_int_equal(mproc_queue_qsize(q), 1);

  assert_mproc(mproc_queue_get(NULL, &data, &len, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_queue_get");
  assert_mproc(mproc_queue_get(q, NULL, &len, 0), MPROC_EINVAL);
  assert_mproc(mproc_queue_get(q, &data, NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_queue_get(q, NULL, NULL, MPROC_FOREVER), MPROC_EINVAL);
  assert_mproc(mproc_queue_get_into(NULL, buf, sizeof buf, &len, 0), MPROC_EINVAL);
  assert_last_error_mentions("mproc_queue_get_into");
  assert_mproc(mproc_queue_get_into(q, NULL, sizeof buf, &len, 0), MPROC_EINVAL);
  assert_mproc(mproc_queue_get_into(q, buf, sizeof buf, NULL, 0), MPROC_EINVAL);
  assert_null(data);

  assert_mproc(mproc_queue_task_done(NULL), MPROC_EINVAL);
  assert_mproc(mproc_queue_join(NULL, 0), MPROC_EINVAL);
  assert_mproc(mproc_queue_close(NULL), MPROC_EINVAL);
  assert_int_equal(mproc_queue_qsize(NULL), 0);
  assert_false(mproc_queue_full(NULL));
  mproc_queue_free(NULL);

  /* The refused calls took nothing out: the message is still there, whole. */
  assert_int_equal(mproc_queue_qsize(q), 1);
  get_expect_str(q, "keep", 0);
  /* NULL data with 0 bytes is a valid empty message. */
  assert_ok(mproc_queue_put(q, NULL, 0, 0));
  len = 77;
  assert_ok(mproc_queue_get(q, &data, &len, 0));
  assert_non_null(data);
  assert_int_equal(len, 0);
  free(data);
  mproc_queue_free(q);
}

static const size_t small_sizes[] = {0, 1, 7, 8, 9, 4096, MiB};
#define NSMALL (sizeof small_sizes / sizeof small_sizes[0])

static void test_message_sizes(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  unsigned char *buf = malloc(MiB);
  (void)state;
  assert_non_null(buf);
  for (size_t i = 0; i < NSMALL; i++) {
    size_t len = (size_t)-1;
    /* Each fits in the default 4 MiB ring: put_nowait takes it. */
    put_pattern(q, small_sizes[i], (uint32_t)i + 1, 0);
    assert_int_equal(mproc_queue_qsize(q), 1);
    get_expect(q, small_sizes[i], (uint32_t)i + 1);
    assert_int_equal(mproc_queue_qsize(q), 0);
    /* And into a buffer of exactly its size. */
    put_pattern(q, small_sizes[i], (uint32_t)i + 50, 0);
    assert_ok(mproc_queue_get_into(q, buf, small_sizes[i], &len, 0));
    assert_int_equal(len, small_sizes[i]);
    assert_int_equal(check_pattern(buf, len, (uint32_t)i + 50), SIZE_MAX);
  }
  /* All of them queued at once come out in order. */
  for (size_t i = 0; i < NSMALL; i++)
    put_pattern(q, small_sizes[i], (uint32_t)i + 100, 0);
  assert_int_equal(mproc_queue_qsize(q), NSMALL);
  for (size_t i = 0; i < NSMALL; i++)
    get_expect(q, small_sizes[i], (uint32_t)i + 100);
  /* An empty message into no buffer at all. */
  assert_ok(mproc_queue_put(q, "", 0, 0));
  {
    size_t len = 5;
    assert_ok(mproc_queue_get_into(q, NULL, 0, &len, 0));
    assert_int_equal(len, 0);
  }
  assert_true(mproc_queue_empty(q));
  free(buf);
  mproc_queue_free(q);
}

/* Messages larger than the ring stream through it and arrive whole. */
static void test_larger_than_ring(void **state) {
  mproc_queue *q;
  (void)state;

  /* A 4 KiB ring and a 1 MiB message. */
  q = make_queue(0, false, 0, 4096);
  round_trip_async(q, MiB, 1);
  assert_int_equal(mproc_queue_qsize(q), 0);
  /* At the boundary: a 4080-byte message is a 4096-byte record, the whole ring. */
  put_pattern(q, 4080, 2, 0);
  get_expect(q, 4080, 2);
  for (size_t len = 4081; len <= 4097; len++)
    round_trip_async(q, len, (uint32_t)len);
  /* Streamed and small messages mixed keep their order. */
  {
    static const size_t lens[] = {10, MiB, 0, 100 * KiB + 3, 4080, 4081, 5, 3 * MiB};
    const size_t n = sizeof lens / sizeof lens[0];
    const void *msgs[sizeof lens / sizeof lens[0]];
    qputter p;
    for (size_t i = 0; i < n; i++)
      msgs[i] = pattern_alloc(lens[i], (uint32_t)i + 10);
    put_async(&p, q, msgs, lens, n);
    for (size_t i = 0; i < n; i++)
      get_expect(q, lens[i], (uint32_t)i + 10);
    assert_mproc(put_wait(&p), 0);
    for (size_t i = 0; i < n; i++)
      free((void *)msgs[i]);
  }
  /* get_into too. */
  {
    unsigned char *msg = pattern_alloc(MiB + 1, 30), *buf = malloc(MiB + 1);
    const void *msgs[1] = {msg};
    size_t len = MiB + 1, got = 0;
    qputter p;
    assert_non_null(buf);
    put_async(&p, q, msgs, &len, 1);
    assert_ok(mproc_queue_get_into(q, buf, MiB + 1, &got, 30));
    assert_mproc(put_wait(&p), 0);
    assert_int_equal(got, MiB + 1);
    assert_int_equal(check_pattern(buf, got, 30), SIZE_MAX);
    free(msg);
    free(buf);
  }
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);

  /* The default 4 MiB ring and a 64 MiB message. */
  q = make_queue(0, false, 0, 0);
  round_trip_async(q, 64 * MiB, 40);
  put_str(q, "after");
  get_expect_str(q, "after", 0);
  mproc_queue_free(q);
}

/* Many messages through a small ring, so that records wrap at its end in every way. */
static void test_fifo_and_wrap(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 4096);
  size_t put_i = 0, got_i = 0;
  const size_t n = 5000;
  (void)state;
  while (got_i < n) {
    /* Keep up to three messages in flight, of sizes 0..1000. */
    while (put_i < n && put_i - got_i < 3) {
      put_pattern(q, (put_i * 131) % 1001, (uint32_t)put_i, 0);
      put_i++;
    }
    assert_int_equal(mproc_queue_qsize(q), put_i - got_i);
    get_expect(q, (got_i * 131) % 1001, (uint32_t)got_i);
    got_i++;
  }
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);

  /* FIFO over a thousand messages queued at once. */
  q = make_queue(0, false, 0, 0);
  for (size_t i = 0; i < 1000; i++)
    put_pattern(q, i % 300, (uint32_t)i + 7, 0);
  assert_int_equal(mproc_queue_qsize(q), 1000);
  for (size_t i = 0; i < 1000; i++)
    get_expect(q, i % 300, (uint32_t)i + 7);
  assert_int_equal(mproc_queue_qsize(q), 0);
  mproc_queue_free(q);
}

static void test_qsize_empty_full(void **state) {
  mproc_queue *q = make_queue(3, false, 0, 0);
  (void)state;
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(mproc_queue_qsize(q), i);
    assert_int_equal(mproc_queue_empty(q), i == 0);
    assert_false(mproc_queue_full(q));
    put_pattern(q, i, (uint32_t)i, 0);
  }
  assert_int_equal(mproc_queue_qsize(q), 3);
  assert_true(mproc_queue_full(q));
  assert_false(mproc_queue_empty(q));
  get_expect(q, 0, 0);
  assert_int_equal(mproc_queue_qsize(q), 2);
  assert_false(mproc_queue_full(q));
  put_pattern(q, 3, 3, 0);
  assert_true(mproc_queue_full(q));
  for (size_t i = 1; i <= 3; i++)
    get_expect(q, i, (uint32_t)i);
  assert_int_equal(mproc_queue_qsize(q), 0);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);

  /* An unbounded queue is never full. */
  q = make_queue(0, false, 0, 0);
  for (size_t i = 0; i < 1000; i++)
    put_pattern(q, 8, (uint32_t)i, 0);
  assert_int_equal(mproc_queue_qsize(q), 1000);
  assert_false(mproc_queue_full(q));
  for (size_t i = 0; i < 1000; i++)
    get_expect(q, 8, (uint32_t)i);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

static void test_bounded_put_nowait_and_timeout(void **state) {
  mproc_queue *q = make_queue(2, false, 0, 0);
  (void)state;
  put_str(q, "a");
  put_str(q, "b");
  assert_mproc(mproc_queue_put(q, "c", 1, 0), MPROC_EFULL);
  assert_last_error_mentions("mproc_queue_put");
  assert_mproc(mproc_queue_put(q, "c", 1, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_queue_put(q, NULL, 0, 0), MPROC_EFULL);
  assert_int_equal(mproc_queue_qsize(q), 2);
  /* Still works: room again after a get, and nothing refused got in. */
  get_expect_str(q, "a", 0);
  put_str(q, "c");
  assert_mproc(mproc_queue_put(q, "d", 1, 0), MPROC_EFULL);
  get_expect_str(q, "b", 0);
  get_expect_str(q, "c", 0);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

static void test_get_empty(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  void *data = NULL;
  size_t len = 0;
  char buf[8];
  (void)state;
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  assert_last_error_mentions("mproc_queue_get");
  assert_mproc(mproc_queue_get(q, &data, &len, 0.05), MPROC_ETIMEDOUT);
  assert_mproc(mproc_queue_get_into(q, buf, sizeof buf, &len, 0), MPROC_EEMPTY);
  assert_mproc(mproc_queue_get_into(q, buf, sizeof buf, &len, 0.05), MPROC_ETIMEDOUT);
  assert_null(data);
  put_str(q, "now");
  get_expect_str(q, "now", 0);
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  assert_null(data);
  mproc_queue_free(q);
}

static void test_get_into_too_small(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 4096);
  unsigned char small[10], buf[100];
  size_t len = 0;
  (void)state;
  put_pattern(q, 100, 1, 0);
  put_str(q, "next");
  assert_mproc(mproc_queue_get_into(q, small, sizeof small, &len, 0), MPROC_EMSGSIZE);
  assert_int_equal(len, 100);
  assert_last_error_mentions("mproc_queue_get_into");
  len = 0;
  assert_mproc(mproc_queue_get_into(q, buf, 99, &len, 1), MPROC_EMSGSIZE);
  assert_int_equal(len, 100);
  /* Still there, first, and whole. */
  assert_int_equal(mproc_queue_qsize(q), 2);
  len = 0;
  assert_ok(mproc_queue_get_into(q, buf, 100, &len, 0));
  assert_int_equal(len, 100);
  assert_int_equal(check_pattern(buf, 100, 1), SIZE_MAX);
  /* A refused message can be taken by get too. */
  assert_mproc(mproc_queue_get_into(q, small, 3, &len, 0), MPROC_EMSGSIZE);
  assert_int_equal(len, 4);
  get_expect_str(q, "next", 0);

  /* A message larger than the ring, refused while its producer is still streaming it. */
  {
    unsigned char *msg = pattern_alloc(MiB, 2), *big = malloc(MiB);
    const void *msgs[1] = {msg};
    size_t mlen = MiB;
    qputter p;
    assert_non_null(big);
    put_async(&p, q, msgs, &mlen, 1);
    len = 0;
    assert_mproc(mproc_queue_get_into(q, small, sizeof small, &len, 30), MPROC_EMSGSIZE);
    assert_int_equal(len, MiB);
    len = 0;
    assert_mproc(mproc_queue_get_into(q, big, MiB - 1, &len, 30), MPROC_EMSGSIZE);
    assert_int_equal(len, MiB);
    len = 0;
    assert_ok(mproc_queue_get_into(q, big, MiB, &len, 30));
    assert_int_equal(len, MiB);
    assert_int_equal(check_pattern(big, len, 2), SIZE_MAX);
    assert_mproc(put_wait(&p), 0);
    free(msg);
    free(big);
  }
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

static void test_max_message(void **state) {
  mproc_queue *q = make_queue(0, false, 100, 0);
  unsigned char *big = pattern_alloc(MiB, 3);
  (void)state;
  put_pattern(q, 100, 1, 0);
  /* Refused at once whatever the timeout. */
  assert_mproc(mproc_queue_put(q, big, 101, MPROC_FOREVER), MPROC_EMSGSIZE);
  assert_last_error_mentions("mproc_queue_put");
  assert_mproc(mproc_queue_put(q, big, MiB, 0), MPROC_EMSGSIZE);
  assert_int_equal(mproc_queue_qsize(q), 1);
  /* The queue still works. */
  put_pattern(q, 0, 2, 0);
  get_expect(q, 100, 1);
  get_expect(q, 0, 2);
  assert_true(mproc_queue_empty(q));
  free(big);
  mproc_queue_free(q);
}

static void test_close_drains_then_eof(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  void *data = NULL;
  size_t len = 0;
  char buf[8];
  (void)state;
  put_str(q, "a");
  assert_ok(mproc_queue_put(q, NULL, 0, 0));
  put_str(q, "c");
  assert_ok(mproc_queue_close(q));
  assert_mproc(mproc_queue_put(q, "d", 1, 0), MPROC_ECLOSED);
  assert_last_error_mentions("mproc_queue_put");
  assert_mproc(mproc_queue_put(q, "d", 1, MPROC_FOREVER), MPROC_ECLOSED);
  assert_mproc(mproc_queue_put(q, NULL, 0, 1), MPROC_ECLOSED);
  assert_int_equal(mproc_queue_qsize(q), 3);
  get_expect_str(q, "a", 0);
  get_expect_str(q, "", MPROC_FOREVER);
  get_expect_str(q, "c", 1);
  /* Drained: end of file, at once even when the call would block. */
  assert_mproc(mproc_queue_get(q, &data, &len, MPROC_FOREVER), MPROC_EOF);
  assert_mproc(mproc_queue_get(q, &data, &len, 5), MPROC_EOF);
  assert_mproc(mproc_queue_get_into(q, buf, sizeof buf, &len, MPROC_FOREVER), MPROC_EOF);
  assert_null(data);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);

  /* Closing an empty queue: end of file at once. */
  q = make_queue(0, false, 0, 0);
  assert_ok(mproc_queue_close(q));
  assert_mproc(mproc_queue_get(q, &data, &len, MPROC_FOREVER), MPROC_EOF);
  mproc_queue_free(q);
}

/* get_nowait on a closed and drained queue is MPROC_EOF too, not MPROC_EEMPTY: the
 * queue will never hold anything again. */
static void test_get_nowait_closed_is_eof(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  void *data = NULL;
  size_t len = 0;
  char buf[8];
  (void)state;
  put_str(q, "last");
  assert_ok(mproc_queue_close(q));
  get_expect_str(q, "last", 0);
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EOF);
  assert_mproc(mproc_queue_get_into(q, buf, sizeof buf, &len, 0), MPROC_EOF);
  assert_null(data);
  mproc_queue_free(q);
}

static void test_joinable(void **state) {
  mproc_queue *q = make_queue(0, true, 0, 0);
  (void)state;
  /* Nothing put: nothing to wait for, and nothing to mark done. */
  assert_ok(mproc_queue_join(q, 0));
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  assert_last_error_mentions("mproc_queue_task_done");
  for (uint32_t i = 0; i < 3; i++)
    put_pattern(q, 10, i, 0);
  assert_mproc(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  assert_mproc(mproc_queue_join(q, 0.05), MPROC_ETIMEDOUT);
  for (uint32_t i = 0; i < 3; i++)
    get_expect(q, 10, i);
  /* Got but not done: still unfinished. */
  assert_mproc(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  assert_ok(mproc_queue_task_done(q));
  assert_ok(mproc_queue_task_done(q));
  assert_mproc(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  assert_ok(mproc_queue_task_done(q));
  assert_ok(mproc_queue_join(q, 0));
  assert_ok(mproc_queue_join(q, MPROC_FOREVER));
  /* One more than the puts. */
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  assert_ok(mproc_queue_join(q, 0));
  /* And again after more puts: the count carries on. */
  put_str(q, "x");
  assert_mproc(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  get_expect_str(q, "x", 0);
  assert_ok(mproc_queue_task_done(q));
  assert_ok(mproc_queue_join(q, 0));
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  mproc_queue_free(q);
}

static void test_not_joinable(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  (void)state;
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  assert_mproc(mproc_queue_join(q, 0), MPROC_ESTATE);
  assert_mproc(mproc_queue_join(q, MPROC_FOREVER), MPROC_ESTATE);
  put_str(q, "x");
  get_expect_str(q, "x", 0);
  assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
  assert_last_error_mentions("mproc_queue_task_done");
  assert_mproc(mproc_queue_join(q, 0), MPROC_ESTATE);
  assert_last_error_mentions("mproc_queue_join");
  mproc_queue_free(q);
}

/* Even an unbounded queue holds at most buffer_size bytes: put_nowait gives EFULL. */
static void test_unbounded_put_nowait_no_room(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 4096);
  size_t n = 0;
  int r;
  (void)state;
  /* 1000-byte messages are 1016-byte records: four fit in 4096 bytes. */
  for (;;) {
    unsigned char *msg = pattern_alloc(1000, (uint32_t)n);
    r = mproc_queue_put(q, msg, 1000, 0);
    free(msg);
    if (r != 0)
      break;
    n++;
    assert_true(n <= 4);
  }
  assert_mproc(r, MPROC_EFULL);
  assert_int_equal(n, 4);
  assert_int_equal(mproc_queue_qsize(q), 4);
  assert_false(mproc_queue_full(q)); /* full() is about maxsize */
  {
    unsigned char *msg = pattern_alloc(1000, 99);
    assert_mproc(mproc_queue_put(q, msg, 1000, 0.05), MPROC_ETIMEDOUT);
    free(msg);
  }
  assert_int_equal(mproc_queue_qsize(q), 4);
  /* A small message still fits in the 32 bytes left. */
  assert_ok(mproc_queue_put(q, "small", 5, 0));
  get_expect(q, 1000, 0);
  /* Room again. */
  put_pattern(q, 1000, 4, 0);
  for (uint32_t i = 1; i < 4; i++)
    get_expect(q, 1000, i);
  get_expect_str(q, "small", 0);
  get_expect(q, 1000, 4);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

/* A put of a message larger than the ring that gives up (no consumer) put nothing: the
 * queue is as it was. */
static void test_failed_streamed_put_leaves_no_trace(void **state) {
  (void)state;
  for (int joinable = 0; joinable < 2; joinable++) {
    mproc_queue *q = make_queue(0, joinable, 0, 4096);
    unsigned char *big = pattern_alloc(MiB, 1);
    void *data = NULL;
    size_t len = 0;
    assert_mproc(mproc_queue_put(q, big, MiB, 0), MPROC_EFULL);
    assert_int_equal(mproc_queue_qsize(q), 0);
    assert_true(mproc_queue_empty(q));
    if (joinable) {
      assert_ok(mproc_queue_join(q, 0));
      assert_mproc(mproc_queue_task_done(q), MPROC_ESTATE);
    }
    assert_mproc(mproc_queue_put(q, big, MiB, 0.05), MPROC_ETIMEDOUT);
    assert_int_equal(mproc_queue_qsize(q), 0);
    if (joinable)
      assert_ok(mproc_queue_join(q, 0));
    /* Nothing of it is ever delivered; the next message is. */
    put_str(q, "small");
    get_expect_str(q, "small", 5);
    assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
    if (joinable) {
      assert_ok(mproc_queue_task_done(q));
      assert_ok(mproc_queue_join(q, 0));
    }
    assert_int_equal(mproc_queue_qsize(q), 0);
    free(big);
    mproc_queue_free(q);
  }
}

/* ====================================================== across processes */

static int child_tutorial(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  if (q == NULL)
    return 10;
  return mproc_queue_put(q, "Python", 6, MPROC_FOREVER) == 0 ? 0 : 11;
}

/* The tutorial's program: the child puts "Python", the parent gets it. */
static void test_tutorial_program(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_process *p;
  (void)state;
  assert_ok(tstart(&p, child_tutorial, NULL, 0, (void *[]){q}, 1));
  get_expect_str(q, "Python", 30);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_queue_free(q);
}

typedef struct many_arg {
  uint32_t n;
  uint32_t seed;
} many_arg;

static size_t many_len(uint32_t i) { return (size_t)(i * 7919u) % 20000; }

/* Puts n pattern messages and returns at once. */
static int child_put_many(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  many_arg a;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  for (uint32_t i = 0; i < a.n; i++) {
    size_t l = many_len(i);
    unsigned char *msg = malloc(l + 1);
    if (msg == NULL)
      return 11;
    fill_pattern(msg, l, a.seed + i);
    if (mproc_queue_put(q, msg, l, MPROC_FOREVER) != 0)
      return 12;
    free(msg);
  }
  return 0;
}

/* put returns once the message is in the queue: a child that exits right after its
 * puts loses nothing, even when nobody got anything before it was gone. */
static void test_put_then_exit_nothing_lost(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_process *p;
  many_arg a = {150, 1000};
  (void)state;
  assert_ok(tstart(&p, child_put_many, &a, sizeof a, (void *[]){q}, 1));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  assert_true(wait_pid_gone(mproc_process_pid(p), 10));
  tfree(p);
  assert_int_equal(mproc_queue_qsize(q), a.n);
  for (uint32_t i = 0; i < a.n; i++) {
    void *data = NULL;
    size_t len = 0;
    /* get_nowait: everything is there already. */
    assert_ok(mproc_queue_get(q, &data, &len, 0));
    assert_int_equal(len, many_len(i));
    assert_int_equal(check_pattern(data, len, a.seed + i), SIZE_MAX);
    free(data);
  }
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

/* Gets one message and checks it is "first". */
static int child_get_first(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  sleep_seconds(0.2);
  if (mproc_queue_get(q, &data, &got, 30) != 0)
    return 10;
  if (got != 5 || memcmp(data, "first", 5) != 0)
    return 11;
  free(data);
  return 0;
}

/* A put blocked on a full bounded queue wakes when a child gets. */
static void test_blocked_put_wakes_on_child_get(void **state) {
  mproc_queue *q = make_queue(2, false, 0, 0);
  mproc_process *p;
  (void)state;
  put_str(q, "first");
  put_str(q, "second");
  assert_mproc(mproc_queue_put(q, "third", 5, 0), MPROC_EFULL);
  assert_ok(tstart(&p, child_get_first, NULL, 0, (void *[]){q}, 1));
  /* Blocks until the child got "first". */
  assert_ok(mproc_queue_put(q, "third", 5, 60));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_int_equal(mproc_queue_qsize(q), 2);
  get_expect_str(q, "second", 0);
  get_expect_str(q, "third", 0);
  mproc_queue_free(q);
}

/* Tells the parent it is about to block (over share 1), then gets: 42 on MPROC_EOF. */
static int child_get_until_eof(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_conn *c = mproc_shared(ctx, 1);
  void *data;
  size_t got;
  int r;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(c, "ready", 5) != 0)
    return 10;
  r = mproc_queue_get(q, &data, &got, MPROC_FOREVER);
  if (r == 0)
    free(data);
  return r == MPROC_EOF ? 42 : 11;
}

static void recv_ready(mproc_conn *c) {
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(mproc_conn_poll(c, 30), 1);
  assert_ok(mproc_conn_recv(c, &data, &len, 0));
  assert_int_equal(len, 5);
  assert_memory_equal(data, "ready", 5);
  free(data);
}

/* Gets blocked in other processes (one waiting for a message while holding the read
 * lock, one waiting for the lock) wake with MPROC_EOF when the queue is closed. */
static void test_blocked_get_wakes_on_close(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_conn *a, *b;
  mproc_process *p[2];
  (void)state;
  make_pipe(&a, &b, true);
  for (int i = 0; i < 2; i++) {
    assert_ok(tstart(&p[i], child_get_until_eof, NULL, 0, (void *[]){q, b}, 2));
    recv_ready(a);
    assert_true(wait_sleeping(mproc_process_pid(p[i]), 10));
  }
  assert_ok(mproc_queue_close(q));
  for (int i = 0; i < 2; i++) {
    assert_ok(tjoin(p[i], 30));
    assert_int_equal(texitcode(p[i]), 42);
    tfree(p[i]);
  }
  mproc_conn_free(a);
  mproc_conn_free(b);
  mproc_queue_free(q);
}

/* Tells the parent it is about to block, then puts "blocked": 42 on MPROC_ECLOSED. */
static int child_put_until_closed(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_conn *c = mproc_shared(ctx, 1);
  int r;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(c, "ready", 5) != 0)
    return 10;
  r = mproc_queue_put(q, "blocked", 7, MPROC_FOREVER);
  return r == MPROC_ECLOSED ? 42 : r == 0 ? 11 : 12;
}

static void test_blocked_put_wakes_on_close(void **state) {
  mproc_queue *q = make_queue(1, false, 0, 0);
  mproc_conn *a, *b;
  mproc_process *p;
  void *data = NULL;
  size_t len;
  (void)state;
  make_pipe(&a, &b, true);
  put_str(q, "fills it");
  assert_ok(tstart(&p, child_put_until_closed, NULL, 0, (void *[]){q, b}, 2));
  recv_ready(a);
  assert_true(wait_sleeping(mproc_process_pid(p), 10));
  assert_ok(mproc_queue_close(q));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 42);
  tfree(p);
  /* What was in the queue is still there; the refused put is not. */
  get_expect_str(q, "fills it", 0);
  assert_mproc(mproc_queue_get(q, &data, &len, 5), MPROC_EOF);
  mproc_conn_free(a);
  mproc_conn_free(b);
  mproc_queue_free(q);
}

/* Gets what the parent put before closing, then sees MPROC_EOF. */
static int child_drain_closed(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  for (uint32_t i = 0; i < 3; i++) {
    void *data;
    size_t got;
    if (mproc_queue_get(q, &data, &got, 30) != 0)
      return 10 + (int)i;
    if (got != 100 + i || check_pattern(data, got, 60 + i) != SIZE_MAX)
      return 20 + (int)i;
    free(data);
  }
  {
    void *data;
    size_t got;
    if (mproc_queue_put(q, "x", 1, 0) != MPROC_ECLOSED)
      return 30;
    return mproc_queue_get(q, &data, &got, MPROC_FOREVER) == MPROC_EOF ? 0 : 31;
  }
}

/* Closing is seen by every process. */
static void test_close_seen_by_child(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_process *p;
  (void)state;
  for (uint32_t i = 0; i < 3; i++)
    put_pattern(q, 100 + i, 60 + i, 0);
  assert_ok(mproc_queue_close(q));
  assert_ok(tstart(&p, child_drain_closed, NULL, 0, (void *[]){q}, 1));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  mproc_queue_free(q);
}

/* Gets n messages and marks each done. */
static int child_task_done(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  uint32_t n;
  child_enter();
  if (len != sizeof n)
    return 10;
  memcpy(&n, arg, sizeof n);
  for (uint32_t i = 0; i < n; i++) {
    void *data;
    size_t got;
    if (mproc_queue_get(q, &data, &got, 30) != 0)
      return 11;
    free(data);
    if (mproc_queue_task_done(q) != 0)
      return 12;
  }
  /* One more than the puts. */
  return mproc_queue_task_done(q) == MPROC_ESTATE ? 0 : 13;
}

static void test_join_after_task_done_in_child(void **state) {
  mproc_queue *q = make_queue(0, true, 0, 0);
  mproc_process *p;
  uint32_t n = 5;
  (void)state;
  for (uint32_t i = 0; i < n; i++)
    put_pattern(q, 20, i, 0);
  assert_mproc(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  assert_ok(tstart(&p, child_task_done, &n, sizeof n, (void *[]){q}, 1));
  /* Returns once the child marked all five done. */
  assert_ok(mproc_queue_join(q, 60));
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_ok(mproc_queue_join(q, 0));
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

/* ------------------------------------------------ many messages, in order */

typedef struct seq_msg {
  uint64_t seq;
  uint64_t check; /* ~seq */
} seq_msg;

typedef struct seq_arg {
  uint64_t n;
} seq_arg;

static int child_seq_producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  seq_arg a;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  for (uint64_t i = 0; i < a.n; i++) {
    seq_msg m = {i, ~i};
    if (mproc_queue_put(q, &m, sizeof m, MPROC_FOREVER) != 0)
      return 11;
  }
  return 0;
}

static int child_seq_consumer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  seq_arg a;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  for (uint64_t i = 0; i < a.n; i++) {
    seq_msg m;
    size_t got = 0;
    if (mproc_queue_get_into(q, &m, sizeof m, &got, 60) != 0)
      return 11;
    if (got != sizeof m || m.check != ~m.seq)
      return 12;
    if (m.seq != i)
      return 13;
  }
  return 0;
}

#define SEQ_N 100000

/* One producer, one consumer, 100,000 messages: all arrive, in order. */
static void test_one_to_one_100k(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_process *p;
  seq_arg a = {SEQ_N};
  (void)state;

  /* Child to parent, through an unbounded queue. */
  assert_ok(tstart(&p, child_seq_producer, &a, sizeof a, (void *[]){q}, 1));
  for (uint64_t i = 0; i < a.n; i++) {
    seq_msg m;
    size_t got = 0;
    assert_ok(mproc_queue_get_into(q, &m, sizeof m, &got, 60));
    assert_int_equal(got, sizeof m);
    assert_true(m.check == ~m.seq);
    if (m.seq != i)
      fail_msg("message %llu arrived as number %llu", (unsigned long long)m.seq,
               (unsigned long long)i);
  }
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);

  /* Parent to child, through a queue bounded to 50 messages. */
  q = make_queue(50, false, 0, 0);
  assert_ok(tstart(&p, child_seq_consumer, &a, sizeof a, (void *[]){q}, 1));
  for (uint64_t i = 0; i < a.n; i++) {
    seq_msg m = {i, ~i};
    assert_ok(mproc_queue_put(q, &m, sizeof m, 60));
  }
  assert_ok(tjoin(p, 60));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

/* ------------------------------------------ many producers and consumers */

#define MAXP 8

/* What every producer and consumer of a stress run knows. */
typedef struct stress_spec {
  uint32_t nprod;
  uint32_t id; /* of the producer this copy is for */
  uint64_t count[MAXP];
  uint64_t min_len[MAXP], max_len[MAXP];
  uint64_t seed;
} stress_spec;

/* Puts spec.count[id] self-checking messages of random sizes. */
static int child_stress_producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  stress_spec s;
  unsigned char *buf;
  uint64_t rng;
  child_enter();
  if (len != sizeof s)
    return 10;
  memcpy(&s, arg, sizeof s);
  rng = s.seed ^ ((uint64_t)s.id << 48);
  buf = malloc(s.max_len[s.id]);
  if (buf == NULL)
    return 11;
  for (uint64_t i = 0; i < s.count[s.id]; i++) {
    size_t l = (size_t)rng_size(&rng, s.min_len[s.id], s.max_len[s.id]);
    msg_build(buf, l, MSG_MAGIC, s.id, i);
    if (mproc_queue_put(q, buf, l, MPROC_FOREVER) != 0)
      return 12;
  }
  free(buf);
  return 0;
}

typedef struct stress_report {
  uint64_t received;
  uint32_t ok;
  char what[236];
} stress_report;

/* Gets until MPROC_EOF, checking every message, and sends a report (share 1): what went
 * wrong first, and which messages of each producer it got (bitmaps). */
static int child_stress_consumer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_conn *c = mproc_shared(ctx, 1);
  stress_spec s;
  stress_report rep;
  size_t off[MAXP + 1], total;
  uint64_t last[MAXP];
  bool any[MAXP] = {false};
  unsigned char *out, *bits;
  int r;
  child_enter();
  if (len != sizeof s)
    return 10;
  memcpy(&s, arg, sizeof s);
  off[0] = 0;
  for (uint32_t p = 0; p < s.nprod; p++)
    off[p + 1] = off[p] + (size_t)(s.count[p] + 7) / 8;
  total = sizeof rep + off[s.nprod];
  out = calloc(1, total);
  if (out == NULL)
    return 11;
  bits = out + sizeof rep;
  memset(&rep, 0, sizeof rep);
  rep.ok = 1;
  for (;;) {
    void *data;
    size_t got;
    msg_hdr h;
    const char *bad;
    r = mproc_queue_get(q, &data, &got, MPROC_FOREVER);
    if (r == MPROC_EOF)
      break;
    if (r != 0) {
      snprintf(rep.what, sizeof rep.what, "get failed: %s (%s)", mproc_err_name(r),
               mproc_last_error());
      rep.ok = 0;
      break;
    }
    bad = msg_verify(data, got, &h);
    free(data);
    rep.received++;
    if (!rep.ok)
      continue; /* keep draining, so that the producers finish */
    if (bad != NULL) {
      snprintf(rep.what, sizeof rep.what, "a %zu-byte message: %s", got, bad);
      rep.ok = 0;
    } else if (h.producer >= s.nprod || h.seq >= s.count[h.producer]) {
      snprintf(rep.what, sizeof rep.what, "unknown message %u/%llu", h.producer,
               (unsigned long long)h.seq);
      rep.ok = 0;
    } else if (any[h.producer] && h.seq <= last[h.producer]) {
      snprintf(rep.what, sizeof rep.what, "out of order: producer %u's message %llu after %llu",
               h.producer, (unsigned long long)h.seq, (unsigned long long)last[h.producer]);
      rep.ok = 0;
    } else {
      unsigned char *b = bits + off[h.producer] + h.seq / 8;
      unsigned char m = (unsigned char)(1u << (h.seq % 8));
      if (*b & m) {
        snprintf(rep.what, sizeof rep.what, "producer %u's message %llu twice", h.producer,
                 (unsigned long long)h.seq);
        rep.ok = 0;
      }
      *b |= m;
      any[h.producer] = true;
      last[h.producer] = h.seq;
    }
  }
  memcpy(out, &rep, sizeof rep);
  r = mproc_conn_send(c, out, total);
  free(out);
  return r == 0 ? 0 : 12;
}

/* Runs nprod producers and ncons consumers (all children) over q, then checks that every
 * message was delivered exactly once, whole, and in order per producer. */
static void run_stress(mproc_queue *q, stress_spec *spec, uint32_t ncons, double timeout) {
  mproc_process *prod[MAXP], *cons[MAXP];
  mproc_conn *ra[MAXP], *rb[MAXP];
  size_t off[MAXP + 1];
  unsigned char *seen;
  uint64_t expected = 0, received = 0;

  off[0] = 0;
  for (uint32_t p = 0; p < spec->nprod; p++) {
    off[p + 1] = off[p] + (size_t)(spec->count[p] + 7) / 8;
    expected += spec->count[p];
  }
  seen = calloc(1, off[spec->nprod] + 1);
  assert_non_null(seen);
  for (uint32_t i = 0; i < ncons; i++) {
    make_pipe(&ra[i], &rb[i], false);
    assert_ok(tstart(&cons[i], child_stress_consumer, spec, sizeof *spec,
                     (void *[]){q, rb[i]}, 2));
  }
  for (uint32_t p = 0; p < spec->nprod; p++) {
    spec->id = p;
    assert_ok(tstart(&prod[p], child_stress_producer, spec, sizeof *spec, (void *[]){q}, 1));
  }
  for (uint32_t p = 0; p < spec->nprod; p++) {
    int r = tjoin(prod[p], timeout);
    if (r != 0)
      fail_msg("producer %u did not finish within %gs (%llu messages in the queue)", p,
               timeout, (unsigned long long)mproc_queue_qsize(q));
    if (texitcode(prod[p]) != 0)
      fail_msg("producer %u exited with %d", p, texitcode(prod[p]));
    tfree(prod[p]);
  }
  /* The consumers drain what is left, then see the end. */
  assert_ok(mproc_queue_close(q));
  for (uint32_t i = 0; i < ncons; i++) {
    void *data = NULL;
    size_t len = 0;
    stress_report rep;
    const unsigned char *bits;
    if (mproc_conn_poll(ra[i], timeout) != 1)
      fail_msg("consumer %u sent no report within %gs", i, timeout);
    assert_ok(mproc_conn_recv(ra[i], &data, &len, 0));
    assert_int_equal(len, sizeof rep + off[spec->nprod]);
    memcpy(&rep, data, sizeof rep);
    if (!rep.ok)
      fail_msg("consumer %u: %s", i, rep.what);
    bits = (const unsigned char *)data + sizeof rep;
    for (size_t k = 0; k < off[spec->nprod]; k++) {
      if (seen[k] & bits[k]) {
        size_t p = 0;
        while (off[p + 1] <= k)
          p++;
        fail_msg("a message of producer %zu (around %zu) was delivered to two consumers", p,
                 (k - off[p]) * 8);
      }
      seen[k] |= bits[k];
    }
    received += rep.received;
    free(data);
    assert_ok(tjoin(cons[i], 30));
    assert_int_equal(texitcode(cons[i]), 0);
    tfree(cons[i]);
    mproc_conn_free(ra[i]);
    mproc_conn_free(rb[i]);
  }
  for (uint32_t p = 0; p < spec->nprod; p++)
    for (uint64_t k = 0; k < spec->count[p]; k++)
      if (!(seen[off[p] + k / 8] & (1u << (k % 8))))
        fail_msg("producer %u's message %llu was never delivered", p, (unsigned long long)k);
  assert_int_equal(received, expected);
  assert_int_equal(mproc_queue_qsize(q), 0);
  free(seen);
}

static void stress_4x4(uint64_t n) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  stress_spec spec;
  uint64_t seed = test_seed();
  memset(&spec, 0, sizeof spec);
  spec.nprod = 4;
  spec.seed = seed;
  for (uint32_t p = 0; p < 4; p++) {
    spec.count[p] = n;
    spec.min_len[p] = HDR_SIZE;
    spec.max_len[p] = 256 * KiB;
  }
  print_message("    4 producers x 4 consumers x %llu messages of %d B..256 KiB\n",
                (unsigned long long)n, HDR_SIZE);
  run_stress(q, &spec, 4, 600);
  mproc_queue_free(q);
}

/* 4 producers and 4 consumers, every message delivered once, whole, in order per
 * producer. (The smallest message is a bare header: 0 to 31-byte messages are tested
 * in one process.) */
static void test_stress_4x4(void **state) {
  (void)state;
  stress_4x4(env_u64("MPROC_QUEUE_STRESS_N", 2000));
}

/* Two producers stream 8 MiB messages through a 64 KiB ring while two others put small
 * ones: the large ones are never interleaved with anything, and all arrive whole. */
static void test_streamed_concurrent(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 64 * KiB);
  stress_spec spec;
  (void)state;
  memset(&spec, 0, sizeof spec);
  spec.nprod = 4;
  spec.seed = test_seed();
  for (uint32_t p = 0; p < 2; p++) {
    spec.count[p] = 6;
    spec.min_len[p] = 8 * MiB;
    spec.max_len[p] = 8 * MiB;
  }
  for (uint32_t p = 2; p < 4; p++) {
    spec.count[p] = 2000;
    spec.min_len[p] = HDR_SIZE;
    spec.max_len[p] = 8 * KiB;
  }
  run_stress(q, &spec, 2, 300);
  mproc_queue_free(q);
}

/* ---------------------------------------------------------- crash safety */

typedef struct crash_arg {
  uint32_t id;
  uint32_t big_one_in; /* one message in this many is larger than the ring */
  uint64_t seed;
  uint64_t small_max, big_min, big_max;
  uint64_t limit; /* stops after this many (a safety net) */
} crash_arg;

/* Puts messages 0, 1, 2, ... in a tight loop until killed, or, given a control
 * connection (share 1), until told to stop, when it puts an END_MAGIC message. */
static int child_crash_producer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_conn *ctl = mproc_shared_count(ctx) > 1 ? mproc_shared(ctx, 1) : NULL;
  crash_arg a;
  unsigned char *buf;
  uint64_t rng;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  rng = a.seed;
  buf = malloc(a.big_max);
  if (buf == NULL)
    return 11;
  for (uint64_t seq = 0; seq < a.limit; seq++) {
    size_t l;
    if (ctl != NULL && mproc_conn_poll(ctl, 0) == 1) {
      msg_build(buf, 64, END_MAGIC, a.id, seq);
      return mproc_queue_put(q, buf, 64, MPROC_FOREVER) == 0 ? 0 : 12;
    }
    if (rng_range(&rng, 1, a.big_one_in) == 1)
      l = (size_t)rng_range(&rng, a.big_min, a.big_max);
    else
      l = (size_t)rng_range(&rng, HDR_SIZE, a.small_max);
    msg_build(buf, l, MSG_MAGIC, a.id, seq);
    if (mproc_queue_put(q, buf, l, MPROC_FOREVER) != 0)
      return 13;
  }
  return 0;
}

/* Gets and checks messages until killed: exits with verify_code() on a broken one,
 * 30 on one out of order, 31 when a get fails. */
static int child_crash_consumer(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  uint64_t last[64];
  bool any[64] = {false};
  (void)arg;
  (void)len;
  child_enter();
  for (;;) {
    void *data;
    size_t got;
    msg_hdr h;
    const char *bad;
    if (mproc_queue_get(q, &data, &got, MPROC_FOREVER) != 0)
      return 31;
    bad = msg_verify(data, got, &h);
    free(data);
    if (bad != NULL)
      return verify_code(bad);
    if (h.producer < 64) {
      if (any[h.producer] && h.seq <= last[h.producer])
        return 30;
      any[h.producer] = true;
      last[h.producer] = h.seq;
    }
  }
}

/* Puts one END_MAGIC message for producer id (arg). */
static int child_put_marker(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  unsigned char buf[64];
  uint32_t id;
  child_enter();
  if (len != sizeof id)
    return 10;
  memcpy(&id, arg, sizeof id);
  msg_build(buf, sizeof buf, END_MAGIC, id, UINT64_MAX);
  return mproc_queue_put(q, buf, sizeof buf, MPROC_FOREVER) == 0 ? 0 : 11;
}

/* Kills p, which must not have exited by itself, and frees it. */
static void kill_child(mproc_process *p, const char *role) {
  int code;
  if (!mproc_process_is_alive(p)) {
    assert_ok(tjoin(p, 10));
    fail_msg("the %s exited by itself with %d before it was killed", role, texitcode(p));
  }
  assert_ok(mproc_process_kill(p));
  assert_ok(tjoin(p, 30));
  code = texitcode(p);
  if (code != EXIT_KILLED)
    fail_msg("the %s exited with %d, expected to be killed (%d)", role, code, EXIT_KILLED);
  tfree(p);
}

#define CRASH_ITERATIONS 30

/* A producer in a tight put loop, small messages and messages larger than the ring,
 * SIGKILLed at a random moment while the parent gets; again and again on one queue.
 * Every message delivered is whole, the killed producer's messages arrive in order with
 * none missing but the one it was putting, and the queue never wedges: a marker put by
 * another process afterwards arrives. */
static void test_kill_producer_at_random(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 256 * KiB);
  uint64_t rng = test_seed();
  (void)state;
  for (uint32_t it = 0; it < CRASH_ITERATIONS; it++) {
    crash_arg a = {it, 3, rng_next(&rng), 4 * KiB, 256 * KiB + 1, MiB, UINT64_MAX};
    mproc_process *p, *m;
    uint64_t expect = 0, r = rng_range(&rng, 1, 60);
    msg_hdr h;

    assert_ok(tstart(&p, child_crash_producer, &a, sizeof a, (void *[]){q}, 1));
    for (uint64_t k = 0; k < r; k++) {
      get_msg(q, 30, &h);
      if (h.magic != MSG_MAGIC || h.producer != it || h.seq != expect)
        fail_msg("iteration %u: got message %u/%llu, expected %u/%llu", it, h.producer,
                 (unsigned long long)h.seq, it, (unsigned long long)expect);
      expect++;
    }
    /* The producer runs on alone for a moment (until the ring is full), or not. */
    if (rng_range(&rng, 0, 1))
      spin_us(rng_range(&rng, 0, 3000));
    kill_child(p, "producer");

    /* Another process puts a marker: it arrives after whatever the dead producer had
     * put, all of which is whole, in order and without a gap. */
    assert_ok(tstart(&m, child_put_marker, &it, sizeof it, (void *[]){q}, 1));
    for (;;) {
      get_msg(q, 30, &h);
      if (h.magic == END_MAGIC)
        break;
      if (h.producer != it || h.seq != expect)
        fail_msg("iteration %u, after the kill: got message %u/%llu, expected %u/%llu", it,
                 h.producer, (unsigned long long)h.seq, it, (unsigned long long)expect);
      expect++;
    }
    assert_int_equal(h.producer, it);
    assert_ok(tjoin(m, 30));
    assert_int_equal(texitcode(m), 0);
    tfree(m);
    if (mproc_queue_qsize(q) != 0)
      fail_msg("iteration %u: qsize is %zu with nothing in the queue", it,
               mproc_queue_qsize(q));
  }
  {
    void *data = NULL;
    size_t len;
    assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
    put_str(q, "still works");
    get_expect_str(q, "still works", 10);
  }
  mproc_queue_free(q);
}

/* Gets producer id's messages (arg) until its END_MAGIC marker: all whole, numbered 0,
 * 1, 2, ... without a gap. Reports "ok N" or what went wrong over share 1. */
static int child_drain_until_marker(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  mproc_conn *c = mproc_shared(ctx, 1);
  char rep[256];
  uint64_t expect = 0;
  uint32_t id;
  child_enter();
  if (len != sizeof id)
    return 10;
  memcpy(&id, arg, sizeof id);
  for (;;) {
    void *data;
    size_t got;
    msg_hdr h;
    const char *bad;
    int r = mproc_queue_get(q, &data, &got, 60);
    if (r != 0) {
      snprintf(rep, sizeof rep, "get failed after message %llu: %s (%s); the queue is wedged",
               (unsigned long long)expect, mproc_err_name(r), mproc_last_error());
      break;
    }
    bad = msg_verify(data, got, &h);
    free(data);
    if (bad != NULL) {
      snprintf(rep, sizeof rep, "after message %llu, a %zu-byte message: %s (qsize %zu)",
               (unsigned long long)expect, got, bad, mproc_queue_qsize(q));
      break;
    }
    if (h.magic == END_MAGIC && h.producer == id) {
      snprintf(rep, sizeof rep, "ok %llu", (unsigned long long)expect);
      break;
    }
    if (h.producer != id || h.seq != expect) {
      snprintf(rep, sizeof rep, "got message %u/%llu, expected %u/%llu", h.producer,
               (unsigned long long)h.seq, id, (unsigned long long)expect);
      break;
    }
    expect++;
  }
  return mproc_conn_send(c, rep, strlen(rep)) == 0 ? 0 : 11;
}

/* As above, but a child consumes all the time and the parent kills the producer after a
 * random delay, so that the kill lands while it is busy copying a message in (not only
 * while it waits for room). */
static void test_kill_busy_producer_at_random(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 256 * KiB);
  uint64_t rng = test_seed();
  mproc_conn *ra, *rb;
  (void)state;
  make_pipe(&ra, &rb, false);
  for (uint32_t it = 0; it < CRASH_ITERATIONS; it++) {
    crash_arg a = {it, 3, rng_next(&rng), 4 * KiB, 256 * KiB + 1, MiB, UINT64_MAX};
    mproc_process *c, *p, *m;
    void *data = NULL;
    size_t len = 0;

    assert_ok(tstart(&c, child_drain_until_marker, &it, sizeof it, (void *[]){q, rb}, 2));
    assert_ok(tstart(&p, child_crash_producer, &a, sizeof a, (void *[]){q}, 1));
    sleep_seconds((double)rng_range(&rng, 1000, 30000) / 1e6);
    kill_child(p, "producer");
    assert_ok(tstart(&m, child_put_marker, &it, sizeof it, (void *[]){q}, 1));
    if (mproc_conn_poll(ra, 90) != 1)
      fail_msg("iteration %u: the consumer did not finish", it);
    assert_ok(mproc_conn_recv(ra, &data, &len, 0));
    if (len < 3 || memcmp(data, "ok ", 3) != 0)
      fail_msg("iteration %u: %.*s", it, (int)len, (const char *)data);
    free(data);
    assert_ok(tjoin(c, 30));
    assert_int_equal(texitcode(c), 0);
    tfree(c);
    assert_ok(tjoin(m, 30));
    assert_int_equal(texitcode(m), 0);
    tfree(m);
    if (mproc_queue_qsize(q) != 0)
      fail_msg("iteration %u: qsize is %zu with nothing in the queue", it,
               mproc_queue_qsize(q));
  }
  put_str(q, "still works");
  get_expect_str(q, "still works", 10);
  mproc_conn_free(ra);
  mproc_conn_free(rb);
  mproc_queue_free(q);
}

/* A consumer killed at random moments while a producer keeps putting and the parent
 * gets too: the parent still receives every later message, whole and in order. */
static void test_kill_consumer_at_random(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 256 * KiB);
  uint64_t rng = test_seed(), last = 0;
  crash_arg a = {0, 3, rng_next(&rng), 4 * KiB, 256 * KiB + 1, MiB, UINT64_MAX};
  mproc_conn *ctl_r, *ctl_w;
  mproc_process *p;
  bool any = false;
  msg_hdr h;
  (void)state;

  make_pipe(&ctl_r, &ctl_w, false);
  assert_ok(tstart(&p, child_crash_producer, &a, sizeof a, (void *[]){q, ctl_r}, 2));
  for (uint32_t it = 0; it < CRASH_ITERATIONS; it++) {
    mproc_process *c;
    uint64_t r = rng_range(&rng, 1, 40);
    assert_ok(tstart(&c, child_crash_consumer, NULL, 0, (void *[]){q}, 1));
    /* Both consume; the parent sees a growing subsequence. */
    for (uint64_t k = 0; k < r; k++) {
      get_msg(q, 30, &h);
      if (h.magic != MSG_MAGIC || (any && h.seq <= last))
        fail_msg("iteration %u: message %llu after %llu", it, (unsigned long long)h.seq,
                 (unsigned long long)last);
      last = h.seq;
      any = true;
    }
    if (rng_range(&rng, 0, 1))
      spin_us(rng_range(&rng, 0, 2000));
    kill_child(c, "consumer");
    /* Alone again, the parent gets every message: a run without gaps. */
    for (uint64_t k = 0; k < 6; k++) {
      get_msg(q, 30, &h);
      if (h.magic != MSG_MAGIC || h.seq <= last || (k > 0 && h.seq != last + 1))
        fail_msg("iteration %u, after the kill: message %llu after %llu", it,
                 (unsigned long long)h.seq, (unsigned long long)last);
      last = h.seq;
    }
  }
  /* Stop the producer: its last message follows all the others without a gap. */
  assert_ok(mproc_conn_send(ctl_w, "stop", 4));
  for (;;) {
    get_msg(q, 30, &h);
    if (h.seq != last + 1)
      fail_msg("at the end: message %llu after %llu", (unsigned long long)h.seq,
               (unsigned long long)last);
    last = h.seq;
    if (h.magic == END_MAGIC)
      break;
  }
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  {
    void *data = NULL;
    size_t len;
    assert_int_equal(mproc_queue_qsize(q), 0);
    assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  }
  mproc_conn_free(ctl_r);
  mproc_conn_free(ctl_w);
  mproc_queue_free(q);
}

/* Tells the parent it is about to block (share 1), then gets: it should never return. */
static int child_block_in_get(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(mproc_shared(ctx, 1), "ready", 5) != 0)
    return 10;
  mproc_queue_get(q, &data, &got, MPROC_FOREVER);
  return 11;
}

static int child_put_after_delay(mproc_ctx *ctx, const void *arg, size_t len) {
  child_enter();
  sleep_seconds(0.3);
  return mproc_queue_put(mproc_shared(ctx, 0), arg, len, MPROC_FOREVER) == 0 ? 0 : 10;
}

/* A consumer killed while it waits inside get holds the read lock: a later get with a
 * timeout still works. */
static void test_kill_consumer_holding_lock(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 0);
  mproc_conn *a, *b;
  mproc_process *c, *p;
  void *data = NULL;
  size_t len;
  (void)state;
  make_pipe(&a, &b, true);
  assert_ok(tstart(&c, child_block_in_get, NULL, 0, (void *[]){q, b}, 2));
  recv_ready(a);
  assert_true(wait_sleeping(mproc_process_pid(c), 10));
  /* It holds the lock: the parent's get cannot even try. */
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  kill_child(c, "consumer");
  /* A get waiting (for the lock, then for a message) while another process puts. */
  assert_ok(tstart(&p, child_put_after_delay, "after", 5, (void *[]){q}, 1));
  get_expect_str(q, "after", 30);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  assert_mproc(mproc_queue_get(q, &data, &len, 0.05), MPROC_ETIMEDOUT);
  put_str(q, "again");
  get_expect_str(q, "again", 5);
  assert_null(data);
  mproc_conn_free(a);
  mproc_conn_free(b);
  mproc_queue_free(q);
}

/* Tells the parent it is about to block, then puts "blocked": it should never return. */
static int child_block_in_put(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_conn_send(mproc_shared(ctx, 1), "ready", 5) != 0)
    return 10;
  mproc_queue_put(q, "blocked", 7, MPROC_FOREVER);
  return 11;
}

/* A producer killed while it waits inside put (holding the write lock) on a full queue:
 * its message is not in the queue, and later puts work. */
static void test_kill_producer_holding_lock(void **state) {
  mproc_queue *q = make_queue(1, false, 0, 0);
  mproc_conn *a, *b;
  mproc_process *c;
  void *data = NULL;
  size_t len;
  (void)state;
  make_pipe(&a, &b, true);
  put_str(q, "first");
  assert_ok(tstart(&c, child_block_in_put, NULL, 0, (void *[]){q, b}, 2));
  recv_ready(a);
  assert_true(wait_sleeping(mproc_process_pid(c), 10));
  kill_child(c, "producer");
  assert_int_equal(mproc_queue_qsize(q), 1);
  get_expect_str(q, "first", 0);
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  put_str(q, "after");
  assert_true(mproc_queue_full(q));
  get_expect_str(q, "after", 5);
  assert_null(data);
  mproc_conn_free(a);
  mproc_conn_free(b);
  mproc_queue_free(q);
}

/* --------------------------------------- deaths at chosen points (faults) */

/* A process can be made to die at a precise point inside put or get: hand the call a
 * buffer whose pages from fault_at on are inaccessible, and it dies of SIGSEGV in the
 * middle of copying the message (SIGKILL at that instant would do the same). */
typedef struct fault_arg {
  uint64_t len, fault_at;
  uint32_t seed;
} fault_arg;

static unsigned char *faulting_buffer(const fault_arg *a) {
  unsigned char *p = faulting_area((size_t)a->len, (size_t)a->fault_at);
  if (p != NULL)
    fill_pattern(p, (size_t)a->fault_at, a->seed);
  return p;
}

/* Puts a message whose bytes from fault_at on cannot be read: dies inside put. */
static int child_put_faulting(mproc_ctx *ctx, const void *arg, size_t len) {
  fault_arg a;
  unsigned char *p;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  if ((p = faulting_buffer(&a)) == NULL)
    return 11;
  mproc_queue_put(mproc_shared(ctx, 0), p, (size_t)a.len, MPROC_FOREVER);
  return 12;
}

/* get_into a buffer whose bytes from fault_at on cannot be written: dies inside get. */
static int child_get_faulting(mproc_ctx *ctx, const void *arg, size_t len) {
  fault_arg a;
  unsigned char *p;
  size_t got;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  if ((p = faulting_buffer(&a)) == NULL)
    return 11;
  mproc_queue_get_into(mproc_shared(ctx, 0), p, (size_t)a.len, &got, MPROC_FOREVER);
  return 12;
}

/* Puts one pattern message (fault_arg's len and seed, no fault), then "after". */
static int child_put_then_after(mproc_ctx *ctx, const void *arg, size_t len) {
  mproc_queue *q = mproc_shared(ctx, 0);
  fault_arg a;
  unsigned char *p;
  child_enter();
  if (len != sizeof a)
    return 10;
  memcpy(&a, arg, sizeof a);
  p = malloc((size_t)a.len);
  if (p == NULL)
    return 11;
  fill_pattern(p, (size_t)a.len, a.seed);
  if (mproc_queue_put(q, p, (size_t)a.len, MPROC_FOREVER) != 0)
    return 12;
  free(p);
  return mproc_queue_put(q, "after", 5, MPROC_FOREVER) == 0 ? 0 : 13;
}

static void join_dead(mproc_process *p, const char *role) {
  int code;
  assert_ok(tjoin(p, 30));
  code = texitcode(p);
  /* Killed by SIGSEGV, or (under AddressSanitizer) exited with an error. */
  if (code == 0 || code == 12)
    fail_msg("the %s did not die inside the call (exit code %d)", role, code);
  tfree(p);
}

/* A producer dies while copying a message that fits in the ring: nothing of it is ever
 * seen, and the queue works on. */
static void test_producer_dies_copying_record(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 64 * KiB);
  fault_arg a = {16 * KiB, 8 * KiB, 5};
  mproc_process *p;
  void *data = NULL;
  size_t len;
  (void)state;
  put_str(q, "before");
  assert_ok(tstart(&p, child_put_faulting, &a, sizeof a, (void *[]){q}, 1));
  join_dead(p, "producer");
  assert_int_equal(mproc_queue_qsize(q), 1);
  get_expect_str(q, "before", 0);
  assert_mproc(mproc_queue_get(q, &data, &len, 0.1), MPROC_ETIMEDOUT);
  put_str(q, "after");
  get_expect_str(q, "after", 5);
  assert_int_equal(mproc_queue_qsize(q), 0);
  mproc_queue_free(q);
}

/* A producer dies while copying the first piece of a message larger than the ring,
 * before any of it was published. Nothing of it may ever be delivered: the next message
 * (put by another process) is the next one got. */
static void test_producer_dies_before_first_piece(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 64 * KiB);
  fault_arg a = {MiB, 8 * KiB, 6};
  mproc_process *p, *m;
  void *data = NULL;
  size_t len = 0;
  int r;
  (void)state;
  assert_ok(tstart(&p, child_put_faulting, &a, sizeof a, (void *[]){q}, 1));
  join_dead(p, "producer");
  r = mproc_queue_get(q, &data, &len, 0.2);
  if (r == 0)
    fail_msg("a %zu-byte message was delivered although nothing was put", len);
  assert_mproc(r, MPROC_ETIMEDOUT);
  assert_ok(tstart(&m, child_put_after_delay, "after", 5, (void *[]){q}, 1));
  r = mproc_queue_get(q, &data, &len, 30);
  if (r == 0 && (len != 5 || memcmp(data, "after", 5) != 0))
    fail_msg("got a %zu-byte message that nobody put (qsize now %zu), expected \"after\"",
             len, mproc_queue_qsize(q));
  assert_mproc(r, 0);
  free(data);
  assert_ok(tjoin(m, 30));
  assert_int_equal(texitcode(m), 0);
  tfree(m);
  assert_int_equal(mproc_queue_qsize(q), 0);
  data = NULL;
  assert_mproc(mproc_queue_get(q, &data, &len, 0), MPROC_EEMPTY);
  mproc_queue_free(q);
}

/* A producer dies in the middle of a message larger than the ring while the parent is
 * receiving it: the parent drops it and gets the next message, put by another process. */
static void test_producer_dies_mid_stream(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 4096);
  fault_arg a = {MiB, 64 * KiB, 7};
  mproc_process *p, *m;
  (void)state;
  assert_ok(tstart(&p, child_put_faulting, &a, sizeof a, (void *[]){q}, 1));
  assert_ok(tstart(&m, child_put_after_delay, "after", 5, (void *[]){q}, 1));
  get_expect_str(q, "after", 30);
  join_dead(p, "producer");
  assert_ok(tjoin(m, 30));
  assert_int_equal(texitcode(m), 0);
  tfree(m);
  assert_int_equal(mproc_queue_qsize(q), 0);
  put_str(q, "again");
  get_expect_str(q, "again", 5);
  mproc_queue_free(q);
}

/* A consumer dies while copying out a message that fits in the ring: the message is
 * either still there, whole, or gone; the queue works on. */
static void test_consumer_dies_copying_record(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 64 * KiB);
  fault_arg a = {16 * KiB, 8 * KiB, 8};
  mproc_process *c;
  void *data = NULL;
  size_t len = 0;
  int r;
  (void)state;
  put_pattern(q, 16 * KiB, 8, 0);
  put_str(q, "next");
  assert_ok(tstart(&c, child_get_faulting, &a, sizeof a, (void *[]){q}, 1));
  join_dead(c, "consumer");
  r = mproc_queue_get(q, &data, &len, 5);
  assert_mproc(r, 0);
  if (len == 16 * KiB) {
    assert_int_equal(check_pattern(data, len, 8), SIZE_MAX);
    free(data);
    get_expect_str(q, "next", 5);
  } else {
    assert_int_equal(len, 4);
    assert_memory_equal(data, "next", 4);
    free(data);
  }
  assert_int_equal(mproc_queue_qsize(q), 0);
  put_str(q, "again");
  get_expect_str(q, "again", 5);
  mproc_queue_free(q);
}

/* A consumer dies in the middle of receiving a message larger than the ring while its
 * producer (another process) is still streaming it: the producer finishes, its next
 * message reaches the parent, and the queue works on. */
static void test_consumer_dies_mid_stream(void **state) {
  mproc_queue *q = make_queue(0, false, 0, 64 * KiB);
  fault_arg fa = {MiB, 8 * KiB, 9};
  fault_arg pa = {MiB, 0, 9};
  mproc_process *c, *p;
  (void)state;
  assert_ok(tstart(&c, child_get_faulting, &fa, sizeof fa, (void *[]){q}, 1));
  assert_ok(tstart(&p, child_put_then_after, &pa, sizeof pa, (void *[]){q}, 1));
  join_dead(c, "consumer");
  get_expect_str(q, "after", 30);
  assert_ok(tjoin(p, 30));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_int_equal(mproc_queue_qsize(q), 0);
  put_str(q, "again");
  get_expect_str(q, "again", 5);
  mproc_queue_free(q);
}

/* ------------------------------------------------ > 4 GiB (--large only) */

#define LARGE ((((size_t)4) << 30) + MiB)

static bool enough_memory(size_t need) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  unsigned long long kb = 0;
  if (f == NULL)
    return false;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  fclose(f);
  return kb * 1024ull >= need;
}

#define LARGE_MEMORY ((size_t)12 << 30)

static int child_put_large(mproc_ctx *ctx, const void *arg, size_t len) {
  unsigned char *msg;
  int r;
  (void)arg;
  (void)len;
  child_enter();
  msg = malloc(LARGE);
  if (msg == NULL)
    return 10;
  fill_pattern(msg, LARGE, 70);
  r = mproc_queue_put(mproc_shared(ctx, 0), msg, LARGE, MPROC_FOREVER);
  free(msg);
  return r == 0 ? 0 : 11;
}

static void test_large_child_to_parent(void **state) {
  mproc_queue *q;
  mproc_process *p;
  void *data = NULL;
  size_t len = 0;
  (void)state;
  if (sizeof(size_t) < 8 || !enough_memory(LARGE_MEMORY))
    skip();
  q = make_queue(0, false, 0, 0);
  assert_ok(tstart(&p, child_put_large, NULL, 0, (void *[]){q}, 1));
  assert_ok(mproc_queue_get(q, &data, &len, 900));
  assert_int_equal(len, LARGE);
  assert_int_equal(check_pattern(data, len, 70), SIZE_MAX);
  free(data);
  assert_ok(tjoin(p, 60));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

static int child_get_large(mproc_ctx *ctx, const void *arg, size_t len) {
  void *data;
  size_t got;
  (void)arg;
  (void)len;
  child_enter();
  if (mproc_queue_get(mproc_shared(ctx, 0), &data, &got, MPROC_FOREVER) != 0)
    return 10;
  if (got != LARGE)
    return 11;
  /* The whole content, not only samples: every byte is where it was put. */
  if (check_pattern(data, got, 71) != SIZE_MAX)
    return 12;
  free(data);
  return 0;
}

static void test_large_parent_to_child(void **state) {
  mproc_queue *q;
  mproc_process *p;
  unsigned char *msg;
  (void)state;
  if (sizeof(size_t) < 8 || !enough_memory(LARGE_MEMORY))
    skip();
  q = make_queue(0, false, 0, 0);
  assert_ok(tstart(&p, child_get_large, NULL, 0, (void *[]){q}, 1));
  msg = pattern_alloc(LARGE, 71);
  assert_ok(mproc_queue_put(q, msg, LARGE, 900));
  free(msg);
  assert_ok(tjoin(p, 120));
  assert_int_equal(texitcode(p), 0);
  tfree(p);
  assert_true(mproc_queue_empty(q));
  mproc_queue_free(q);
}

/* The stress at full size: 4 x 4 x 200,000 messages. */
static void test_stress_full(void **state) {
  (void)state;
  stress_4x4(env_u64("MPROC_QUEUE_STRESS_N", 200000));
}

/* ---------------------------------------------------------------- groups */

static const struct CMUnitTest queue_tests[] = {
    T(test_create_defaults_and_options),
    T(test_null_and_bad_args),
    T(test_message_sizes),
    T(test_larger_than_ring),
    T(test_fifo_and_wrap),
    T(test_qsize_empty_full),
    T(test_bounded_put_nowait_and_timeout),
    T(test_get_empty),
    T(test_get_into_too_small),
    T(test_max_message),
    T(test_close_drains_then_eof),
    T(test_get_nowait_closed_is_eof),
    T(test_joinable),
    T(test_not_joinable),
    T(test_unbounded_put_nowait_no_room),
    T(test_failed_streamed_put_leaves_no_trace),
};

static const struct CMUnitTest cross_tests[] = {
    T(test_tutorial_program),
    T(test_put_then_exit_nothing_lost),
    T(test_blocked_put_wakes_on_child_get),
    T(test_blocked_get_wakes_on_close),
    T(test_blocked_put_wakes_on_close),
    T(test_close_seen_by_child),
    T(test_join_after_task_done_in_child),
    T(test_one_to_one_100k),
    T(test_stress_4x4),
    T(test_streamed_concurrent),
};

static const struct CMUnitTest crash_tests[] = {
    T(test_kill_consumer_holding_lock),
    T(test_kill_producer_holding_lock),
    T(test_producer_dies_copying_record),
    T(test_producer_dies_before_first_piece),
    T(test_producer_dies_mid_stream),
    T(test_consumer_dies_copying_record),
    T(test_consumer_dies_mid_stream),
    T(test_kill_producer_at_random),
    T(test_kill_busy_producer_at_random),
    T(test_kill_consumer_at_random),
};

static const struct CMUnitTest large_tests[] = {
    T(test_large_child_to_parent),
    T(test_large_parent_to_child),
    T(test_stress_full),
};

const test_group test_groups[] = {
    TEST_GROUP("queue", queue_tests, TEST_NORMAL),
    TEST_GROUP("queue across processes", cross_tests, TEST_NORMAL),
    TEST_GROUP("queue crash safety", crash_tests, TEST_NORMAL),
    TEST_GROUP("queue > 4 GiB", large_tests, TEST_LARGE),
};
const size_t test_ngroups = sizeof test_groups / sizeof test_groups[0];
const test_role *const test_roles = NULL;
const size_t test_nroles = 0;
