/* The YAML parse tree that the job spec (spec.c) and the site file
 * (site.c) parsers share, and the helpers that check it and report errors.
 *
 * libyaml's event API feeds a small tree of our own, in an arena so that a
 * large file costs few allocations, that keeps every value's position.
 * Building our own tree, instead of using yaml_parser_load(), lets us
 * refuse aliases at their position before they can be expanded (the
 * "billion laughs" file), cap depth and size, and find duplicate keys,
 * which libyaml accepts silently.
 *
 * Every error names FILE:LINE:COL (1-based; libyaml's marks are 0-based),
 * says what is wrong and, after a semicolon, what to do.  The error
 * functions all return -1 with errno set (EINVAL, or ENOMEM for
 * gr__ynomem()) and the text in the parse's gr_error_t.
 */
#ifndef GR_SPEC_YTREE_H
#define GR_SPEC_YTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "src/common/error.h"
#include "spec.h"

typedef enum { GR__YSCALAR, GR__YSEQ, GR__YMAP } gr__ytype_t;

typedef struct gr__ynode {
    gr__ytype_t type;
    bool plain;           /* a plain (unquoted) scalar */
    int coloff;           /* columns from mark to the first byte of str when
                             each later byte is one column on the same line;
                             -1 when escapes or line breaks break that */
    gr_mark_t mark;
    char *str;            /* scalar value, NUL-terminated */
    size_t len;
    struct gr__ynode *first, *last, *next;
    size_t n;             /* children; a map alternates key, value */
} gr__ynode_t;

/* What differs between the kinds of file read this way: limits, and the
 * words that fit the file in messages. */
typedef struct gr__ydoc {
    const char *noun;            /* "spec": "the spec holds more than ..." */
    int max_depth;               /* deeper nesting is refused */
    size_t max_nodes;            /* so are more YAML values than this */
    const char *nodes_hint;      /* what to do about too many values */
    const char *alias_hint;      /* follows "write the value out" */
    const char *tab_hint;        /* what to do about a tab where YAML fails */
    size_t max_string;           /* gr__ywant_string()'s limit, in bytes */
    const char *max_string_name; /* follows the limit in messages, or "" */
} gr__ydoc_t;

/* One parse.  A parser embeds this as its context's first member, sets
 * doc, file and errp, calls gr__ybuild() and, whatever happened,
 * gr__yfree().  The nodes live until gr__yfree(). */
typedef struct gr__yparse {
    const gr__ydoc_t *doc;
    const char *file;            /* the name in messages */
    gr_error_t *errp;
    const char *text;            /* what gr__ybuild() parses */
    size_t len;
    struct gr__yblock *arena;
    size_t nnodes;
    gr__ynode_t *root;           /* NULL for an empty file */
} gr__yparse_t;

/* Parse the len bytes of text into p->root.  text must outlive p.
 * Returns 0, or -1 with errno and p->errp set. */
int gr__ybuild (gr__yparse_t *p, const char *text, size_t len);
/* Free the tree; p may be zeroed, or partly built. */
void gr__yfree (gr__yparse_t *p);

/* Report an error at 1-based line and col, or at node n (1:1 for NULL). */
int gr__yerr_at (gr__yparse_t *p, int line, int col, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
int gr__yerr (gr__yparse_t *p, const gr__ynode_t *n, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
/* Report running out of memory: "FILE: out of memory", errno ENOMEM. */
int gr__ynomem (gr__yparse_t *p);

/* The value for key in map, or NULL (also when map is NULL or not a
 * mapping); *keyp, unless keyp is NULL, gets the key node. */
gr__ynode_t *gr__ymap_get (const gr__ynode_t *map, const char *key, gr__ynode_t **keyp);
/* Every key of map must be one of valid (NULL-terminated); `where` names
 * the map in messages ("a task").  A typo gets "did you mean". */
int gr__ycheck_keys (gr__yparse_t *p, const gr__ynode_t *map, const char *const *valid,
                     const char *where);
/* The closest of words to s within an edit distance of 2, or NULL. */
const char *gr__ysuggest (const char *s, const char *const *words, size_t nwords);

/* YAML 1.1 spells null "", "~" or "null". */
bool gr__yis_null (const gr__ynode_t *n);
/* "a list", "a mapping" or "a string". */
const char *gr__ykind (const gr__ynode_t *n);
/* How a node reads in a message: a short quoted scalar (written into buf)
 * or its kind. */
const char *gr__ydescribe (const gr__ynode_t *n, char *buf, size_t size);

/* n must be a scalar with a value, without NUL bytes and at most
 * doc->max_string bytes; `what` names it in messages. */
int gr__ywant_string (gr__yparse_t *p, const gr__ynode_t *n, const char *what);
/* n must be a list or a mapping (type); example shows how to write it. */
int gr__ywant (gr__yparse_t *p, const gr__ynode_t *n, gr__ytype_t type, const char *what,
               const char *example);

/* Characters (not bytes) in the first n bytes of UTF-8 s: libyaml counts
 * columns in characters. */
size_t gr__yutf8_chars (const char *s, size_t n);

#endif
