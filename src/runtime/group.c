#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "group.h"

static int usable (const struct in_addr *a)
{
    /* 127/8 and 0.0.0.0 reach nobody else. */
    uint32_t h = ntohl (a->s_addr);
    return h != 0 && (h >> 24) != 127;
}

void gr__host_addr (char *buf, size_t len)
{
    const char *env = getenv ("GRIDRUN_HOST_ADDR");
    char host[256];
    struct addrinfo hints, *res = NULL;
    struct ifaddrs *ifs = NULL;

    if (env && *env) {
        snprintf (buf, len, "%s", env);
        return;
    }
    memset (&hints, 0, sizeof (hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (gethostname (host, sizeof (host)) == 0 && (host[sizeof (host) - 1] = '\0', 1)
        && getaddrinfo (host, NULL, &hints, &res) == 0) {
        for (struct addrinfo *p = res; p; p = p->ai_next) {
            struct in_addr a = ((struct sockaddr_in *)p->ai_addr)->sin_addr;
            if (usable (&a) && inet_ntop (AF_INET, &a, buf, (socklen_t)len)) {
                freeaddrinfo (res);
                return;
            }
        }
        freeaddrinfo (res);
    }
    if (getifaddrs (&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET
                || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
                continue;
            struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            if (usable (&a) && inet_ntop (AF_INET, &a, buf, (socklen_t)len)) {
                freeifaddrs (ifs);
                return;
            }
        }
        freeifaddrs (ifs);
    }
    snprintf (buf, len, "127.0.0.1");
}

int gr__ifname_toward (const char *addr, char *buf, size_t len)
{
    struct sockaddr_in sa, me;
    socklen_t sl = sizeof (me);
    struct ifaddrs *ifs = NULL;
    int fd, rc = -1, err = ENODEV;

    memset (&sa, 0, sizeof (sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons (9);
    if (inet_pton (AF_INET, addr, &sa.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    /* Connecting a UDP socket sends nothing; it makes the kernel pick the
     * route, and so the source address, it would use.  To an address of
     * this host the source is that address, so the interface found below
     * is the one holding it (not lo, which carries the packets). */
    if ((fd = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    if (connect (fd, (struct sockaddr *)&sa, sizeof (sa)) < 0
        || getsockname (fd, (struct sockaddr *)&me, &sl) < 0) {
        err = errno;
        goto out;
    }
    if (getifaddrs (&ifs) < 0) {
        err = errno;
        goto out;
    }
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET
            || ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr != me.sin_addr.s_addr)
            continue;
        if (strlen (i->ifa_name) >= len) {
            err = ENAMETOOLONG;
            break;
        }
        snprintf (buf, len, "%s", i->ifa_name);
        rc = 0;
        break;
    }
    freeifaddrs (ifs);
out:
    close (fd);
    if (rc < 0)
        errno = err;
    return rc;
}

int gr__free_port (const char *addr)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof (sa);
    int fd, port = -1;

    memset (&sa, 0, sizeof (sa));
    sa.sin_family = AF_INET;
    if (inet_pton (AF_INET, addr, &sa.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    if ((fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    if (bind (fd, (struct sockaddr *)&sa, sizeof (sa)) == 0
        && getsockname (fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs (sa.sin_port);
    int saved = errno;
    close (fd);
    errno = saved;
    return port;
}
