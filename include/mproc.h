/**
 * @file mproc.h
 * @brief mproc: Python's multiprocessing for C. The only header a program includes.
 *
 * Every call that can fail returns int: 0 on success or a negative MPROC_E*
 * code. mproc_strerror() names the code; mproc_last_error() gives the detailed
 * message of the last failure on the calling thread (with the OS error text
 * behind an MPROC_ESYS). Timeouts are double seconds: MPROC_FOREVER (any
 * negative value) blocks, 0 does not block.
 *
 * mproc_init(&argc, &argv) must be the first line of main(): in a child started
 * with the spawn method it runs the child's work and never returns.
 */
#ifndef MPROC_H
#define MPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mproc/export.h"
#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/**
 * @defgroup mproc_errors Errors
 * @brief Error codes, their names and messages, and the detail of the last failure.
 *
 * Every call that can fail returns 0 or one of the negative codes of
 * ::mproc_errno. The codes are the same on every platform; the OS error behind an
 * MPROC_ESYS is kept per thread (mproc_last_oserror()).
 * @{
 */

/**
 * @brief The error table: X(name, message) for each code, in code order.
 *
 * One table yields the enum, mproc_strerror and mproc_err_name. The code of the
 * entry at position i is -1 - i: MPROC_ESYS is -1, MPROC_EINVAL is -2, and so on.
 *
 * | code | message |
 * |---|---|
 * | MPROC_ESYS | operating system error |
 * | MPROC_EINVAL | invalid argument |
 * | MPROC_ENOMEM | out of memory |
 * | MPROC_ENOTINIT | mproc_init() has not been called |
 * | MPROC_ENOTFOUND | function cannot be resolved in a child process |
 * | MPROC_EMSGSIZE | message too large |
 * | MPROC_EOF | end of file: the peer closed the connection |
 * | MPROC_ETIMEDOUT | timed out |
 * | MPROC_ECLOSED | object is closed |
 * | MPROC_ESTATE | operation not valid in the object's current state |
 * | MPROC_EFULL | queue is full |
 * | MPROC_EEMPTY | queue is empty |
 * | MPROC_EWORKER | worker process died |
 * | MPROC_ENOTSUP | operation not supported on this platform |
 * | MPROC_EPROTO | protocol error: malformed data on the connection |
 * | MPROC_EFAILED | the task reported a failure |
 * | MPROC_ECANCELED | operation canceled |
 */
#define MPROC_ERRNO_MAP(X)                                                                 \
  X(ESYS, "operating system error")                                                        \
  X(EINVAL, "invalid argument")                                                            \
  X(ENOMEM, "out of memory")                                                               \
  X(ENOTINIT, "mproc_init() has not been called")                                          \
  X(ENOTFOUND, "function cannot be resolved in a child process")                          \
  X(EMSGSIZE, "message too large")                                                         \
  X(EOF, "end of file: the peer closed the connection")                                    \
  X(ETIMEDOUT, "timed out")                                                                \
  X(ECLOSED, "object is closed")                                                           \
  X(ESTATE, "operation not valid in the object's current state")                           \
  X(EFULL, "queue is full")                                                                \
  X(EEMPTY, "queue is empty")                                                              \
  X(EWORKER, "worker process died")                                                        \
  X(ENOTSUP, "operation not supported on this platform")                                  \
  X(EPROTO, "protocol error: malformed data on the connection")                            \
  X(EFAILED, "the task reported a failure")                                                \
  X(ECANCELED, "operation canceled")

/* Position of each code in the table; the codes are -1 - position. */
enum mproc__err_index {
#define MPROC__ERR_INDEX(name, msg) MPROC__ERRIDX_##name,
  MPROC_ERRNO_MAP(MPROC__ERR_INDEX)
#undef MPROC__ERR_INDEX
  MPROC__ERRIDX_COUNT
};

/**
 * @brief The codes a call returns: ::MPROC_OK (0), or MPROC_ followed by a name of
 * #MPROC_ERRNO_MAP, whose table gives each code's message.
 */
typedef enum mproc_errno {
  MPROC_OK = 0, /**< Success. */
#define MPROC__ERR_CODE(name, msg) MPROC_##name = -1 - MPROC__ERRIDX_##name,
  MPROC_ERRNO_MAP(MPROC__ERR_CODE)
#undef MPROC__ERR_CODE
} mproc_errno;

/**
 * @brief The message of an error code.
 * @param err A code returned by an mproc call.
 * @return "invalid argument" for MPROC_EINVAL, "success" for 0, "unknown error"
 *         for a value outside the table. A static string.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_strerror(int err);
/**
 * @brief The name of an error code.
 * @param err A code returned by an mproc call.
 * @return "MPROC_EINVAL" for MPROC_EINVAL, "MPROC_OK" for 0, "MPROC_UNKNOWN" for a
 *         value outside the table. A static string.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_err_name(int err);
/**
 * @brief The detailed message of the last failing call on this thread.
 * @return The message, "" if no call failed yet. It starts with the code's name; for
 *         MPROC_ESYS it ends with the OS error's text. The string stays valid until
 *         the next mproc call on this thread.
 * @par Thread safety
 * Safe from any thread: each thread has its own last error.
 */
MPROC_EXTERN const char *mproc_last_error(void);
/**
 * @brief The OS error behind the last MPROC_ESYS on this thread.
 * @return errno (GetLastError() on Windows) of the last failure, 0 if the last
 *         failure had none.
 * @par Thread safety
 * Safe from any thread: each thread has its own last error.
 */
MPROC_EXTERN int mproc_last_oserror(void);

/** @} */

/* ----------------------------------------------------------------- runtime */

/**
 * @defgroup mproc_runtime Runtime
 * @brief Start-up, the start method, the version, and what a function running in
 * a child sees.
 *
 * mproc_init() comes first in main(). Under the spawn method a child re-executes
 * the program and mproc_init() runs the child's function there instead of
 * returning. Functions travel as plain C function pointers under both methods;
 * under spawn one travels as (module, offset) and is found again in the child.
 * @{
 */

/** @brief A timeout that never passes: block until done. Any negative timeout does the same. */
#define MPROC_FOREVER (-1.0)

/**
 * @brief The library's version.
 * @return #MPROC_VERSION_HEX of the library run, which may differ from the header
 *         the program was built with.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN unsigned mproc_version(void);
/**
 * @brief The library's version as text.
 * @return "MAJOR.MINOR.PATCH", e.g. "0.1.0". A static string.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_version_string(void);

/**
 * @brief Initialises mproc: the first line of main().
 *
 * In the parent it returns. In a child started with the spawn method it runs the
 * child's function and exits: it does not return there. A second call in the same
 * process returns 0 at once.
 *
 * @param argc &argc of main().
 * @param argv &argv of main(); (*argv)[0] helps find the running executable.
 * @retval 0 Initialised (the parent, or a repeated call).
 * @retval MPROC_EINVAL argc, argv or *argv is NULL; or the arguments of a spawned
 *         child are malformed.
 * @retval MPROC_ENOTFOUND The running executable cannot be found (the system does
 *         not say and argv[0] names no file).
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS apr_initialize(), atexit() or the pipe that children watch for
 *         this process's death failed.
 * @par Thread safety
 * Call it once from main(), before any other thread uses mproc.
 */
MPROC_EXTERN int mproc_init(int *argc, char ***argv);

/** @brief How a child process is started. */
typedef enum {
  MPROC_START_DEFAULT = 0, /**< The process-wide default: fork on POSIX, spawn on Windows. */
  MPROC_START_FORK = 1,    /**< The child is a copy of the parent (POSIX only). */
  MPROC_START_SPAWN = 2    /**< The child re-executes the program and runs the function. */
} mproc_start_method;

/**
 * @brief Sets the process-wide default start method (Python's set_start_method).
 * @param method The method ::MPROC_START_DEFAULT stands for from now on;
 *        ::MPROC_START_DEFAULT itself restores the platform's default.
 * @retval 0 Set.
 * @retval MPROC_EINVAL method is not one of ::mproc_start_method.
 * @note MPROC_ENOTSUP is meant for ::MPROC_START_FORK where there is no fork
 *       (Windows); the POSIX implementation never returns it.
 * @par Thread safety
 * Not synchronised: call it before other threads start processes or pools.
 */
MPROC_EXTERN int mproc_set_start_method(mproc_start_method method);
/**
 * @brief The process-wide default start method.
 * @return The method ::MPROC_START_DEFAULT stands for now: ::MPROC_START_FORK or
 *         ::MPROC_START_SPAWN, never ::MPROC_START_DEFAULT.
 * @par Thread safety
 * Safe from any thread, as long as no thread calls mproc_set_start_method() meanwhile.
 */
MPROC_EXTERN mproc_start_method mproc_get_start_method(void);
/**
 * @brief Number of CPUs usable by this process.
 * @return The CPUs this process may run on (its affinity mask on Linux), at least 1.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_cpu_count(void);
/**
 * @brief This process's id, as Python's `os.getpid()`: the same number
 *        mproc_process_pid() gives the parent for this child.
 * @return The process id (a Windows process id there).
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN long mproc_getpid(void);
/**
 * @brief Sleeps, as Python's `time.sleep()`.
 * @param seconds How long, with microsecond resolution; 0, a negative value or NaN
 *        returns at once.
 * @par Thread safety
 * Safe from any thread; only the calling thread sleeps.
 */
MPROC_EXTERN void mproc_sleep(double seconds);

/** @brief What a function running in a child sees: its share list, its name, its result. */
typedef struct mproc_ctx mproc_ctx;
/**
 * @brief A function run in a child: a Process's target or a pool's task.
 * @param ctx The child's context (mproc_shared(), mproc_return(), mproc_fail()).
 * @param arg A copy of the bytes given at start (or submission).
 * @param len Their size.
 * @return For a Process, the process's exit code (0-255 reach the parent on POSIX; a
 *         negative mproc code exits 1). For a pool task, 0 for success (unless it
 *         called mproc_fail()); a negative MPROC_E* code fails the task with that
 *         code, a positive value fails it with MPROC_EFAILED.
 */
typedef int (*mproc_fn)(mproc_ctx *ctx, const void *arg, size_t len);

/**
 * @brief An object of the share list this child was started with.
 * @param ctx The child's context.
 * @param i Its position in the share list.
 * @return The i-th object, the same handle type as in the parent (mproc_conn *, ...);
 *         NULL if i is out of range or ctx is NULL.
 * @par Thread safety
 * Safe from any thread of the child.
 */
MPROC_EXTERN void *mproc_shared(mproc_ctx *ctx, size_t i);
/**
 * @brief The length of the share list this child was started with.
 * @param ctx The child's context.
 * @return The number of objects, 0 if ctx is NULL.
 * @par Thread safety
 * Safe from any thread of the child.
 */
MPROC_EXTERN size_t mproc_shared_count(const mproc_ctx *ctx);
/**
 * @brief The name of the process this function runs in.
 * @param ctx The child's context.
 * @return The name ("Process-N" by default), NULL if ctx is NULL.
 * @par Thread safety
 * Safe from any thread of the child.
 */
MPROC_EXTERN const char *mproc_ctx_name(const mproc_ctx *ctx);
/**
 * @brief Sets the task's result (pool tasks): data is copied; any size.
 *
 * A second call replaces the first result. A Process has no result channel: send
 * results over a Pipe or Queue.
 *
 * @param ctx The task's context.
 * @param data The result's bytes; may be NULL when len is 0.
 * @param len Their size.
 * @retval 0 Set.
 * @retval MPROC_EINVAL ctx is NULL, or data is NULL with len > 0.
 * @retval MPROC_ESTATE ctx is a Process's, not a pool task's.
 * @retval MPROC_ENOMEM No memory for the copy.
 * @par Thread safety
 * Writes to ctx: one thread at a time (normally the one running the task).
 */
MPROC_EXTERN int mproc_return(mproc_ctx *ctx, const void *data, size_t len);
/**
 * @brief Sets the task's error with a message (pool tasks).
 *
 * The task fails with MPROC_EFAILED (or with the negative code it returns), and
 * the message reaches mproc_result_message() and mproc_last_error() in the parent.
 * In a Process the message is written to stderr.
 *
 * @param ctx The task's context.
 * @param fmt A printf format for the message (cut at 511 bytes).
 * @param ... The format's arguments.
 * @retval MPROC_EFAILED Always when ctx and fmt are given, so that
 *         `return mproc_fail(...)` works.
 * @retval MPROC_EINVAL ctx or fmt is NULL.
 * @par Thread safety
 * Writes to ctx: one thread at a time (normally the one running the task).
 */
MPROC_EXTERN int mproc_fail(mproc_ctx *ctx, const char *fmt, ...)
#if defined(__MINGW32__)
    /* MinGW's C99 printf formats it (%zu and the like), whatever the caller's own
     * printf is; its plain `printf` archetype would check for msvcrt's. */
    __attribute__((format(gnu_printf, 2, 3)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** @} */

/* --------------------------------------------------------------- Process */

/**
 * @defgroup mproc_process Process
 * @brief A function run in a child process (Python's Process).
 *
 * A child receives the objects it needs (connections, queues, locks, shared
 * memory) in its share list, never through globals, so the same code runs under
 * fork and spawn. Children die with their parent; none is left a zombie.
 *
 * Thread safety: a handle is used by one thread at a time; different handles may
 * be used from different threads (the list of children is locked).
 * @{
 */

/** @brief A started child process (opaque). */
typedef struct mproc_process mproc_process;

/** @brief Options of mproc_process_start(); NULL or all-zero means Python's defaults. */
typedef struct mproc_process_opts {
  mproc_start_method start_method; /**< 0: the process-wide default. */
  const char *name;                /**< NULL: "Process-N". */
  bool daemon;                     /**< Terminated when the parent frees it or exits. */
  void *const *share; /**< Objects handed to the child (mproc_conn *, ...): mproc_shared(ctx, i). */
  size_t nshare;      /**< Number of objects in share. */
} mproc_process_opts;

/**
 * @brief Starts target(ctx, copy of arg[0..len)) in a new process.
 *
 * Under fork the child is forked from the calling thread, as Python's is: in a
 * program with other threads that may hold locks, prefer spawn. Under spawn target
 * must be in a module the child will have (not one loaded with dlopen() after
 * mproc_init()).
 *
 * @param[out] p The new process; NULL on failure.
 * @param target The function the child runs.
 * @param arg Bytes copied to the child; may be NULL when len is 0.
 * @param len Their size.
 * @param opts Start method, name, daemon flag and share list; NULL for the defaults.
 * @retval 0 Started.
 * @retval MPROC_EINVAL p or target is NULL; arg is NULL with len > 0; share is NULL
 *         with nshare > 0; a share list entry is not a live mproc handle; unknown
 *         start method.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ECLOSED A share list entry is closed.
 * @retval MPROC_ENOTFOUND Spawn: target is in no module the child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EOF Spawn: the child ended before it read what it should run.
 * @retval MPROC_ESYS fork(), posix_spawn(), a pipe or a lock failed.
 * @par Thread safety
 * Safe from any thread (the list of children is locked).
 */
MPROC_EXTERN int mproc_process_start(mproc_process **p, mproc_fn target, const void *arg,
                                     size_t len, const mproc_process_opts *opts);
/**
 * @brief Waits for the process to exit, and reaps it.
 * @param p The process.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @retval 0 It has exited (see mproc_process_exitcode()).
 * @retval MPROC_ETIMEDOUT It still runs after timeout.
 * @retval MPROC_EINVAL p is NULL.
 * @retval MPROC_ESTATE p was not started by this process (a handle inherited
 *         through fork).
 * @retval MPROC_ESYS waitpid() or poll() failed (e.g. the child was reaped elsewhere).
 * @par Thread safety
 * One thread at a time per handle.
 */
MPROC_EXTERN int mproc_process_join(mproc_process *p, double timeout);
/**
 * @brief Sends SIGTERM (TerminateProcess on Windows). Does nothing once the process
 * has exited.
 * @param p The process.
 * @retval 0 Sent, or the process had already exited.
 * @retval MPROC_EINVAL p is NULL.
 * @retval MPROC_ESTATE p was not started by this process.
 * @retval MPROC_ESYS kill() failed.
 * @par Thread safety
 * One thread at a time per handle.
 */
MPROC_EXTERN int mproc_process_terminate(mproc_process *p);
/**
 * @brief Sends SIGKILL. Does nothing once the process has exited.
 * @param p The process.
 * @retval 0 Sent, or the process had already exited.
 * @retval MPROC_EINVAL p is NULL.
 * @retval MPROC_ESTATE p was not started by this process.
 * @retval MPROC_ESYS kill() failed.
 * @par Thread safety
 * One thread at a time per handle.
 */
MPROC_EXTERN int mproc_process_kill(mproc_process *p);
/**
 * @brief The exit code once the process has exited.
 * @param p The process.
 * @param[out] code The function's return value or exit() status; -N when killed by
 *        signal N.
 * @retval 0 *code is set.
 * @retval MPROC_ESTATE The process is still running; or p was not started by this
 *         process.
 * @retval MPROC_EINVAL p or code is NULL.
 * @retval MPROC_ESYS waitpid() failed.
 * @par Thread safety
 * One thread at a time per handle.
 */
MPROC_EXTERN int mproc_process_exitcode(mproc_process *p, int *code);
/**
 * @brief Whether the process is still running.
 * @param p The process.
 * @return true while it runs; false once it has exited, or for NULL.
 * @par Thread safety
 * One thread at a time per handle.
 */
MPROC_EXTERN bool mproc_process_is_alive(mproc_process *p);
/**
 * @brief The process's id.
 * @param p The process.
 * @return Its pid, -1 for NULL.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN long mproc_process_pid(const mproc_process *p);
/**
 * @brief The process's name.
 * @param p The process.
 * @return opts.name, or "Process-N"; NULL for NULL. Valid until mproc_process_free().
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_process_name(const mproc_process *p);
/**
 * @brief Whether the process is a daemon (opts.daemon).
 * @param p The process.
 * @return opts.daemon; false for NULL.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN bool mproc_process_daemon(const mproc_process *p);
/**
 * @brief Frees the handle (NULL is fine).
 *
 * A daemon still running is terminated and reaped; a non-daemon one is left running
 * and reaped later (at the latest when the parent exits, which waits for it as
 * Python does).
 *
 * @param p The process, or NULL.
 * @par Thread safety
 * Not concurrently with any other call on p.
 */
MPROC_EXTERN void mproc_process_free(mproc_process *p);

/** @} */

/* ------------------------------------------------------- Pipe / Connection */

/**
 * @defgroup mproc_conn Pipe and Connection
 * @brief Python's Pipe() and Connection: whole messages of any size over a pipe.
 *
 * A message is delivered whole or not at all, 0 bytes to more than 4 GiB. SIGPIPE
 * never kills the program: a closed peer gives MPROC_EOF.
 *
 * Thread safety: a connection has no lock of its own. One thread may send while
 * another receives on the same duplex connection; two threads must not send at the
 * same time, nor two receive (mproc_conn_recv(), mproc_conn_recv_into(),
 * mproc_conn_poll(), mproc_wait()). mproc_conn_set_max_message(),
 * mproc_conn_close() and mproc_conn_free() must not run concurrently with any other
 * call on the connection.
 * @{
 */

/** @brief One end of a pipe (opaque). */
typedef struct mproc_conn mproc_conn;

/**
 * @brief Python's Pipe(duplex): a connected pair.
 *
 * Duplex: both ends send and receive. Simplex: a receives, b sends; the wrong
 * direction is MPROC_EINVAL.
 *
 * @param[out] a The first end.
 * @param[out] b The second end.
 * @param duplex Whether both ends send and receive.
 * @retval 0 Created.
 * @retval MPROC_EINVAL a or b is NULL.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS pipe() or socketpair() failed (e.g. out of descriptors).
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_pipe(mproc_conn **a, mproc_conn **b, bool duplex);
/**
 * @brief send_bytes: writes one message whole (0 bytes to more than 4 GiB).
 * @param c A sending end.
 * @param data The message; may be NULL when len is 0.
 * @param len Its size.
 * @retval 0 Written.
 * @retval MPROC_EINVAL c is not a connection (NULL or freed) or only receives; data
 *         is NULL with len > 0.
 * @retval MPROC_ECLOSED c is closed.
 * @retval MPROC_EOF The peer has closed its end.
 * @retval MPROC_ESYS The write failed.
 * @par Thread safety
 * One sending thread at a time; see @ref mproc_conn.
 */
MPROC_EXTERN int mproc_conn_send(mproc_conn *c, const void *data, size_t len);
/**
 * @brief recv_bytes: receives the next message into a new buffer; blocks until one
 * comes.
 * @param c A receiving end.
 * @param[out] data The message, malloc()ed (free() it); never NULL on success, even
 *        for 0 bytes.
 * @param[out] len Its size; also set with MPROC_EMSGSIZE for maxlen.
 * @param maxlen Longest message accepted; 0 means no limit.
 * @retval 0 Received.
 * @retval MPROC_EOF The peer closed its end and nothing is left; or it closed in
 *         the middle of a message, of which nothing is delivered.
 * @retval MPROC_EMSGSIZE The message is longer than maxlen (it stays readable); or
 *         longer than the mproc_conn_set_max_message() limit (it was discarded); or
 *         larger than this process's address space.
 * @retval MPROC_EINVAL data or len is NULL; c is not a connection or only sends.
 * @retval MPROC_ECLOSED c is closed.
 * @retval MPROC_EPROTO The descriptor carries data mproc did not send; the
 *         connection stays unusable for receiving.
 * @retval MPROC_ENOMEM No memory for the message (it stays readable).
 * @retval MPROC_ESYS The read failed.
 * @par Thread safety
 * One receiving thread at a time; see @ref mproc_conn.
 */
MPROC_EXTERN int mproc_conn_recv(mproc_conn *c, void **data, size_t *len, size_t maxlen);
/**
 * @brief recv_bytes_into: receives the next message into buf; blocks until one
 * comes.
 * @param c A receiving end.
 * @param buf Where the message goes; may be NULL when cap is 0.
 * @param cap Size of buf.
 * @param[out] len The message's size (also set with MPROC_EMSGSIZE).
 * @retval 0 Received.
 * @retval MPROC_EMSGSIZE It does not fit: *len tells its size, and the message stays
 *         readable. Also for a message over the mproc_conn_set_max_message() limit
 *         (discarded).
 * @retval MPROC_EOF The peer closed its end and nothing is left; or it closed in
 *         the middle of a message, of which nothing is delivered.
 * @retval MPROC_EINVAL len is NULL, or buf with cap > 0; c is not a connection or
 *         only sends.
 * @retval MPROC_ECLOSED c is closed.
 * @retval MPROC_EPROTO The descriptor carries data mproc did not send.
 * @retval MPROC_ESYS The read failed.
 * @par Thread safety
 * One receiving thread at a time; see @ref mproc_conn.
 */
MPROC_EXTERN int mproc_conn_recv_into(mproc_conn *c, void *buf, size_t cap, size_t *len);
/**
 * @brief Waits until a message (or the end of file) can be received without
 * blocking.
 * @param c A receiving end.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @retval 1 Ready: mproc_conn_recv() will not block.
 * @retval 0 The timeout passed first.
 * @retval MPROC_EINVAL c is not a connection or only sends.
 * @retval MPROC_ECLOSED c is closed.
 * @retval MPROC_EPROTO An earlier malformed frame put the stream out of step.
 * @retval MPROC_ESYS poll() failed.
 * @par Thread safety
 * Counts as receiving; see @ref mproc_conn.
 */
MPROC_EXTERN int mproc_conn_poll(mproc_conn *c, double timeout);
/**
 * @brief multiprocessing.connection.wait: waits until at least one of conns is ready
 * (or the timeout passes). No limit on n.
 * @param conns Receiving ends; may be NULL when n is 0.
 * @param n Their number.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @param[out] ready Capacity n: receives the indices of the ready ones, in order.
 * @param[out] nready Their count; 0 on timeout.
 * @retval 0 Done (*nready may be 0).
 * @retval MPROC_EINVAL conns, ready or nready is NULL; an entry is not a connection
 *         or only sends.
 * @retval MPROC_ECLOSED An entry is closed.
 * @retval MPROC_EPROTO An entry's stream is out of step after a malformed frame.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS poll() failed.
 * @par Thread safety
 * Counts as receiving on every entry; see @ref mproc_conn.
 */
MPROC_EXTERN int mproc_wait(mproc_conn *const *conns, size_t n, double timeout, size_t *ready,
                            size_t *nready);
/**
 * @brief Refuses received messages larger than max.
 *
 * Such a message gives MPROC_EMSGSIZE; it is discarded and the stream stays in
 * step.
 *
 * @param c The connection.
 * @param max The limit in bytes; 0: no limit (the default).
 * @retval 0 Set.
 * @retval MPROC_EINVAL c is not a connection.
 * @par Thread safety
 * Not concurrently with other calls on c.
 */
MPROC_EXTERN int mproc_conn_set_max_message(mproc_conn *c, size_t max);
/**
 * @brief Whether this end receives.
 * @param c The connection.
 * @return true for an open end that receives; false when closed, or for NULL.
 * @par Thread safety
 * Not concurrently with mproc_conn_close() or mproc_conn_free() on c.
 */
MPROC_EXTERN bool mproc_conn_readable(const mproc_conn *c);
/**
 * @brief Whether this end sends.
 * @param c The connection.
 * @return true for an open end that sends; false when closed, or for NULL.
 * @par Thread safety
 * Not concurrently with mproc_conn_close() or mproc_conn_free() on c.
 */
MPROC_EXTERN bool mproc_conn_writable(const mproc_conn *c);
/**
 * @brief The OS descriptor, e.g. to wait on it with other descriptors.
 * @param c The connection.
 * @return A file descriptor (a HANDLE on Windows); -1 when closed, or for NULL.
 * @par Thread safety
 * Not concurrently with mproc_conn_close() or mproc_conn_free() on c.
 */
MPROC_EXTERN intptr_t mproc_conn_fileno(const mproc_conn *c);
/**
 * @brief Closes the descriptor; later calls give MPROC_ECLOSED.
 *
 * The handle stays valid until mproc_conn_free(). Closing twice is fine.
 *
 * @param c The connection.
 * @retval 0 Closed.
 * @retval MPROC_EINVAL c is not a connection (NULL or freed).
 * @par Thread safety
 * Not concurrently with other calls on c.
 */
MPROC_EXTERN int mproc_conn_close(mproc_conn *c);
/**
 * @brief Closes (if open) and frees; NULL is fine.
 * @param c The connection, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on c.
 */
MPROC_EXTERN void mproc_conn_free(mproc_conn *c);

/** @} */

/* ----------------------------------------------------------------- Queue */

/**
 * @defgroup mproc_queue Queue
 * @brief Python's Queue, JoinableQueue and SimpleQueue in one type.
 *
 * Messages live in a ring in shared memory; there is no feeder thread: put returns
 * once the message is in the queue, so a process may exit right after it and
 * nothing is lost. Any number of processes put and get; each message is delivered
 * once, whole, and in order per producer. A process killed inside put or get does
 * not wedge the queue, and a half-written message is never delivered.
 *
 * A message larger than the ring streams through it while other producers wait.
 * Even an unbounded queue (maxsize 0) holds at most buffer_size bytes at a time:
 * put waits for room as a pipe's writer does (put_nowait gives MPROC_EFULL).
 * Once a consumer has begun receiving a message larger than the ring, both the
 * put and the get run to its end whatever their timeouts.
 *
 * Thread safety: every call is safe from any number of threads and processes at
 * once, on one handle or on several. Only mproc_queue_free() must not run
 * concurrently with other calls on the same handle.
 * @{
 */

/** @brief A queue (opaque); hand it to children in the share list. */
typedef struct mproc_queue mproc_queue;

/** @brief Options of mproc_queue_create(); NULL or all-zero means the defaults. */
typedef struct mproc_queue_opts {
  size_t maxsize;     /**< Most messages held at once; 0: unbounded. */
  bool joinable;      /**< JoinableQueue: task_done and join. */
  size_t max_message; /**< Larger puts give MPROC_EMSGSIZE; 0: no limit. */
  size_t buffer_size; /**< Bytes of shared ring (rounded up to a power of 2, at least 4 KiB); 0: 4 MiB. */
} mproc_queue_opts;

/**
 * @brief Creates a queue.
 * @param[out] q The new queue; NULL on failure.
 * @param opts Options; NULL for the defaults.
 * @retval 0 Created.
 * @retval MPROC_EINVAL q is NULL; buffer_size is too large.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS The shared memory or its locks could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_queue_create(mproc_queue **q, const mproc_queue_opts *opts);
/**
 * @brief Puts one message (copied); returns once it is in the queue.
 * @param q The queue.
 * @param data The message; may be NULL when len is 0.
 * @param len Its size.
 * @param timeout Seconds to wait for room; ::MPROC_FOREVER blocks; 0 is put_nowait.
 * @retval 0 The message is in the queue.
 * @retval MPROC_EFULL timeout 0, and there is no room now (or another producer is
 *         putting).
 * @retval MPROC_ETIMEDOUT A positive timeout passed.
 * @retval MPROC_ECLOSED The queue is closed (before or during the call).
 * @retval MPROC_EMSGSIZE len exceeds opts.max_message.
 * @retval MPROC_EINVAL q is not a queue (NULL or freed); data is NULL with len > 0.
 * @retval MPROC_ESYS Locking the queue failed.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_put(mproc_queue *q, const void *data, size_t len, double timeout);
/**
 * @brief Gets the next message into a new buffer.
 * @param q The queue.
 * @param[out] data The message, malloc()ed (free() it).
 * @param[out] len Its size.
 * @param timeout Seconds to wait for one; ::MPROC_FOREVER blocks; 0 is get_nowait.
 * @retval 0 Got one.
 * @retval MPROC_EEMPTY timeout 0, and there is none now (or another consumer is
 *         getting).
 * @retval MPROC_ETIMEDOUT A positive timeout passed.
 * @retval MPROC_EOF The queue is closed and drained.
 * @retval MPROC_ENOMEM No memory for the message (it stays in the queue).
 * @retval MPROC_EMSGSIZE The message does not fit in this process's address space.
 * @retval MPROC_EINVAL q is not a queue; data or len is NULL.
 * @retval MPROC_ESYS Locking the queue failed.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_get(mproc_queue *q, void **data, size_t *len, double timeout);
/**
 * @brief Gets the next message into buf.
 * @param q The queue.
 * @param buf Where the message goes; may be NULL when cap is 0.
 * @param cap Size of buf.
 * @param[out] len The message's size (also set with MPROC_EMSGSIZE).
 * @param timeout Seconds to wait for one; ::MPROC_FOREVER blocks; 0 does not wait.
 * @retval 0 Got one.
 * @retval MPROC_EMSGSIZE The message is larger than cap: *len is set, and it stays
 *         in the queue.
 * @retval MPROC_EEMPTY timeout 0, and there is none now (or another consumer is
 *         getting).
 * @retval MPROC_ETIMEDOUT A positive timeout passed.
 * @retval MPROC_EOF The queue is closed and drained.
 * @retval MPROC_EINVAL q is not a queue; len is NULL, or buf with cap > 0.
 * @retval MPROC_ESYS Locking the queue failed.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_get_into(mproc_queue *q, void *buf, size_t cap, size_t *len,
                                      double timeout);
/**
 * @brief Exact number of messages in the queue, on every platform.
 * @param q The queue.
 * @return The count; 0 if q is not a queue.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN size_t mproc_queue_qsize(const mproc_queue *q);
/**
 * @brief Whether the queue holds no message.
 * @param q The queue.
 * @return mproc_queue_qsize(q) == 0 (so true if q is not a queue).
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN bool mproc_queue_empty(const mproc_queue *q);
/**
 * @brief Whether the queue holds opts.maxsize messages.
 * @param q The queue.
 * @return true when bounded and full; false for an unbounded queue (even when its
 *         ring has no room), or if q is not a queue.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN bool mproc_queue_full(const mproc_queue *q);
/**
 * @brief JoinableQueue: marks one message got as done.
 * @param q A joinable queue.
 * @retval 0 Counted.
 * @retval MPROC_ESTATE More calls than messages put; or the queue is not joinable.
 * @retval MPROC_EINVAL q is not a queue.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_task_done(mproc_queue *q);
/**
 * @brief JoinableQueue: waits until every message put has been marked done.
 *
 * Closing the queue does not end the wait.
 *
 * @param q A joinable queue.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @retval 0 Every message put is done.
 * @retval MPROC_ETIMEDOUT The timeout passed first.
 * @retval MPROC_ESTATE The queue is not joinable.
 * @retval MPROC_EINVAL q is not a queue.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_join(mproc_queue *q, double timeout);
/**
 * @brief Closes the queue for every process.
 *
 * Later puts give MPROC_ECLOSED; gets drain what is there, then give
 * MPROC_EOF. Blocked callers wake up.
 *
 * @param q The queue.
 * @retval 0 Closed (closing again is fine).
 * @retval MPROC_EINVAL q is not a queue.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_queue_close(mproc_queue *q);
/**
 * @brief Releases this process's handle (NULL is fine); the queue lives on in the
 * others.
 * @param q The queue, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_queue_free(mproc_queue *q);

/** @} */

/* -------------------------------------------------------- synchronization */

/**
 * @defgroup mproc_sync Synchronization
 * @brief Lock, RLock, Semaphore, BoundedSemaphore, Event and Condition across
 * processes.
 *
 * They are handed to children through the share list like queues. A timeout of 0
 * tries once; MPROC_ETIMEDOUT says the wait did not succeed.
 *
 * Thread safety: every call is safe from any number of threads and processes at
 * once (a lock's owner is a thread). The *_free functions must not run concurrently
 * with other calls on the same handle.
 * @{
 */

/**
 * @brief Lock or RLock (opaque).
 *
 * Owned by the thread that acquired it: only that thread may release it
 * (MPROC_ESTATE otherwise), which is what lets a process killed while holding it
 * be detected: the next acquirer gets the lock.
 */
typedef struct mproc_lock mproc_lock;
/**
 * @brief Creates a Lock (recursive false) or an RLock (true).
 * @param[out] l The new lock; NULL on failure.
 * @param recursive Whether the owner may acquire it again (RLock).
 * @retval 0 Created.
 * @retval MPROC_EINVAL l is NULL.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS The shared memory or the mutex could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_lock_create(mproc_lock **l, bool recursive);
/**
 * @brief Acquires the lock for the calling thread.
 *
 * If its holder died, the caller gets the lock (an RLock's count starts over).
 *
 * @param l The lock.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 tries once.
 * @retval 0 Held by the calling thread.
 * @retval MPROC_ETIMEDOUT Still held by another thread after timeout.
 * @retval MPROC_ESTATE A Lock (not recursive) this thread already holds: acquiring
 *         it would deadlock.
 * @retval MPROC_EINVAL l is not a lock (NULL or freed).
 * @retval MPROC_ESYS The mutex failed.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_lock_acquire(mproc_lock *l, double timeout);
/**
 * @brief Releases the lock (an RLock once per acquire).
 * @param l The lock.
 * @retval 0 Released.
 * @retval MPROC_ESTATE The calling thread does not hold it.
 * @retval MPROC_EINVAL l is not a lock.
 * @retval MPROC_ESYS The mutex failed.
 * @par Thread safety
 * Only the holding thread.
 */
MPROC_EXTERN int mproc_lock_release(mproc_lock *l);
/**
 * @brief Releases this process's handle (NULL is fine).
 * @param l The lock, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_lock_free(mproc_lock *l);

/** @brief Semaphore or BoundedSemaphore (opaque). */
typedef struct mproc_sem mproc_sem;
/**
 * @brief Creates a Semaphore (bounded false) or a BoundedSemaphore (true: releasing
 * above the initial value gives MPROC_ESTATE).
 * @param[out] s The new semaphore; NULL on failure.
 * @param value The initial value, below 2^32 - 1; at least 1 when bounded.
 * @param bounded Whether the initial value is the maximum.
 * @retval 0 Created.
 * @retval MPROC_EINVAL s is NULL; value is out of range.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS The shared memory could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_sem_create(mproc_sem **s, unsigned value, bool bounded);
/**
 * @brief Decrements the value, waiting while it is 0.
 * @param s The semaphore.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 tries once.
 * @retval 0 Decremented.
 * @retval MPROC_ETIMEDOUT The value stayed 0 for timeout.
 * @retval MPROC_EINVAL s is not a semaphore (NULL or freed).
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_sem_acquire(mproc_sem *s, double timeout);
/**
 * @brief Increments the value and wakes a waiter. Any thread may release.
 * @param s The semaphore.
 * @retval 0 Incremented.
 * @retval MPROC_ESTATE A BoundedSemaphore released above its initial value; or the
 *         value would overflow.
 * @retval MPROC_EINVAL s is not a semaphore.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_sem_release(mproc_sem *s);
/**
 * @brief The current value (Python's get_value()).
 * @param s The semaphore.
 * @param[out] value The value; it may change as soon as it is read.
 * @retval 0 *value is set.
 * @retval MPROC_EINVAL s is not a semaphore; value is NULL.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_sem_value(const mproc_sem *s, unsigned *value);
/**
 * @brief Releases this process's handle (NULL is fine).
 * @param s The semaphore, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_sem_free(mproc_sem *s);

/** @brief Event (opaque). */
typedef struct mproc_event mproc_event;
/**
 * @brief Creates an Event, not set.
 * @param[out] e The new event; NULL on failure.
 * @retval 0 Created.
 * @retval MPROC_EINVAL e is NULL.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS The shared memory could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_event_create(mproc_event **e);
/**
 * @brief Sets the event and wakes every waiter.
 * @param e The event.
 * @retval 0 Set.
 * @retval MPROC_EINVAL e is not an event (NULL or freed).
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_event_set(mproc_event *e);
/**
 * @brief Clears the event.
 * @param e The event.
 * @retval 0 Cleared.
 * @retval MPROC_EINVAL e is not an event.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_event_clear(mproc_event *e);
/**
 * @brief Whether the event is set.
 * @param e The event.
 * @return true when set; false when clear, or if e is not an event.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN bool mproc_event_is_set(const mproc_event *e);
/**
 * @brief Waits until the event is set.
 * @param e The event.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @retval 0 The event is set, or was set while waiting (even if cleared again
 *         before the waiter ran, as in Python).
 * @retval MPROC_ETIMEDOUT The timeout passed first.
 * @retval MPROC_EINVAL e is not an event.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_event_wait(mproc_event *e, double timeout);
/**
 * @brief Releases this process's handle (NULL is fine).
 * @param e The event, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_event_free(mproc_event *e);

/**
 * @brief Condition over a lock (opaque).
 *
 * wait, notify and notify_all need the lock held by the calling thread
 * (MPROC_ESTATE otherwise).
 */
typedef struct mproc_cond mproc_cond;
/**
 * @brief Creates a Condition over lock.
 * @param[out] c The new condition; NULL on failure.
 * @param lock The lock it uses, which must outlive it; NULL: a new RLock of its own.
 * @retval 0 Created.
 * @retval MPROC_EINVAL c is NULL; lock is not a lock (freed).
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS The shared memory or the mutex could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_cond_create(mproc_cond **c, mproc_lock *lock);
/**
 * @brief Acquires the condition's lock: mproc_lock_acquire() on it.
 * @param c The condition.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 tries once.
 * @retval 0 Held by the calling thread.
 * @retval MPROC_ETIMEDOUT Still held by another thread after timeout.
 * @retval MPROC_ESTATE The lock is a Lock (not recursive) this thread already holds.
 * @retval MPROC_EINVAL c is not a condition (NULL or freed).
 * @retval MPROC_ESYS The mutex failed.
 * @par Thread safety
 * Safe from any thread and process.
 */
MPROC_EXTERN int mproc_cond_acquire(mproc_cond *c, double timeout);
/**
 * @brief Releases the condition's lock: mproc_lock_release() on it.
 * @param c The condition.
 * @retval 0 Released.
 * @retval MPROC_ESTATE The calling thread does not hold the lock.
 * @retval MPROC_EINVAL c is not a condition.
 * @retval MPROC_ESYS The mutex failed.
 * @par Thread safety
 * Only the thread holding the lock.
 */
MPROC_EXTERN int mproc_cond_release(mproc_cond *c);
/**
 * @brief Releases the lock (completely, however deep an RLock is held), waits to be
 * notified, and takes the lock back as deep.
 * @param c The condition.
 * @param timeout Seconds; ::MPROC_FOREVER blocks.
 * @retval 0 Notified; the lock is held again.
 * @retval MPROC_ETIMEDOUT The timeout passed first; the lock is held again.
 * @retval MPROC_ESTATE The calling thread does not hold the lock.
 * @retval MPROC_EINVAL c is not a condition.
 * @retval MPROC_ESYS The lock could not be taken back (its mutex failed); the
 *         lock may not be held as deep as before.
 * @par Thread safety
 * Only a thread holding the lock.
 */
MPROC_EXTERN int mproc_cond_wait(mproc_cond *c, double timeout);
/**
 * @brief Waits until pred(arg) is true (checked first, and after each wake-up).
 * @param c The condition.
 * @param pred The predicate, called with the lock held.
 * @param arg Its argument.
 * @param timeout Seconds for the whole wait; ::MPROC_FOREVER blocks.
 * @retval 0 pred(arg) returned true; the lock is held.
 * @retval MPROC_ETIMEDOUT pred(arg) was still false when the timeout passed; the
 *         lock is held.
 * @retval MPROC_ESTATE The calling thread does not hold the lock.
 * @retval MPROC_EINVAL c is not a condition; pred is NULL.
 * @par Thread safety
 * Only a thread holding the lock.
 */
MPROC_EXTERN int mproc_cond_wait_for(mproc_cond *c, bool (*pred)(void *arg), void *arg,
                                     double timeout);
/**
 * @brief Wakes up to n waiters, and returns once they are on their way.
 * @param c The condition.
 * @param n Most waiters to wake.
 * @retval 0 Done (also when nobody waited).
 * @retval MPROC_ESTATE The calling thread does not hold the lock.
 * @retval MPROC_EINVAL c is not a condition.
 * @par Thread safety
 * Only a thread holding the lock.
 */
MPROC_EXTERN int mproc_cond_notify(mproc_cond *c, size_t n);
/**
 * @brief Wakes every waiter: mproc_cond_notify(c, SIZE_MAX).
 * @param c The condition.
 * @retval 0 Done (also when nobody waited).
 * @retval MPROC_ESTATE The calling thread does not hold the lock.
 * @retval MPROC_EINVAL c is not a condition.
 * @par Thread safety
 * Only a thread holding the lock.
 */
MPROC_EXTERN int mproc_cond_notify_all(mproc_cond *c);
/**
 * @brief Releases this process's handle (NULL is fine), and the lock's if the
 * condition made its own.
 * @param c The condition, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_cond_free(mproc_cond *c);

/** @} */

/* ----------------------------------------------------------- shared memory */

/**
 * @defgroup mproc_shm Shared memory
 * @brief Python's shared_memory.SharedMemory: a named block any process can attach.
 *
 * Thread safety: every call is safe from any thread, except that mproc_shm_free()
 * must not run concurrently with other calls on the same handle. The block's bytes
 * are the program's to synchronise.
 * @{
 */

/** @brief A mapped shared memory block (opaque). */
typedef struct mproc_shm mproc_shm;
/**
 * @brief Creates a named block of size zeroed bytes and maps it.
 * @param[out] m The new block; NULL on failure.
 * @param name One path component (a leading '/' is allowed), shorter than 250
 *        bytes; NULL: a generated unique name (see mproc_shm_name()).
 * @param size Its size in bytes, more than 0.
 * @retval 0 Created.
 * @retval MPROC_ESTATE A block of that name exists.
 * @retval MPROC_EINVAL m is NULL; size is 0; name is not a valid name.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS shm_open(), sizing or mapping failed; or no random bytes for
 *         a generated name.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_shm_create(mproc_shm **m, const char *name, size_t size);
/**
 * @brief Attaches the block of that name and maps it.
 * @param[out] m The block; NULL on failure.
 * @param name Its name.
 * @retval 0 Attached.
 * @retval MPROC_ENOTFOUND There is no block of that name.
 * @retval MPROC_EINVAL m or name is NULL; name is not a valid name.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_ESYS shm_open(), fstat() or mapping failed.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_shm_attach(mproc_shm **m, const char *name);
/**
 * @brief The block's bytes in this process.
 * @param m The block.
 * @return Its address; NULL if m is not a block.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN void *mproc_shm_buf(const mproc_shm *m);
/**
 * @brief The block's size.
 * @param m The block.
 * @return Its size in bytes; 0 if m is not a block.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN size_t mproc_shm_size(const mproc_shm *m);
/**
 * @brief The block's name, to attach it elsewhere.
 * @param m The block.
 * @return Its name; NULL if m is not a block. Valid until mproc_shm_free().
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_shm_name(const mproc_shm *m);
/**
 * @brief Removes the name; attached processes keep their mapping until they free it.
 * @param m The block.
 * @retval 0 Removed.
 * @retval MPROC_ENOTFOUND The name was already removed.
 * @retval MPROC_EINVAL m is not a block.
 * @retval MPROC_ESYS shm_unlink() failed.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_shm_unlink(mproc_shm *m);
/**
 * @brief Unmaps and releases this process's handle (Python's close()); NULL is fine.
 * @param m The block, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on this handle.
 */
MPROC_EXTERN void mproc_shm_free(mproc_shm *m);

/** @} */

/* ------------------------------------------------------------------ Pool */

/**
 * @defgroup mproc_pool Pool
 * @brief Python's Pool, AsyncResult and imap iterators.
 *
 * Tasks are ::mproc_fn functions: a task's result is what it passes to
 * mproc_return() (copied; any size), its failure what it passes to mproc_fail() (or
 * a non-zero return value). Unlike Python's, the pool never hangs on a dead worker:
 * a worker that dies while running a task fails that task with MPROC_EWORKER (the
 * message names the signal or exit status) and is replaced; items the worker had
 * not started, or had finished but not yet reported, run again elsewhere. A task
 * over opts.task_timeout fails with MPROC_ETIMEDOUT and its worker is replaced.
 *
 * Under fork, workers (and their replacements) are forked from a single-threaded
 * fork server made when the pool is created, never from the pool's threaded
 * process; they see the program as it was at mproc_pool_create().
 *
 * starmap is map over an array of argument structs: each element is one task's
 * (arg, len). Callbacks run on the pool's dispatcher thread, one at a time, in
 * completion order; blocking calls on the pool from a callback give
 * MPROC_ESTATE.
 *
 * @anchor mproc_task_errors
 * <b>Task errors.</b> A task (an item of a map) fails with:
 * - MPROC_EFAILED: it called mproc_fail() or returned a positive value; or the
 *   pool is broken (an initializer failed, a worker could not be replaced, the fork
 *   server died), with that reason as the message;
 * - the negative MPROC_E* code it returned;
 * - MPROC_EWORKER: its worker died running it;
 * - MPROC_ETIMEDOUT: it ran over opts.task_timeout;
 * - MPROC_ECANCELED: mproc_result_cancel(), mproc_iter_free(),
 *   mproc_pool_terminate() or mproc_pool_free() stopped it;
 * - MPROC_EMSGSIZE: (map) its result is not out_size bytes;
 * - MPROC_ENOMEM: the parent had no memory to keep its result.
 *
 * mproc_result_message() and mproc_last_error() give the message.
 *
 * Thread safety: the pool, its results and its iterators are locked: submissions,
 * mproc_pool_close(), mproc_pool_terminate() and the mproc_result_* calls are safe
 * from any thread, and so is mproc_pool_join() (other joiners wait for the first);
 * the *_free functions must not run concurrently with other calls on the same object. An
 * iterator has one consumer thread at a time.
 * @{
 */

/** @brief A process pool (opaque). */
typedef struct mproc_pool mproc_pool;
/** @brief An AsyncResult: the state of an apply_async, map_async or map_v (opaque). */
typedef struct mproc_result mproc_result;
/** @brief The results of an imap or imap_unordered, one at a time (opaque). */
typedef struct mproc_iter mproc_iter;

/** @brief Options of mproc_pool_create(); NULL or all-zero means Python's defaults. */
typedef struct mproc_pool_opts {
  int processes;                   /**< Workers; 0: mproc_cpu_count(). */
  mproc_start_method start_method; /**< 0: the process-wide default. */
  mproc_fn initializer; /**< Run once in each new worker; non-zero: the pool is broken. */
  const void *initarg;  /**< The initializer's argument bytes (copied). */
  size_t initarg_len;   /**< Their size. */
  size_t maxtasksperchild; /**< Tasks a worker runs before it is replaced; 0: as long as the pool. */
  double task_timeout;     /**< Seconds a task may run; 0: no limit. */
  void *const *share;      /**< Objects every worker receives (mproc_shared(ctx, i)). */
  size_t nshare;           /**< Number of objects in share. */
} mproc_pool_opts;

/** @brief What runs when an asynchronous job is ready, on the pool's thread. */
typedef struct mproc_callbacks {
  /**
   * @brief Success: the result (apply: the task's bytes; map: the output array).
   * @param user mproc_callbacks::user.
   * @param r The job's result; read it with mproc_result_get(r, 0, ...).
   */
  void (*callback)(void *user, mproc_result *r);
  /**
   * @brief Failure: the first failing task's error; mproc_result_message() says more.
   * @param user mproc_callbacks::user.
   * @param r The job's result.
   */
  void (*error_callback)(void *user, mproc_result *r);
  void *user; /**< Passed to both callbacks. */
} mproc_callbacks;

/**
 * @brief Creates a pool and starts its workers.
 * @param[out] p The new pool; NULL on failure.
 * @param opts Options; NULL for the defaults.
 * @retval 0 Created.
 * @retval MPROC_EINVAL p is NULL; processes or task_timeout is negative; share or
 *         initarg is NULL with a length; a share list entry is not a live mproc
 *         handle.
 * @retval MPROC_ECLOSED A share list entry is closed.
 * @retval MPROC_ENOTINIT mproc_init() has not been called.
 * @retval MPROC_ENOTFOUND The initializer is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EOF Spawn: a worker ended before it read what it should run.
 * @retval MPROC_ESYS A worker, the fork server, the pool's thread, a pipe or a lock
 *         could not be made.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_pool_create(mproc_pool **p, const mproc_pool_opts *opts);

/**
 * @brief apply: runs fn(arg) in a worker and waits for its result.
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param arg Argument bytes (copied); may be NULL when len is 0.
 * @param len Their size.
 * @param[out] out The task's result, malloc()ed (free() it).
 * @param[out] outlen Its size.
 * @retval 0 *out and *outlen are set.
 * @retval MPROC_EINVAL out, outlen or fn is NULL; arg is NULL with len > 0; p is not
 *         a pool (NULL or freed).
 * @retval MPROC_ESTATE Called from a callback; or the pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @retval other The task's error: see @ref mproc_task_errors "task errors".
 * @par Thread safety
 * Safe from any thread but the pool's (its callbacks).
 */
MPROC_EXTERN int mproc_pool_apply(mproc_pool *p, mproc_fn fn, const void *arg, size_t len,
                                  void **out, size_t *outlen);
/**
 * @brief apply_async: submits fn(arg) and returns at once.
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param arg Argument bytes (copied); may be NULL when len is 0.
 * @param len Their size.
 * @param cb Callbacks; may be NULL.
 * @param[out] r The result; free it with mproc_result_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL r or fn is NULL; arg is NULL with len > 0; p is not a pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_apply_async(mproc_pool *p, mproc_fn fn, const void *arg, size_t len,
                                        const mproc_callbacks *cb, mproc_result **r);

/**
 * @brief map: fn over n elements of in_size bytes each at in, and waits.
 *
 * Element i's result (exactly out_size bytes, or the task fails with
 * MPROC_EMSGSIZE; out_size 0 discards results) goes to out + i * out_size. The
 * other elements still run when one fails.
 *
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param in The input array; may be NULL when n or in_size is 0.
 * @param n Number of elements.
 * @param in_size Bytes per input element (each task's len).
 * @param out The output array, n * out_size bytes; may be NULL when out_size is 0.
 * @param out_size Bytes per result; 0 discards results.
 * @param chunksize Elements per message to a worker; 0 is Python's rule,
 *        ceil(n / (4 * processes)).
 * @retval 0 Every element succeeded.
 * @retval MPROC_EINVAL fn is NULL; in or out is NULL with a size; p is not a pool.
 * @retval MPROC_ESTATE Called from a callback; or the pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @retval other The first failing element's error: see
 *         @ref mproc_task_errors "task errors".
 * @par Thread safety
 * Safe from any thread but the pool's (its callbacks).
 */
MPROC_EXTERN int mproc_pool_map(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                size_t in_size, void *out, size_t out_size, size_t chunksize);
/**
 * @brief map_async: as mproc_pool_map(), returning at once.
 *
 * in and out must stay valid until the result is ready. With n 0 the result is
 * ready at once and no callback runs.
 *
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param in The input array; may be NULL when n or in_size is 0.
 * @param n Number of elements.
 * @param in_size Bytes per input element.
 * @param out The output array, n * out_size bytes; may be NULL when out_size is 0.
 * @param out_size Bytes per result; 0 discards results.
 * @param chunksize Elements per message to a worker; 0 is Python's rule.
 * @param cb Callbacks; may be NULL.
 * @param[out] r The result; free it with mproc_result_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL r or fn is NULL; in or out is NULL with a size; p is not a
 *         pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_map_async(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                      size_t in_size, void *out, size_t out_size,
                                      size_t chunksize, const mproc_callbacks *cb,
                                      mproc_result **r);

/** @brief One item of variable size, for mproc_pool_map_v() and mproc_source. */
typedef struct mproc_item {
  const void *data; /**< The item's bytes. */
  size_t len;       /**< Their size. */
} mproc_item;

/**
 * @brief map over items of any size; results of any size, read with
 * mproc_result_item(). Returns at once.
 *
 * The items (not their data) are copied; the data must stay valid until the result
 * is ready. With n 0 the result is ready at once and no callback runs.
 *
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param items The items; may be NULL when n is 0.
 * @param n Their number.
 * @param chunksize Items per message to a worker; 0 is Python's rule.
 * @param cb Callbacks; may be NULL.
 * @param[out] r The result; free it with mproc_result_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL r or fn is NULL; items is NULL with n > 0; p is not a pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_map_v(mproc_pool *p, mproc_fn fn, const mproc_item *items, size_t n,
                                  size_t chunksize, const mproc_callbacks *cb, mproc_result **r);

/**
 * @brief imap over an array (as map): results in input order, one at a time, with
 * mproc_iter_next().
 *
 * in must stay valid until the iterator is freed. Results run ahead of the
 * consumer by a bounded window, no more.
 *
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param in The input array; may be NULL when n or in_size is 0.
 * @param n Number of elements.
 * @param in_size Bytes per input element.
 * @param chunksize Elements per message to a worker; 0 is Python's rule.
 * @param[out] it The iterator; free it with mproc_iter_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL it or fn is NULL; in is NULL with a size; p is not a pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_imap(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                 size_t in_size, size_t chunksize, mproc_iter **it);
/**
 * @brief imap_unordered over an array: as mproc_pool_imap(), results in completion
 * order.
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param in The input array; may be NULL when n or in_size is 0.
 * @param n Number of elements.
 * @param in_size Bytes per input element.
 * @param chunksize Elements per message to a worker; 0 is Python's rule.
 * @param[out] it The iterator; free it with mproc_iter_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL it or fn is NULL; in is NULL with a size; p is not a pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_imap_unordered(mproc_pool *p, mproc_fn fn, const void *in, size_t n,
                                           size_t in_size, size_t chunksize, mproc_iter **it);

/**
 * @brief A lazy input for mproc_pool_imap_source(), called on the pool's thread.
 *
 * Items are drawn only as workers need them, so memory stays bounded however many
 * there are: results the consumer has not taken yet hold back new items (CPython's
 * imap keeps every untaken result, and its map lists the whole input first).
 *
 * @param user The user pointer given to mproc_pool_imap_source().
 * @param index The item wanted: 0, 1, 2, ...
 * @param[out] data The item's bytes, valid until the next call.
 * @param[out] len Their size.
 * @return 1 with *data and *len set; 0 at the end; a negative MPROC_E* code to end
 *         the iteration with that error.
 */
typedef int (*mproc_source)(void *user, size_t index, const void **data, size_t *len);
/**
 * @brief imap or imap_unordered over a lazy input.
 * @param p The pool.
 * @param fn The task, in a module the workers have (under fork too).
 * @param src The input, called on the pool's thread.
 * @param user Passed to src.
 * @param chunksize Items per message to a worker; 0: 1.
 * @param ordered Results in input order (imap) or in completion order
 *        (imap_unordered).
 * @param[out] it The iterator; free it with mproc_iter_free().
 * @retval 0 Submitted.
 * @retval MPROC_EINVAL src, it or fn is NULL; p is not a pool.
 * @retval MPROC_ESTATE The pool is closed or terminated.
 * @retval MPROC_ENOTFOUND fn is in no module a child will have.
 * @retval MPROC_ENOMEM Out of memory.
 * @retval MPROC_EFAILED The pool is broken.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_imap_source(mproc_pool *p, mproc_fn fn, mproc_source src, void *user,
                                        size_t chunksize, bool ordered, mproc_iter **it);

/**
 * @brief The next result of an imap.
 *
 * A failed item gives its error (with *index set), and the iteration goes on with
 * the next call.
 *
 * @param it The iterator.
 * @param timeout Seconds to wait for a result; ::MPROC_FOREVER blocks, 0 only
 *        checks.
 * @param[out] index The item's position in the input.
 * @param[out] data Its result bytes, valid until the next call or mproc_iter_free().
 * @param[out] len Their size.
 * @retval 0 A result.
 * @retval MPROC_EOF After the last result.
 * @retval MPROC_ETIMEDOUT No result came in time (*index not set); or the item ran
 *         over opts.task_timeout (*index set).
 * @retval MPROC_EINVAL An argument is NULL.
 * @retval MPROC_ESTATE Called from a callback with a timeout other than 0.
 * @retval other The item's error (*index set): see
 *         @ref mproc_task_errors "task errors"; or, once, after the last result of
 *         an mproc_source that failed, its code (*index is then the item count).
 * @par Thread safety
 * One thread at a time per iterator: each call frees what the previous one
 * returned.
 */
MPROC_EXTERN int mproc_iter_next(mproc_iter *it, double timeout, size_t *index, const void **data,
                                 size_t *len);
/**
 * @brief Stops the iteration and frees the iterator: items not yet started are
 * dropped, running ones are canceled (their workers are replaced). NULL is fine.
 * @param it The iterator, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on it.
 */
MPROC_EXTERN void mproc_iter_free(mproc_iter *it);

/**
 * @brief close: no more submissions; workers exit once every task is done.
 * @param p The pool.
 * @retval 0 Closed (closing again, or after terminate, is fine).
 * @retval MPROC_EINVAL p is not a pool (NULL or freed).
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_close(mproc_pool *p);
/**
 * @brief terminate: kills the workers now; unfinished results fail with
 * MPROC_ECANCELED.
 * @param p The pool.
 * @retval 0 Terminating (mproc_pool_join() waits for it).
 * @retval MPROC_EINVAL p is not a pool.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_pool_terminate(mproc_pool *p);
/**
 * @brief join: waits for the workers and the pool's thread to exit.
 * @param p The pool.
 * @retval 0 Joined (joining again is fine).
 * @retval MPROC_ESTATE The pool is still running (call mproc_pool_close() or
 *         mproc_pool_terminate() first); or called from a callback.
 * @retval MPROC_EINVAL p is not a pool.
 * @par Thread safety
 * Any thread but the pool's own (its callbacks); threads joining at once all return
 * once the pool is joined.
 */
MPROC_EXTERN int mproc_pool_join(mproc_pool *p);
/**
 * @brief Frees the pool (NULL is fine). A running pool is terminated and joined
 * first, as Python's `with` block does.
 *
 * Results and iterators not yet freed stay valid until they are freed; the pool's
 * memory goes with the last of them.
 *
 * @param p The pool, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on p, and not from a callback.
 */
MPROC_EXTERN void mproc_pool_free(mproc_pool *p);

/**
 * @brief AsyncResult.wait: waits until the result is ready.
 * @param r The result.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @retval 0 Ready (successful or not).
 * @retval MPROC_ETIMEDOUT Not ready within timeout.
 * @retval MPROC_ESTATE Called from a callback with a timeout other than 0.
 * @retval MPROC_EINVAL r is NULL.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_result_wait(mproc_result *r, double timeout);
/**
 * @brief AsyncResult.get: waits, then gives the result or the error.
 *
 * apply: the task's bytes. map: out and n * out_size. map_v: *data NULL and *len the
 * item count (read items with mproc_result_item()).
 *
 * @param r The result.
 * @param timeout Seconds; ::MPROC_FOREVER blocks, 0 only checks.
 * @param[out] data The result bytes, valid until mproc_result_free(). With data or
 *        len NULL, neither is set.
 * @param[out] len Their size.
 * @retval 0 Every task succeeded.
 * @retval MPROC_ETIMEDOUT Not ready within timeout; or, once ready, a task ran over
 *         opts.task_timeout (mproc_result_ready() tells which).
 * @retval MPROC_ESTATE Called from a callback with a timeout other than 0.
 * @retval MPROC_EINVAL r is NULL.
 * @retval other The first failing task's error: see
 *         @ref mproc_task_errors "task errors".
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_result_get(mproc_result *r, double timeout, const void **data,
                                  size_t *len);
/**
 * @brief AsyncResult.ready: whether every task has finished.
 * @param r The result.
 * @return true once ready; false before, or for NULL.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN bool mproc_result_ready(mproc_result *r);
/**
 * @brief AsyncResult.successful.
 * @param r The result.
 * @retval 1 Every task succeeded.
 * @retval 0 At least one failed.
 * @retval MPROC_ESTATE Not ready yet.
 * @retval MPROC_EINVAL r is NULL.
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_result_successful(mproc_result *r);
/**
 * @brief The first failure's message.
 * @param r The result.
 * @return The message of the first failing task (the lowest index); "" when none,
 *         before the result is ready, or for NULL. Valid until mproc_result_free().
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN const char *mproc_result_message(mproc_result *r);
/**
 * @brief Item i of a map, map_v or apply (i 0), once ready.
 * @param r The result.
 * @param i The item's position.
 * @param[out] data Its result bytes, valid until mproc_result_free() (for a map,
 *        inside out); may be NULL.
 * @param[out] len Their size; may be NULL.
 * @retval 0 The item succeeded.
 * @retval MPROC_ESTATE Not ready yet.
 * @retval MPROC_EINVAL r is NULL; there is no item i.
 * @retval other The item's error: see @ref mproc_task_errors "task errors".
 * @par Thread safety
 * Safe from any thread.
 */
MPROC_EXTERN int mproc_result_item(mproc_result *r, size_t i, const void **data, size_t *len);
/**
 * @brief Cancels what has not run yet, and what runs now (its worker is replaced);
 * those items fail with MPROC_ECANCELED. Nothing happens once the result is ready.
 * @param r The result.
 * @retval 0 Canceled, or already ready.
 * @retval MPROC_EINVAL r is NULL.
 * @par Thread safety
 * Safe from any thread, callbacks included.
 */
MPROC_EXTERN int mproc_result_cancel(mproc_result *r);
/**
 * @brief Releases the caller's hold on r (NULL is fine); the pool keeps what it
 * needs.
 * @param r The result, or NULL.
 * @par Thread safety
 * Not concurrently with other calls on r.
 */
MPROC_EXTERN void mproc_result_free(mproc_result *r);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MPROC_H */
