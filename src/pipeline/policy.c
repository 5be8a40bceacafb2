/*
 * Source policy: which sources clients may name.  See vx_pipeline.h.
 *
 * Files are judged by their real path: realpath() resolves '..', '.' and
 * every symbolic link, so the check "inside a media folder" is made on the
 * file that would actually be opened, and a link pointing out of a media
 * folder is refused like the path it points to.  The grabber then opens
 * that real path, not the client's spelling of it.  (A link swapped between
 * check and open could still win the race; media folders are the
 * operator's, not the clients'.)
 *
 * Refusals of files say the same thing whether the file exists or not, so
 * the server cannot be used to probe the host's file system.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/vx_pipeline.h"

struct vx_source_policy {
    char **media; /* real paths */
    int nmedia;
    char **prefixes;
    int nprefixes;
    vx_config_camera *cameras; /* deep copies */
    int ncameras;
    char *default_source;
    vx_source_resolved default_res; /* resolved at create */
    int have_default;
    int allow_webcams;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void vx_source_policy_destroy(vx_source_policy *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nmedia; i++)
        free(p->media[i]);
    for (int i = 0; i < p->nprefixes; i++)
        free(p->prefixes[i]);
    for (int i = 0; i < p->ncameras; i++) {
        free(p->cameras[i].name);
        free(p->cameras[i].url);
        free(p->cameras[i].substream);
    }
    free(p->media);
    free(p->prefixes);
    free(p->cameras);
    free(p->default_source);
    free(p);
}

static int copy_into(char *dst, size_t len, const char *src)
{
    int n = snprintf(dst, len, "%s", src);
    return n >= 0 && (size_t)n < len;
}

/* Inside `dir` (a real path): the real path equals it or continues with '/'. */
static int inside(const char *dir, const char *real)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return real[0] == '/';
    return !strncmp(dir, real, n) && (real[n] == '/' || real[n] == 0);
}

/* Resolves a file path against the media folders; fills out on success. */
static vx_err resolve_file(const vx_source_policy *p, const vx_video_spec *spec, const char *requested,
                           vx_source_resolved *out)
{
    const char *path = spec->target;
    char real[PATH_MAX];
    int found = 0;
    if (path[0] == '/') {
        found = realpath(path, real) != NULL;
    } else {
        /* Relative: a name inside one of the media folders, first match. */
        for (int i = 0; i < p->nmedia && !found; i++) {
            char joined[PATH_MAX * 2];
            snprintf(joined, sizeof joined, "%s/%s", p->media[i], path);
            found = realpath(joined, real) != NULL;
            if (found && !inside(p->media[i], real))
                found = 0;
        }
    }
    int ok = 0;
    if (found) {
        struct stat st;
        for (int i = 0; i < p->nmedia && !ok; i++)
            ok = inside(p->media[i], real);
        /* Regular files only: a FIFO would block the grabber, a device node
         * is not a media file. */
        ok = ok && stat(real, &st) == 0 && S_ISREG(st.st_mode);
    }
    if (!ok)
        return vx_fail(VX_ERR_DENIED,
                       "source '%s' refused: not a video file inside the server's media folders "
                       "(configured cameras, webcam:N and files under --media-dir are allowed)",
                       spec->display);
    (void)requested;
    out->kind = VX_VIDEO_FILE;
    if (!copy_into(out->key, sizeof out->key, real) || !copy_into(out->open, sizeof out->open, real))
        return vx_fail(VX_ERR_INVALID, "source '%s': path too long", spec->display);
    copy_into(out->display, sizeof out->display, spec->display);
    return VX_OK;
}

static vx_err resolve(const vx_source_policy *p, const char *requested, vx_source_resolved *out,
                      int for_default)
{
    memset(out, 0, sizeof *out);
    if (!for_default && p->have_default &&
        (!requested || !*requested || !strcmp(requested, p->default_source))) {
        *out = p->default_res;
        return VX_OK;
    }
    if (!requested || !*requested)
        return vx_fail(VX_ERR_INVALID, "no source given and no default source configured");

    /* Configured cameras: by name first (names cannot collide with the
     * accepted source forms' syntax in practice: they have no ':' or '/'),
     * then by their exact URL. */
    for (int i = 0; i < p->ncameras; i++) {
        const vx_config_camera *c = &p->cameras[i];
        if (strcmp(requested, c->name) && strcmp(requested, c->url))
            continue;
        vx_video_spec spec;
        vx_err err = vx_video_source_parse(c->url, &spec);
        if (err)
            return vx_fail_prefix(err, "camera '%s': ", c->name);
        out->kind = spec.kind;
        copy_into(out->key, sizeof out->key, spec.target);
        copy_into(out->open, sizeof out->open, c->url);
        copy_into(out->substream, sizeof out->substream, c->substream ? c->substream : "");
        copy_into(out->display, sizeof out->display, c->name);
        return VX_OK;
    }

    vx_video_spec spec;
    vx_err err = vx_video_source_parse(requested, &spec);
    if (err)
        return err;
    out->kind = spec.kind;
    switch (spec.kind) {
    case VX_VIDEO_WEBCAM:
        if (!p->allow_webcams && !for_default)
            return vx_fail(VX_ERR_DENIED, "source '%s' refused: webcams are not enabled on this server",
                           spec.display);
        copy_into(out->key, sizeof out->key, spec.target);
        copy_into(out->open, sizeof out->open, requested);
        copy_into(out->display, sizeof out->display, spec.display);
        return VX_OK;
    case VX_VIDEO_FILE:
        if (for_default) {
            /* The operator's own choice: any file, canonicalised when it
             * exists so that clients naming it by path share its pipeline. */
            char real[PATH_MAX];
            const char *use = realpath(spec.target, real) ? real : spec.target;
            copy_into(out->key, sizeof out->key, use);
            copy_into(out->open, sizeof out->open, use);
            copy_into(out->display, sizeof out->display, spec.display);
            return VX_OK;
        }
        return resolve_file(p, &spec, requested, out);
    case VX_VIDEO_RTSP:
    case VX_VIDEO_HTTP: {
        int allowed = for_default;
        for (int i = 0; i < p->nprefixes && !allowed; i++)
            allowed = !strncmp(requested, p->prefixes[i], strlen(p->prefixes[i]));
        if (!allowed)
            return vx_fail(VX_ERR_DENIED,
                           "source '%s' refused: %s URLs must be a configured camera or start with a prefix "
                           "the operator allowed (--allow-source PREFIX)",
                           spec.display, vx_video_kind_name(spec.kind));
        copy_into(out->key, sizeof out->key, spec.target);
        copy_into(out->open, sizeof out->open, requested);
        copy_into(out->display, sizeof out->display, spec.display);
        return VX_OK;
    }
    }
    return vx_fail(VX_ERR_INVALID, "source '%s': unknown kind", spec.display);
}

vx_err vx_source_policy_create(const vx_source_policy_opts *o, vx_source_policy **out)
{
    *out = NULL;
    vx_source_policy *p = calloc(1, sizeof *p);
    if (!p)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    p->allow_webcams = o->allow_webcams;
    vx_err err = VX_OK;
    p->media = calloc((size_t)o->n_media_dirs + 1, sizeof *p->media);
    p->prefixes = calloc((size_t)o->n_allow_prefixes + 1, sizeof *p->prefixes);
    p->cameras = calloc((size_t)o->n_cameras + 1, sizeof *p->cameras);
    if (!p->media || !p->prefixes || !p->cameras) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < o->n_media_dirs; i++) {
        char real[PATH_MAX];
        struct stat st;
        if (!realpath(o->media_dirs[i], real)) {
            err = vx_fail(VX_ERR_NOT_FOUND, "media folder %s: %s", o->media_dirs[i], strerror(errno));
            goto fail;
        }
        if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            err = vx_fail(VX_ERR_INVALID, "media folder %s: not a folder", o->media_dirs[i]);
            goto fail;
        }
        if (!(p->media[p->nmedia++] = strdup(real))) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    for (int i = 0; i < o->n_allow_prefixes; i++) {
        if (!o->allow_prefixes[i][0]) {
            err = vx_fail(VX_ERR_INVALID, "an empty --allow-source prefix would allow every URL");
            goto fail;
        }
        if (!(p->prefixes[p->nprefixes++] = strdup(o->allow_prefixes[i]))) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    for (int i = 0; i < o->n_cameras; i++) {
        vx_config_camera *c = &p->cameras[p->ncameras++];
        c->name = dup_or_null(o->cameras[i].name);
        c->url = dup_or_null(o->cameras[i].url);
        c->substream = dup_or_null(o->cameras[i].substream);
        if (!c->name || !c->url || (o->cameras[i].substream && !c->substream)) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        vx_video_spec spec;
        if ((err = vx_video_source_parse(c->url, &spec)) ||
            (c->substream && (err = vx_video_source_parse(c->substream, &spec)))) {
            vx_fail_prefix(err, "camera '%s': ", c->name);
            goto fail;
        }
    }
    if (o->default_source && *o->default_source) {
        if (!(p->default_source = strdup(o->default_source))) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if ((err = resolve(p, o->default_source, &p->default_res, 1))) {
            vx_fail_prefix(err, "default source: ");
            goto fail;
        }
        p->default_res.is_default = 1;
        p->have_default = 1;
    }
    *out = p;
    return VX_OK;
fail:
    vx_source_policy_destroy(p);
    return err;
}

vx_err vx_source_policy_resolve(const vx_source_policy *p, const char *requested, vx_source_resolved *out)
{
    vx_err err = resolve(p, requested, out, 0);
    if (err)
        return err;
    /* Naming the default source's file by another spelling still means the
     * default source. */
    if (p->have_default && !out->is_default && !strcmp(out->key, p->default_res.key) && !out->substream[0])
        *out = p->default_res;
    return VX_OK;
}
