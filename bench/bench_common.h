/* Shared by bench_mproc.c and bench_raw.c: timing, statistics, the JSON line each
 * workload prints, and the command line. Header-only on purpose: each benchmark is
 * one translation unit plus this file. POSIX (Linux) only, like bench/ as a whole.
 *
 * Command line of both programs:
 *   bench_X [--quick] [--list] [WORKLOAD ...]
 * No WORKLOAD runs them all. --list prints the workloads this program has, one a
 * line. --quick shrinks every size (for a smoke run; the figures are noisier).
 *
 * Every workload prints one line on stdout:
 *   {"workload": "...", "impl": "...", "value": N, "unit": "...", "better": "...", ...}
 * and returns 0, or prints a message on stderr and returns non-zero. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_opts {
  bool quick;
} bench_opts;

typedef int (*bench_fn)(const bench_opts *o);

typedef struct bench_workload {
  const char *name;
  bench_fn fn;
} bench_workload;

/* Sizes: the full value, or the --quick one. */
#define BENCH_SIZE(o, full, small) ((o)->quick ? (small) : (full))

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double bench_median(double *v, size_t n) {
  if (n == 0)
    return 0;
  qsort(v, n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One result line. params is a free-form description of the sizes ("n=200"). */
static inline void bench_emit(const char *workload, const char *impl, double value,
                              const char *unit, const char *better, const char *params) {
  printf("{\"workload\": \"%s\", \"impl\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", "
         "\"better\": \"%s\", \"params\": \"%s\"}\n",
         workload, impl, value, unit, better, params ? params : "");
  fflush(stdout);
}

#define BENCH_FAIL(...)                                                                        \
  do {                                                                                         \
    fprintf(stderr, __VA_ARGS__);                                                              \
    fputc('\n', stderr);                                                                       \
    return 1;                                                                                  \
  } while (0)

static inline int bench_main(int argc, char **argv, const bench_workload *w, size_t n) {
  bench_opts o = {false};
  const char *chosen[64];
  size_t nchosen = 0;
  int failed = 0;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      o.quick = true;
    } else if (strcmp(argv[i], "--list") == 0) {
      for (size_t k = 0; k < n; k++)
        printf("%s\n", w[k].name);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: %s [--quick] [--list] [WORKLOAD ...]\n", argv[0]);
      return 2;
    } else if (nchosen < sizeof chosen / sizeof chosen[0]) {
      chosen[nchosen++] = argv[i];
    }
  }
  for (size_t c = 0; c < nchosen; c++) {
    size_t k = 0;
    while (k < n && strcmp(w[k].name, chosen[c]) != 0)
      k++;
    if (k == n) {
      fprintf(stderr, "%s: unknown workload '%s' (--list shows them)\n", argv[0], chosen[c]);
      return 2;
    }
  }
  for (size_t k = 0; k < n; k++) {
    bool run = nchosen == 0;
    for (size_t c = 0; c < nchosen && !run; c++)
      run = strcmp(w[k].name, chosen[c]) == 0;
    if (run && w[k].fn(&o) != 0) {
      fprintf(stderr, "%s: workload %s failed\n", argv[0], w[k].name);
      failed = 1;
    }
  }
  return failed;
}

#endif /* BENCH_COMMON_H */
