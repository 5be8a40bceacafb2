/*
 * make-1080p: the benchmark's camera-like input.  Re-encodes a video (the
 * sample vtest.avi: 768x576, 10 fps) as 1920x1080 H.264 at 30 fps: the
 * picture scaled to 1440x1080 (aspect kept) and centred on black, each
 * source frame shown for 1/30 s x (30 / source fps), no B-frames (like an
 * IP camera's main stream), a key frame every 2 s.
 *
 * Built and run by bench/serve-latency (cc + pkg-config), not by CMake:
 * it is a tool for the benchmark, not part of the product.
 *
 * usage: make-1080p IN OUT.mp4
 */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

#define OUT_W 1920
#define OUT_H 1080
#define OUT_FPS 30

static int die(const char *what)
{
    fprintf(stderr, "make-1080p: %s\n", what);
    return 1;
}

static int encode(AVCodecContext *enc, AVFormatContext *oc, AVStream *st, AVFrame *frame, AVPacket *pkt)
{
    if (avcodec_send_frame(enc, frame) < 0)
        return -1;
    while (avcodec_receive_packet(enc, pkt) >= 0) {
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        if (av_interleaved_write_frame(oc, pkt) < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return die("usage: make-1080p IN OUT.mp4");
    av_log_set_level(AV_LOG_ERROR);
    AVFormatContext *ic = NULL, *oc = NULL;
    if (avformat_open_input(&ic, argv[1], NULL, NULL) < 0 || avformat_find_stream_info(ic, NULL) < 0)
        return die("cannot read the input");
    int vi = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (vi < 0)
        return die("no video stream");
    AVStream *ist = ic->streams[vi];
    const AVCodec *dcodec = avcodec_find_decoder(ist->codecpar->codec_id);
    AVCodecContext *dec = avcodec_alloc_context3(dcodec);
    avcodec_parameters_to_context(dec, ist->codecpar);
    if (avcodec_open2(dec, dcodec, NULL) < 0)
        return die("cannot open the decoder");
    AVRational in_rate = av_guess_frame_rate(ic, ist, NULL);
    int repeat = in_rate.num > 0 ? (int)(OUT_FPS * (double)in_rate.den / in_rate.num + 0.5) : 1;
    if (repeat < 1)
        repeat = 1;

    const AVCodec *ecodec = avcodec_find_encoder_by_name("libx264");
    if (!ecodec)
        return die("this FFmpeg has no libx264 encoder");
    avformat_alloc_output_context2(&oc, NULL, NULL, argv[2]);
    if (!oc)
        return die("cannot create the output");
    AVStream *ost = avformat_new_stream(oc, NULL);
    AVCodecContext *enc = avcodec_alloc_context3(ecodec);
    enc->width = OUT_W;
    enc->height = OUT_H;
    enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = (AVRational){1, OUT_FPS};
    enc->framerate = (AVRational){OUT_FPS, 1};
    enc->gop_size = 2 * OUT_FPS;
    enc->max_b_frames = 0;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_opt_set(enc->priv_data, "preset", "veryfast", 0);
    av_opt_set(enc->priv_data, "crf", "23", 0);
    if (avcodec_open2(enc, ecodec, NULL) < 0)
        return die("cannot open libx264");
    avcodec_parameters_from_context(ost->codecpar, enc);
    ost->time_base = enc->time_base;
    ost->avg_frame_rate = enc->framerate;
    if (avio_open(&oc->pb, argv[2], AVIO_FLAG_WRITE) < 0 || avformat_write_header(oc, NULL) < 0)
        return die("cannot write the output");

    AVFrame *frame = av_frame_alloc(), *out = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc(), *opkt = av_packet_alloc();
    out->format = AV_PIX_FMT_YUV420P;
    out->width = OUT_W;
    out->height = OUT_H;
    av_frame_get_buffer(out, 0);
    const int inner_w = OUT_H * 4 / 3, off_x = (OUT_W - inner_w) / 2;
    struct SwsContext *sws = NULL;
    int64_t pts = 0;
    while (av_read_frame(ic, pkt) >= 0) {
        if (pkt->stream_index == vi && avcodec_send_packet(dec, pkt) >= 0) {
            while (avcodec_receive_frame(dec, frame) >= 0) {
                sws = sws_getCachedContext(sws, frame->width, frame->height, frame->format, inner_w, OUT_H,
                                           AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL, NULL);
                av_frame_make_writable(out);
                memset(out->data[0], 16, (size_t)out->linesize[0] * OUT_H);
                memset(out->data[1], 128, (size_t)out->linesize[1] * OUT_H / 2);
                memset(out->data[2], 128, (size_t)out->linesize[2] * OUT_H / 2);
                uint8_t *dst[3] = {out->data[0] + off_x, out->data[1] + off_x / 2, out->data[2] + off_x / 2};
                sws_scale(sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height, dst,
                          out->linesize);
                for (int r = 0; r < repeat; r++) {
                    out->pts = pts++;
                    if (encode(enc, oc, ost, out, opkt))
                        return die("encoding failed");
                }
            }
        }
        av_packet_unref(pkt);
    }
    encode(enc, oc, ost, NULL, opkt);
    av_write_trailer(oc);
    avio_closep(&oc->pb);
    printf("%s: %dx%d, %d fps, %lld frames\n", argv[2], OUT_W, OUT_H, OUT_FPS, (long long)pts);
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_frame_free(&out);
    av_packet_free(&pkt);
    av_packet_free(&opkt);
    avcodec_free_context(&enc);
    avcodec_free_context(&dec);
    avformat_free_context(oc);
    avformat_close_input(&ic);
    return 0;
}
