/*
 * eval_mot: replays a video through the real detector and the gate engine
 * (tracker included), every frame, and writes what they saw as JSON lines,
 * for tests/eval_mot.py to score against a scenario's ground truth.
 *
 *   eval_mot VIDEO RULES OUT.jsonl [--model PATH] [--scale F] [--threads N] [--frames N]
 *
 * One line per frame:
 *   {"i","seq","t","w","h","dets":[[x1,y1,x2,y2,conf],...],
 *    "tracks":[[id,x1,y1,x2,y2,missed],...],"events":[event...]}
 * (dets: the person-class detections given to the engine; tracks: the
 * engine's confirmed tracks; events: vx_gate_event_to_json), then a last
 * line {"counts":{...},"frames":N}.
 *
 * Unlike the server, nothing is dropped and nothing is paced: the source
 * runs lossless and not in real time, so a replay is a pure function of the
 * video, the model and the rules (the gate engine runs on the frames' own
 * timestamps).  Detection runs on the full frame, or on a copy scaled by
 * --scale (the server's SUBSTREAM_SCALE) with boxes mapped back.  One
 * inference thread by default (--threads, 0: all cores): a test runs two
 * replays side by side on two cores, and OpenMP teams that spin on a busy
 * machine burn more than they gain.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vx_core.h"
#include "detect/vx_detect.h"
#include "gate/vx_gate.h"
#include "video/vx_video.h"

#define MAX_DET 64

static int usage(void)
{
    fprintf(stderr,
            "usage: eval_mot VIDEO RULES OUT.jsonl [--model PATH] [--scale F] [--threads N] [--frames N]\n");
    return 2;
}

static int is_person(const vx_gate_config *cfg, int cls)
{
    for (int i = 0; i < cfg->n_person_classes; i++)
        if (cfg->person_classes[i] == cls)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *video = argv[1], *rules = argv[2], *out_path = argv[3];
    char model[1200] = "";
    double scale = 1.0;
    int threads = 1;
    long max_frames = 0; /* 0: the whole video */
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            snprintf(model, sizeof model, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames") && i + 1 < argc)
            max_frames = atol(argv[++i]);
        else
            return usage();
    }
    if (!(scale > 0 && scale <= 1) || threads < 0 || max_frames < 0)
        return usage();
    if (!model[0]) {
        const char *c = getenv("VEROLUX_CACHE"), *home = getenv("HOME");
        if (c && c[0])
            snprintf(model, sizeof model, "%s/models/nanodet/nanodet.json", c);
        else
            snprintf(model, sizeof model, "%s/.cache/verolux/models/nanodet/nanodet.json", home ? home : ".");
    }

    vx_gate_config cfg;
    vx_gate_diag diag;
    if (vx_gate_config_load(rules, &cfg, &diag) != VX_OK) {
        fprintf(stderr, "eval_mot: %s\n", vx_last_error());
        return 1;
    }
    vx_gate *gate = NULL;
    vx_detector *det = NULL;
    vx_video_source *src = NULL;
    vx_video_scaler *scaler = NULL;
    FILE *out = NULL;
    int rc = 1;
    vx_gate_result res;
    vx_gate_result_init(&res);

    vx_gate_opts gopts;
    vx_gate_opts_default(&gopts);
    snprintf(gopts.run_id, sizeof gopts.run_id, "replay");
    vx_nn_engine_opts eng;
    vx_nn_engine_opts_default(&eng);
    eng.backend = VX_NN_BACKEND_CPU;
    eng.threads = threads;
    vx_video_source_opts vo;
    vx_video_source_opts_default(&vo);
    vo.source = video;
    vo.realtime = 0;
    vo.lossless = 1;
    vo.loop = 0;
    vo.max_attempts = 1;
    if (vx_gate_create(&cfg, &gopts, &gate) || vx_detector_create(model, &eng, NULL, &det) ||
        vx_video_scaler_create(&scaler) || vx_video_source_create(&vo, &src)) {
        fprintf(stderr, "eval_mot: %s\n", vx_last_error());
        goto done;
    }
    out = fopen(out_path, "w");
    if (!out) {
        perror(out_path);
        goto done;
    }

    uint64_t seq = 0;
    int nframes = 0;
    while (max_frames == 0 || nframes < max_frames) {
        vx_video_frame *f = NULL;
        vx_err err = vx_video_source_wait(src, seq, 60.0, &f);
        if (err == VX_ERR_UNAVAILABLE)
            break; /* the file ended */
        if (err || !f) {
            fprintf(stderr, "eval_mot: %s\n", err ? vx_last_error() : "no frame within 60 s");
            goto done;
        }
        if (f->seq != seq + 1) {
            fprintf(stderr, "eval_mot: frame %llu after %llu: the lossless source skipped frames\n",
                    (unsigned long long)f->seq, (unsigned long long)seq);
            vx_video_frame_release(f);
            goto done;
        }
        seq = f->seq;
        vx_image img = f->image, copy;
        double back = 1.0;
        if (scale < 1.0) {
            int sw, sh;
            int in = vx_detector_input_size(det);
            vx_video_scaled_size(f->width, f->height, scale, in, in, &sw, &sh);
            if (vx_video_scaler_scale(scaler, &f->image, sw, sh, &copy)) {
                fprintf(stderr, "eval_mot: %s\n", vx_last_error());
                vx_video_frame_release(f);
                goto done;
            }
            img = copy;
            back = (double)f->width / sw;
        }
        vx_detection d[MAX_DET];
        int nd = 0;
        if (vx_detector_run(det, &img, d, MAX_DET, &nd)) {
            fprintf(stderr, "eval_mot: %s\n", vx_last_error());
            vx_video_frame_release(f);
            goto done;
        }
        vx_track_det td[MAX_DET];
        for (int k = 0; k < nd; k++)
            td[k] = (vx_track_det){(float)(d[k].x1 * back),
                                   (float)(d[k].y1 * back),
                                   (float)(d[k].x2 * back),
                                   (float)(d[k].y2 * back),
                                   d[k].conf,
                                   d[k].cls};
        vx_gate_frame gf = {td, nd, f->width, f->height, f->pts_s};
        if (vx_gate_process(gate, &gf, &res)) {
            fprintf(stderr, "eval_mot: %s\n", vx_last_error());
            vx_video_frame_release(f);
            goto done;
        }
        json_t *line = json_object(), *jd = json_array(), *jt = json_array(), *je = json_array();
        for (int k = 0; k < nd; k++)
            if (is_person(&cfg, td[k].cls))
                json_array_append_new(
                    jd, json_pack("[f,f,f,f,f]", td[k].x1, td[k].y1, td[k].x2, td[k].y2, (double)td[k].conf));
        for (int k = 0; k < res.ntracks; k++) {
            const vx_track *t = &res.tracks[k];
            json_array_append_new(
                jt, json_pack("[i,f,f,f,f,i]", (json_int_t)t->id, t->x1, t->y1, t->x2, t->y2, t->missed));
        }
        for (int k = 0; k < res.nevents; k++)
            json_array_append_new(je, vx_gate_event_to_json(&res.events[k]));
        json_object_set_new(line, "i", json_integer(nframes));
        json_object_set_new(line, "seq", json_integer((json_int_t)f->seq));
        json_object_set_new(line, "t", json_real(f->pts_s));
        json_object_set_new(line, "w", json_integer(f->width));
        json_object_set_new(line, "h", json_integer(f->height));
        json_object_set_new(line, "dets", jd);
        json_object_set_new(line, "tracks", jt);
        json_object_set_new(line, "events", je);
        if (json_dumpf(line, out, JSON_COMPACT) || fputc('\n', out) == EOF) {
            json_decref(line);
            vx_video_frame_release(f);
            perror(out_path);
            goto done;
        }
        json_decref(line);
        vx_video_frame_release(f);
        nframes++;
    }
    json_t *last = json_object();
    json_object_set_new(last, "counts", vx_gate_counts_to_json(&res.counts));
    json_object_set_new(last, "frames", json_integer(nframes));
    json_dumpf(last, out, JSON_COMPACT);
    fputc('\n', out);
    json_decref(last);
    if (nframes == 0)
        fprintf(stderr, "eval_mot: %s gave no frames\n", video);
    else
        rc = 0;
done:
    if (out && fclose(out)) {
        perror(out_path);
        rc = 1;
    }
    vx_video_source_destroy(src);
    vx_video_scaler_destroy(scaler);
    vx_detector_destroy(det);
    vx_gate_destroy(gate);
    vx_gate_result_free(&res);
    return rc;
}
