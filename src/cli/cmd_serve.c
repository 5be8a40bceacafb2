/*
 * verolux serve: the real-time server.  Settings come from defaults, the
 * environment and flags (core/vx_config.h); this file turns them into a
 * detector, a source policy, the pipelines and the HTTP/WebSocket server,
 * logs what runs and how, and shuts everything down in reverse order on
 * SIGINT or SIGTERM.
 *
 * Thread budget (the target is a 2-core machine): the detector's engine
 * runs its OpenMP team with one thread per core (VEROLUX_THREADS / --threads
 * to change), and inference is serialised across sources, so that team is
 * the only CPU-heavy parallel work.  Each source adds a grabber thread
 * whose FFmpeg decoder uses one thread (frame threading would add a frame
 * of latency per extra thread and compete with inference), and a pipeline
 * thread that mostly waits.  One thread serves all connections.  Signals
 * are taken by a dedicated thread with sigwait, so no other thread is ever
 * interrupted by them.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/vx_config.h"
#include "detect/vx_detect.h"
#include "detect/vx_select.h"
#include "pipeline/vx_pipeline.h"
#include "server/vx_server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: verolux serve [options]\n\n"
               "Runs the video analytics server: decodes the sources clients ask for, detects\n"
               "objects in every frame it can keep up with, and streams the results over\n"
               "WebSocket (/ws/detections, /ws/gate-check), MJPEG (/stream) and HTTP (/health,\n"
               "/model-status, /info, /metrics).\n\n"
               "Every option has an environment variable (in brackets); flags win.\n"
               "  --source S           default source, always running [VIDEO_SOURCE]\n"
               "                       (default $VEROLUX_CACHE/samples/vtest.avi)\n"
               "  --host H             listen address [HOST] (default 127.0.0.1; 0.0.0.0 for\n"
               "                       every interface)\n"
               "  --port N             listen port, 0 for any free one [PORT] (default 8000)\n"
               "  --media-dir DIR      clients may open files under DIR; repeatable [MEDIA_DIRS,\n"
               "                       ':'-separated] (default $VEROLUX_CACHE/samples)\n"
               "  --allow-source P     clients may open URLs starting with P, e.g.\n"
               "                       rtsp://10.0.0.5/ (end it with '/'); repeatable [ALLOW_SOURCES]\n"
               "  --camera NAME=URL    a configured camera, by name or URL; repeatable [CAMERAS]\n"
               "  --camera-substream NAME=URL  that camera's low-resolution stream\n"
               "  --no-webcams         refuse webcam:N sources from clients\n"
               "  --model PATH         detector model, engine file or folder [MODEL_PATH]\n"
               "                       (default: cached NanoDet-g; engine files from `verolux export`\n"
               "                       beside it are preferred, see --precision)\n"
               "  --device D           auto, cpu, ref or cuda [DEVICE] (default auto); --backend\n"
               "                       is the same option\n"
               "  --threads N          inference threads, 0 for all cores [VEROLUX_THREADS]\n"
               "  --precision P        auto, fp32, fp16 (= bf16 on CPUs) or int8 [PRECISION]; auto\n"
               "                       (default) loads the INT8 engine, else the FP16 engine, else\n"
               "                       converts to BF16 where the CPU has it, else FP32\n"
               "  --batch-size N       frames per inference call [BATCH_SIZE] (default 1)\n"
               "  --substream-scale F  detection / display resolution, (0,1] [SUBSTREAM_SCALE]\n"
               "                       (default 0.6)\n"
               "  --target-fps F       most frames processed per second per source, 0: no\n"
               "                       limit [TARGET_FPS] (default 30)\n"
               "  --idle-stop S        stop a client-started source S seconds after its last\n"
               "                       client left [VEROLUX_IDLE_STOP_S] (default 10)\n"
               "  --heartbeat S        WebSocket heartbeat period [VEROLUX_HEARTBEAT_S] (default 30)\n"
               "  --client-queue N     messages queued per client before the oldest is dropped\n"
               "                       [VEROLUX_CLIENT_QUEUE] (default 8)\n"
               "  --max-sources N      pipelines at once [VEROLUX_MAX_SOURCES] (default 8)\n"
               "  --max-clients N      streaming clients at once [VEROLUX_MAX_CLIENTS] (default 256)\n"
               "  --realtime / --no-realtime  pace files at their native frame rate, or read\n"
               "                       them as fast as they decode [VEROLUX_REALTIME] (default on)\n"
               "  --async-grabber / --no-async-grabber  decode ahead on the grabber thread and\n"
               "                       keep only the newest frame, or process every frame in\n"
               "                       turn (the baseline the bench compares with)\n"
               "                       [VEROLUX_ASYNC_GRABBER] (default on)\n"
               "  --conf F --iou F --max-det N  detector thresholds (default 0.35, 0.5, 30)\n"
               "  --gate-rules FILE    run the gate check on every source with these rules, e.g.\n"
               "                       config/gate/rules.json [GATE_RULES] (default: off)\n"
               "  --db PATH            the gate's event store (SQLite) [GATE_DB] (default\n"
               "                       $VEROLUX_DATA/gate.db, ~/.local/share/verolux/gate.db)\n"
               "  --mqtt-url URL       publish gate events and completions to an MQTT broker,\n"
               "                       mqtt://[user[:password]@]host[:port] [MQTT_URL]\n"
               "  --help               this text\n\n"
               "On start the server prints 'listening on http://HOST:PORT' on stdout.\n");
}

static int bad_usage(const char *fmt, ...) VX_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "verolux serve: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'verolux serve --help' for the options.\n");
    va_end(ap);
    return VX_EXIT_USAGE;
}

typedef struct {
    sigset_t set;
    vx_server *srv;
    pthread_mutex_t lock;
    int done;
    int requested; /* a signal came before the server existed */
} signal_ctx;

/* Waits for SIGINT/SIGTERM (blocked in every thread) and stops the server.
 * The main thread wakes it with pthread_kill when the server ended first. */
static void *signal_main(void *arg)
{
    signal_ctx *sc = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&sc->set, &sig) != 0)
            continue;
        pthread_mutex_lock(&sc->lock);
        int done = sc->done;
        vx_server *srv = sc->srv;
        pthread_mutex_unlock(&sc->lock);
        if (done)
            return NULL;
        VX_INFO("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        if (srv) {
            vx_server_stop(srv);
            return NULL;
        }
        pthread_mutex_lock(&sc->lock);
        sc->requested = 1;
        pthread_mutex_unlock(&sc->lock);
    }
}

int vx_cmd_serve(int argc, char **argv)
{
    enum {
        OPT_SOURCE = 256,
        OPT_HOST,
        OPT_PORT,
        OPT_MEDIA,
        OPT_ALLOW,
        OPT_CAMERA,
        OPT_CAMSUB,
        OPT_NO_WEBCAMS,
        OPT_MODEL,
        OPT_DEVICE,
        OPT_THREADS,
        OPT_PRECISION,
        OPT_BATCH,
        OPT_SCALE,
        OPT_FPS,
        OPT_IDLE,
        OPT_HEARTBEAT,
        OPT_QUEUE,
        OPT_MAX_SOURCES,
        OPT_MAX_CLIENTS,
        OPT_REALTIME,
        OPT_NO_REALTIME,
        OPT_ASYNC_GRABBER,
        OPT_NO_ASYNC_GRABBER,
        OPT_CONF,
        OPT_IOU,
        OPT_MAX_DET,
        OPT_GATE_RULES,
        OPT_DB,
        OPT_MQTT,
    };
    static const struct option long_opts[] = {
        {"source", required_argument, NULL, OPT_SOURCE},
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"media-dir", required_argument, NULL, OPT_MEDIA},
        {"allow-source", required_argument, NULL, OPT_ALLOW},
        {"camera", required_argument, NULL, OPT_CAMERA},
        {"camera-substream", required_argument, NULL, OPT_CAMSUB},
        {"no-webcams", no_argument, NULL, OPT_NO_WEBCAMS},
        {"model", required_argument, NULL, OPT_MODEL},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"backend", required_argument, NULL, OPT_DEVICE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"substream-scale", required_argument, NULL, OPT_SCALE},
        {"target-fps", required_argument, NULL, OPT_FPS},
        {"idle-stop", required_argument, NULL, OPT_IDLE},
        {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
        {"client-queue", required_argument, NULL, OPT_QUEUE},
        {"max-sources", required_argument, NULL, OPT_MAX_SOURCES},
        {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
        {"realtime", no_argument, NULL, OPT_REALTIME},
        {"no-realtime", no_argument, NULL, OPT_NO_REALTIME},
        {"async-grabber", no_argument, NULL, OPT_ASYNC_GRABBER},
        {"no-async-grabber", no_argument, NULL, OPT_NO_ASYNC_GRABBER},
        {"conf", required_argument, NULL, OPT_CONF},
        {"iou", required_argument, NULL, OPT_IOU},
        {"max-det", required_argument, NULL, OPT_MAX_DET},
        {"gate-rules", required_argument, NULL, OPT_GATE_RULES},
        {"db", required_argument, NULL, OPT_DB},
        {"mqtt-url", required_argument, NULL, OPT_MQTT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Flags map to config keys; the rest are handled below. */
    static const struct {
        int opt;
        vx_config_key key;
    } keyed[] = {
        {OPT_SOURCE, VX_CFG_VIDEO_SOURCE},
        {OPT_HOST, VX_CFG_HOST},
        {OPT_PORT, VX_CFG_PORT},
        {OPT_MEDIA, VX_CFG_MEDIA_DIRS},
        {OPT_ALLOW, VX_CFG_ALLOW_SOURCES},
        {OPT_CAMERA, VX_CFG_CAMERAS},
        {OPT_MODEL, VX_CFG_MODEL_PATH},
        {OPT_DEVICE, VX_CFG_DEVICE},
        {OPT_THREADS, VX_CFG_THREADS},
        {OPT_PRECISION, VX_CFG_PRECISION},
        {OPT_BATCH, VX_CFG_BATCH_SIZE},
        {OPT_SCALE, VX_CFG_SUBSTREAM_SCALE},
        {OPT_FPS, VX_CFG_TARGET_FPS},
        {OPT_IDLE, VX_CFG_IDLE_STOP},
        {OPT_HEARTBEAT, VX_CFG_HEARTBEAT},
        {OPT_QUEUE, VX_CFG_CLIENT_QUEUE},
        {OPT_MAX_SOURCES, VX_CFG_MAX_SOURCES},
        {OPT_MAX_CLIENTS, VX_CFG_MAX_CLIENTS},
        {OPT_GATE_RULES, VX_CFG_GATE_RULES},
        {OPT_DB, VX_CFG_GATE_DB},
        {OPT_MQTT, VX_CFG_MQTT_URL},
    };

    vx_config cfg;
    if (vx_config_init(&cfg) != VX_OK) {
        fprintf(stderr, "verolux: %s\n", vx_last_error());
        return VX_EXIT_FAIL;
    }
    int rc = VX_EXIT_FAIL;
    vx_detector *det = NULL;
    vx_source_policy *policy = NULL;
    vx_pipelines *pipes = NULL;
    vx_server *srv = NULL;
    vx_store *store = NULL;
    vx_mqtt *mqtt = NULL;
    int allow_webcams = 1;
    vx_detect_opts dopts;
    vx_detect_opts_default(&dopts);

    if (vx_config_load_env(&cfg, NULL, NULL) != VX_OK) {
        rc = bad_usage("%s", vx_last_error());
        goto out;
    }

    optind = 0;
    opterr = 0;
    int c;
    int longindex = -1;
    while ((c = getopt_long(argc, argv, ":h", long_opts, &longindex)) != -1) {
        int handled = 0;
        for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
            if (keyed[i].opt != c)
                continue;
            /* Name the flag as the user wrote it (--device or --backend). */
            char what[64];
            snprintf(what, sizeof what, "--%s", longindex >= 0 ? long_opts[longindex].name : "?");
            if (vx_config_set(&cfg, keyed[i].key, optarg, VX_CFG_FLAG, what) != VX_OK) {
                rc = bad_usage("%s", vx_last_error());
                goto out;
            }
            handled = 1;
        }
        longindex = -1;
        if (handled)
            continue;
        switch (c) {
        case OPT_CAMSUB:
            if (vx_config_set_substream(&cfg, optarg, VX_CFG_FLAG) != VX_OK) {
                rc = bad_usage("%s", vx_last_error());
                goto out;
            }
            break;
        case OPT_NO_WEBCAMS: allow_webcams = 0; break;
        case OPT_REALTIME:
        case OPT_NO_REALTIME:
            vx_config_set(&cfg, VX_CFG_REALTIME, c == OPT_REALTIME ? "1" : "0", VX_CFG_FLAG, "--realtime");
            break;
        case OPT_ASYNC_GRABBER:
        case OPT_NO_ASYNC_GRABBER:
            vx_config_set(&cfg, VX_CFG_ASYNC_GRABBER, c == OPT_ASYNC_GRABBER ? "1" : "0", VX_CFG_FLAG,
                          "--async-grabber");
            break;
        case OPT_CONF:
            if (vx_cli_parse_float(optarg, &dopts.conf_threshold)) {
                rc = bad_usage("--conf needs a number, not '%s'", optarg);
                goto out;
            }
            break;
        case OPT_IOU:
            if (vx_cli_parse_float(optarg, &dopts.nms_iou)) {
                rc = bad_usage("--iou needs a number, not '%s'", optarg);
                goto out;
            }
            break;
        case OPT_MAX_DET:
            if (vx_cli_parse_int(optarg, 1, 10000, &dopts.max_det)) {
                rc = bad_usage("--max-det needs a whole number from 1 to 10000, not '%s'", optarg);
                goto out;
            }
            break;
        case 'h':
            usage(stdout);
            rc = VX_EXIT_OK;
            goto out;
        case ':': rc = bad_usage("option '%s' needs a value", argv[optind - 1]); goto out;
        default: rc = bad_usage("unknown option '%s'", argv[optind - 1]); goto out;
        }
    }
    if (optind < argc) {
        rc = bad_usage("unexpected argument '%s' (the default source is --source S)", argv[optind]);
        goto out;
    }
    if (vx_detect_opts_validate(&dopts) != VX_OK) {
        rc = bad_usage("%s", vx_last_error());
        goto out;
    }
    if (!cfg.model_path[0]) {
        char model[4096];
        if (!vx_cli_default_model(model, sizeof model)) {
            fprintf(stderr, "verolux: no model: use --model PATH, or set MODEL_PATH or VEROLUX_CACHE\n");
            goto out;
        }
        vx_config_set(&cfg, VX_CFG_MODEL_PATH, model, VX_CFG_DEFAULT, NULL);
    }
    if (vx_config_validate(&cfg) != VX_OK) {
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
        goto out;
    }

    /* Signals: blocked here, before any thread exists, so that every thread
     * (OpenMP's and FFmpeg's included) inherits the mask. */
    signal_ctx sc;
    memset(&sc, 0, sizeof sc);
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not a death */
    pthread_mutex_init(&sc.lock, NULL);
    pthread_t sig_thread;
    int sig_started = pthread_create(&sig_thread, NULL, signal_main, &sc) == 0;

    VX_INFO("verolux %s serve: starting", VX_VERSION);
    vx_config_log(&cfg);

    /* Device -> backend. */
    vx_nn_engine_opts eng;
    vx_nn_engine_opts_default(&eng);
    const char *why = NULL;
    if (!strcmp(cfg.device, "auto")) {
        eng.backend =
            vx_nn_backend_available(VX_NN_BACKEND_CUDA, NULL) ? VX_NN_BACKEND_CUDA : VX_NN_BACKEND_CPU;
    } else if (vx_nn_backend_parse(cfg.device, &eng.backend) != VX_OK) {
        fprintf(stderr, "verolux serve: DEVICE=%s: unknown\n", cfg.device);
        goto stop_signals;
    }
    if (!vx_nn_backend_available(eng.backend, &why)) {
        fprintf(stderr, "verolux serve: DEVICE=%s is not available: %s\n", cfg.device,
                why ? why : "not built in");
        goto stop_signals;
    }
    eng.threads = cfg.threads > 0 ? cfg.threads : vx_cpu_count();
    if (eng.backend == VX_NN_BACKEND_REF)
        eng.threads = 1;
    /* Which file and precision: the load priority (detect/vx_select.h),
     * which logs what it loaded and why. */
    vx_model_request mreq = {.model_path = cfg.model_path,
                             .precision = cfg.precision,
                             .backend = eng.backend,
                             .threads = eng.threads};
    vx_model_choice choice;
    if (vx_detector_open(&mreq, &dopts, &det, &choice) != VX_OK) {
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
        goto stop_signals;
    }
    eng = choice.engine;
    const vx_family_info *fi = vx_detector_info(det);
    const char *engine_desc = vx_nn_engine_describe(vx_detector_engine(det));
    const char *device = eng.backend == VX_NN_BACKEND_CUDA ? "cuda" : "cpu";
    int cores = vx_cpu_count();

    /* Every optimisation in use, and the ones asked for but not in effect. */
    VX_INFO("model: %s (%s, %dx%d input, %d classes)", choice.path, vx_model_family_name(fi->family),
            fi->input_w, fi->input_h, fi->num_classes);
    VX_INFO("engine: %s", engine_desc);
    VX_INFO("optimisation: precision %s%s", vx_nn_precision_name(eng.precision),
            eng.precision == VX_NN_BF16 && !vx_nn_precision_native(VX_NN_BF16)
                ? " (emulated: this CPU has no native bf16, expect it to be slower than fp32)"
                : "");
    VX_INFO("optimisation: async frame grabber: one decode thread per source keeps only the newest frame");
    VX_INFO(
        "optimisation: dual stream: detection on the %dx%d letterboxed copy (the detector's resize pass), "
        "display and MJPEG at full resolution; SUBSTREAM_SCALE=%g; cameras with --camera-substream "
        "detect on their own substream",
        fi->input_w, fi->input_h, cfg.substream_scale);
    if (cfg.batch_size > 1)
        VX_WARN("optimisation: BATCH_SIZE=%d requested, but batching across sources is not implemented yet: "
                "one frame per inference call, sources take turns",
                cfg.batch_size);
    else
        VX_INFO("optimisation: batch inference off (BATCH_SIZE=1): sources take turns on the detector");
    VX_INFO("optimisation: TARGET_FPS=%g per source%s", cfg.target_fps,
            cfg.target_fps > 0 ? "" : " (no limit)");
    VX_INFO(
        "threads: %d core%s; inference %d (OpenMP, one team, shared by all sources); per source 1 grabber "
        "(decoder threads 1) + 1 pipeline thread; 1 server thread; 1 reaper; 1 signal thread",
        cores, cores == 1 ? "" : "s", eng.threads);
    if (eng.threads > cores)
        VX_WARN("threads: %d inference threads on %d cores oversubscribe the CPU", eng.threads, cores);

    vx_source_policy_opts po = {
        .default_source = cfg.video_source,
        .media_dirs = (const char *const *)cfg.media_dirs,
        .n_media_dirs = cfg.n_media_dirs,
        .allow_prefixes = (const char *const *)cfg.allow_sources,
        .n_allow_prefixes = cfg.n_allow_sources,
        .cameras = cfg.cameras,
        .n_cameras = cfg.n_cameras,
        .allow_webcams = allow_webcams,
    };
    if (vx_source_policy_create(&po, &policy) != VX_OK) {
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
        goto stop_signals;
    }
    /* A camera that is down at start is retried; a default file that does
     * not exist is a typo, better reported now than as a degraded source. */
    vx_source_resolved *def = malloc(sizeof *def);
    if (def && vx_source_policy_resolve(policy, NULL, def) == VX_OK && def->kind == VX_VIDEO_FILE &&
        access(def->open, R_OK) != 0) {
        fprintf(stderr, "verolux serve: default source %s: %s (set VIDEO_SOURCE or --source%s)\n", def->open,
                strerror(errno),
                cfg.origin[VX_CFG_VIDEO_SOURCE] == VX_CFG_DEFAULT
                    ? "; scripts/fetch-samples fetches the sample"
                    : "");
        free(def);
        goto stop_signals;
    }
    free(def);
    VX_INFO("sources: clients may open configured cameras (%d), %s, files under %d media folder%s and URLs "
            "under %d allowed prefix%s",
            cfg.n_cameras, allow_webcams ? "webcams" : "no webcams", cfg.n_media_dirs,
            cfg.n_media_dirs == 1 ? "" : "s", cfg.n_allow_sources, cfg.n_allow_sources == 1 ? "" : "es");

    /* The gate check: its store (events are committed there before any
     * client sees them) and, when asked, the MQTT publisher. */
    if (cfg.gate_rules[0]) {
        if (vx_store_open(cfg.gate_db, &store) != VX_OK) {
            fprintf(stderr, "verolux serve: %s\n", vx_last_error());
            goto stop_signals;
        }
        VX_INFO("gate: rules %s; events stored in %s (SQLite, WAL, synchronous=FULL: committed before "
                "they are sent)",
                cfg.gate_rules, cfg.gate_db);
        /* Sessions a previous run left open (it crashed or was stopped
         * mid-visit) can never conclude now. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t left = vx_store_abandon_sessions(store, NULL, "server_restart", (double)now.tv_sec);
        if (left > 0)
            VX_INFO("gate: %lld sessions left open by the previous run closed as abandoned", (long long)left);
        if (cfg.mqtt_url[0]) {
            vx_mqtt_opts mo;
            vx_mqtt_opts_default(&mo);
            mo.url = cfg.mqtt_url;
            if (vx_mqtt_create(&mo, &mqtt) != VX_OK) {
                fprintf(stderr, "verolux serve: %s\n", vx_last_error());
                goto stop_signals;
            }
            char shown[512];
            vx_config_redact(cfg.mqtt_url, shown, sizeof shown);
            VX_INFO(
                "gate: publishing events and completions to %s (QoS 1, topics verolux/<gate_id>/events and "
                "/completions; up to %d buffered while the broker is away)",
                shown, mo.buffer);
        }
    } else if (cfg.mqtt_url[0]) {
        VX_WARN("MQTT_URL is set but the gate check is off (no --gate-rules): nothing to publish");
    }

    vx_pipelines_opts pipe_o;
    vx_pipelines_opts_default(&pipe_o);
    pipe_o.gate_rules_path = cfg.gate_rules[0] ? cfg.gate_rules : NULL;
    pipe_o.store = store;
    pipe_o.mqtt = mqtt;
    pipe_o.detector = det;
    pipe_o.policy = policy;
    pipe_o.default_source = cfg.video_source;
    pipe_o.idle_stop_s = cfg.idle_stop_s;
    pipe_o.max_sources = cfg.max_sources;
    pipe_o.target_fps = cfg.target_fps;
    pipe_o.realtime = cfg.realtime;
    pipe_o.async_grabber = cfg.async_grabber;
    pipe_o.decoder_threads = 1;
    pipe_o.substream_scale = cfg.substream_scale;
    pipe_o.precision = vx_nn_precision_name(eng.precision);
    pipe_o.batch_size = 1; /* what runs, not what was asked */
    if (vx_pipelines_create(&pipe_o, &pipes) != VX_OK) {
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
        goto stop_signals;
    }

    const char *slash = strrchr(choice.path, '/');
    char model_name[256];
    snprintf(model_name, sizeof model_name, "%s", slash ? slash + 1 : choice.path);
    char *dot = strrchr(model_name, '.');
    if (dot && dot != model_name)
        *dot = 0;
    size_t mlen = strlen(model_name); /* nanodet_fp16.engine is the model nanodet */
    if (mlen > 5 && (!strcmp(model_name + mlen - 5, "_fp16") || !strcmp(model_name + mlen - 5, "_fp32")))
        model_name[mlen - 5] = 0;
    vx_server_opts so;
    vx_server_opts_default(&so);
    so.host = cfg.host;
    so.port = cfg.port;
    so.pipelines = pipes;
    so.heartbeat_s = cfg.heartbeat_s;
    so.client_queue = cfg.client_queue;
    so.max_clients = cfg.max_clients;
    so.store = store;
    so.mqtt = mqtt;
    so.model = (vx_server_model){
        .path = choice.path,
        .name = model_name,
        .family = vx_model_family_name(fi->family),
        .input_w = fi->input_w,
        .input_h = fi->input_h,
        .classes = fi->num_classes,
        .device = device,
        .backend = vx_nn_backend_name(eng.backend),
        .precision = vx_nn_precision_name(eng.precision),
        .threads = eng.threads,
        .engine = engine_desc,
        .batch_size = 1,
    };
    if (vx_server_create(&so, &srv) != VX_OK) {
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
        goto stop_signals;
    }
    pthread_mutex_lock(&sc.lock);
    sc.srv = srv;
    int requested = sc.requested;
    pthread_mutex_unlock(&sc.lock);
    if (requested) {
        rc = VX_EXIT_OK;
        goto stop_signals;
    }
    VX_INFO("listening on http://%s:%d", cfg.host, vx_server_port(srv));
    printf("listening on http://%s:%d\n", cfg.host, vx_server_port(srv));
    fflush(stdout);

    if (vx_server_run(srv) != VX_OK)
        fprintf(stderr, "verolux serve: %s\n", vx_last_error());
    else
        rc = VX_EXIT_OK;

stop_signals:
    pthread_mutex_lock(&sc.lock);
    sc.done = 1;
    sc.srv = NULL;
    pthread_mutex_unlock(&sc.lock);
    if (sig_started) {
        pthread_kill(sig_thread, SIGTERM); /* blocked everywhere: sigwait takes it */
        pthread_join(sig_thread, NULL);
    }
    pthread_mutex_destroy(&sc.lock);
    /* Reverse order: clients first (they hold pipeline subscriptions), then
     * the pipelines (they use the detector and the policy). */
    vx_server_destroy(srv);
    vx_pipelines_destroy(pipes);
    /* After the pipelines (their last events are committed and queued):
     * give the broker a moment to acknowledge what is in flight. */
    vx_mqtt_destroy(mqtt, 2.0);
    vx_store_close(store);
    vx_source_policy_destroy(policy);
    vx_detector_destroy(det);
    if (rc == VX_EXIT_OK)
        VX_INFO("stopped");
out:
    vx_config_free(&cfg);
    return rc;
}
