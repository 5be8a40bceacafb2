/*
 * Source strings: parsing and display.  See vx_video.h.
 *
 * Parsing is strict and pure so that the server can check a client's source
 * before anything is opened.  Anything that starts like a URI scheme
 * ("name:") must be one we know: "rtmp://x" or a misspelt "webcm:0" is an
 * error, not a file name, because guessing would turn typos into confusing
 * "no such file" failures minutes later.  A file whose name contains ':' is
 * still reachable as file:NAME or ./NAME.
 *
 * URLs keep their exact text for FFmpeg; only the display copy differs (the
 * password in user:password@host is masked), because messages and logs
 * travel further than the configuration.
 */
#include "video/vx_video.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ACCEPTED_FORMS                                                                                       \
    "webcam:N (V4L2 /dev/videoN, N = 0..255), file:PATH or a plain path, rtsp://HOST[:PORT]/PATH, "          \
    "rtsps://..., http://HOST[:PORT]/PATH or https://... (MJPEG, HLS, MP4)"

#define WEBCAM_MAX 255

const char *vx_video_kind_name(vx_video_kind kind)
{
    switch (kind) {
    case VX_VIDEO_FILE: return "file";
    case VX_VIDEO_WEBCAM: return "webcam";
    case VX_VIDEO_RTSP: return "rtsp";
    case VX_VIDEO_HTTP: return "http";
    }
    return "unknown";
}

/* Length of a leading "scheme:" (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" /
 * "-" / "." )), without the colon; 0 when the string does not start so. */
static size_t scheme_length(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    return s[i] == ':' ? i : 0;
}

static int scheme_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && !strncasecmp(s, name, len);
}

/* Writes `str` into out->display with the password of "scheme://user:pw@"
 * masked.  `authority` points just after "://" (NULL: not a URL). */
static void make_display(const char *str, const char *authority, vx_video_spec *out)
{
    const char *at = NULL, *colon = NULL;
    if (authority) {
        size_t alen = strcspn(authority, "/?#");
        for (size_t i = 0; i < alen; i++)
            if (authority[i] == '@')
                at = authority + i;
        if (at)
            colon = memchr(authority, ':', (size_t)(at - authority));
    }
    if (!colon) {
        snprintf(out->display, sizeof out->display, "%s", str);
        return;
    }
    snprintf(out->display, sizeof out->display, "%.*s***%s", (int)(colon + 1 - str), str, at);
}

/* Checks the authority of a URL (after "://"): a non-empty host, optionally
 * [IPv6], and a numeric port in range. */
static vx_err check_authority(const char *display, const char *authority)
{
    size_t alen = strcspn(authority, "/?#");
    const char *host = authority, *end = authority + alen;
    for (const char *p = authority; p < end; p++)
        if (*p == '@')
            host = p + 1;
    const char *port = NULL;
    if (host < end && *host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close || close == host + 1)
            return vx_fail(VX_ERR_INVALID, "video source '%s': malformed IPv6 host; accepted forms: %s",
                           display, ACCEPTED_FORMS);
        if (close + 1 < end) {
            if (close[1] != ':')
                return vx_fail(VX_ERR_INVALID,
                               "video source '%s': junk after the IPv6 host; accepted forms: %s", display,
                               ACCEPTED_FORMS);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        if (colon == host || host == end)
            return vx_fail(VX_ERR_INVALID, "video source '%s': the URL has no host; accepted forms: %s",
                           display, ACCEPTED_FORMS);
        if (colon)
            port = colon + 1;
    }
    if (port) {
        long value = 0;
        const char *p = port;
        for (; p < end && isdigit((unsigned char)*p) && value <= 65535; p++)
            value = value * 10 + (*p - '0');
        if (p == port || p != end || value < 1 || value > 65535)
            return vx_fail(VX_ERR_INVALID, "video source '%s': the port is not a number in 1..65535",
                           display);
    }
    return VX_OK;
}

static vx_err parse_url(const char *str, size_t scheme_len, vx_video_kind kind, vx_video_spec *out)
{
    if (strncmp(str + scheme_len, "://", 3) != 0) {
        make_display(str, NULL, out);
        return vx_fail(VX_ERR_INVALID,
                       "video source '%s': expected '%.*s://' followed by a host; accepted forms: %s",
                       out->display, (int)scheme_len, str, ACCEPTED_FORMS);
    }
    const char *authority = str + scheme_len + 3;
    make_display(str, authority, out);
    for (const char *p = str; *p; p++)
        if (*p == ' ')
            return vx_fail(VX_ERR_INVALID,
                           "video source '%s': a URL cannot contain spaces (write them as %%20)",
                           out->display);
    vx_err err = check_authority(out->display, authority);
    if (err)
        return err;
    out->kind = kind;
    snprintf(out->target, sizeof out->target, "%s", str);
    return VX_OK;
}

static vx_err parse_webcam(const char *str, const char *num, vx_video_spec *out)
{
    make_display(str, NULL, out);
    int value = 0;
    const char *p = num;
    for (; isdigit((unsigned char)*p) && value <= WEBCAM_MAX; p++)
        value = value * 10 + (*p - '0');
    if (p == num || *p || value > WEBCAM_MAX)
        return vx_fail(VX_ERR_INVALID, "video source '%s': expected webcam:N with N a number in 0..%d",
                       out->display, WEBCAM_MAX);
    out->kind = VX_VIDEO_WEBCAM;
    out->webcam_index = value;
    snprintf(out->target, sizeof out->target, "/dev/video%d", value);
    return VX_OK;
}

static vx_err parse_file(const char *str, const char *path, vx_video_spec *out)
{
    make_display(str, NULL, out);
    /* file://HOST/PATH is the URL form; only the local host makes sense. */
    if (!strncmp(path, "//", 2)) {
        const char *host = path + 2;
        size_t hlen = strcspn(host, "/");
        if (hlen && !(hlen == 9 && !strncasecmp(host, "localhost", 9)))
            return vx_fail(VX_ERR_INVALID,
                           "video source '%s': file URLs with a host (%.*s) are not supported", out->display,
                           (int)hlen, host);
        path = host + hlen;
    }
    if (!*path)
        return vx_fail(VX_ERR_INVALID, "video source '%s': file: needs a path; accepted forms: %s",
                       out->display, ACCEPTED_FORMS);
    out->kind = VX_VIDEO_FILE;
    snprintf(out->target, sizeof out->target, "%s", path);
    return VX_OK;
}

vx_err vx_video_source_parse(const char *str, vx_video_spec *out)
{
    memset(out, 0, sizeof *out);
    out->webcam_index = -1;
    if (!str || !*str)
        return vx_fail(VX_ERR_INVALID, "empty video source; accepted forms: %s", ACCEPTED_FORMS);
    size_t len = strnlen(str, VX_VIDEO_SOURCE_MAX);
    if (len >= VX_VIDEO_SOURCE_MAX)
        return vx_fail(VX_ERR_INVALID, "video source '%.40s...' is longer than the limit of %d bytes", str,
                       VX_VIDEO_SOURCE_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)str[i];
        if (c < 0x20 || c == 0x7f)
            return vx_fail(VX_ERR_INVALID, "video source '%.*s...': control character 0x%02x at byte %zu",
                           (int)i, str, c, i);
    }

    size_t slen = scheme_length(str);
    if (!slen) {
        make_display(str, NULL, out);
        out->kind = VX_VIDEO_FILE;
        snprintf(out->target, sizeof out->target, "%s", str);
        return VX_OK;
    }
    if (scheme_is(str, slen, "webcam"))
        return parse_webcam(str, str + slen + 1, out);
    if (scheme_is(str, slen, "file"))
        return parse_file(str, str + slen + 1, out);
    if (scheme_is(str, slen, "rtsp") || scheme_is(str, slen, "rtsps"))
        return parse_url(str, slen, VX_VIDEO_RTSP, out);
    if (scheme_is(str, slen, "http") || scheme_is(str, slen, "https"))
        return parse_url(str, slen, VX_VIDEO_HTTP, out);

    /* Only the scheme is quoted: the rest may hold credentials. */
    return vx_fail(
        VX_ERR_INVALID,
        "video source: unknown scheme '%.*s:'; accepted forms: %s (a file name containing ':' can be "
        "given as file:NAME or ./NAME)",
        (int)(slen > 32 ? 32 : slen), str, ACCEPTED_FORMS);
}
