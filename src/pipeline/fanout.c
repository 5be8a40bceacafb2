/*
 * Messages and the fan-out to subscribers.  See vx_pipeline.h.
 *
 * A message is one allocation (header, detections, data, text) with an
 * atomic reference count, so handing it to twenty subscribers costs twenty
 * increments, not twenty copies.
 *
 * Locks: the fan-out's lock guards the subscriber list (publish walks it,
 * add/remove change it); each subscriber's lock guards its ring, because
 * the owner pops without the fan-out lock.  Order: fan-out, then
 * subscriber.  Removing takes the fan-out lock, so once remove returns no
 * publisher can touch the subscriber or call its notify again.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/vx_pipeline.h"

typedef struct {
    vx_pipeline_msg pub; /* first: the public pointer is the message */
    atomic_int refs;
} msg_impl;

vx_pipeline_msg *vx_pipeline_msg_new(vx_msg_type type, int ndet, size_t data_size, const char *message)
{
    if (ndet < 0)
        ndet = 0;
    size_t text = message ? strlen(message) + 1 : 0;
    size_t dets = (size_t)ndet * sizeof(vx_pipeline_det);
    size_t head = (sizeof(msg_impl) + 15) & ~(size_t)15;
    if (data_size > SIZE_MAX / 2 || dets > SIZE_MAX / 4)
        return NULL;
    msg_impl *m = malloc(head + dets + data_size + text);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    atomic_init(&m->refs, 1);
    char *p = (char *)m + head;
    m->pub.type = type;
    m->pub.ndet = ndet;
    m->pub.dets = ndet ? (vx_pipeline_det *)p : NULL;
    p += dets;
    m->pub.data = data_size ? (uint8_t *)p : NULL;
    m->pub.size = data_size;
    p += data_size;
    if (message) {
        memcpy(p, message, text);
        m->pub.message = p;
    }
    return &m->pub;
}

vx_pipeline_det *vx_pipeline_msg_dets(vx_pipeline_msg *m)
{
    return (vx_pipeline_det *)m->dets;
}

uint8_t *vx_pipeline_msg_data(vx_pipeline_msg *m)
{
    return (uint8_t *)m->data;
}

vx_pipeline_msg *vx_pipeline_msg_ref(vx_pipeline_msg *m)
{
    if (m)
        atomic_fetch_add_explicit(&((msg_impl *)m)->refs, 1, memory_order_relaxed);
    return m;
}

void vx_pipeline_msg_release(vx_pipeline_msg *m)
{
    if (m && atomic_fetch_sub_explicit(&((msg_impl *)m)->refs, 1, memory_order_acq_rel) == 1) {
        free(m->gate_json);
        free(m);
    }
}

struct vx_sub {
    vx_sub *next;
    unsigned types;
    vx_sub_notify_fn notify;
    void *user;
    pthread_mutex_t lock;
    vx_pipeline_msg **ring; /* under lock */
    int cap, head, count;
    uint64_t drops;
};

struct vx_fanout {
    pthread_mutex_t lock;
    vx_sub *subs;
    int count;
    uint64_t retired_drops; /* of removed subscribers */
};

vx_err vx_fanout_create(vx_fanout **out)
{
    vx_fanout *f = calloc(1, sizeof *f);
    if (!f)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&f->lock, NULL);
    *out = f;
    return VX_OK;
}

static void sub_free(vx_sub *s)
{
    for (int i = 0; i < s->count; i++)
        vx_pipeline_msg_release(s->ring[(s->head + i) % s->cap]);
    pthread_mutex_destroy(&s->lock);
    free(s->ring);
    free(s);
}

void vx_fanout_destroy(vx_fanout *f)
{
    if (!f)
        return;
    while (f->subs) {
        vx_sub *s = f->subs;
        f->subs = s->next;
        sub_free(s);
    }
    pthread_mutex_destroy(&f->lock);
    free(f);
}

vx_err vx_fanout_add(vx_fanout *f, unsigned types, int capacity, vx_sub_notify_fn notify, void *user,
                     vx_sub **out)
{
    *out = NULL;
    if (capacity < 1 || capacity > 4096)
        return vx_fail(VX_ERR_INVALID, "subscriber queue capacity must be 1..4096, got %d", capacity);
    vx_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->ring = calloc((size_t)capacity, sizeof *s->ring))) {
        free(s);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    s->types = types;
    s->cap = capacity;
    s->notify = notify;
    s->user = user;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_lock(&f->lock);
    s->next = f->subs;
    f->subs = s;
    f->count++;
    pthread_mutex_unlock(&f->lock);
    *out = s;
    return VX_OK;
}

void vx_fanout_remove(vx_fanout *f, vx_sub *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&f->lock);
    for (vx_sub **pp = &f->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            f->count--;
            break;
        }
    }
    pthread_mutex_lock(&s->lock);
    f->retired_drops += s->drops;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&f->lock);
    sub_free(s);
}

/* Called with f->lock held. */
static void push(vx_sub *s, vx_pipeline_msg *m)
{
    vx_pipeline_msg *dropped = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->count == s->cap) {
        dropped = s->ring[s->head];
        s->head = (s->head + 1) % s->cap;
        s->count--;
        s->drops++;
    }
    s->ring[(s->head + s->count) % s->cap] = vx_pipeline_msg_ref(m);
    int was_empty = ++s->count == 1;
    pthread_mutex_unlock(&s->lock);
    vx_pipeline_msg_release(dropped);
    if (was_empty && s->notify)
        s->notify(s->user);
}

int vx_fanout_publish(vx_fanout *f, vx_pipeline_msg *m)
{
    int n = 0;
    pthread_mutex_lock(&f->lock);
    for (vx_sub *s = f->subs; s; s = s->next) {
        if (m->type == VX_MSG_ERROR || (s->types & (unsigned)m->type)) {
            push(s, m);
            n++;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}

void vx_fanout_send(vx_fanout *f, vx_sub *s, vx_pipeline_msg *m)
{
    pthread_mutex_lock(&f->lock);
    push(s, m);
    pthread_mutex_unlock(&f->lock);
}

unsigned vx_fanout_wanted(vx_fanout *f)
{
    unsigned types = 0;
    pthread_mutex_lock(&f->lock);
    for (vx_sub *s = f->subs; s; s = s->next)
        types |= s->types;
    pthread_mutex_unlock(&f->lock);
    return types;
}

int vx_fanout_count(vx_fanout *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->count;
    pthread_mutex_unlock(&f->lock);
    return n;
}

uint64_t vx_fanout_drops(vx_fanout *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t n = f->retired_drops;
    for (vx_sub *s = f->subs; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        n += s->drops;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}

vx_pipeline_msg *vx_sub_pop(vx_sub *s, int *more)
{
    vx_pipeline_msg *m = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->count) {
        m = s->ring[s->head];
        s->ring[s->head] = NULL;
        s->head = (s->head + 1) % s->cap;
        s->count--;
    }
    if (more)
        *more = s->count > 0;
    pthread_mutex_unlock(&s->lock);
    return m;
}

uint64_t vx_sub_drops(vx_sub *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->drops;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int vx_sub_pending(vx_sub *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}
