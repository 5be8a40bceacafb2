/*
 * vx_video_source_parse: every accepted form, and the strings it must refuse
 * with a message that names the accepted forms (and never a password).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "video/vx_video.h"

static void parses(const char *str, vx_video_kind kind, const char *target)
{
    vx_video_spec spec;
    vx_err err = vx_video_source_parse(str, &spec);
    if (err)
        fail_msg("'%s' refused: %s", str, vx_last_error());
    if (spec.kind != kind)
        fail_msg("'%s': kind %s, expected %s", str, vx_video_kind_name(spec.kind), vx_video_kind_name(kind));
    if (strcmp(spec.target, target))
        fail_msg("'%s': target '%s', expected '%s'", str, spec.target, target);
}

/* Refused with VX_ERR_INVALID and a message containing `expect`. */
static void refused(const char *str, const char *expect)
{
    vx_video_spec spec;
    vx_clear_error();
    vx_err err = vx_video_source_parse(str, &spec);
    if (err != VX_ERR_INVALID)
        fail_msg("'%s' accepted (kind %s, target '%s')", str ? str : "(null)", vx_video_kind_name(spec.kind),
                 spec.target);
    const char *msg = vx_last_error();
    if (expect && !strstr(msg, expect))
        fail_msg("'%s': message lacks '%s': %s", str ? str : "(null)", expect, msg);
}

static void names_accepted_forms(const char *msg)
{
    static const char *forms[] = {"webcam:N", "file:PATH", "rtsp://", "rtsps://", "http://", "https://"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (!strstr(msg, forms[i]))
            fail_msg("message does not name the form %s: %s", forms[i], msg);
}

static void test_webcam(void **state)
{
    (void)state;
    vx_video_spec spec;
    assert_int_equal(vx_video_source_parse("webcam:0", &spec), VX_OK);
    assert_int_equal(spec.kind, VX_VIDEO_WEBCAM);
    assert_int_equal(spec.webcam_index, 0);
    assert_string_equal(spec.target, "/dev/video0");
    parses("webcam:12", VX_VIDEO_WEBCAM, "/dev/video12");
    parses("WebCam:3", VX_VIDEO_WEBCAM, "/dev/video3");
    parses("webcam:255", VX_VIDEO_WEBCAM, "/dev/video255");
    refused("webcam:256", "0..255");
    refused("webcam:", "webcam:N");
    refused("webcam:-1", "webcam:N");
    refused("webcam:1x", "webcam:N");
    refused("webcam:/dev/video0", "webcam:N");
    refused("webcam:99999999999999999999", "webcam:N");
}

static void test_files(void **state)
{
    (void)state;
    vx_video_spec spec;
    assert_int_equal(vx_video_source_parse("/tmp/cam.mp4", &spec), VX_OK);
    assert_int_equal(spec.kind, VX_VIDEO_FILE);
    assert_int_equal(spec.webcam_index, -1);
    assert_string_equal(spec.display, "/tmp/cam.mp4");
    parses("clip.avi", VX_VIDEO_FILE, "clip.avi");
    parses("./a:b.mkv", VX_VIDEO_FILE, "./a:b.mkv");
    parses("/media/my video %d.mp4", VX_VIDEO_FILE, "/media/my video %d.mp4");
    parses("file:/tmp/x.avi", VX_VIDEO_FILE, "/tmp/x.avi");
    parses("file:rel/x.avi", VX_VIDEO_FILE, "rel/x.avi");
    parses("file:a:b.avi", VX_VIDEO_FILE, "a:b.avi");
    parses("FILE:/x", VX_VIDEO_FILE, "/x");
    parses("file:///abs/x.mkv", VX_VIDEO_FILE, "/abs/x.mkv");
    parses("file://localhost/abs/x.mkv", VX_VIDEO_FILE, "/abs/x.mkv");
    parses("webcam", VX_VIDEO_FILE, "webcam"); /* no colon: a file name */
    refused("file:", "needs a path");
    refused("file://", "needs a path");
    refused("file://server/share/x.mp4", "with a host");
}

static void test_urls(void **state)
{
    (void)state;
    parses("rtsp://cam.local:554/stream1", VX_VIDEO_RTSP, "rtsp://cam.local:554/stream1");
    parses("rtsp://10.0.0.2/h264?channel=1", VX_VIDEO_RTSP, "rtsp://10.0.0.2/h264?channel=1");
    parses("rtsps://cam.example.com/live", VX_VIDEO_RTSP, "rtsps://cam.example.com/live");
    parses("RTSP://CAM/x", VX_VIDEO_RTSP, "RTSP://CAM/x");
    parses("rtsp://[::1]:8554/x", VX_VIDEO_RTSP, "rtsp://[::1]:8554/x");
    parses("rtsp://[fe80::1]/x", VX_VIDEO_RTSP, "rtsp://[fe80::1]/x");
    parses("rtsp://host", VX_VIDEO_RTSP, "rtsp://host");
    parses("http://cam/video.mjpg", VX_VIDEO_HTTP, "http://cam/video.mjpg");
    parses("https://cdn.example.com/live/index.m3u8", VX_VIDEO_HTTP,
           "https://cdn.example.com/live/index.m3u8");
    parses("http://127.0.0.1:8080/clip.mp4", VX_VIDEO_HTTP, "http://127.0.0.1:8080/clip.mp4");
    refused("rtsp:/cam/x", "rtsp://");
    refused("rtsp:cam", "rtsp://");
    refused("rtsp://", "no host");
    refused("rtsp:///path", "no host");
    refused("rtsp://:554/x", "no host");
    refused("rtsp://host:0/x", "port");
    refused("rtsp://host:65536/x", "port");
    refused("rtsp://host:12ab/x", "port");
    refused("rtsp://host:/x", "port");
    refused("rtsp://[::1/x", "IPv6");
    refused("rtsp://[]/x", "IPv6");
    refused("rtsp://[::1]x/x", "IPv6");
    refused("http://cam/my video.mjpg", "spaces");
    refused("https://", "no host");
}

static void test_password_hidden(void **state)
{
    (void)state;
    vx_video_spec spec;
    assert_int_equal(vx_video_source_parse("rtsp://admin:s3cret@10.0.0.2:554/s1", &spec), VX_OK);
    assert_string_equal(spec.target, "rtsp://admin:s3cret@10.0.0.2:554/s1");
    assert_string_equal(spec.display, "rtsp://admin:***@10.0.0.2:554/s1");
    /* An '@' in the path is not userinfo. */
    assert_int_equal(vx_video_source_parse("http://host/a:b@c", &spec), VX_OK);
    assert_string_equal(spec.display, "http://host/a:b@c");
    assert_int_equal(vx_video_source_parse("rtsp://user@host/x", &spec), VX_OK);
    assert_string_equal(spec.display, "rtsp://user@host/x");

    refused("rtsp://admin:s3cret@:554/s1", "no host");
    assert_null(strstr(vx_last_error(), "s3cret"));
    refused("rtsp://admin:s3cret@host:99999/s1", "port");
    assert_null(strstr(vx_last_error(), "s3cret"));
    refused("rtmp://admin:s3cret@host/live", "rtmp");
    assert_null(strstr(vx_last_error(), "s3cret"));
}

static void test_unknown_schemes(void **state)
{
    (void)state;
    static const char *bad[] = {"ftp://host/x.mp4", "rtmp://host/live", "udp://239.0.0.1:1234",
                                "webcm:0",          "foo:bar",          "srt://host:9000",
                                "v4l2:/dev/video0", "c:video.mp4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        refused(bad[i], "unknown scheme");
        names_accepted_forms(vx_last_error());
        /* The message quotes the scheme it did not know. */
        char scheme[32];
        snprintf(scheme, sizeof scheme, "'%.*s:'", (int)strcspn(bad[i], ":"), bad[i]);
        if (!strstr(vx_last_error(), scheme))
            fail_msg("message does not quote %s: %s", scheme, vx_last_error());
    }
}

static void test_malformed(void **state)
{
    (void)state;
    refused(NULL, "empty");
    names_accepted_forms(vx_last_error());
    refused("", "empty");
    refused("clip\n.mp4", "control character 0x0a at byte 4");
    refused("rtsp://host/x\r", "control character");
    refused("\x7f", "control character");

    char *big = malloc(VX_VIDEO_SOURCE_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', VX_VIDEO_SOURCE_MAX);
    big[VX_VIDEO_SOURCE_MAX] = 0;
    refused(big, "longer than the limit");
    big[VX_VIDEO_SOURCE_MAX - 1] = 0; /* the longest accepted */
    parses(big, VX_VIDEO_FILE, big);
    free(big);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(vx_video_kind_name(VX_VIDEO_FILE), "file");
    assert_string_equal(vx_video_kind_name(VX_VIDEO_WEBCAM), "webcam");
    assert_string_equal(vx_video_kind_name(VX_VIDEO_RTSP), "rtsp");
    assert_string_equal(vx_video_kind_name(VX_VIDEO_HTTP), "http");
    assert_string_equal(vx_video_health_name(VX_VIDEO_STARTING), "starting");
    assert_string_equal(vx_video_health_name(VX_VIDEO_HEALTHY), "healthy");
    assert_string_equal(vx_video_health_name(VX_VIDEO_DEGRADED), "degraded");
    assert_string_equal(vx_video_health_name(VX_VIDEO_STALE), "stale");
    assert_string_equal(vx_video_health_name(VX_VIDEO_DEAD), "dead");
    assert_string_equal(vx_video_health_name(VX_VIDEO_ENDED), "ended");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webcam),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_password_hidden),
        cmocka_unit_test(test_unknown_schemes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
