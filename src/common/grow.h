/* Growing an array by doubling. */
#ifndef GR_COMMON_GROW_H
#define GR_COMMON_GROW_H

#include <stddef.h>
#include <stdlib.h>

/* p (capacity *cap elements, n in use) with room for one more element of
 * elsize bytes: p itself, or p grown by doubling (to first when empty),
 * or NULL when out of memory (p and *cap are left as they were). */
static inline void *gr_grow (void *p, size_t *cap, size_t n, size_t elsize,
                             size_t first)
{
    if (n < *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : first;
    void *q = realloc (p, ncap * elsize);
    if (q)
        *cap = ncap;
    return q;
}

#endif
