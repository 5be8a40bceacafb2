/* Open-addressing string map with FNV-1a hashing.  See vx_strmap.h. */
#include "core/vx_strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct vx_strmap {
    char **keys;
    int *vals;
    size_t cap, len;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

vx_strmap *vx_strmap_new(void)
{
    vx_strmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->keys = calloc(m->cap, sizeof(char *));
    m->vals = calloc(m->cap, sizeof(int));
    if (!m->keys || !m->vals) {
        vx_strmap_free(m);
        return NULL;
    }
    return m;
}

void vx_strmap_free(vx_strmap *m)
{
    if (!m)
        return;
    if (m->keys)
        for (size_t i = 0; i < m->cap; i++)
            free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    free(m);
}

static size_t slot(const vx_strmap *m, const char *key)
{
    size_t i = (size_t)hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key))
        i = (i + 1) & (m->cap - 1);
    return i;
}

int vx_strmap_put(vx_strmap *m, const char *key, int value)
{
    if ((m->len + 1) * 2 > m->cap) {
        vx_strmap big = {0};
        big.cap = m->cap * 2;
        big.keys = calloc(big.cap, sizeof(char *));
        big.vals = calloc(big.cap, sizeof(int));
        if (!big.keys || !big.vals) {
            free(big.keys);
            free(big.vals);
            return 0;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = slot(&big, m->keys[i]);
                big.keys[j] = m->keys[i];
                big.vals[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        m->keys = big.keys;
        m->vals = big.vals;
        m->cap = big.cap;
    }
    size_t i = slot(m, key);
    if (!m->keys[i]) {
        m->keys[i] = strdup(key);
        if (!m->keys[i])
            return 0;
        m->len++;
    }
    m->vals[i] = value;
    return 1;
}

int vx_strmap_get(const vx_strmap *m, const char *key, int missing)
{
    size_t i = slot(m, key);
    return m->keys[i] ? m->vals[i] : missing;
}
