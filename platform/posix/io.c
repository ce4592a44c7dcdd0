/* POSIX descriptors: pipes and socket pairs, full reads and writes, poll. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "posix.h"

/* macOS has no MSG_NOSIGNAL: its sockets take SO_NOSIGPIPE once, at creation. */
#if !defined(MSG_NOSIGNAL)
#define MSG_NOSIGNAL 0
#define MPROC__SO_NOSIGPIPE 1
#else
#define MPROC__SO_NOSIGPIPE 0
#endif

/* Larger pipe buffers move big messages in fewer context switches; 1 MiB is the
 * default ceiling an unprivileged process may ask for on Linux. */
#define MPROC__PIPE_BUFFER (1 << 20)

/* One read or write never asks for more than this: Linux caps a transfer at
 * 0x7ffff000 bytes and other systems reject counts above SSIZE_MAX. */
#define MPROC__IO_MAX ((size_t)1 << 30)

const char *mproc__os_strerror(int oserr, char *buf, size_t cap) {
  /* The GNU strerror_r returns its own pointer; the XSI one fills buf. */
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  return strerror_r(oserr, buf, cap);
#else
  if (strerror_r(oserr, buf, cap) != 0)
    snprintf(buf, cap, "unknown error");
  return buf;
#endif
}

/* Without pipe2 and SOCK_CLOEXEC a descriptor is made close-on-exec by a second
 * call, and a fork and exec by another thread in between carries it into the new
 * program. mproc's own children cannot keep it: a forked one closes every
 * descriptor but its own list at once (mproc__os_fork), a spawned one does the same
 * in mproc_init before running anything. A program that other code of the process
 * starts in that window holds it until it exits; that is the limit of every library
 * on such a system (Python's os.pipe included), and why the atomic calls are used
 * where they exist. */
#if !MPROC__USE_PIPE2 || !MPROC__USE_SOCK_CLOEXEC || !MPROC__USE_MSG_CMSG_CLOEXEC
static int make_private(int fd, const char *call) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    return mproc__error_os(errno, "fcntl(FD_CLOEXEC) on the descriptor %s made failed", call);
  return 0;
}

#endif

#if !MPROC__USE_PIPE2 || !MPROC__USE_SOCK_CLOEXEC
static int private_pair(int p[2], const char *call) {
  int r = make_private(p[0], call);
  if (r == 0)
    r = make_private(p[1], call);
  if (r != 0) {
    close(p[0]);
    close(p[1]);
  }
  return r;
}
#endif

static int make_socketpair(int p[2]) {
#if MPROC__USE_SOCK_CLOEXEC
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
    return mproc__error_os(errno, "socketpair() failed");
#else
  int r;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0)
    return mproc__error_os(errno, "socketpair() failed");
  if ((r = private_pair(p, "socketpair()")) != 0)
    return r;
#endif
#if MPROC__SO_NOSIGPIPE
  {
    int on = 1;
    for (int i = 0; i < 2; i++)
      if (setsockopt(p[i], SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on) != 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return mproc__error_os(e, "setsockopt(SO_NOSIGPIPE) failed");
      }
  }
#endif
  return 0;
}

static int make_pipe(int p[2]) {
#if MPROC__USE_PIPE2
  if (pipe2(p, O_CLOEXEC) != 0)
    return mproc__error_os(errno, "pipe2() failed");
#else
  int r;
  if (pipe(p) != 0)
    return mproc__error_os(errno, "pipe() failed");
  if ((r = private_pair(p, "pipe()")) != 0)
    return r;
#endif
#if MPROC__USE_SETPIPE_SZ
  /* Best effort: a smaller buffer only costs speed. Elsewhere the size is fixed. */
  (void)fcntl(p[1], F_SETPIPE_SZ, MPROC__PIPE_BUFFER);
#endif
  return 0;
}

int mproc__os_pipe(mproc__fd fds[2], bool duplex) {
  int p[2];
  int r = duplex ? make_socketpair(p) : make_pipe(p);
  if (r != 0)
    return r;
  fds[0] = p[0];
  fds[1] = p[1];
  return 0;
}

int mproc__os_read(mproc__fd fd, void *buf, size_t len, size_t *got) {
  ssize_t n;

  if (len > MPROC__IO_MAX)
    len = MPROC__IO_MAX;
  do
    n = read((int)fd, buf, len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    /* A duplex peer that vanished with unread data resets the connection: that is
     * its end of file too. */
    if (errno == ECONNRESET)
      n = 0;
    else
      return mproc__error_os(errno, "read() from descriptor %d failed", (int)fd);
  }
  *got = (size_t)n;
  return 0;
}

/* Writing to a pipe whose reader is gone raises SIGPIPE, which kills the process
 * by default. A library must not change the process-wide disposition, so the
 * signal is blocked on this thread for the write and a SIGPIPE the write raised is
 * consumed before unblocking (the technique of curl's sigpipe.h and of git). A
 * socket needs none of this: send() takes MSG_NOSIGNAL. */
typedef struct sigpipe_guard {
  sigset_t old;
  bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
  sigset_t block, pending;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  sigpending(&pending);
  g->was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &block, &g->old);
}

static void sigpipe_unblock(sigpipe_guard *g, bool raised) {
  if (raised && !g->was_pending) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
#if defined(__APPLE__)
    /* No sigtimedwait: sigwait returns at once for a signal known to be pending. */
    {
      sigset_t pending;
      int sig;
      if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1)
        (void)sigwait(&set, &sig);
    }
#else
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
      ;
#endif
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

int mproc__os_write2(mproc__fd fd, bool duplex, const void *head, size_t hlen, const void *body,
                     size_t blen) {
  struct iovec iov[2] = {{(void *)head, hlen}, {(void *)body, blen}};
  struct iovec *v = iov;
  int nv = 2, r = 0;
  bool sock = duplex; /* duplex ends are sockets (mproc__os_pipe) */
  sigpipe_guard guard;

  if (!sock)
    sigpipe_block(&guard);
  while (nv > 0) {
    ssize_t n;
    struct iovec cut[2];
    size_t room = MPROC__IO_MAX;
    int k;

    /* Trim the vector to MPROC__IO_MAX bytes for this call. */
    for (k = 0; k < nv && room > 0; k++) {
      cut[k] = v[k];
      if (cut[k].iov_len > room)
        cut[k].iov_len = room;
      room -= cut[k].iov_len;
    }
    if (sock) {
      struct msghdr m;
      memset(&m, 0, sizeof m);
      m.msg_iov = cut;
      m.msg_iovlen = (size_t)k;
      do
        n = sendmsg((int)fd, &m, MSG_NOSIGNAL);
      while (n < 0 && errno == EINTR);
    } else {
      do
        n = writev((int)fd, cut, k);
      while (n < 0 && errno == EINTR);
    }
    if (n < 0) {
      if (errno == EPIPE || errno == ECONNRESET)
        r = mproc__error(MPROC_EOF, "the peer of descriptor %d has closed it", (int)fd);
      else
        r = mproc__error_os(errno, "write to descriptor %d failed", (int)fd);
      break;
    }
    /* Advance past what was written. */
    while (nv > 0 && (size_t)n >= v->iov_len) {
      n -= (ssize_t)v->iov_len;
      v++;
      nv--;
    }
    if (nv > 0) {
      v->iov_base = (char *)v->iov_base + n;
      v->iov_len -= (size_t)n;
    }
  }
  if (!sock)
    sigpipe_unblock(&guard, r == MPROC_EOF);
  return r;
}

int mproc__os_poll_read(const mproc__fd *fds, size_t n, double timeout, unsigned char *ready,
                        size_t *nready) {
  struct pollfd small[16];
  struct pollfd *pfd = small;
  int64_t deadline = mproc__deadline(timeout);
  int r = 0, k;

  if (n > sizeof small / sizeof small[0]) {
    pfd = calloc(n, sizeof *pfd);
    if (pfd == NULL)
      return mproc__error(MPROC_ENOMEM, "cannot allocate a poll set of %zu descriptors", n);
  }
  for (size_t i = 0; i < n; i++) {
    pfd[i].fd = (int)fds[i];
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
  }
  for (;;) {
    double left = mproc__remaining(deadline);
    int ms = left < 0 ? -1 : (int)(left * 1000.0 + 0.999);
    if (left > (double)INT_MAX / 1000.0)
      ms = INT_MAX;
    k = poll(pfd, (nfds_t)n, ms);
    if (k >= 0 || errno != EINTR)
      break;
  }
  if (k < 0) {
    r = mproc__error_os(errno, "poll() on %zu descriptors failed", n);
    goto out;
  }
  *nready = 0;
  for (size_t i = 0; i < n; i++) {
    ready[i] = (pfd[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0;
    *nready += ready[i];
  }
out:
  if (pfd != small)
    free(pfd);
  return r;
}

void mproc__os_close(mproc__fd fd) {
  if (fd >= 0)
    (void)close((int)fd);
}

int mproc__os_set_inherit(mproc__fd fd, bool inherit) {
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0)
    return mproc__error_os(errno, "fcntl(F_GETFD) on descriptor %d failed", (int)fd);
  flags = inherit ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC);
  if (fcntl((int)fd, F_SETFD, flags) < 0)
    return mproc__error_os(errno, "fcntl(F_SETFD) on descriptor %d failed", (int)fd);
  return 0;
}

int mproc__os_send_fd(mproc__fd sock, mproc__fd fd) {
  char byte = 'F';
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr m;
  struct cmsghdr *c;
  int f = (int)fd;
  ssize_t n;

  memset(&m, 0, sizeof m);
  memset(&ctl, 0, sizeof ctl);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.space;
  m.msg_controllen = sizeof ctl.space;
  c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &f, sizeof f);
  do
    n = sendmsg((int)sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EPIPE ? mproc__error(MPROC_EOF, "the peer closed the connection")
                          : mproc__error_os(errno, "sendmsg(SCM_RIGHTS) failed");
  return 0;
}

int mproc__os_recv_fd(mproc__fd sock, mproc__fd *fd) {
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr m;
  struct cmsghdr *c;
  ssize_t n;
  int f;

  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.space;
  m.msg_controllen = sizeof ctl.space;
#if MPROC__USE_MSG_CMSG_CLOEXEC
  do
    n = recvmsg((int)sock, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
#else
  /* Made close-on-exec below; the window is the one make_private describes. */
  do
    n = recvmsg((int)sock, &m, 0);
  while (n < 0 && errno == EINTR);
#endif
  if (n < 0)
    return mproc__error_os(errno, "recvmsg(SCM_RIGHTS) failed");
  if (n == 0)
    return mproc__error(MPROC_EOF, "the peer closed the connection");
  c = CMSG_FIRSTHDR(&m);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS)
    return mproc__error(MPROC_EPROTO, "expected a descriptor, got none");
  memcpy(&f, CMSG_DATA(c), sizeof f);
#if !MPROC__USE_MSG_CMSG_CLOEXEC
  {
    int r = make_private(f, "recvmsg(SCM_RIGHTS)");
    if (r != 0) {
      close(f);
      return r;
    }
  }
#endif
  *fd = f;
  return 0;
}
