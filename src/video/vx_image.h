/*
 * video/image: still images in memory and decoding them from files.
 *
 * A vx_image is a view (planes + strides) of pixels in one of a few formats;
 * it owns nothing.  vx_image_load decodes any image file FFmpeg can read
 * (JPEG, PNG, BMP, PPM, ...) into an owned RGB24 buffer.
 *
 * Threading: no shared state; functions are reentrant.
 */
#ifndef VX_IMAGE_H
#define VX_IMAGE_H

#include <stdint.h>

#include "core/vx_core.h"

/* Largest width or height vx_image_load accepts. */
#define VX_IMAGE_MAX_DIM 16384

typedef enum {
    VX_PIX_RGB24 = 0, /* packed R,G,B, one plane */
    VX_PIX_BGR24,     /* packed B,G,R, one plane */
    VX_PIX_YUV420P,   /* planar Y, U, V (U and V at half resolution) */
    VX_PIX_NV12,      /* Y plane + interleaved UV plane */
} vx_pixfmt;

typedef struct {
    int width, height;
    vx_pixfmt format;
    const uint8_t *planes[3];
    int strides[3]; /* bytes per row of each plane */
} vx_image;

typedef struct vx_image_buf vx_image_buf;

/* Decodes the first frame of an image file into RGB24.  Rejects files that
 * are not images, zero-size images and images above 16384x16384. */
vx_err vx_image_load(const char *path, vx_image_buf **out);
const vx_image *vx_image_buf_view(const vx_image_buf *buf);
void vx_image_buf_destroy(vx_image_buf *buf);

/* Turns FFmpeg's own logging down (off, or verbose when VEROLUX_LOG=debug) so
 * that failures reach the user as our one-line messages only.  Idempotent and
 * thread-safe; every entry point that calls into FFmpeg calls it. */
void vx_video_ffmpeg_quiet(void);

#endif
