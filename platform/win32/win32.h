/* What the Windows files of the platform layer share: the Windows headers with the
 * version they target, conversions between UTF-8 and UTF-16, and the event each
 * thread waits on for its own overlapped I/O. Not part of the seam. */
#ifndef MPROC_WIN32_H
#define MPROC_WIN32_H

/* Windows 8: PROC_THREAD_ATTRIBUTE_HANDLE_LIST (Vista), CancelIoEx (Vista), nested
 * job objects (8), real console handles that can be listed for inheritance (8). */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0602
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "internal.h"

#define MPROC__W32_HANDLE(fd) ((HANDLE)(fd))
#define MPROC__W32_FD(h) ((mproc__fd)(h))

/* Exit codes TerminateProcess gives, read back as the -signal POSIX reports: the
 * first is Python's (multiprocessing's TERMINATE), so a Python parent reads -15
 * too. */
#define MPROC__W32_EXIT_TERMINATE 0x10000u
#define MPROC__W32_EXIT_KILL 0x10009u

/* malloc()ed conversions; NULL when out of memory or the text is malformed. */
wchar_t *mproc__w32_widen(const char *s);
char *mproc__w32_narrow(const wchar_t *w);

/* A manual-reset event private to the calling thread, for waiting on its own
 * overlapped operations; closed when the thread ends. NULL on failure (recorded). */
HANDLE mproc__w32_thread_event(void);

/* Milliseconds to wait until deadline (as from mproc__deadline): INFINITE for none. */
DWORD mproc__w32_wait_ms(int64_t deadline);

/* Writes arg quoted for a command line, as the C runtime of the child splits it,
 * to out (unless NULL); returns its length in characters (no terminator written). */
size_t mproc__w32_quote_arg(const wchar_t *arg, wchar_t *out);

/* Random bits for names nobody else picks. */
uint64_t mproc__w32_random(void);

#endif /* MPROC_WIN32_H */
