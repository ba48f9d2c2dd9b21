/* Growing an array by doubling. */
#ifndef GR_COMMON_GROW_H
#define GR_COMMON_GROW_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* p (capacity *cap elements of elsize bytes) with room for at least need
 * elements: p itself, or p grown by doubling *cap (starting from first,
 * which must not be 0, when empty) until need fits, or NULL with errno
 * ENOMEM when out of memory or when the size would not fit in a size_t
 * (p and *cap are then left as they were, and p is still the caller's). */
static inline void *gr_grow_to (void *p, size_t *cap, size_t need, size_t elsize,
                                size_t first)
{
    if (need <= *cap)
        return p;
    size_t ncap = *cap ? *cap : first;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            goto nomem;
        ncap *= 2;
    }
    if (elsize && ncap > SIZE_MAX / elsize)
        goto nomem;
    void *q = realloc (p, ncap * elsize);
    if (q)
        *cap = ncap;
    return q;
nomem:
    errno = ENOMEM;
    return NULL;
}

/* p (capacity *cap elements, n in use) with room for one more element of
 * elsize bytes: p itself, or p grown by doubling (to first when empty),
 * or NULL with errno ENOMEM when out of memory or when the size would not
 * fit in a size_t (p and *cap are left as they were). */
static inline void *gr_grow (void *p, size_t *cap, size_t n, size_t elsize,
                             size_t first)
{
    if (n < *cap)
        return p;
    if (n == SIZE_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return gr_grow_to (p, cap, n + 1, elsize, first);
}

#endif
