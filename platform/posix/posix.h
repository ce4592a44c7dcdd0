/*
 * What the POSIX layer takes from the system. Each Linux-only (or recent) facility
 * has a portable replacement, written for macOS and the BSDs; MPROC__USE_X is 1 when
 * facility X is used and 0 when its replacement is. A replacement is compiled in
 * when the facility is missing and, so that CI runs that code on Linux too, for
 * every facility when MPROC_FORCE_FALLBACKS is defined (the CMake option of that
 * name). MPROC_HAVE_* come from CMake's checks; macros are tested here.
 */
#ifndef MPROC_POSIX_H
#define MPROC_POSIX_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(MPROC_FORCE_FALLBACKS)
#define MPROC__LINUX_ONLY 0
#define MPROC__NATIVE 0
#else
#if defined(__linux__)
#define MPROC__LINUX_ONLY 1
#else
#define MPROC__LINUX_ONLY 0
#endif
#define MPROC__NATIVE 1
#endif

/* Descriptors: pipe2(O_CLOEXEC), SOCK_CLOEXEC, MSG_CMSG_CLOEXEC, F_SETPIPE_SZ. */
#if MPROC__NATIVE && defined(MPROC_HAVE_PIPE2)
#define MPROC__USE_PIPE2 1
#else
#define MPROC__USE_PIPE2 0
#endif
#if MPROC__NATIVE && defined(SOCK_CLOEXEC)
#define MPROC__USE_SOCK_CLOEXEC 1
#else
#define MPROC__USE_SOCK_CLOEXEC 0
#endif
#if MPROC__NATIVE && defined(MSG_CMSG_CLOEXEC)
#define MPROC__USE_MSG_CMSG_CLOEXEC 1
#else
#define MPROC__USE_MSG_CMSG_CLOEXEC 0
#endif
#if MPROC__NATIVE && defined(F_SETPIPE_SZ)
#define MPROC__USE_SETPIPE_SZ 1
#else
#define MPROC__USE_SETPIPE_SZ 0
#endif

/* Processes: gettid, close_range, pidfd_open, PR_SET_PDEATHSIG, /proc/self/exe, and
 * the spawn file action that closes inherited strays. The system call numbers are
 * tested on Linux only: macOS defines an unrelated SYS_gettid. */
#if MPROC__LINUX_ONLY && defined(SYS_gettid)
#define MPROC__USE_GETTID 1
#else
#define MPROC__USE_GETTID 0
#endif
#if MPROC__LINUX_ONLY && defined(SYS_close_range)
#define MPROC__USE_CLOSE_RANGE 1
#else
#define MPROC__USE_CLOSE_RANGE 0
#endif
#if MPROC__LINUX_ONLY && defined(SYS_pidfd_open)
#define MPROC__USE_PIDFD 1
#else
#define MPROC__USE_PIDFD 0
#endif
#if MPROC__LINUX_ONLY && MPROC__USE_GETTID
#define MPROC__USE_PDEATHSIG 1
#else
#define MPROC__USE_PDEATHSIG 0
#endif
#if MPROC__LINUX_ONLY
#define MPROC__USE_PROC_SELF_EXE 1
#else
#define MPROC__USE_PROC_SELF_EXE 0
#endif
#if MPROC__NATIVE && defined(MPROC_HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP)
#define MPROC__USE_SPAWN_CLOSEFROM 1
#else
#define MPROC__USE_SPAWN_CLOSEFROM 0
#endif

/* Images: dl_iterate_phdr answers every lookup by walking the loaded objects; the
 * replacement walks them once at start-up (dl_iterate_phdr, or dyld on macOS) and
 * answers lookups with dladdr. */
#if MPROC__NATIVE && defined(MPROC_HAVE_DL_ITERATE_PHDR)
#define MPROC__USE_PHDR_LOOKUP 1
#else
#define MPROC__USE_PHDR_LOOKUP 0
#endif

/* Shared memory and waiting: memfd_create, robust process-shared mutexes,
 * pthread_mutex_clocklock, futex (FreeBSD: _umtx_op). */
#if MPROC__NATIVE && defined(MPROC_HAVE_MEMFD_CREATE) && defined(MFD_CLOEXEC)
#define MPROC__USE_MEMFD 1
#else
#define MPROC__USE_MEMFD 0
#endif
#if MPROC__NATIVE && defined(MPROC_HAVE_PTHREAD_MUTEXATTR_SETROBUST)
#define MPROC__USE_ROBUST_MUTEX 1
#else
#define MPROC__USE_ROBUST_MUTEX 0
#endif
#if MPROC__USE_ROBUST_MUTEX && defined(MPROC_HAVE_PTHREAD_MUTEX_CLOCKLOCK)
#define MPROC__USE_CLOCKLOCK 1
#else
#define MPROC__USE_CLOCKLOCK 0
#endif
#if MPROC__LINUX_ONLY && defined(SYS_futex)
#define MPROC__USE_FUTEX 1
#else
#define MPROC__USE_FUTEX 0
#endif
#if MPROC__NATIVE && defined(__FreeBSD__) && defined(MPROC_HAVE_UMTX_OP)
#define MPROC__USE_UMTX 1
#else
#define MPROC__USE_UMTX 0
#endif

/* An id of the calling thread made of its process id (high 32 bits) and a number
 * unique in the process (low 32 bits): unique on the system while the thread lives,
 * and it names the process, which is what the portable mutex needs to tell a dead
 * holder. Numbers are not reused, so it stays unique until a process has made 2^32
 * threads, and a process of a reused pid makes the same ids again. */
uint64_t mproc__posix_thread_tag(void);
#define MPROC__TAG_PID(tag) ((long)((tag) >> 32))

/* The start time of the calling process, in a unit of the system's choosing, or 0
 * when the system does not tell (then pid reuse goes unnoticed). */
uint64_t mproc__posix_start_time(void);
/* Whether process pid has ended: it does not exist, or is a zombie (ended, not yet
 * reaped), or, when started is not 0, its pid now names another process (one with
 * another start time than started, from mproc__posix_start_time in the first). */
bool mproc__posix_proc_gone(long pid, uint64_t started);

#endif /* MPROC_POSIX_H */
