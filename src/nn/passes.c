/*
 * Graph optimisation passes, run once at load:
 *
 *  1. constant folding: every node whose inputs are all constant is
 *     evaluated by the reference kernels and replaced by its result (this
 *     also removes the shape sub-graphs that converters leave behind);
 *  2. transpose sinking: transposes are moved past element-wise operators,
 *     Pad, Concat and Split until they meet and cancel, so a graph converted
 *     from NHWC to NCHW (or back) carries no layout shuffles;
 *  3. fusion: Mul(x, Sigmoid(x)) into one Swish (SiLU) node, Pad into Conv
 *     padding (and -inf Pad into MaxPool), constant Add into the Conv bias,
 *     activations and residual Adds into Conv post-ops.
 *
 * Rewrites append new nodes and mark old ones dead; vx_graph_compact()
 * restores topological order between rounds.  Every pass preserves the
 * graph's outputs bit-for-bit in exact arithmetic.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph.h"

#define FOLD_MAX_ELEMS (16 << 20)
/* Per folding pass, so that a hostile file cannot make loading slow or
 * huge: kernel steps (multiply-adds) and bytes of folded constants.
 * Converters' shape sub-graphs need a tiny fraction of either; past them
 * nodes stay unfolded and run at inference. */
#ifndef FOLD_MAX_WORK /* fuzz builds lower it: instrumented kernels are ~20x slower */
#define FOLD_MAX_WORK 3.3e7
#endif
#define FOLD_MAX_BYTES ((size_t)256 << 20)
/* Converted graphs settle in under ten rounds; a chain built to sink one
 * step per round stops here, unfinished but correct. */
#define SINK_MAX_ROUNDS 256

static int is_unary_eltwise(vx_op op)
{
    return op == VX_OP_RELU || op == VX_OP_LEAKY_RELU || op == VX_OP_SIGMOID || op == VX_OP_IDENTITY ||
           op == VX_OP_SWISH || op == VX_OP_HARDSWISH || op == VX_OP_HARDSIGMOID || op == VX_OP_CLIP ||
           op == VX_OP_FLOOR || op == VX_OP_CEIL || op == VX_OP_CAST;
}

static int is_binary(vx_op op)
{
    return op == VX_OP_ADD || op == VX_OP_SUB || op == VX_OP_MUL || op == VX_OP_DIV;
}

/* Steps the reference kernel takes for n: about one per element read or
 * written, times the window for convolutions and pooling. */
static double fold_work(const vx_graph *g, const vx_node *n)
{
    double out = 0;
    for (int j = 0; j < n->n_out; j++)
        out += (double)vx_tensor_elems(&g->t[n->out[j]]);
    if (n->op == VX_OP_CONV) {
        const vx_tensor *w = &g->t[n->in[1]];
        return out * (double)w->dims[1] * (double)w->dims[2] * (double)w->dims[3];
    }
    if (n->op == VX_OP_MAXPOOL || n->op == VX_OP_AVGPOOL)
        return out * n->a.pool.kh * n->a.pool.kw;
    if (n->op == VX_OP_RESIZE) /* coordinates and four taps per element */
        return out * 8;
    if (n->op == VX_OP_MATMUL) {
        const vx_tensor *a = &g->t[n->in[0]];
        return out * (double)a->dims[a->rank - 1];
    }
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0)
            out += (double)vx_tensor_elems(&g->t[n->in[j]]);
    return out;
}

vx_err vx_pass_fold_constants(vx_graph *g)
{
    double work = 0;
    size_t bytes = 0;
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        vx_err e = vx_graph_infer_node(g, n);
        if (e)
            return e;
        int all_const = 1;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !g->t[n->in[j]].data)
                all_const = 0;
        if (!all_const || n->n_in == 0)
            continue;
        /* Reshape/Identity of a constant: copy; everything else: evaluate. */
        const void *in[64];
        void *out[16];
        if (n->n_in > 64 || n->n_out > 16)
            continue;
        int too_big = 0;
        size_t nb = 0;
        for (int j = 0; j < n->n_out; j++) {
            int64_t ne = vx_tensor_elems(&g->t[n->out[j]]);
            if (ne > FOLD_MAX_ELEMS)
                too_big = 1;
            nb += (size_t)(ne > 0 ? ne : 1) * 8;
        }
        double w = too_big ? 0 : fold_work(g, n);
        if (too_big || work + w > FOLD_MAX_WORK || bytes + nb > FOLD_MAX_BYTES)
            continue;
        work += w;
        bytes += nb;
        for (int j = 0; j < n->n_in; j++)
            in[j] = n->in[j] >= 0 ? g->t[n->in[j]].data : NULL;
        int ok = 1;
        for (int j = 0; j < n->n_out; j++) {
            vx_tensor *t = &g->t[n->out[j]];
            int64_t ne = vx_tensor_elems(t);
            t->data = calloc((size_t)(ne > 0 ? ne : 1), 8);
            if (!t->data)
                ok = 0;
            out[j] = t->data;
        }
        if (!ok)
            return vx_fail(VX_ERR_NOMEM, "constant folding: out of memory");
        e = vx_ref_run_node(g, n, in, out);
        if (e)
            return vx_fail_prefix(e, "constant folding: ");
        n->dead = 1;
    }
    return vx_graph_compact(g);
}

/* ---- transpose sinking ------------------------------------------------- */

static int producer_op(const vx_graph *g, int t, vx_op op)
{
    int p = t >= 0 ? g->t[t].producer : -1;
    return p >= 0 && !g->n[p].dead && g->n[p].op == op ? p : -1;
}

/* New constant = transpose(c broadcast to rank r, inverse of perm). */
static int permuted_const(vx_graph *g, int c, int r, const int *perm)
{
    const vx_tensor *t = &g->t[c];
    int64_t cd[VX_NN_MAX_RANK], nd[VX_NN_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int k = i - (r - t->rank);
        cd[i] = k >= 0 ? t->dims[k] : 1;
    }
    int q[VX_NN_MAX_RANK];
    for (int i = 0; i < r; i++)
        q[perm[i]] = i;
    for (int j = 0; j < r; j++)
        nd[j] = cd[q[j]];
    char name[512];
    snprintf(name, sizeof name, "%s/perm", t->name);
    int id = vx_graph_add_const(g, name, g->t[c].dtype, r, nd, NULL);
    if (id < 0)
        return -1;
    t = &g->t[c];
    size_t es = t->dtype == VX_DT_I64 ? 8 : 4;
    int64_t total = vx_tensor_elems(&g->t[id]);
    /* Output index j-coordinates -> source coordinates: src[q[j]] = idx[j]. */
    int64_t sst[VX_NN_MAX_RANK], s = 1;
    for (int i = r - 1; i >= 0; i--) {
        sst[i] = s;
        s *= cd[i];
    }
    int64_t idx[VX_NN_MAX_RANK] = {0};
    for (int64_t e = 0; e < total; e++) {
        int64_t off = 0;
        for (int j = 0; j < r; j++)
            off += idx[j] * sst[q[j]];
        memcpy((char *)g->t[id].data + (size_t)e * es, (const char *)t->data + (size_t)off * es, es);
        for (int k = r - 1; k >= 0; k--) {
            if (++idx[k] < nd[k])
                break;
            idx[k] = 0;
        }
    }
    return id;
}

static int add_transpose_to(vx_graph *g, const char *name, int in, int out, const int *perm, int rank)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s/sunk_transpose", name);
    int nid = vx_graph_add_node_out(g, VX_OP_TRANSPOSE, buf, &in, 1, &out, 1);
    if (nid < 0)
        return -1;
    for (int i = 0; i < rank; i++)
        g->n[nid].a.transpose.perm[i] = perm[i];
    return nid;
}

/* Clones node n (attributes included) with new inputs and a fresh output. */
static int clone_node(vx_graph *g, int ni, const int *in, int n_out)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s/sunk", g->n[ni].name);
    int nid = vx_graph_add_node(g, g->n[ni].op, buf, in, g->n[ni].n_in, n_out);
    if (nid < 0)
        return -1;
    vx_node *src = &g->n[ni], *dst = &g->n[nid];
    dst->a = src->a;
    if (src->op == VX_OP_SPLIT) {
        dst->a.split.sizes = malloc(sizeof(int64_t) * (size_t)src->a.split.n);
        if (!dst->a.split.sizes)
            return -1;
        memcpy(dst->a.split.sizes, src->a.split.sizes, sizeof(int64_t) * (size_t)src->a.split.n);
    }
    return nid;
}

static int is_identity_perm(const int *p, int r)
{
    for (int i = 0; i < r; i++)
        if (p[i] != i)
            return 0;
    return 1;
}

/* One round; returns the number of rewrites or -1 on allocation failure. */
static int sink_round(vx_graph *g)
{
    int changes = 0;
    int nn0 = g->nn, nt0 = g->nt;
    char *touched = calloc((size_t)nn0 + 1, 1);
    /* Reads of each tensor by live nodes, kept up to date through the
     * rewrites below: asking vx_graph_single_consumer() for every input
     * made a round quadratic in the node count.  Nodes of the round only
     * ever read tensors that existed at its start, so nt0 entries do. */
    int *uses = calloc((size_t)nt0 + 1, sizeof(int));
    char *is_out = calloc((size_t)nt0 + 1, 1);
    if (!touched || !uses || !is_out)
        goto oom;
    for (int i = 0; i < nn0; i++)
        for (int j = 0; !g->n[i].dead && j < g->n[i].n_in; j++)
            if (g->n[i].in[j] >= 0)
                uses[g->n[i].in[j]]++;
    for (int i = 0; i < g->n_outputs; i++)
        is_out[g->outputs[i]] = 1;
#define USE(t, d) ((t) >= 0 && (t) < nt0 ? (void)(uses[t] += (d)) : (void)0)
/* Same answer as vx_graph_single_consumer(g, t) == i for an input t of node i. */
#define ONLY_READER(t, i) ((t) < nt0 ? !is_out[t] && uses[t] == 1 : vx_graph_single_consumer(g, t) == (i))
        /* Nodes appended during this round are not rewritten again in it. */
#define TOUCHED(k) ((k) >= nn0 || touched[k])
    for (int i = 0; i < nn0; i++) {
        vx_node *n = &g->n[i];
        if (n->dead || touched[i])
            continue;
        int r = g->t[n->out[0]].rank;
        if (n->op == VX_OP_TRANSPOSE) {
            int p = producer_op(g, n->in[0], VX_OP_TRANSPOSE);
            if (p >= 0 && !TOUCHED(p)) {
                int p1[VX_NN_MAX_RANK], p2[VX_NN_MAX_RANK];
                memcpy(p1, g->n[p].a.transpose.perm, sizeof p1);
                memcpy(p2, n->a.transpose.perm, sizeof p2);
                USE(n->in[0], -1);
                n->in[0] = g->n[p].in[0];
                USE(n->in[0], 1);
                for (int k = 0; k < r; k++)
                    n->a.transpose.perm[k] = p1[p2[k]];
                touched[i] = 1;
                changes++;
                continue;
            }
            if (is_identity_perm(n->a.transpose.perm, r) && g->t[n->out[0]].graph_output < 0) {
                int out = n->out[0], in = n->in[0];
                n->dead = 1;
                USE(in, -1);
                vx_graph_replace_uses(g, out, in);
                if (out < nt0 && in < nt0) {
                    uses[in] += uses[out];
                    uses[out] = 0;
                    is_out[in] |= is_out[out];
                }
                touched[i] = 1;
                changes++;
            }
            continue;
        }
        /* Which inputs are (single-use) transposes? */
        int tin[64], nt = 0, other_const = 1, perm_ok = 1;
        const int *perm = NULL;
        if (n->n_in > 64)
            continue;
        for (int j = 0; j < n->n_in; j++) {
            tin[j] = -1;
            if (n->in[j] < 0)
                continue;
            int p = producer_op(g, n->in[j], VX_OP_TRANSPOSE);
            if (p >= 0 && !TOUCHED(p) && ONLY_READER(n->in[j], i)) {
                tin[j] = p;
                if (!perm)
                    perm = g->n[p].a.transpose.perm;
                else if (memcmp(perm, g->n[p].a.transpose.perm, sizeof(int) * (size_t)r))
                    perm_ok = 0;
                nt++;
            } else if (!g->t[n->in[j]].data) {
                other_const = 0;
            }
        }
        if (!nt || !perm_ok)
            continue;
        int p[VX_NN_MAX_RANK];
        memcpy(p, perm, sizeof p);
        int newin[64];
        for (int j = 0; j < n->n_in; j++)
            newin[j] = tin[j] >= 0 ? g->n[tin[j]].in[0] : n->in[j];
        int nid = -1;
        if (is_unary_eltwise(n->op) || n->op == VX_OP_PAD) {
            nid = clone_node(g, i, newin, 1);
            if (nid < 0)
                goto oom;
            if (g->n[i].op == VX_OP_PAD) {
                vx_node *c = &g->n[nid];
                for (int k = 0; k < r; k++) {
                    c->a.pad.begin[p[k]] = g->n[i].a.pad.begin[k];
                    c->a.pad.end[p[k]] = g->n[i].a.pad.end[k];
                }
            }
        } else if (is_binary(n->op) && n->n_in == 2 && other_const && g->t[newin[0]].rank == r &&
                   (tin[0] >= 0 || g->t[newin[0]].rank <= r)) {
            for (int j = 0; j < 2; j++)
                if (tin[j] < 0) {
                    if (g->t[newin[j]].rank > r)
                        goto next;
                    newin[j] = permuted_const(g, newin[j], r, p);
                    if (newin[j] < 0)
                        goto oom;
                }
            if (tin[0] < 0 && g->t[newin[0]].rank != r)
                goto next;
            nid = clone_node(g, i, newin, 1);
            if (nid < 0)
                goto oom;
        } else if (is_binary(n->op) && n->n_in == 2 && nt == 2) {
            nid = clone_node(g, i, newin, 1);
            if (nid < 0)
                goto oom;
        } else if (n->op == VX_OP_CONCAT && nt == n->n_in) {
            nid = clone_node(g, i, newin, 1);
            if (nid < 0)
                goto oom;
            g->n[nid].a.concat.axis = p[g->n[i].a.concat.axis];
        } else if (n->op == VX_OP_SPLIT) {
            nid = clone_node(g, i, newin, g->n[i].n_out);
            if (nid < 0)
                goto oom;
            g->n[nid].a.split.axis = p[g->n[i].a.split.axis];
        } else {
            continue;
        }
        for (int j = 0; j < g->n[nid].n_in; j++)
            USE(g->n[nid].in[j], 1);
        /* Re-infer the clone's shapes, then re-create the original outputs
         * as transposes of the clone's outputs. */
        if (vx_graph_infer_node(g, &g->n[nid]))
            goto oom;
        for (int k = 0; k < g->n[i].n_out; k++) {
            char name[512];
            snprintf(name, sizeof name, "%s.%d", g->n[i].name, k);
            if (add_transpose_to(g, name, g->n[nid].out[k], g->n[i].out[k], p, r) < 0)
                goto oom;
        }
        g->n[i].dead = 1;
        for (int j = 0; j < g->n[i].n_in; j++)
            USE(g->n[i].in[j], -1);
        touched[i] = 1;
        for (int j = 0; j < g->n[i].n_in; j++)
            if (tin[j] >= 0)
                touched[tin[j]] = 1;
        changes++;
    next:;
    }
#undef TOUCHED
#undef ONLY_READER
#undef USE
    free(touched);
    free(uses);
    free(is_out);
    return changes;
oom:
    free(touched);
    free(uses);
    free(is_out);
    return -1;
}

vx_err vx_pass_simplify_transposes(vx_graph *g)
{
    for (int round = 0; round < SINK_MAX_ROUNDS; round++) {
        int c = sink_round(g);
        if (c < 0)
            return vx_fail(VX_ERR_NOMEM, "transpose pass: out of memory");
        vx_err e = vx_graph_compact(g);
        if (!e)
            e = vx_graph_infer_shapes(g);
        if (e)
            return e;
        if (!c)
            return VX_OK;
    }
    return VX_OK;
}

/* ---- fusion ------------------------------------------------------------ */

/* Is node `target` reachable backwards from tensor t? */
static int depends_on(const vx_graph *g, int t, int target, char *seen)
{
    int p = g->t[t].producer;
    if (p < 0)
        return 0;
    if (p == target)
        return 1;
    if (seen[p])
        return 0;
    seen[p] = 1;
    for (int j = 0; j < g->n[p].n_in; j++)
        if (g->n[p].in[j] >= 0 && depends_on(g, g->n[p].in[j], target, seen))
            return 1;
    return 0;
}

static int fuse_round(vx_graph *g)
{
    int changes = 0;
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        /* Pad(0, spatial only) -> Conv; Pad(-inf) -> MaxPool. */
        if (n->op == VX_OP_CONV || n->op == VX_OP_MAXPOOL) {
            int p = producer_op(g, n->in[0], VX_OP_PAD);
            if (p >= 0 && g->t[g->n[p].in[0]].rank == 4) {
                const vx_node *pd = &g->n[p];
                int ok = pd->a.pad.begin[0] == 0 && pd->a.pad.end[0] == 0 && pd->a.pad.begin[1] == 0 &&
                         pd->a.pad.end[1] == 0;
                if (n->op == VX_OP_CONV)
                    ok = ok && pd->a.pad.value == 0.0f;
                else
                    ok = ok && pd->a.pad.value <= -FLT_MAX;
                int *pt = n->op == VX_OP_CONV ? &n->a.conv.pt : &n->a.pool.pt;
                int *pl = n->op == VX_OP_CONV ? &n->a.conv.pl : &n->a.pool.pl;
                int *pb = n->op == VX_OP_CONV ? &n->a.conv.pb : &n->a.pool.pb;
                int *pr = n->op == VX_OP_CONV ? &n->a.conv.pr : &n->a.pool.pr;
                if (ok) {
                    *pt += (int)pd->a.pad.begin[2];
                    *pb += (int)pd->a.pad.end[2];
                    *pl += (int)pd->a.pad.begin[3];
                    *pr += (int)pd->a.pad.end[3];
                    if (n->op == VX_OP_CONV)
                        n->a.conv.pad_mode = VX_PAD_EXPLICIT;
                    else
                        n->a.pool.pad_mode = VX_PAD_EXPLICIT;
                    n->in[0] = pd->in[0];
                    changes++;
                }
            }
        }
        if (n->op != VX_OP_CONV)
            continue;
        int y = n->out[0];
        int c = vx_graph_single_consumer(g, y);
        if (c < 0)
            continue;
        vx_node *u = &g->n[c];
        vx_conv_attr *a = &n->a.conv;
        int O = (int)g->t[y].dims[1];
        if (u->op == VX_OP_ADD && a->n_post == 0) {
            /* Constant add broadcast over channels only -> bias. */
            int other = u->in[0] == y ? u->in[1] : u->in[0];
            const vx_tensor *ct = &g->t[other];
            if (ct->data && ct->dtype == VX_DT_F32 && vx_tensor_elems(ct) == O && ct->rank <= 4) {
                int chan_ok = 1;
                for (int k = 0; k < ct->rank; k++) {
                    int axis = k + (4 - ct->rank);
                    if (axis != 1 && ct->dims[k] != 1)
                        chan_ok = 0;
                }
                if (chan_ok || (ct->rank == 1 && O == 1)) {
                    int64_t bd[1] = {O};
                    char name[512];
                    snprintf(name, sizeof name, "%s/bias", n->name);
                    int b = vx_graph_add_const(g, name, VX_DT_F32, 1, bd, g->t[other].data);
                    if (b < 0)
                        return -1;
                    n = &g->n[i];
                    u = &g->n[c];
                    if (n->n_in > 2 && n->in[2] >= 0) {
                        float *dst = g->t[b].data;
                        const float *old = g->t[n->in[2]].data;
                        for (int k = 0; k < O; k++)
                            dst[k] += old[k];
                    }
                    if (n->n_in < 3) {
                        int *ni = realloc(n->in, sizeof(int) * 3);
                        if (!ni)
                            return -1;
                        n->in = ni;
                        n->n_in = 3;
                    }
                    n->in[2] = b;
                    /* The conv now produces the Add's output tensor. */
                    n->out[0] = u->out[0];
                    g->t[u->out[0]].producer = i;
                    u->dead = 1;
                    changes++;
                    continue;
                }
            }
        }
        if (a->n_post >= VX_MAX_POSTOPS)
            continue;
        vx_postop po = {0};
        if (u->op == VX_OP_RELU || u->op == VX_OP_LEAKY_RELU || u->op == VX_OP_SIGMOID ||
            u->op == VX_OP_SWISH || u->op == VX_OP_HARDSWISH) {
            po.kind = VX_POST_ACT;
            po.act = u->op == VX_OP_RELU        ? VX_ACT_RELU
                     : u->op == VX_OP_SIGMOID   ? VX_ACT_SIGMOID
                     : u->op == VX_OP_SWISH     ? VX_ACT_SWISH
                     : u->op == VX_OP_HARDSWISH ? VX_ACT_HARDSWISH
                                                : VX_ACT_LEAKY_RELU;
            po.alpha = u->op == VX_OP_LEAKY_RELU ? u->a.leaky.alpha : 0.0f;
        } else if (u->op == VX_OP_ADD) {
            int other = u->in[0] == y ? u->in[1] : u->in[0];
            /* The residual sum only as the first post-op: oneDNN's JIT
             * convolutions take [sum, eltwise] but not [eltwise, sum]
             * (YOLO's x + SiLU(conv(x))), which falls back to its
             * reference kernel, a hundred times slower than a separate Add. */
            if (other == y || g->t[other].data || (n->n_in > 3 && n->in[3] >= 0) || a->n_post > 0)
                continue;
            const vx_tensor *ot = &g->t[other], *yt = &g->t[y];
            if (ot->rank != 4 || memcmp(ot->dims, yt->dims, sizeof(int64_t) * 4))
                continue;
            char *seen = calloc((size_t)g->nn + 1, 1);
            if (!seen)
                return -1;
            int cyc = depends_on(g, other, i, seen);
            free(seen);
            if (cyc)
                continue;
            int *ni = realloc(n->in, sizeof(int) * 4);
            if (!ni)
                return -1;
            n->in = ni;
            while (n->n_in < 3)
                n->in[n->n_in++] = -1;
            n->in[3] = other;
            n->n_in = 4;
            po.kind = VX_POST_SUM;
        } else {
            continue;
        }
        a->post[a->n_post++] = po;
        n->out[0] = u->out[0];
        g->t[u->out[0]].producer = i;
        u->dead = 1;
        changes++;
    }
    return changes;
}

vx_err vx_pass_fuse(vx_graph *g)
{
    for (int round = 0; round < 100; round++) {
        int c = fuse_round(g);
        if (c < 0)
            return vx_fail(VX_ERR_NOMEM, "fusion pass: out of memory");
        vx_err e = vx_graph_compact(g);
        if (!e)
            e = vx_graph_infer_shapes(g);
        if (e)
            return e;
        if (!c)
            break;
    }
    return VX_OK;
}

/* Conv -> Split(channels): one convolution per part, so each part can
 * take its own post-ops (the class part of a detection head its sigmoid)
 * and be written straight into its consumer's layout.  Same arithmetic. */
static int split_conv_heads(vx_graph *g)
{
    int changes = 0, nn0 = g->nn;
    for (int i = 0; i < nn0; i++) {
        vx_node *sp = &g->n[i];
        if (sp->dead || sp->op != VX_OP_SPLIT || sp->a.split.axis != 1 || sp->n_out > 16)
            continue;
        int x = sp->in[0], ci = g->t[x].producer;
        /* Activation post-ops act per element and go with every part (a
         * C2f block's SiLU conv before its Split); a fused sum does not. */
        int has_sum = 0;
        for (int k = 0; ci >= 0 && g->n[ci].op == VX_OP_CONV && k < g->n[ci].a.conv.n_post; k++)
            has_sum |= g->n[ci].a.conv.post[k].kind == VX_POST_SUM;
        if (ci < 0 || g->n[ci].op != VX_OP_CONV || has_sum || g->n[ci].a.conv.groups != 1 ||
            vx_graph_single_consumer(g, x) != i || (g->n[ci].n_in > 3 && g->n[ci].in[3] >= 0))
            continue;
        int64_t off = 0;
        for (int k = 0; k < g->n[i].n_out; k++) {
            vx_node *cv = &g->n[ci];
            const vx_tensor *w = &g->t[cv->in[1]];
            int64_t part = g->n[i].a.split.sizes[k], per = w->dims[1] * w->dims[2] * w->dims[3];
            int64_t wd[4] = {part, w->dims[1], w->dims[2], w->dims[3]}, bd[1] = {part};
            char name[512];
            snprintf(name, sizeof name, "%s/part%d", cv->name, k);
            int wid = vx_graph_add_const(g, name, VX_DT_F32, 4, wd,
                                         (const float *)g->t[cv->in[1]].data + off * per);
            if (wid < 0)
                return -1;
            int bid = -1;
            if (g->n[ci].n_in > 2 && g->n[ci].in[2] >= 0) {
                snprintf(name, sizeof name, "%s/part%d/bias", g->n[ci].name, k);
                bid = vx_graph_add_const(g, name, VX_DT_F32, 1, bd,
                                         (const float *)g->t[g->n[ci].in[2]].data + off);
                if (bid < 0)
                    return -1;
            }
            int ins[3] = {g->n[ci].in[0], wid, bid};
            int out = g->n[i].out[k];
            snprintf(name, sizeof name, "%s/part%d", g->n[ci].name, k);
            int nid = vx_graph_add_node_out(g, VX_OP_CONV, name, ins, 3, &out, 1);
            if (nid < 0)
                return -1;
            g->n[nid].a.conv = g->n[ci].a.conv;
            off += part;
        }
        g->n[i].dead = 1;
        g->n[ci].dead = 1;
        changes++;
    }
    return changes;
}

/* Identity nodes: forward their input unless it feeds a graph output slot
 * by name (outputs are re-pointed, their names are kept in out_names). */
static void drop_identities(vx_graph *g)
{
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead || (n->op != VX_OP_IDENTITY && !(n->op == VX_OP_RESHAPE && 0)))
            continue;
        int in = n->in[0], out = n->out[0];
        /* Two graph outputs must not end up as one tensor. */
        if (g->t[out].graph_output >= 0 && (g->t[in].graph_output >= 0 || g->t[in].graph_input >= 0))
            continue;
        n->dead = 1;
        vx_graph_replace_uses(g, out, in);
    }
}

/* SiLU as exporters write it, Mul(x, Sigmoid(x)), becomes one Swish node
 * (which the convolution before it then takes as a post-op).  Needs
 * producers up to date (after compaction). */
static void fuse_swish(vx_graph *g)
{
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead || n->op != VX_OP_MUL || n->n_in != 2)
            continue;
        for (int k = 0; k < 2; k++) {
            int s = n->in[k], x = n->in[1 - k], p = s >= 0 ? g->t[s].producer : -1;
            if (p < 0 || g->n[p].dead || g->n[p].op != VX_OP_SIGMOID || g->n[p].in[0] != x ||
                g->t[x].dtype != VX_DT_F32 || vx_graph_single_consumer(g, s) != i)
                continue;
            n->op = VX_OP_SWISH;
            n->in[0] = x;
            n->n_in = 1;
            g->n[p].dead = 1;
            break;
        }
    }
}

vx_err vx_graph_optimize(vx_graph *g)
{
    vx_err e;
    if ((e = vx_graph_compact(g)) || (e = vx_pass_fold_constants(g)) || (e = vx_graph_infer_shapes(g)))
        return e;
    drop_identities(g);
    if ((e = vx_graph_compact(g)) || (e = vx_graph_infer_shapes(g)) || (e = vx_pass_simplify_transposes(g)))
        return e;
    drop_identities(g);
    if ((e = vx_graph_compact(g)) || (e = vx_graph_infer_shapes(g)))
        return e;
    fuse_swish(g);
    if ((e = vx_graph_compact(g)) || (e = vx_graph_infer_shapes(g)) || (e = vx_pass_fuse(g)))
        return e;
    int split = split_conv_heads(g);
    if (split < 0)
        return vx_fail(VX_ERR_NOMEM, "head split pass: out of memory");
    if (split && ((e = vx_graph_compact(g)) || (e = vx_graph_infer_shapes(g)) || (e = vx_pass_fuse(g))))
        return e;
    return VX_OK;
}
