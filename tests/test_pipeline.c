/*
 * pipeline without a model: messages, the fan-out's bounded queues (drop
 * oldest, counts, notifications, a publisher and a consumer on two
 * threads), the source policy on a real folder tree (links out, '..',
 * FIFOs, prefixes, cameras), the stats instruments and the MJPEG renderer
 * (decoded back with libturbojpeg).
 *
 * The two-thread test synchronises through the notify callback and a
 * condition variable only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "pipeline/pipeline_internal.h"

/* ---- messages and fan-out ------------------------------------------------------ */

static vx_pipeline_msg *result(uint64_t id)
{
    vx_pipeline_msg *m = vx_pipeline_msg_new(VX_MSG_RESULT, 2, 0, NULL);
    assert_non_null(m);
    m->frame_id = id;
    vx_pipeline_det *d = vx_pipeline_msg_dets(m);
    d[0].cls = 0;
    d[1].cls = 1;
    return m;
}

static void test_msg(void **state)
{
    (void)state;
    vx_pipeline_msg *m = vx_pipeline_msg_new(VX_MSG_JPEG, 3, 100, "hello");
    assert_non_null(m);
    assert_int_equal(m->ndet, 3);
    assert_int_equal(m->size, 100);
    assert_string_equal(m->message, "hello");
    memset(vx_pipeline_msg_data(m), 0xab, 100); /* ASan: inside the allocation */
    vx_pipeline_msg_dets(m)[2].conf = 1;
    assert_ptr_equal(vx_pipeline_msg_ref(m), m);
    vx_pipeline_msg_release(m);
    vx_pipeline_msg_release(m);
    vx_pipeline_msg_release(NULL);
    m = vx_pipeline_msg_new(VX_MSG_ERROR, 0, 0, NULL);
    assert_null(m->dets);
    assert_null(m->data);
    assert_null(m->message);
    vx_pipeline_msg_release(m);
}

static int notified[4];
static void count_notify(void *user)
{
    notified[(intptr_t)user]++;
}

static void test_fanout_types_and_errors(void **state)
{
    (void)state;
    vx_fanout *f;
    assert_int_equal(vx_fanout_create(&f), VX_OK);
    vx_sub *res, *jpeg, *both;
    memset(notified, 0, sizeof notified);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 4, count_notify, (void *)0, &res), VX_OK);
    assert_int_equal(vx_fanout_add(f, VX_MSG_JPEG, 4, count_notify, (void *)1, &jpeg), VX_OK);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT | VX_MSG_JPEG_OVERLAY, 4, count_notify, (void *)2, &both),
                     VX_OK);
    assert_int_equal(vx_fanout_count(f), 3);
    assert_int_equal(vx_fanout_wanted(f), VX_MSG_RESULT | VX_MSG_JPEG | VX_MSG_JPEG_OVERLAY);

    vx_pipeline_msg *m = result(1);
    assert_int_equal(vx_fanout_publish(f, m), 2);
    vx_pipeline_msg_release(m); /* the subscribers hold their own references */
    m = vx_pipeline_msg_new(VX_MSG_JPEG, 0, 10, NULL);
    assert_int_equal(vx_fanout_publish(f, m), 1);
    vx_pipeline_msg_release(m);
    m = vx_pipeline_msg_new(VX_MSG_ERROR, 0, 0, "gone");
    assert_int_equal(vx_fanout_publish(f, m), 3); /* errors reach everyone */
    vx_pipeline_msg_release(m);

    /* One notification per empty -> non-empty transition. */
    assert_int_equal(notified[0], 1);
    assert_int_equal(notified[1], 1);
    assert_int_equal(notified[2], 1);

    int more;
    vx_pipeline_msg *got = vx_sub_pop(res, &more);
    assert_int_equal(got->type, VX_MSG_RESULT);
    assert_int_equal(got->frame_id, 1);
    assert_true(more);
    vx_pipeline_msg_release(got);
    got = vx_sub_pop(res, &more);
    assert_int_equal(got->type, VX_MSG_ERROR);
    assert_string_equal(got->message, "gone");
    assert_false(more);
    vx_pipeline_msg_release(got);
    assert_null(vx_sub_pop(res, &more));
    assert_int_equal(vx_sub_pending(jpeg), 2);

    /* Empty again: the next message notifies again. */
    m = result(2);
    vx_fanout_publish(f, m);
    vx_pipeline_msg_release(m);
    assert_int_equal(notified[0], 2);

    vx_fanout_remove(f, res);
    assert_int_equal(vx_fanout_count(f), 2);
    assert_int_equal(vx_fanout_wanted(f), VX_MSG_JPEG | VX_MSG_RESULT | VX_MSG_JPEG_OVERLAY);
    vx_fanout_remove(f, both);
    assert_int_equal(vx_fanout_wanted(f), VX_MSG_JPEG);
    /* `jpeg` still holds two messages: destroy frees them (ASan checks). */
    vx_fanout_destroy(f);

    assert_int_equal(vx_fanout_create(&f), VX_OK);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 0, NULL, NULL, &res), VX_ERR_INVALID);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 5000, NULL, NULL, &res), VX_ERR_INVALID);
    assert_null(res);
    vx_fanout_destroy(f);
}

static void test_fanout_drop_oldest(void **state)
{
    (void)state;
    vx_fanout *f;
    assert_int_equal(vx_fanout_create(&f), VX_OK);
    vx_sub *slow, *fast, *never;
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 3, NULL, NULL, &slow), VX_OK);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 3, NULL, NULL, &fast), VX_OK);
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 1, NULL, NULL, &never), VX_OK);
    for (uint64_t i = 1; i <= 10; i++) {
        vx_pipeline_msg *m = result(i);
        vx_fanout_publish(f, m);
        vx_pipeline_msg_release(m);
        vx_pipeline_msg *got = vx_sub_pop(fast, NULL); /* keeps up: loses nothing */
        assert_int_equal(got->frame_id, i);
        vx_pipeline_msg_release(got);
    }
    /* The slow one kept the newest three, in order. */
    for (uint64_t want = 8; want <= 10; want++) {
        vx_pipeline_msg *got = vx_sub_pop(slow, NULL);
        assert_int_equal(got->frame_id, want);
        vx_pipeline_msg_release(got);
    }
    assert_null(vx_sub_pop(slow, NULL));
    assert_int_equal(vx_sub_drops(slow), 7);
    assert_int_equal(vx_sub_drops(fast), 0);
    assert_int_equal(vx_sub_drops(never), 9);
    assert_int_equal(vx_fanout_drops(f), 16);
    vx_fanout_remove(f, never); /* its drops stay in the total */
    assert_int_equal(vx_fanout_drops(f), 16);

    /* A subscriber that never reads costs the publisher nothing more than a
     * full one: a long run completes and memory stays bounded (ASan). */
    assert_int_equal(vx_fanout_add(f, VX_MSG_RESULT, 2, NULL, NULL, &never), VX_OK);
    for (uint64_t i = 0; i < 100000; i++) {
        vx_pipeline_msg *m = vx_pipeline_msg_new(VX_MSG_RESULT, 0, 0, NULL);
        vx_fanout_publish(f, m);
        vx_pipeline_msg_release(m);
    }
    assert_int_equal(vx_sub_pending(never), 2);
    assert_int_equal(vx_sub_drops(never), 100000 - 2);
    vx_fanout_destroy(f);
}

/* One publisher thread, one consumer thread woken by notify. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int signalled;
    int done;
    vx_fanout *f;
    vx_sub *sub;
    uint64_t published;
} xthread;

static void wake_consumer(void *user)
{
    xthread *x = user;
    pthread_mutex_lock(&x->lock);
    x->signalled = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void *publisher(void *arg)
{
    xthread *x = arg;
    for (uint64_t i = 1; i <= 50000; i++) {
        vx_pipeline_msg *m = result(i);
        vx_fanout_publish(x->f, m);
        vx_pipeline_msg_release(m);
    }
    pthread_mutex_lock(&x->lock);
    x->published = 50000;
    x->done = 1;
    x->signalled = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

static void test_fanout_threads(void **state)
{
    (void)state;
    xthread x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.lock, NULL);
    pthread_cond_init(&x.cond, NULL);
    assert_int_equal(vx_fanout_create(&x.f), VX_OK);
    assert_int_equal(vx_fanout_add(x.f, VX_MSG_RESULT, 16, wake_consumer, &x, &x.sub), VX_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, publisher, &x), 0);
    uint64_t received = 0, last = 0;
    for (;;) {
        pthread_mutex_lock(&x.lock);
        while (!x.signalled)
            pthread_cond_wait(&x.cond, &x.lock);
        x.signalled = 0;
        int done = x.done;
        pthread_mutex_unlock(&x.lock);
        vx_pipeline_msg *m;
        while ((m = vx_sub_pop(x.sub, NULL))) {
            assert_true(m->frame_id > last); /* order kept, drops or not */
            last = m->frame_id;
            received++;
            vx_pipeline_msg_release(m);
        }
        if (done)
            break;
    }
    pthread_join(t, NULL);
    /* Whatever was published after the last pop is still queued. */
    vx_pipeline_msg *m;
    while ((m = vx_sub_pop(x.sub, NULL))) {
        received++;
        vx_pipeline_msg_release(m);
    }
    assert_int_equal(received + vx_sub_drops(x.sub), x.published);
    assert_int_equal(last == 50000 || received > 0, 1);
    vx_fanout_destroy(x.f);
    pthread_cond_destroy(&x.cond);
    pthread_mutex_destroy(&x.lock);
}

/* ---- source policy --------------------------------------------------------------- */

static char root[64], media[96], outside[96];

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int policy_setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/vx_test_policy_XXXXXX");
    if (!mkdtemp(root))
        return -1;
    snprintf(media, sizeof media, "%s/media", root);
    snprintf(outside, sizeof outside, "%s/outside", root);
    mkdir(media, 0700);
    mkdir(outside, 0700);
    char path[256], target[256];
    snprintf(path, sizeof path, "%s/sub", media);
    mkdir(path, 0700);
    write_file(media, "a.avi", "a");
    write_file(media, "sub/b.avi", "b");
    write_file(outside, "secret.avi", "s");
    snprintf(target, sizeof target, "%s/secret.avi", outside);
    snprintf(path, sizeof path, "%s/escape.avi", media);
    if (symlink(target, path))
        return -1;
    snprintf(path, sizeof path, "%s/alias.avi", media);
    if (symlink("sub/b.avi", path))
        return -1;
    snprintf(path, sizeof path, "%s/fifo.avi", media);
    if (mkfifo(path, 0600))
        return -1;
    return 0;
}

static int policy_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static vx_source_policy *make_policy(const char *default_source, int webcams)
{
    static const char *prefixes[] = {"rtsp://10.0.0.5/", "http://cams.local/live/"};
    static vx_config_camera cams[2];
    cams[0] = (vx_config_camera){"gate", "rtsp://192.168.1.20/main", "rtsp://192.168.1.20/sub"};
    cams[1] = (vx_config_camera){"lobby", "rtsp://user:pw@192.168.1.21/", NULL};
    const char *dirs[] = {media};
    vx_source_policy_opts o = {
        .default_source = default_source,
        .media_dirs = dirs,
        .n_media_dirs = 1,
        .allow_prefixes = prefixes,
        .n_allow_prefixes = 2,
        .cameras = cams,
        .n_cameras = 2,
        .allow_webcams = webcams,
    };
    vx_source_policy *p;
    if (vx_source_policy_create(&o, &p) != VX_OK)
        fail_msg("%s", vx_last_error());
    return p;
}

static void expect(const vx_source_policy *p, const char *src, vx_err code, const char *key_suffix,
                   const char *part)
{
    vx_source_resolved *r = malloc(sizeof *r);
    vx_err err = vx_source_policy_resolve(p, src, r);
    if (err != code)
        fail_msg("'%s': expected %d, got %d (%s)", src ? src : "(null)", code, err,
                 err ? vx_last_error() : r->key);
    if (!err && key_suffix) {
        size_t n = strlen(r->key), k = strlen(key_suffix);
        if (n < k || strcmp(r->key + n - k, key_suffix))
            fail_msg("'%s': key '%s' does not end with '%s'", src, r->key, key_suffix);
    }
    if (err && part && !strstr(vx_last_error(), part))
        fail_msg("'%s': message '%s' lacks '%s'", src, vx_last_error(), part);
    free(r);
}

static void test_policy_files(void **state)
{
    (void)state;
    vx_source_policy *p = make_policy(NULL, 1);
    char path[256];
    expect(p, "a.avi", VX_OK, "/media/a.avi", NULL);
    expect(p, "sub/b.avi", VX_OK, "/media/sub/b.avi", NULL);
    expect(p, "./sub/../a.avi", VX_OK, "/media/a.avi", NULL);
    snprintf(path, sizeof path, "%s/a.avi", media);
    expect(p, path, VX_OK, "/media/a.avi", NULL);
    snprintf(path, sizeof path, "file:%s/sub/b.avi", media);
    expect(p, path, VX_OK, "/media/sub/b.avi", NULL);
    snprintf(path, sizeof path, "file://%s/a.avi", media);
    expect(p, path, VX_OK, "/media/a.avi", NULL);
    /* A link inside the folder to a file inside: the real file. */
    expect(p, "alias.avi", VX_OK, "/media/sub/b.avi", NULL);

    /* Refused, all with the same words whether the file exists or not. */
    const char *msg = "not a video file inside the server's media folders";
    expect(p, "escape.avi", VX_ERR_DENIED, NULL, msg);
    expect(p, "../outside/secret.avi", VX_ERR_DENIED, NULL, msg);
    snprintf(path, sizeof path, "%s/secret.avi", outside);
    expect(p, path, VX_ERR_DENIED, NULL, msg);
    snprintf(path, sizeof path, "%s/../outside/secret.avi", media);
    expect(p, path, VX_ERR_DENIED, NULL, msg);
    expect(p, "/etc/passwd", VX_ERR_DENIED, NULL, msg);
    expect(p, "missing.avi", VX_ERR_DENIED, NULL, msg);
    expect(p, "/nonexistent/x.avi", VX_ERR_DENIED, NULL, msg);
    expect(p, "fifo.avi", VX_ERR_DENIED, NULL, msg); /* would block the grabber */
    expect(p, "sub", VX_ERR_DENIED, NULL, msg);      /* a folder */
    expect(p, media, VX_ERR_DENIED, NULL, msg);
    vx_source_policy_destroy(p);
}

static void test_policy_urls_cameras_webcams(void **state)
{
    (void)state;
    vx_source_policy *p = make_policy(NULL, 1);
    expect(p, "rtsp://10.0.0.5/cam1", VX_OK, "rtsp://10.0.0.5/cam1", NULL);
    expect(p, "http://cams.local/live/x.mjpg", VX_OK, NULL, NULL);
    /* Text prefixes ending in '/' cannot be stretched. */
    expect(p, "rtsp://10.0.0.50/cam1", VX_ERR_DENIED, NULL, "--allow-source");
    expect(p, "rtsp://10.0.0.5.evil.net/x", VX_ERR_DENIED, NULL, "refused");
    expect(p, "http://cams.local/other", VX_ERR_DENIED, NULL, "refused");
    expect(p, "https://example.com/v.mp4", VX_ERR_DENIED, NULL, "refused");
    /* Malformed: the video module's message with the accepted forms. */
    expect(p, "ftp://x/y", VX_ERR_INVALID, NULL, "accepted forms");
    expect(p, "webcam:abc", VX_ERR_INVALID, NULL, "webcam:N");
    expect(p, "rtsp://", VX_ERR_INVALID, NULL, "host");
    /* Cameras by name and by URL; the name is the display, passwords stay in. */
    vx_source_resolved *r = malloc(sizeof *r);
    assert_int_equal(vx_source_policy_resolve(p, "gate", r), VX_OK);
    assert_string_equal(r->display, "gate");
    assert_string_equal(r->open, "rtsp://192.168.1.20/main");
    assert_string_equal(r->substream, "rtsp://192.168.1.20/sub");
    assert_int_equal(vx_source_policy_resolve(p, "rtsp://192.168.1.20/main", r), VX_OK);
    assert_string_equal(r->display, "gate");
    assert_int_equal(vx_source_policy_resolve(p, "rtsp://user:pw@192.168.1.21/", r), VX_OK);
    assert_string_equal(r->display, "lobby");
    assert_string_equal(r->substream, "");
    expect(p, "rtsp://192.168.1.20/other", VX_ERR_DENIED, NULL, "refused");
    /* Webcams. */
    assert_int_equal(vx_source_policy_resolve(p, "webcam:3", r), VX_OK);
    assert_string_equal(r->key, "/dev/video3");
    assert_int_equal(r->kind, VX_VIDEO_WEBCAM);
    vx_source_policy_destroy(p);
    p = make_policy(NULL, 0);
    expect(p, "webcam:0", VX_ERR_DENIED, NULL, "webcams are not enabled");
    /* No default configured: an empty source is an error. */
    expect(p, NULL, VX_ERR_INVALID, NULL, "no source given");
    expect(p, "", VX_ERR_INVALID, NULL, "no source given");
    vx_source_policy_destroy(p);
    free(r);
}

static void test_policy_default(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/secret.avi", outside);
    /* The operator's default may live outside the media folders. */
    vx_source_policy *p = make_policy(path, 1);
    vx_source_resolved *r = malloc(sizeof *r);
    assert_int_equal(vx_source_policy_resolve(p, NULL, r), VX_OK);
    assert_true(r->is_default);
    assert_int_equal(vx_source_policy_resolve(p, "", r), VX_OK);
    assert_true(r->is_default);
    assert_int_equal(vx_source_policy_resolve(p, path, r), VX_OK);
    assert_true(r->is_default);
    /* Another spelling of the same path is still refused (outside). */
    expect(p, "../outside/secret.avi", VX_ERR_DENIED, NULL, NULL);
    vx_source_policy_destroy(p);

    /* A default inside the media folder: other spellings share it. */
    snprintf(path, sizeof path, "%s/a.avi", media);
    p = make_policy(path, 1);
    assert_int_equal(vx_source_policy_resolve(p, "a.avi", r), VX_OK);
    assert_true(r->is_default);
    assert_int_equal(vx_source_policy_resolve(p, "sub/../a.avi", r), VX_OK);
    assert_true(r->is_default);
    assert_int_equal(vx_source_policy_resolve(p, "sub/b.avi", r), VX_OK);
    assert_false(r->is_default);
    vx_source_policy_destroy(p);
    /* A camera as the default. */
    p = make_policy("gate", 1);
    assert_int_equal(vx_source_policy_resolve(p, NULL, r), VX_OK);
    assert_true(r->is_default);
    assert_string_equal(r->display, "gate");
    vx_source_policy_destroy(p);
    free(r);
}

static void test_policy_bad_options(void **state)
{
    (void)state;
    vx_source_policy *p;
    const char *missing[] = {"/nonexistent-vx-media"};
    vx_source_policy_opts o = {.media_dirs = missing, .n_media_dirs = 1};
    assert_int_equal(vx_source_policy_create(&o, &p), VX_ERR_NOT_FOUND);
    assert_non_null(strstr(vx_last_error(), "/nonexistent-vx-media"));
    const char *empty[] = {""};
    vx_source_policy_opts o2 = {.allow_prefixes = empty, .n_allow_prefixes = 1};
    assert_int_equal(vx_source_policy_create(&o2, &p), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "every URL"));
    vx_config_camera bad = {"x", "gopher://y", NULL};
    vx_source_policy_opts o3 = {.cameras = &bad, .n_cameras = 1};
    assert_int_equal(vx_source_policy_create(&o3, &p), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "camera 'x'"));
    vx_source_policy_opts o4 = {.default_source = "ftp://nope"};
    assert_int_equal(vx_source_policy_create(&o4, &p), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "default source"));
}

/* ---- stats ------------------------------------------------------------------------ */

static void test_hist(void **state)
{
    (void)state;
    vx_hist h;
    vx_hist_init(&h);
    vx_hist_snap s;
    vx_hist_read(&h, &s);
    assert_int_equal(s.count, 0);
    assert_true(vx_hist_quantile(&s, 0.5) == 0);
    for (int i = 1; i <= 100; i++)
        vx_hist_add(&h, i * 0.001); /* 1..100 ms */
    vx_hist_read(&h, &s);
    assert_int_equal(s.count, 100);
    assert_true(fabs(s.sum_s - 5.05) < 1e-6);
    assert_true(fabs(vx_hist_mean(&s) - 0.0505) < 1e-6);
    double p50 = vx_hist_quantile(&s, 0.5), p90 = vx_hist_quantile(&s, 0.9), p99 = vx_hist_quantile(&s, 0.99);
    /* Within one bucket of the truth (buckets are 5..10 ms wide there). */
    assert_true(fabs(p50 - 0.050) <= 0.005);
    assert_true(fabs(p90 - 0.090) <= 0.010);
    assert_true(fabs(p99 - 0.099) <= 0.010);
    assert_true(p50 <= p90 && p90 <= p99);
    vx_hist_snap before = s;
    vx_hist_add(&h, -1);    /* clamps to 0 */
    vx_hist_add(&h, 1e6);   /* +Inf bucket */
    vx_hist_add(&h, 0.001); /* exactly a bound: in that bucket */
    vx_hist_read(&h, &s);
    assert_int_equal(s.counts[0], 1 + 1 + 1);
    assert_int_equal(s.counts[VX_HIST_BUCKETS - 1], 1);
    assert_true(vx_hist_quantile(&s, 1.0) == vx_hist_bounds[VX_HIST_BUCKETS - 2]);
    vx_hist_snap_sub(&s, &before);
    assert_int_equal(s.count, 3);
    vx_hist_snap_add(&s, &before);
    assert_int_equal(s.count, 103);
    for (int i = 1; i < VX_HIST_BUCKETS - 1; i++)
        assert_true(vx_hist_bounds[i] > vx_hist_bounds[i - 1]);
}

static void test_rate(void **state)
{
    (void)state;
    vx_rate r;
    vx_rate_init(&r, 2.0);
    assert_true(vx_rate_get(&r, 100) == 0);
    for (int i = 0; i < 50; i++)
        vx_rate_add(&r, 100 + i * 0.1); /* 10 Hz for 5 s */
    double now = 100 + 49 * 0.1;
    assert_true(fabs(vx_rate_get(&r, now) - 10) < 0.01);
    /* Events stop: the rate falls, then reads 0. */
    assert_true(vx_rate_get(&r, now + 1) < 7);
    assert_true(vx_rate_get(&r, now + 3) == 0);
    /* More events than the ring holds. */
    for (int i = 0; i < 3 * VX_RATE_RING; i++)
        vx_rate_add(&r, 200 + i * 0.001);
    double at = 200 + (3 * VX_RATE_RING - 1) * 0.001;
    assert_true(vx_rate_get(&r, at) > 900);
}

/* ---- MJPEG rendering ------------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    vx_image img;
} test_image;

/* A mid-grey picture with a dark square (so that drawn boxes stand out). */
static test_image make_image(vx_pixfmt fmt, int w, int h)
{
    test_image t;
    memset(&t, 0, sizeof t);
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    int stride = w + 16; /* padded rows, like decoders make */
    t.img.width = w;
    t.img.height = h;
    t.img.format = fmt;
    if (fmt == VX_PIX_RGB24 || fmt == VX_PIX_BGR24) {
        int s = w * 3 + 7;
        t.buf = malloc((size_t)s * (size_t)h);
        memset(t.buf, 128, (size_t)s * (size_t)h);
        t.img.planes[0] = t.buf;
        t.img.strides[0] = s;
    } else {
        size_t ysize = (size_t)stride * (size_t)h, csize = (size_t)(cw + 8) * (size_t)ch * 2;
        t.buf = malloc(ysize + 2 * csize);
        memset(t.buf, 128, ysize + 2 * csize);
        t.img.planes[0] = t.buf;
        t.img.strides[0] = stride;
        t.img.planes[1] = t.buf + ysize;
        t.img.planes[2] = t.buf + ysize + csize;
        t.img.strides[1] = t.img.strides[2] = fmt == VX_PIX_NV12 ? (cw + 8) * 2 : cw + 8;
    }
    return t;
}

/* Decodes to RGB; returns the pixel at (x, y). */
static void decode_pixel(const uint8_t *jpeg, size_t size, int w, int h, int x, int y, uint8_t rgb[3])
{
    tjhandle d = tjInitDecompress();
    int jw, jh, sub, cs;
    assert_int_equal(tjDecompressHeader3(d, jpeg, (unsigned long)size, &jw, &jh, &sub, &cs), 0);
    assert_int_equal(jw, w);
    assert_int_equal(jh, h);
    uint8_t *pix = malloc((size_t)w * (size_t)h * 3);
    assert_int_equal(tjDecompress2(d, jpeg, (unsigned long)size, pix, w, 0, h, TJPF_RGB, 0), 0);
    memcpy(rgb, pix + ((size_t)y * (size_t)w + (size_t)x) * 3, 3);
    free(pix);
    tjDestroy(d);
}

static void test_render(void **state)
{
    (void)state;
    vx_jpeg_encoder *enc;
    assert_int_equal(vx_jpeg_encoder_create(0, &enc), VX_ERR_INVALID);
    assert_int_equal(vx_jpeg_encoder_create(90, &enc), VX_OK);
    const vx_pixfmt fmts[] = {VX_PIX_YUV420P, VX_PIX_NV12, VX_PIX_RGB24, VX_PIX_BGR24};
    const int sizes[][2] = {{64, 48}, {65, 49}, {320, 240}};
    /* A person box inside, one crossing the border, one entirely outside. */
    vx_pipeline_det dets[3] = {
        {10, 8, 40, 40, 0.9f, 0, "person"},
        {-20, -20, 30, 20, 0.5f, 2, "car"},
        {1000, 1000, 2000, 2000, 0.5f, 1, "bicycle"},
    };
    for (size_t f = 0; f < 4; f++) {
        for (size_t s = 0; s < 3; s++) {
            int w = sizes[s][0], h = sizes[s][1];
            test_image t = make_image(fmts[f], w, h);
            const uint8_t *jpeg;
            size_t size;
            uint8_t px[3];
            /* Plain: the untouched grey at the box's left edge. */
            assert_int_equal(vx_jpeg_encode(enc, &t.img, NULL, 0, &jpeg, &size), VX_OK);
            assert_true(size > 100 && jpeg[0] == 0xff && jpeg[1] == 0xd8 && jpeg[size - 2] == 0xff &&
                        jpeg[size - 1] == 0xd9);
            decode_pixel(jpeg, size, w, h, 10, 24, px);
            assert_true(abs(px[0] - px[1]) < 20 && abs(px[1] - px[2]) < 20);
            /* Overlay: a green (person) border there; the source untouched. */
            uint8_t before = t.img.planes[0][24 * t.img.strides[0] + 10];
            assert_int_equal(vx_jpeg_encode(enc, &t.img, dets, 3, &jpeg, &size), VX_OK);
            decode_pixel(jpeg, size, w, h, 10, 24, px);
            if (px[1] < 150 || px[0] > 120 || px[2] > 120)
                fail_msg("format %zu %dx%d: box pixel %d,%d,%d is not green", f, w, h, px[0], px[1], px[2]);
            assert_int_equal(t.img.planes[0][24 * t.img.strides[0] + 10], before);
            free(t.buf);
        }
    }
    test_image t = make_image(VX_PIX_YUV420P, 64, 48);
    t.img.width = 0;
    const uint8_t *jpeg;
    size_t size;
    assert_int_equal(vx_jpeg_encode(enc, &t.img, NULL, 0, &jpeg, &size), VX_ERR_INVALID);
    free(t.buf);
    vx_jpeg_encoder_destroy(enc);
    vx_jpeg_encoder_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg),
        cmocka_unit_test(test_fanout_types_and_errors),
        cmocka_unit_test(test_fanout_drop_oldest),
        cmocka_unit_test(test_fanout_threads),
        cmocka_unit_test(test_policy_files),
        cmocka_unit_test(test_policy_urls_cameras_webcams),
        cmocka_unit_test(test_policy_default),
        cmocka_unit_test(test_policy_bad_options),
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, policy_setup, policy_teardown);
}
