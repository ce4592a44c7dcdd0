/*
 * A realistic pool job: hash every regular file under a directory (default
 * /usr/include; on Windows the current directory) with imap_unordered, printing a progress line as results arrive.
 * Paths are produced lazily by a source callback, so memory stays small however
 * many files there are. The hash is 64-bit FNV-1a, to keep the example
 * dependency-free.
 *
 *   hash_tree [DIR] [spawn]
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mproc.h>

#ifdef _WIN32
#include <io.h>
/* Windows's C runtime has no lstat, and no symbolic links for it to leave alone. */
#define lstat stat
#define isatty _isatty
#define DEFAULT_ROOT "."
#else
#include <unistd.h>
#define DEFAULT_ROOT "/usr/include"
#endif

typedef struct file_hash {
  uint64_t hash;
  uint64_t size;
} file_hash;

static int hash_file(mproc_ctx *ctx, const void *arg, size_t len) {
  char path[PATH_MAX];
  unsigned char buf[65536];
  file_hash out = {0xcbf29ce484222325ull, 0};
  size_t n;
  FILE *f;

  if (len >= sizeof path)
    return mproc_fail(ctx, "path too long");
  memcpy(path, arg, len);
  path[len] = '\0';
  if ((f = fopen(path, "rb")) == NULL)
    return mproc_fail(ctx, "cannot open %s", path);
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < n; i++)
      out.hash = (out.hash ^ buf[i]) * 0x100000001b3ull;
    out.size += n;
  }
  fclose(f);
  return mproc_return(ctx, &out, sizeof out);
}

/* A depth-first walk that hands out one path at a time. */
typedef struct walker {
  DIR *dirs[64];
  char paths[64][PATH_MAX];
  int depth;
  char current[PATH_MAX];
} walker;

static int next_path(void *user, size_t index, const void **data, size_t *len) {
  walker *w = user;
  (void)index;
  while (w->depth > 0) {
    struct dirent *e = readdir(w->dirs[w->depth - 1]);
    struct stat st;
    if (e == NULL) {
      closedir(w->dirs[--w->depth]);
      continue;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (snprintf(w->current, sizeof w->current, "%s/%s", w->paths[w->depth - 1], e->d_name) >=
        (int)sizeof w->current)
      continue;
    if (lstat(w->current, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode) && w->depth < 64) {
      DIR *d = opendir(w->current);
      if (d != NULL) {
        strcpy(w->paths[w->depth], w->current);
        w->dirs[w->depth++] = d;
      }
    } else if (S_ISREG(st.st_mode)) {
      *data = w->current;
      *len = strlen(w->current);
      return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  static walker w;
  const char *root = DEFAULT_ROOT;
  mproc_iter *it;
  uint64_t files = 0, bytes = 0, combined = 0;
  size_t index, len, failed = 0;
  bool progress = isatty(2); /* a progress line only where someone watches */
  const void *data;
  int e;

  if ((e = mproc_init(&argc, &argv)) != 0)
    goto fail;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "spawn") == 0)
      mproc_set_start_method(MPROC_START_SPAWN);
    else
      root = argv[i];
  }
  if ((w.dirs[0] = opendir(root)) == NULL) {
    fprintf(stderr, "hash_tree: cannot open %s\n", root);
    return 1;
  }
  snprintf(w.paths[0], sizeof w.paths[0], "%s", root);
  w.depth = 1;

  mproc_pool *pool;
  if ((e = mproc_pool_create(&pool, NULL)) != 0)
    goto fail;
  if ((e = mproc_pool_imap_source(pool, hash_file, next_path, &w, 16, false, &it)) != 0)
    goto fail;
  while ((e = mproc_iter_next(it, MPROC_FOREVER, &index, &data, &len)) != MPROC_EOF) {
    if (e != 0) {
      failed++;
      continue;
    }
    const file_hash *h = data;
    files++;
    bytes += h->size;
    combined ^= h->hash; /* order-independent, like the arrival order */
    if (progress && files % 500 == 0) {
      fprintf(stderr, "\r%" PRIu64 " files, %.1f MB hashed", files, (double)bytes / 1e6);
      fflush(stderr);
    }
  }
  if (progress)
    fprintf(stderr, "\r\033[K");
  printf("%s: %" PRIu64 " files, %" PRIu64 " bytes, %zu unreadable, combined hash %016" PRIx64
         "\n",
         root, files, bytes, failed, combined);
  mproc_iter_free(it);
  mproc_pool_close(pool);
  mproc_pool_join(pool);
  mproc_pool_free(pool);
  return 0;
fail:
  fprintf(stderr, "hash_tree: %s\n", mproc_last_error());
  return 1;
}
