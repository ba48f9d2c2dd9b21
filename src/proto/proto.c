#include "config.h"

#include <errno.h>

#include "proto.h"

int gr_proto_check_ready (const void *buf, size_t len)
{
    const gr_ready_hdr_t *h = buf;
    if (len < sizeof (*h) || h->version != GR_PROTO_VERSION
        || h->nresults > GR_PROTO_MAX_BATCH || len != gr_ready_size (h->nresults)) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int gr_proto_check_assign (const void *buf, size_t len)
{
    const gr_assign_hdr_t *h = buf;
    if (len < sizeof (*h) || h->version != GR_PROTO_VERSION
        || h->ntasks > GR_PROTO_MAX_BATCH
        || len != ((h->flags & GR_ASSIGN_GROUP) && h->ntasks == 0
                       ? sizeof (*h) + sizeof (gr_group_cmd_t)
                       : gr_assign_size (h->ntasks))) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

#include <stdlib.h>
#include <string.h>

#include "src/common/grow.h"

typedef struct chan_send {
    MPI_Request req;
    void *buf;
    int dest;
} chan_send_t;

struct gr_chan {
    MPI_Comm comm;
    chan_send_t *sends;
    MPI_Request *reqs;      /* mirror of sends[].req for MPI_Testsome */
    int *idx;
    int nsends;
    int cap;
    void *rbuf;
    size_t rcap;
};

gr_chan_t *gr_chan_create (MPI_Comm comm)
{
    gr_chan_t *ch = calloc (1, sizeof (*ch));
    if (!ch)
        return NULL;
    ch->comm = comm;
    return ch;
}

void gr_chan_destroy (gr_chan_t *ch, int wait)
{
    if (!ch)
        return;
    int saved = errno;
    for (int i = 0; i < ch->nsends; i++) {
        if (wait)
            MPI_Wait (&ch->sends[i].req, MPI_STATUS_IGNORE);
        else {
            MPI_Cancel (&ch->sends[i].req);
            MPI_Request_free (&ch->sends[i].req);
        }
        free (ch->sends[i].buf);
    }
    free (ch->sends);
    free (ch->reqs);
    free (ch->idx);
    free (ch->rbuf);
    free (ch);
    errno = saved;
}

int gr_chan_send (gr_chan_t *ch, int dest, int tag, void *buf, size_t len)
{
    if (len > INT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    if (ch->nsends == ch->cap) {
        int ncap = ch->cap ? ch->cap * 2 : 16;
        chan_send_t *s = realloc (ch->sends, ncap * sizeof (*s));
        if (!s)
            return -1;
        ch->sends = s;
        MPI_Request *r = realloc (ch->reqs, ncap * sizeof (*r));
        if (!r)
            return -1;
        ch->reqs = r;
        int *ix = realloc (ch->idx, ncap * sizeof (*ix));
        if (!ix)
            return -1;
        ch->idx = ix;
        ch->cap = ncap;
    }
    chan_send_t *s = &ch->sends[ch->nsends];
    if (MPI_Isend (buf, (int)len, MPI_BYTE, dest, tag, ch->comm, &s->req)
        != MPI_SUCCESS) {
        errno = EIO;
        return -1;
    }
    s->buf = buf;
    s->dest = dest;
    ch->nsends++;
    return 0;
}

void gr_chan_cancel_dest (gr_chan_t *ch, int dest)
{
    int j = 0;
    for (int i = 0; i < ch->nsends; i++) {
        chan_send_t *s = &ch->sends[i];
        if (s->dest != dest) {
            ch->sends[j++] = *s;
            continue;
        }
        MPI_Cancel (&s->req);
        MPI_Request_free (&s->req);
    }
    ch->nsends = j;
}

int gr_chan_progress (gr_chan_t *ch)
{
    int outcount = 0;
    if (ch->nsends == 0)
        return 0;
    for (int i = 0; i < ch->nsends; i++)
        ch->reqs[i] = ch->sends[i].req;
    if (MPI_Testsome (ch->nsends, ch->reqs, &outcount, ch->idx,
                      MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
        errno = EIO;
        return -1;
    }
    if (outcount <= 0 || outcount == MPI_UNDEFINED)
        return ch->nsends;
    for (int i = 0; i < outcount; i++) {
        free (ch->sends[ch->idx[i]].buf);
        ch->sends[ch->idx[i]].buf = NULL;
        ch->sends[ch->idx[i]].req = MPI_REQUEST_NULL;
    }
    /* Compact, keeping the order of what is left. */
    int j = 0;
    for (int i = 0; i < ch->nsends; i++) {
        if (ch->sends[i].buf)
            ch->sends[j++] = ch->sends[i];
    }
    ch->nsends = j;
    return ch->nsends;
}

int gr_chan_recv (gr_chan_t *ch, int source, int tag, void **bufp,
                  size_t *lenp, int *srcp)
{
    int flag = 0, count = 0;
    MPI_Message msg;
    MPI_Status st;

    if (MPI_Improbe (source, tag, ch->comm, &flag, &msg, &st) != MPI_SUCCESS) {
        errno = EIO;
        return -1;
    }
    if (!flag)
        return 0;
    MPI_Get_count (&st, MPI_BYTE, &count);
    if (count < 0)
        count = 0;
    void *nb = gr_grow_to (ch->rbuf, &ch->rcap, (size_t)count + 1, 1, 4096);
    if (!nb)
        return -1;
    ch->rbuf = nb;
    if (MPI_Mrecv (ch->rbuf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE)
        != MPI_SUCCESS) {
        errno = EIO;
        return -1;
    }
    *bufp = ch->rbuf;
    *lenp = (size_t)count;
    if (srcp)
        *srcp = st.MPI_SOURCE;
    return 1;
}
