/*
 * What the two APR-free Windows test programs (seam_test.c, core_test.c) share: their
 * check counter and what src/runtime.c provides in the library without APR, the
 * microsecond clock behind timeouts. Each program is one translation unit that
 * includes this once.
 */
#ifndef MPROC_TESTS_WIN32_HARNESS_H
#define MPROC_TESTS_WIN32_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#include "../../platform/win32/win32.h"

static int passed, failed;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (cond) {                                                                                \
      passed++;                                                                                \
    } else {                                                                                   \
      failed++;                                                                                \
      printf("FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond,                 \
             mproc_last_error());                                                              \
      fflush(stdout);                                                                          \
    }                                                                                          \
  } while (0)

/* Microseconds of the wall clock, as apr_time_now() gives them in the library. */
static int64_t now_us(void) {
  FILETIME ft;
  ULARGE_INTEGER u;
  GetSystemTimePreciseAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  return (int64_t)(u.QuadPart / 10);
}

int64_t mproc__deadline(double timeout) {
  return timeout < 0 ? -1 : now_us() + (int64_t)(timeout * 1e6);
}

double mproc__remaining(int64_t deadline) {
  int64_t left;
  if (deadline < 0)
    return -1;
  left = deadline - now_us();
  return left > 0 ? (double)left / 1e6 : 0;
}

#endif /* MPROC_TESTS_WIN32_HARNESS_H */
