/* Error codes, their names and messages, and the per-thread detail of the last failure. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MPROC__ERROR_DETAIL_MAX 512

static MPROC__THREAD_LOCAL char last_message[MPROC__ERROR_DETAIL_MAX];
static MPROC__THREAD_LOCAL int last_oserror;

static const char *const err_names[] = {
#define MPROC__ERR_NAME(name, msg) "MPROC_" #name,
    MPROC_ERRNO_MAP(MPROC__ERR_NAME)
#undef MPROC__ERR_NAME
};

static const char *const err_messages[] = {
#define MPROC__ERR_MSG(name, msg) msg,
    MPROC_ERRNO_MAP(MPROC__ERR_MSG)
#undef MPROC__ERR_MSG
};

/* The table position of err, or -1 for 0, positive values and unknown codes. */
static int err_index(int err) {
  if (err >= 0 || err < -(int)MPROC__ERRIDX_COUNT)
    return -1;
  return -err - 1;
}

const char *mproc_strerror(int err) {
  int i = err_index(err);
  if (err == MPROC_OK)
    return "success";
  return i < 0 ? "unknown error" : err_messages[i];
}

const char *mproc_err_name(int err) {
  int i = err_index(err);
  if (err == MPROC_OK)
    return "MPROC_OK";
  return i < 0 ? "MPROC_UNKNOWN" : err_names[i];
}

const char *mproc_last_error(void) { return last_message; }

int mproc_last_oserror(void) { return last_oserror; }

static void record(int code, int oserr, const char *fmt, va_list ap) {
  int n = snprintf(last_message, sizeof last_message, "%s: ", mproc_err_name(code));
  if (n < 0 || (size_t)n >= sizeof last_message)
    return;
  vsnprintf(last_message + n, sizeof last_message - (size_t)n, fmt, ap);
  last_oserror = oserr;
}

int mproc__error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record(code, 0, fmt, ap);
  va_end(ap);
  return code;
}

int mproc__error_os(int oserr, const char *fmt, ...) {
  char text[200];
  size_t n;
  int code = MPROC_ESYS;
  va_list ap;

  va_start(ap, fmt);
  record(code, oserr, fmt, ap);
  va_end(ap);
  n = strlen(last_message);
  snprintf(last_message + n, sizeof last_message - n, " (OS error %d): %s", oserr,
           mproc__os_strerror(oserr, text, sizeof text));
  return code;
}
