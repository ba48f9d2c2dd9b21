/* What spec.c and expand.c share and nothing else sees: the template
 * tokenizer, the built-in template variables and the layout of
 * gr_expand_t.
 */
#ifndef GR_SPEC_SPEC_PRIVATE_H
#define GR_SPEC_SPEC_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

/* A hostile spec of 16 MiB could hold millions of tiny YAML values; this
 * caps the parse tree.  Long value lists belong in a file: param. */
#define GR__SPEC_MAX_NODES 1000000

/* YAML nesting deeper than the format ever needs is refused, so a spec of
 * a million '[' cannot exhaust anything. */
#define GR__SPEC_MAX_DEPTH 32

/* Values of LIST and FILE params live in one block that values[0] points
 * to, each value NUL-terminated and packed one after another, so a param
 * of a million values costs two allocations and freeing it is
 * free (values[0]); free (values). */

/* Built-in template variables.  Their names are reserved: no param may
 * take them. */
typedef enum {
    GR__BUILTIN_TASK = 0,
    GR__BUILTIN_INDEX = 1,
    GR__BUILTIN_ATTEMPT = 2,
    GR__BUILTIN_RUN_DIR = 3,
    GR__BUILTIN_REPLICA = 4,
} gr__builtin_var_t;

/* The built-in whose name is the len bytes at name, or -1. */
int gr__tpl_builtin (const char *name, size_t len);

/* One token of a template. */
typedef enum {
    GR__TPL_END = 0,   /* the template is used up */
    GR__TPL_TEXT = 1,  /* literal bytes s[0..len) */
    GR__TPL_VAR = 2,   /* {name}: the name is s[0..len) */
    GR__TPL_ERROR = 3, /* malformed at byte off; why says how */
} gr__tpl_kind_t;

typedef struct gr__tpl_tok {
    gr__tpl_kind_t kind;
    const char *s;
    size_t len;
    size_t off;        /* byte offset of the token in the template */
    const char *why;   /* GR__TPL_ERROR: a phrase for people */
} gr__tpl_tok_t;

/* Scan the token of template t that starts at *pos and advance *pos past
 * it.  "{{" and "}}" come back as one-byte TEXT tokens holding a brace. */
void gr__tpl_next (const char *t, size_t *pos, gr__tpl_tok_t *tok);

/* Scratch space for expanding tasks.  Every buffer grows geometrically and
 * is kept, so once warmed up selecting, keying and rendering a task
 * allocate nothing. */
struct gr_expand {
    const gr_taskdef_t *def;
    uint64_t index;        /* the task index within def */
    uint64_t combo;        /* its parameter combination: index / replicas */
    uint32_t replica;      /* and its replica: index % replicas */
    bool selected;

    /* Values of the selected task, one per param: they point into the
     * param's values or into num for RANGE params. */
    const char **values;
    size_t *lens;
    char (*num)[32];
    size_t vcap;

    char *name;            /* gr_expand_name() */
    size_t name_cap;
    char *pstr;            /* gr_expand_params_string() */
    size_t pstr_cap;

    /* gr_expand_render(): strings are written one after another into
     * arena and their offsets kept in offs; only when all are written are
     * the pointer arrays built, because arena may move as it grows. */
    char *arena;
    size_t arena_len, arena_cap;
    size_t *offs;
    size_t offs_cap;
    char **ptrs;           /* argv then env, each NULL-terminated */
    size_t ptrs_cap;
};

#endif
