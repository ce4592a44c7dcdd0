/*
 * The platform seam: the few OS operations the portable core needs. Each OS
 * directory (platform/posix, platform/win32) implements all of it; the core never
 * sees an OS type. Every function returns 0 or a negative MPROC_E* code and, on
 * failure, has recorded the detail with mproc__error_*().
 */
#ifndef MPROC_PLATFORM_H
#define MPROC_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* MinGW's __MINGW_PRINTF_FORMAT */

#include "mproc.h"

#if defined(_MSC_VER)
#define MPROC__THREAD_LOCAL __declspec(thread)
#else
#define MPROC__THREAD_LOCAL _Thread_local
#endif

/* The archetype of printf-like checks: MinGW's own where it has one (gnu_printf
 * when the build asks for its C99 printf, which the library needs for %zu;
 * ms_printf otherwise), plain printf elsewhere. */
#if defined(__MINGW_PRINTF_FORMAT)
#define MPROC__PRINTF_FORMAT __MINGW_PRINTF_FORMAT
#else
#define MPROC__PRINTF_FORMAT printf
#endif

/* An OS descriptor: a file descriptor on POSIX, a HANDLE (as intptr_t) on Windows. */
typedef intptr_t mproc__fd;
#define MPROC__FD_INVALID ((mproc__fd)-1)

/* ---------------------------------------------------------------- I/O */

/* A pipe pair, both ends non-inheritable. Duplex: fds[0] and fds[1] both read and
 * write. Simplex: fds[0] reads, fds[1] writes. */
int mproc__os_pipe(mproc__fd fds[2], bool duplex);
/* Reads up to len bytes (retrying interruptions): *got is 0 only at end of file. */
int mproc__os_read(mproc__fd fd, void *buf, size_t len, size_t *got);
/* Writes all of head[0..hlen) then body[0..blen) (a frame header and its payload),
 * retrying interruptions and short writes. duplex tells which kind of pair the end
 * came from. A closed peer gives MPROC_EOF and never raises SIGPIPE. */
int mproc__os_write2(mproc__fd fd, bool duplex, const void *head, size_t hlen, const void *body,
                     size_t blen);
/* Waits until one of fds is readable (or at end of file / hung up). ready[i] is set
 * to 1 for each ready one; *nready counts them (0 on timeout). timeout < 0 blocks. */
int mproc__os_poll_read(const mproc__fd *fds, size_t n, double timeout, unsigned char *ready,
                        size_t *nready);
/* Passes a descriptor over a duplex end (POSIX only: the fork server's). The
 * receiver gets a new non-inheritable descriptor. */
int mproc__os_send_fd(mproc__fd sock, mproc__fd fd);
int mproc__os_recv_fd(mproc__fd sock, mproc__fd *fd);
/* Closes once; never retried (a retried close may close someone else's descriptor). */
void mproc__os_close(mproc__fd fd);
/* Makes fd inheritable by (inherit) or private to (!inherit) started programs. */
int mproc__os_set_inherit(mproc__fd fd, bool inherit);

/* ---------------------------------------------------------- processes */

typedef struct mproc__os_proc {
  long pid;
  mproc__fd waitfd; /* readable when the process exits (pidfd, or process HANDLE) */
  bool reaped;
  int exitcode; /* valid once reaped: exit status, or -signal */
} mproc__os_proc;

/* What a starting child must hold: its descriptors and whether it dies with us. */
typedef struct mproc__os_start {
  const mproc__fd *keep; /* descriptors the child keeps (fork) or receives (spawn) */
  size_t nkeep;
  mproc__fd lifeline; /* one of keep[]: the read end the child watches for the
                         parent's death, or invalid */
} mproc__os_start;

/* Whether this system has fork, the default start method where it has. */
bool mproc__os_can_fork(void);
/* Forks. Returns 1 in the child (with every descriptor but 0-2 and start->keep
 * closed, and set to die with its parent), 0 in the parent with *proc filled in. */
int mproc__os_fork(mproc__os_proc *proc, const mproc__os_start *start);
/* Starts exe as "argv0 MPROC__SPAWN_FLAG <child value of keep[0]>";
 * start->keep[i] becomes descriptor (or handle) child_fds[i] in the child, written by
 * this call. */
int mproc__os_spawn(mproc__os_proc *proc, const char *exe, const char *argv0,
                    const mproc__os_start *start, mproc__fd *child_fds);
/* Waits up to timeout for the process to exit and reaps it: 0 when reaped,
 * MPROC_ETIMEDOUT otherwise. */
int mproc__os_proc_wait(mproc__os_proc *proc, double timeout);
/* force: SIGKILL / TerminateProcess; otherwise SIGTERM. No-op once reaped. */
int mproc__os_proc_signal(mproc__os_proc *proc, bool force);
/* Releases what proc holds (its wait descriptor); does not wait. */
void mproc__os_proc_release(mproc__os_proc *proc);
long mproc__os_getpid(void);
/* An id of the calling thread, unique on the system while it lives (lock owners). */
uint64_t mproc__os_thread_id(void);

/* Whether a child started now by this thread can rely on the OS to end it when
 * this process ends (Linux's parent-death signal is tied to the creating thread,
 * so only the main thread qualifies); otherwise it watches the lifeline. */
bool mproc__os_death_signal_usable(void);
/* In a spawned child: keep only 0-2 and keep[] open, mark keep[] private again, and
 * arrange to die with the parent (whose pid is parent_pid): by the death signal if
 * use_signal (closing lifeline), else by watching lifeline. */
int mproc__os_child_setup(const mproc__fd *keep, size_t nkeep, long parent_pid,
                          mproc__fd lifeline, bool use_signal);
/* Flushes stdio and exits the process immediately (no atexit handlers). */
_Noreturn void mproc__os_exit(int code);

/* -------------------------------------------------------------- images */

/* The running executable's path (malloc()ed). argv0 is a fallback. */
int mproc__os_exe_path(const char *argv0, char **path);
/* Snapshot of the modules loaded at start-up: only those are sure to be in a spawned
 * child. Called once by mproc_init. */
int mproc__os_modules_snapshot(void);
/* A code address as (module, offset). module is "" for the main executable,
 * otherwise the module's path; *module is malloc()ed. MPROC_ENOTFOUND when the
 * address is in no module a spawned child will have. */
int mproc__os_addr_to_ref(const void *addr, char **module, uint64_t *offset);
/* The address (module, offset) names in this process; MPROC_ENOTFOUND if none. */
int mproc__os_ref_to_addr(const char *module, uint64_t offset, void **addr);

int mproc__os_cpu_count(void);
/* Gives the CPU to another runnable thread, if there is one (sched_yield). */
void mproc__os_yield(void);

/* ----------------------------------------- shared memory and waiting */

/* An anonymous shared memory object of size bytes, as a non-inheritable
 * descriptor that can cross a spawn (memfd, or an unlinked shm_open object). */
int mproc__os_shm_create(size_t size, mproc__fd *fd);
/* A named one (Python's SharedMemory): create (exclusive) or attach; *size is the
 * size of an attached one. */
int mproc__os_shm_open(const char *name, bool create, size_t *size, mproc__fd *fd);
int mproc__os_shm_unlink(const char *name);
int mproc__os_shm_map(mproc__fd fd, size_t size, void **addr);
void mproc__os_shm_unmap(void *addr, size_t size);

/* A mutex that lives in shared memory, usable by every process mapping it, and
 * robust: when its owner dies, the next locker gets it with *recovered set. */
typedef struct mproc__os_mutex {
  _Alignas(16) unsigned char opaque[64];
} mproc__os_mutex;

/* recursive: the owner may lock it again (RLock). */
int mproc__os_mutex_init(mproc__os_mutex *m, bool recursive);
/* deadline as from mproc__deadline (< 0: none). 0, or MPROC_ETIMEDOUT. */
int mproc__os_mutex_lock(mproc__os_mutex *m, int64_t deadline, bool *recovered);
/* Like lock, but never blocks: MPROC_ETIMEDOUT when held by someone else. */
int mproc__os_mutex_trylock(mproc__os_mutex *m, bool *recovered);
/* MPROC_ESTATE when the calling thread does not hold it. */
int mproc__os_mutex_unlock(mproc__os_mutex *m);

/* Waiting on a 32-bit word in shared memory (a futex): returns at once unless
 * *word == expected; otherwise sleeps until woken, the deadline passes
 * (MPROC_ETIMEDOUT) or spuriously (0). Callers loop on their own condition. */
int mproc__os_word_wait(uint32_t *word, uint32_t expected, int64_t deadline);
/* Wakes up to n waiters on word (n < 0: all). */
void mproc__os_word_wake(uint32_t *word, int n);

#endif /* MPROC_PLATFORM_H */
