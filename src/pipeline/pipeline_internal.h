/*
 * pipeline internals shared by its files and its tests: the MJPEG renderer.
 *
 * vx_jpeg_encoder turns a frame (any vx_image format) into a JPEG at full
 * resolution with libturbojpeg, optionally with the detection boxes drawn.
 * YUV420P is encoded straight from the decoder's planes (no colour
 * conversion); boxes, NV12 and overlays work on a scratch copy, because a
 * decoded frame is shared and read-only.  One encoder per thread.
 */
#ifndef VX_PIPELINE_INTERNAL_H
#define VX_PIPELINE_INTERNAL_H

#include "pipeline/vx_pipeline.h"

typedef struct vx_jpeg_encoder vx_jpeg_encoder;

vx_err vx_jpeg_encoder_create(int quality, vx_jpeg_encoder **out);
void vx_jpeg_encoder_destroy(vx_jpeg_encoder *enc);
/* Encodes img, drawing dets (n may be 0) when dets is not NULL.  *jpeg
 * points into the encoder's buffer, valid until the next call. */
vx_err vx_jpeg_encode(vx_jpeg_encoder *enc, const vx_image *img, const vx_pipeline_det *dets, int n,
                      const uint8_t **jpeg, size_t *size);

#endif
