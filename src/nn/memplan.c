/*
 * Buffer planning by liveness: tensors whose lifetimes do not overlap share
 * memory.  Greedy best-fit in order of decreasing size, which is within a
 * few percent of optimal on CNN graphs and runs once at engine creation.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/engine_internal.h"

typedef struct {
    int id;
    size_t bytes;
} item;

static int by_size_desc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return x->id - y->id;
}

size_t vx_plan_memory(int n, const size_t *bytes, const int *def, const int *last, size_t align,
                      size_t *offset)
{
    item *items = malloc(sizeof(item) * (size_t)(n ? n : 1));
    int *placed = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!items || !placed) {
        free(items);
        free(placed);
        return (size_t)-1;
    }
    int m = 0, np = 0;
    for (int i = 0; i < n; i++) {
        offset[i] = 0;
        if (bytes[i])
            items[m++] = (item){i, (bytes[i] + align - 1) / align * align};
    }
    qsort(items, (size_t)m, sizeof(item), by_size_desc);
    size_t total = 0;
    for (int k = 0; k < m; k++) {
        int id = items[k].id;
        size_t sz = items[k].bytes, best = (size_t)-1;
        /* Candidate offsets: 0 and the end of every placed, overlapping block. */
        for (int c = -1; c < np; c++) {
            size_t off = c < 0 ? 0 : offset[placed[c]] + (bytes[placed[c]] + align - 1) / align * align;
            if (c >= 0 && (last[placed[c]] < def[id] || def[placed[c]] > last[id]))
                continue;
            int fits = 1;
            for (int j = 0; j < np && fits; j++) {
                int o = placed[j];
                if (last[o] < def[id] || def[o] > last[id])
                    continue;
                size_t ob = (bytes[o] + align - 1) / align * align;
                if (off < offset[o] + ob && offset[o] < off + sz)
                    fits = 0;
            }
            if (fits && off < best)
                best = off;
        }
        offset[id] = best;
        placed[np++] = id;
        if (best + sz > total)
            total = best + sz;
    }
    free(items);
    free(placed);
    return total;
}

void vx_tensor_last_use(const vx_graph *g, int *last)
{
    for (int i = 0; i < g->nt; i++)
        last[i] = -1;
    for (int s = 0; s < g->nn; s++)
        for (int j = 0; j < g->n[s].n_in; j++)
            if (g->n[s].in[j] >= 0)
                last[g->n[s].in[j]] = s;
    for (int i = 0; i < g->n_outputs; i++)
        last[g->outputs[i]] = g->nn;
}
