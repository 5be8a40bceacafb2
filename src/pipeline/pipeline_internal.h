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

/* ---- the gate stage (gate_stage.c) ------------------------------------------
 *
 * One per pipeline when the server runs with gate rules.  vx_gate_stage_run
 * is called by the pipeline thread for each processed frame: it runs the
 * gate engine, commits the frame's events/sessions/completions to the store
 * (when there is one), publishes them to MQTT (when configured) only after
 * the commit, and returns the gate part of the frame's gate_check message
 * as a JSON object text {"decisions","stats","events","gate_id",
 * "stream_time"} (malloc'ed; NULL when the frame could not be processed).
 * Events in it carry their store row id as "event_id".  The other functions
 * may be called from any thread. */
typedef struct vx_gate_stage vx_gate_stage;

vx_err vx_gate_stage_create(const vx_gate_config *cfg, vx_store *store, vx_mqtt *mqtt, const char *source,
                            vx_gate_stage **out);
void vx_gate_stage_destroy(vx_gate_stage *g);
char *vx_gate_stage_run(vx_gate_stage *g, const vx_pipeline_det *dets, int n, int width, int height,
                        double pts_s, double wall_s);
vx_gate *vx_gate_stage_engine(vx_gate_stage *g);
/* {"stream_time","in_gate","persons","guards","store_errors"} of the last frame. */
json_t *vx_gate_stage_state(vx_gate_stage *g);

/* Writes a rules document to path atomically (temp file, fsync, rename,
 * folder fsync), after saving the current file as <path>.bak the same way. */
vx_err vx_gate_rules_save(const char *path, const char *text, size_t len);

#endif
