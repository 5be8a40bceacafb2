/*
 * core/strmap: a small string -> int hash map (open addressing), used by the
 * model loaders to resolve names in linear time whatever the file holds.
 * Keys are copied.  Not thread-safe; one owner.
 */
#ifndef VX_STRMAP_H
#define VX_STRMAP_H

typedef struct vx_strmap vx_strmap;

vx_strmap *vx_strmap_new(void);
void vx_strmap_free(vx_strmap *m);
/* Inserts or overwrites; returns 0 on allocation failure. */
int vx_strmap_put(vx_strmap *m, const char *key, int value);
/* Returns the value, or `missing` when absent. */
int vx_strmap_get(const vx_strmap *m, const char *key, int missing);

#endif
