/* Group tasks (kind: group): what the master and the workers share.
 *
 * A group is one program of `ranks` processes that find each other the
 * way torchrun's do: through MASTER_ADDR and MASTER_PORT, a port that the
 * process of RANK 0 listens on.  gridrun picks both: the address of the
 * host of RANK 0 (127.0.0.1 when the whole group is on that host), and a
 * port that was free there a moment before the processes start.  Each
 * process also gets GLOO_SOCKET_IFNAME, the interface its host reaches
 * MASTER_ADDR through, so that gloo talks over the same network. */
#ifndef GR_RUNTIME_GROUP_H
#define GR_RUNTIME_GROUP_H

#include <stddef.h>

/* An IPv4 address other hosts can reach this one at: $GRIDRUN_HOST_ADDR
 * when set, else what the host name resolves to when that is not a
 * loopback address, else the first address of an interface that is up
 * and not loopback, else 127.0.0.1.  Never fails. */
void gr__host_addr (char *buf, size_t len);

/* The name of the interface this host reaches addr through: the one that
 * holds the source address the kernel picks for addr (for an address of
 * this host, the interface holding it; for 127.0.0.1, lo).  buf gets at
 * most len bytes.  0, or -1 with errno (EINVAL: addr is not IPv4 dotted
 * quad; ENODEV: no interface holds the source address; ENAMETOOLONG; or
 * what connect() says, e.g. ENETUNREACH). */
int gr__ifname_toward (const char *addr, char *buf, size_t len);

/* A TCP port that is free on addr (bound to port 0 and released, as
 * torchrun does), or -1 with errno. */
int gr__free_port (const char *addr);

#endif
