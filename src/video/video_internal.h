/*
 * video/internal: helpers shared by the files of the video module only.
 */
#ifndef VX_VIDEO_INTERNAL_H
#define VX_VIDEO_INTERNAL_H

#include <libavutil/pixfmt.h>

/* The deprecated full-range YUVJ formats still come out of the JPEG
 * decoders: map them to plain YUV and set *full_range, so swscale is told
 * the range instead of warning about YUVJ.  Other formats pass unchanged. */
enum AVPixelFormat vx_video_unjpeg_format(enum AVPixelFormat fmt, int *full_range);

#endif
