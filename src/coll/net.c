/* The TCP world of net.h: rendezvous on MASTER_ADDR:MASTER_PORT, a full
 * mesh of connections, and framed point-to-point messages moved through
 * poll().  Every socket is nonblocking; every wait has the caller's
 * deadline. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net.h"
#include "src/common/gtime.h"
#include "src/common/log.h"

#define NET_MAGIC 0x67726e6574310000ULL /* "grnet1" */
#define TOKEN_MAX 128
/* A connection that says nothing gets this long to say hello. */
#define HELLO_WAIT 10.0
#define HDR 8

struct gr_net {
    int rank, size;
    int *fd; /* per rank; -1 for this one */
    int broken;
    char why[256];
};

/* What a rank sends when it joins (to rank 0, with its listener's
 * address) and when it connects to a peer.  The ranks of one world run
 * one program on one kind of machine, so the layout is the same on
 * every side. */
typedef struct {
    uint64_t magic;
    int32_t size, rank;
    char token[TOKEN_MAX];
    struct sockaddr_storage addr;
    uint32_t addrlen;
} hello_t;

/* ---- Small helpers ----------------------------------------------------- */

static int poll_ms (double deadline)
{
    double left;

    if (isinf (deadline))
        return -1;
    left = deadline - gr_now ();
    return left <= 0 ? 0 : left > 60.0 ? 60000 : (int)ceil (left * 1000.0);
}

/* Wait until fd is ready for ev; -1 with ETIMEDOUT past the deadline. */
static int wait_fd (int fd, short ev, double deadline)
{
    struct pollfd p = {.fd = fd, .events = ev};

    for (;;) {
        int rc = poll (&p, 1, poll_ms (deadline));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc == 0 && gr_now () >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
}

/* What a send or recv on a nonblocking socket that returned k did: 1
 * bytes moved, 0 nothing yet (it would block, or a signal came), -1
 * failed (errno; the peer's EOF is ECONNRESET). */
static int moved (ssize_t k)
{
    if (k > 0)
        return 1;
    if (k == 0) {
        errno = ECONNRESET;
        return -1;
    }
    return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

/* Move all len bytes through nonblocking fd. */
static int io_all (int fd, void *buf, size_t len, int writing, double deadline)
{
    char *p = buf;

    while (len > 0) {
        ssize_t k = writing ? send (fd, p, len, MSG_NOSIGNAL) : recv (fd, p, len, 0);
        int m = moved (k);
        if (m < 0)
            return -1;
        if (m > 0) {
            p += k;
            len -= (size_t)k;
        } else if (wait_fd (fd, writing ? POLLOUT : POLLIN, deadline) < 0)
            return -1;
    }
    return 0;
}

static int listen_on (const struct sockaddr_storage *ss, socklen_t len, int backlog)
{
    int fd = socket (ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0)
        return -1;
    if (setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof (one)) < 0 ||
        bind (fd, (const struct sockaddr *)ss, len) < 0 || listen (fd, backlog) < 0) {
        int e = errno;
        close (fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Connect, trying again while nobody listens yet (rank 0 may start
 * last), until the deadline. */
static int connect_to (const struct sockaddr_storage *ss, socklen_t len, double deadline)
{
    double pause = 0.01;

    for (;;) {
        int fd = socket (ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;
        if (fd < 0)
            return -1;
        if (connect (fd, (const struct sockaddr *)ss, len) == 0)
            return fd;
        e = errno;
        if (e == EINPROGRESS) {
            int err = 0;
            socklen_t l = sizeof (err);
            if (wait_fd (fd, POLLOUT, deadline) < 0)
                e = errno;
            else if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                e = errno;
            else if (err == 0)
                return fd;
            else
                e = err;
        }
        close (fd);
        if (e != ECONNREFUSED && e != EHOSTUNREACH && e != ENETUNREACH && e != ECONNRESET &&
            e != EAGAIN) {
            errno = e;
            return -1;
        }
        if (gr_now () + pause >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        gr_sleep (pause);
        pause = pause * 2 > 0.2 ? 0.2 : pause * 2;
    }
}

static int accept_one (int lfd, double deadline)
{
    for (;;) {
        int fd = accept4 (lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_fd (lfd, POLLIN, deadline) < 0)
            return -1;
    }
}

static void hello_init (hello_t *h, const gr_net_t *n, const char *token)
{
    memset (h, 0, sizeof (*h));
    h->magic = NET_MAGIC;
    h->size = n->size;
    h->rank = n->rank;
    snprintf (h->token, sizeof (h->token), "%s", token);
}

/* Read a hello from a new connection; 0 when it is one of this world's
 * ranks in [lo, n->size) not yet connected. */
static int hello_read (gr_net_t *n, int fd, const char *token, int lo, hello_t *h,
                       double deadline)
{
    double wait = gr_now () + HELLO_WAIT;

    if (io_all (fd, h, sizeof (*h), 0, wait < deadline ? wait : deadline) < 0)
        return -1;
    h->token[TOKEN_MAX - 1] = '\0';
    if (h->magic != NET_MAGIC || h->size != n->size || h->rank < lo ||
        h->rank >= n->size || h->rank == n->rank || n->fd[h->rank] >= 0 ||
        strcmp (h->token, token) != 0) {
        GR_DEBUG ("net: rank %d: turned away a connection that is not a rank of this "
                  "world (rank %d of %d)",
                  n->rank, (int)h->rank, (int)h->size);
        return -1;
    }
    return 0;
}

static const char *addr_text (const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo ((const struct sockaddr *)ss, sizeof (*ss), host, sizeof (host), serv,
                     sizeof (serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf (buf, len, "?");
    else
        snprintf (buf, len, "%s port %s", host, serv);
    return buf;
}

/* ---- Rendezvous -------------------------------------------------------- */

static int rank0_join (gr_net_t *n, const struct sockaddr_storage *ss, socklen_t sslen,
                       const gr_net_opts_t *o, const char *token, double deadline,
                       gr_error_t *errp)
{
    hello_t *table = calloc ((size_t)n->size, sizeof (*table));
    int lfd = -1, joined = 1, rc = -1;

    if (!table) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        goto done;
    }
    if ((lfd = listen_on (ss, sslen, n->size)) < 0) {
        int e = errno;
        if (e == EADDRNOTAVAIL)
            gr_errprintf (errp,
                          "rank 0 cannot listen on MASTER_ADDR=%s: it is not an address "
                          "of this host (%s); rank 0 must run on the host MASTER_ADDR "
                          "names",
                          o->master_addr, strerror (e));
        else if (e == EADDRINUSE)
            gr_errprintf (errp,
                          "MASTER_PORT=%d is in use on %s; give a free port (gridrun's "
                          "group tasks get one chosen for them)",
                          o->master_port, o->master_addr);
        else
            gr_errprintf (errp, "rank 0 cannot listen on MASTER_ADDR=%s MASTER_PORT=%d: %s",
                          o->master_addr, o->master_port, strerror (e));
        errno = e;
        goto done;
    }
    while (joined < n->size) {
        hello_t h;
        int fd = accept_one (lfd, deadline);
        if (fd < 0) {
            int e = errno, first = 1;
            char missing[128] = "";
            for (int r = 1; r < n->size && strlen (missing) < sizeof (missing) - 16; r++)
                if (n->fd[r] < 0) {
                    size_t u = strlen (missing);
                    snprintf (missing + u, sizeof (missing) - u, "%s%d", first ? "" : " ", r);
                    first = 0;
                }
            gr_errprintf (errp,
                          "%d of %d ranks joined rank 0 at MASTER_ADDR=%s MASTER_PORT=%d "
                          "(missing: %s): %s",
                          joined, n->size, o->master_addr, o->master_port, missing,
                          e == ETIMEDOUT ? "the wait timed out (GRIDRUN_COLL_TIMEOUT)"
                                         : strerror (e));
            errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
            goto done;
        }
        if (hello_read (n, fd, token, 1, &h, deadline) < 0) {
            close (fd);
            continue;
        }
        n->fd[h.rank] = fd;
        table[h.rank] = h;
        joined++;
    }
    for (int r = 1; r < n->size; r++)
        if (io_all (n->fd[r], table, (size_t)n->size * sizeof (*table), 1, deadline) < 0) {
            int e = errno;
            gr_errprintf (errp, "cannot send rank %d the addresses of its peers: %s", r,
                          strerror (e));
            errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
            goto done;
        }
    rc = 0;
done:
    if (lfd >= 0)
        close (lfd);
    free (table);
    return rc;
}

static int peer_join (gr_net_t *n, const struct sockaddr_storage *ss, socklen_t sslen,
                      const gr_net_opts_t *o, const char *token, double deadline,
                      gr_error_t *errp)
{
    hello_t h, *table = calloc ((size_t)n->size, sizeof (*table));
    struct sockaddr_storage local;
    socklen_t llen = sizeof (local);
    int fd0, lfd = -1, rc = -1, e = 0;
    char text[128];

    if (!table) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return -1;
    }
    if ((fd0 = connect_to (ss, sslen, deadline)) < 0) {
        e = errno;
        gr_errprintf (errp, "cannot reach rank 0 at MASTER_ADDR=%s MASTER_PORT=%d: %s",
                      o->master_addr, o->master_port,
                      e == ETIMEDOUT ? "nobody listened there in time (GRIDRUN_COLL_TIMEOUT)"
                                     : strerror (e));
        errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
        goto done;
    }
    n->fd[0] = fd0;
    /* Listen where this host reaches rank 0: the peers reach it there. */
    if (getsockname (fd0, (struct sockaddr *)&local, &llen) < 0) {
        e = errno;
        goto sys;
    }
    if (local.ss_family == AF_INET)
        ((struct sockaddr_in *)&local)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&local)->sin6_port = 0;
    if ((lfd = listen_on (&local, llen, n->size)) < 0) {
        e = errno;
        goto sys;
    }
    hello_init (&h, n, token);
    llen = sizeof (h.addr);
    if (getsockname (lfd, (struct sockaddr *)&h.addr, &llen) < 0) {
        e = errno;
        goto sys;
    }
    h.addrlen = (uint32_t)llen;
    if (io_all (fd0, &h, sizeof (h), 1, deadline) < 0 ||
        io_all (fd0, table, (size_t)n->size * sizeof (*table), 0, deadline) < 0) {
        e = errno;
        gr_errprintf (errp,
                      "rank 0 at MASTER_ADDR=%s MASTER_PORT=%d did not take rank %d in: "
                      "%s (is another program, or another run, using that port?)",
                      o->master_addr, o->master_port, n->rank, strerror (e));
        errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
        goto done;
    }
    for (int j = 1; j < n->rank; j++) {
        int fd = connect_to (&table[j].addr, table[j].addrlen, deadline);
        hello_t mine;
        if (fd < 0 || (n->fd[j] = fd, hello_init (&mine, n, token),
                       io_all (fd, &mine, sizeof (mine), 1, deadline) < 0)) {
            e = errno;
            gr_errprintf (errp, "rank %d cannot connect to rank %d at %s: %s", n->rank, j,
                          addr_text (&table[j].addr, text, sizeof (text)), strerror (e));
            errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
            goto done;
        }
    }
    for (int k = n->rank + 1; k < n->size;) {
        hello_t hk;
        int fd = accept_one (lfd, deadline);
        if (fd < 0) {
            e = errno;
            gr_errprintf (errp, "rank %d waited for ranks above it to connect: %s", n->rank,
                          e == ETIMEDOUT ? "timed out" : strerror (e));
            errno = e == ETIMEDOUT ? ETIMEDOUT : ECOMM;
            goto done;
        }
        if (hello_read (n, fd, token, n->rank + 1, &hk, deadline) < 0) {
            close (fd);
            continue;
        }
        n->fd[hk.rank] = fd;
        k++;
    }
    rc = 0;
    goto done;
sys:
    gr_errprintf (errp, "rank %d cannot open its listening socket: %s", n->rank,
                  strerror (e));
    errno = ECOMM;
done:
    if (lfd >= 0)
        close (lfd);
    free (table);
    return rc;
}

gr_net_t *gr_net_open (const gr_net_opts_t *o, double deadline, gr_error_t *errp)
{
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *token = o && o->token ? o->token : "";
    char port[16];
    gr_net_t *n;
    int rc;

    if (!o || o->size < 1 || o->rank < 0 || o->rank >= o->size || !o->master_addr ||
        !*o->master_addr || o->master_port < 1 || o->master_port > 65535 ||
        strlen (token) >= TOKEN_MAX) {
        errno = EINVAL;
        gr_errprintf (errp, "bad world: rank %d of %d, MASTER_ADDR=%s MASTER_PORT=%d",
                      o ? o->rank : -1, o ? o->size : -1,
                      o && o->master_addr ? o->master_addr : "(none)",
                      o ? o->master_port : -1);
        return NULL;
    }
    if (!(n = calloc (1, sizeof (*n))) || !(n->fd = malloc ((size_t)o->size * sizeof (int)))) {
        free (n);
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    n->rank = o->rank;
    n->size = o->size;
    for (int r = 0; r < n->size; r++)
        n->fd[r] = -1;
    if (n->size == 1)
        return n;
    memset (&hints, 0, sizeof (hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    snprintf (port, sizeof (port), "%d", o->master_port);
    if ((rc = getaddrinfo (o->master_addr, port, &hints, &res)) != 0 || !res) {
        gr_errprintf (errp, "MASTER_ADDR=%s is not an address this host can resolve: %s",
                      o->master_addr, rc ? gai_strerror (rc) : "no address");
        errno = EINVAL;
        goto error;
    }
    memset (&ss, 0, sizeof (ss));
    memcpy (&ss, res->ai_addr, res->ai_addrlen);
    sslen = res->ai_addrlen;
    freeaddrinfo (res);
    if ((n->rank == 0 ? rank0_join (n, &ss, sslen, o, token, deadline, errp)
                      : peer_join (n, &ss, sslen, o, token, deadline, errp)) < 0)
        goto error;
    for (int r = 0; r < n->size; r++) {
        int one = 1;
        if (n->fd[r] >= 0)
            setsockopt (n->fd[r], IPPROTO_TCP, TCP_NODELAY, &one, sizeof (one));
    }
    return n;
error:
    gr_net_close (n);
    return NULL;
}

void gr_net_close (gr_net_t *n)
{
    int saved = errno;

    if (!n)
        return;
    for (int r = 0; n->fd && r < n->size; r++)
        if (n->fd[r] >= 0)
            close (n->fd[r]);
    free (n->fd);
    free (n);
    errno = saved;
}

int gr_net_rank (const gr_net_t *n)
{
    return n->rank;
}

int gr_net_size (const gr_net_t *n)
{
    return n->size;
}

int gr_net_broken (const gr_net_t *n)
{
    return n->broken;
}

const char *gr_net_why (const gr_net_t *n)
{
    return n->why;
}

int gr_net_break (gr_net_t *n, gr_error_t *errp, int err, const char *fmt, ...)
{
    va_list ap;

    if (!n->broken) {
        va_start (ap, fmt);
        vsnprintf (n->why, sizeof (n->why), fmt, ap);
        va_end (ap);
        n->broken = 1;
        gr_errprintf (errp, "%s", n->why);
    } else
        gr_errprintf (errp, "%s", n->why);
    errno = err;
    return -1;
}

/* ---- Messages ---------------------------------------------------------- */

/* One message in flight: the header (its length, little-endian) then the
 * payload; done counts both. */
typedef struct {
    int fd, peer, sending;
    unsigned char hdr[HDR];
    char *buf;
    size_t len, done;
} xfer_t;

static void put_len (unsigned char *h, uint64_t v)
{
    for (int i = 0; i < HDR; i++)
        h[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_len (const unsigned char *h)
{
    uint64_t v = 0;

    for (int i = 0; i < HDR; i++)
        v |= (uint64_t)h[i] << (8 * i);
    return v;
}

/* Move what the socket takes now.  1: finished, 0: would block, -1:
 * failed (errno; EPROTO for a length the receiver did not expect). */
static int step (xfer_t *x)
{
    for (;;) {
        ssize_t k;
        size_t total = HDR + x->len;
        if (x->done == total)
            return 1;
        if (x->sending) {
            struct iovec iov[2];
            int niov = 0;
            if (x->done < HDR)
                iov[niov++] = (struct iovec){x->hdr + x->done, HDR - x->done};
            size_t off = x->done < HDR ? 0 : x->done - HDR;
            if (x->len > off)
                iov[niov++] = (struct iovec){x->buf + off, x->len - off};
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
            k = sendmsg (x->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else if (x->done < HDR)
            k = recv (x->fd, x->hdr + x->done, HDR - x->done, MSG_DONTWAIT);
        else
            k = recv (x->fd, x->buf + (x->done - HDR), total - x->done, MSG_DONTWAIT);
        int m = moved (k);
        if (m <= 0)
            return m;
        size_t before = x->done;
        x->done += (size_t)k;
        if (!x->sending && before < HDR && x->done == HDR && get_len (x->hdr) != x->len) {
            errno = EPROTO;
            return -1;
        }
    }
}

int gr_net_exchange (gr_net_t *n, const gr_net_msg_t *sends, int nsend, gr_net_msg_t *recvs,
                     int nrecv, double deadline, gr_error_t *errp)
{
    int nx = nsend + nrecv, left = nx, rc = -1;
    xfer_t *x = NULL;
    struct pollfd *p = NULL;

    if (n->broken)
        return gr_net_break (n, errp, ECOMM, "%s", n->why);
    for (int i = 0; i < nx; i++) {
        const gr_net_msg_t *m = i < nsend ? &sends[i] : &recvs[i - nsend];
        if (m->peer < 0 || m->peer >= n->size || m->peer == n->rank) {
            errno = EINVAL;
            return gr_errprintf (errp, "rank %d: a message to or from rank %d", n->rank,
                                 m->peer);
        }
    }
    if (nx == 0)
        return 0;
    if (!(x = calloc ((size_t)nx, sizeof (*x))) || !(p = calloc ((size_t)nx, sizeof (*p)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        goto done;
    }
    for (int i = 0; i < nx; i++) {
        const gr_net_msg_t *m = i < nsend ? &sends[i] : &recvs[i - nsend];
        x[i] = (xfer_t){.fd = n->fd[m->peer], .peer = m->peer, .sending = i < nsend,
                        .buf = m->buf, .len = m->len};
        if (x[i].sending)
            put_len (x[i].hdr, m->len);
    }
    for (;;) {
        int np = 0;
        for (int i = 0; i < nx; i++) {
            int s;
            if (x[i].done == HDR + x[i].len)
                continue;
            if ((s = step (&x[i])) < 0) {
                int e = errno;
                if (e == EPROTO)
                    gr_net_break (n, errp, ECOMM,
                                  "rank %d: rank %d sent a message of %llu bytes where %zu "
                                  "were expected: the ranks called different collectives, "
                                  "or the same one with different counts",
                                  n->rank, x[i].peer, (unsigned long long)get_len (x[i].hdr),
                                  x[i].len);
                else if (e == ECONNRESET || e == EPIPE)
                    gr_net_break (n, errp, ECOMM,
                                  "rank %d: rank %d closed its connection (it exited or "
                                  "was killed)",
                                  n->rank, x[i].peer);
                else
                    gr_net_break (n, errp, ECOMM, "rank %d: %s rank %d failed: %s",
                                  n->rank, x[i].sending ? "sending to" : "receiving from",
                                  x[i].peer, strerror (e));
                goto done;
            }
            if (s == 1)
                left--;
            else
                p[np++] = (struct pollfd){.fd = x[i].fd,
                                          .events = x[i].sending ? POLLOUT : POLLIN};
        }
        if (left == 0)
            break;
        int k = poll (p, (nfds_t)np, poll_ms (deadline));
        if (k < 0 && errno != EINTR) {
            gr_net_break (n, errp, ECOMM, "rank %d: poll failed: %s", n->rank,
                          strerror (errno));
            goto done;
        }
        if (k == 0 && gr_now () >= deadline) {
            gr_net_break (n, errp, ETIMEDOUT,
                          "rank %d: an operation missed its deadline with %d of its %d "
                          "messages unfinished (a peer stopped taking part; "
                          "GRIDRUN_COLL_TIMEOUT sets the limit)",
                          n->rank, left, nx);
            goto done;
        }
    }
    rc = 0;
done:
    free (x);
    free (p);
    return rc;
}

int gr_net_bcast (gr_net_t *n, int root, void *buf, size_t len, double deadline,
                  gr_error_t *errp)
{
    gr_net_msg_t *m;
    int k = 0, rc;

    if (n->rank != root) {
        gr_net_msg_t r = {.peer = root, .buf = buf, .len = len};
        return gr_net_exchange (n, NULL, 0, &r, 1, deadline, errp);
    }
    if (!(m = calloc ((size_t)n->size, sizeof (*m)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    for (int r = 0; r < n->size; r++)
        if (r != root)
            m[k++] = (gr_net_msg_t){.peer = r, .buf = buf, .len = len};
    rc = gr_net_exchange (n, m, k, NULL, 0, deadline, errp);
    free (m);
    return rc;
}
