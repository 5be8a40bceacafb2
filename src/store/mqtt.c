/*
 * The MQTT publisher: libmosquitto driven by a thread of our own.
 *
 * libmosquitto can reconnect by itself (loop_forever) and queue QoS 1
 * messages while disconnected, but its queue has no bound and no drop
 * accounting.  So the buffer is ours: a FIFO of messages, of which at most
 * MAX_INFLIGHT are handed to libmosquitto at a time.  A message leaves the
 * buffer only when the broker acknowledged it (on_publish, PUBACK for QoS
 * 1); on a disconnect the unacknowledged ones go back to the front, in
 * order, and are sent again after the reconnect (QoS 1 is at least once).
 * When the buffer is full the oldest waiting message is dropped and
 * counted: the newest events matter most to a live consumer, and the store
 * keeps every one of them anyway.
 *
 * The thread runs mosquitto_loop with a short timeout: it both serves the
 * socket and notices new messages within that time.  All libmosquitto
 * calls happen on this thread; vx_mqtt_publish only appends to the buffer.
 */
#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/vx_store.h"

#define MAX_INFLIGHT 32
/* How long one mosquitto_loop call may wait for the socket. */
#define LOOP_MS 20

typedef struct msg {
    struct msg *next;
    int mid; /* libmosquitto's message id while in flight */
    char *topic;
    size_t len;
    char payload[];
} msg;

struct vx_mqtt {
    vx_mqtt_opts o;
    char host[256], user[128], pass[128], client_id[64];
    int port;
    struct mosquitto *mosq;
    pthread_t thread;
    int thread_started;
    atomic_int stop;

    pthread_mutex_t lock; /* everything below */
    msg *head, *tail;     /* waiting, oldest first */
    int n_waiting;
    msg *inflight; /* handed to libmosquitto, not yet acknowledged */
    int n_inflight;
    int connected; /* CONNACK accepted */
    vx_mqtt_stats st;
};

static int lib_users;
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

void vx_mqtt_opts_default(vx_mqtt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->buffer = 10000;
    o->keepalive_s = 30;
    o->backoff_min_s = 0.5;
    o->backoff_max_s = 30;
}

void vx_mqtt_topic(const char *gate_id, const char *kind, char *out, size_t len)
{
    char g[256];
    snprintf(g, sizeof g, "%s", gate_id && *gate_id ? gate_id : "gate");
    for (char *p = g; *p; p++)
        if (*p == '+' || *p == '#' || *p == '/')
            *p = '_';
    snprintf(out, len, "verolux/%s/%s", g, kind);
}

vx_err vx_mqtt_parse_url(const char *url, char *host, size_t host_len, int *port, char *user, size_t user_len,
                         char *pass, size_t pass_len)
{
    const char *accepted = "expected mqtt://[user[:password]@]host[:port]";
    if (!url || strncmp(url, "mqtt://", 7))
        return vx_fail(VX_ERR_INVALID, "MQTT_URL '%.100s': %s", url ? url : "", accepted);
    const char *p = url + 7;
    const char *end = p + strcspn(p, "/?#");
    if (*end && strcmp(end, "/"))
        return vx_fail(VX_ERR_INVALID, "MQTT_URL: a path or query is not supported (%s)", accepted);
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (user)
        *user = 0;
    if (pass)
        *pass = 0;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *uend = colon ? colon : at;
        if (uend == p)
            return vx_fail(VX_ERR_INVALID, "MQTT_URL: empty user name (%s)", accepted);
        if (user && (size_t)(uend - p) >= user_len)
            return vx_fail(VX_ERR_INVALID, "MQTT_URL: user name too long");
        if (user)
            snprintf(user, user_len, "%.*s", (int)(uend - p), p);
        if (colon) {
            if (pass && (size_t)(at - colon - 1) >= pass_len)
                return vx_fail(VX_ERR_INVALID, "MQTT_URL: password too long");
            if (pass)
                snprintf(pass, pass_len, "%.*s", (int)(at - colon - 1), colon + 1);
        }
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p)
        return vx_fail(VX_ERR_INVALID, "MQTT_URL '%.100s': no host (%s)", url, accepted);
    if (host && (size_t)(hend - p) >= host_len)
        return vx_fail(VX_ERR_INVALID, "MQTT_URL: host name too long");
    if (host)
        snprintf(host, host_len, "%.*s", (int)(hend - p), p);
    int pn = 1883;
    if (colon) {
        char digits[8];
        size_t dl = (size_t)(end - colon - 1);
        if (dl == 0 || dl > 5)
            return vx_fail(VX_ERR_INVALID, "MQTT_URL '%.100s': bad port (%s)", url, accepted);
        memcpy(digits, colon + 1, dl);
        digits[dl] = 0;
        char *e;
        long v = strtol(digits, &e, 10);
        if (*e || v < 1 || v > 65535)
            return vx_fail(VX_ERR_INVALID, "MQTT_URL '%.100s': port must be 1..65535 (%s)", url, accepted);
        pn = (int)v;
    }
    if (port)
        *port = pn;
    return VX_OK;
}

static void msg_free(msg *m)
{
    if (m) {
        free(m->topic);
        free(m);
    }
}

/* Under lock: in-flight messages back to the front of the buffer, in the
 * order they were sent. */
static void requeue_inflight(vx_mqtt *m)
{
    /* inflight is newest first (pushed at the head); reversing it while
     * pushing onto the buffer's front restores the original order. */
    while (m->inflight) {
        msg *x = m->inflight;
        m->inflight = x->next;
        x->next = m->head;
        m->head = x;
        if (!m->tail)
            m->tail = x;
        m->n_waiting++;
    }
    m->n_inflight = 0;
}

static void on_connect(struct mosquitto *mosq, void *user, int rc)
{
    vx_mqtt *m = user;
    pthread_mutex_lock(&m->lock);
    if (rc == 0) {
        m->connected = 1;
        m->st.connected = 1;
        m->st.connects++;
    } else {
        snprintf(m->st.last_error, sizeof m->st.last_error, "broker refused the connection: %s",
                 mosquitto_connack_string(rc));
    }
    pthread_mutex_unlock(&m->lock);
    if (rc == 0)
        VX_INFO("mqtt: connected to %s:%d", m->host, m->port);
    else
        VX_WARN("mqtt: %s:%d refused the connection: %s", m->host, m->port, mosquitto_connack_string(rc));
}

static void on_disconnect(struct mosquitto *mosq, void *user, int rc)
{
    vx_mqtt *m = user;
    pthread_mutex_lock(&m->lock);
    int was = m->connected;
    m->connected = 0;
    m->st.connected = 0;
    if (was)
        m->st.disconnects++;
    requeue_inflight(m);
    pthread_mutex_unlock(&m->lock);
    if (was && !atomic_load(&m->stop))
        VX_WARN("mqtt: disconnected from %s:%d (%s); buffering", m->host, m->port, mosquitto_strerror(rc));
}

static void on_publish(struct mosquitto *mosq, void *user, int mid)
{
    vx_mqtt *m = user;
    pthread_mutex_lock(&m->lock);
    for (msg **pp = &m->inflight; *pp; pp = &(*pp)->next) {
        if ((*pp)->mid == mid) {
            msg *x = *pp;
            *pp = x->next;
            m->n_inflight--;
            m->st.published++;
            msg_free(x);
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* Hands waiting messages to libmosquitto while there is room in flight. */
static void send_waiting(vx_mqtt *m)
{
    for (;;) {
        pthread_mutex_lock(&m->lock);
        if (!m->connected || !m->head || m->n_inflight >= MAX_INFLIGHT) {
            pthread_mutex_unlock(&m->lock);
            return;
        }
        msg *x = m->head;
        m->head = x->next;
        if (!m->head)
            m->tail = NULL;
        m->n_waiting--;
        x->next = m->inflight;
        m->inflight = x;
        m->n_inflight++;
        pthread_mutex_unlock(&m->lock);
        /* on_publish for this mid can only run inside mosquitto_loop, on
         * this thread, so setting x->mid after the call is safe. */
        int mid = 0;
        int rc = mosquitto_publish(m->mosq, &mid, x->topic, (int)x->len, x->payload, 1, false);
        pthread_mutex_lock(&m->lock);
        x->mid = mid;
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_NOMEM) {
            snprintf(m->st.last_error, sizeof m->st.last_error, "publish: %s", mosquitto_strerror(rc));
            /* Not sent (connection lost under us): back to the front. */
            requeue_inflight(m);
            pthread_mutex_unlock(&m->lock);
            return;
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            /* This message can never be sent (too large for the broker,
             * bad topic): drop it rather than retry it forever. */
            snprintf(m->st.last_error, sizeof m->st.last_error, "publish to %.80s: %s", x->topic,
                     mosquitto_strerror(rc));
            m->inflight = x->next;
            m->n_inflight--;
            m->st.dropped++;
            msg_free(x);
        }
        pthread_mutex_unlock(&m->lock);
    }
}

/* A fresh client state for each connection attempt: libmosquitto would
 * otherwise resend its own copies of unacknowledged messages after a
 * reconnect, next to ours. */
static int client_setup(vx_mqtt *m)
{
    if (!m->mosq)
        m->mosq = mosquitto_new(m->client_id, true, m);
    else if (mosquitto_reinitialise(m->mosq, m->client_id, true, m) != MOSQ_ERR_SUCCESS)
        return -1;
    if (!m->mosq)
        return -1;
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_callback_set(m->mosq, on_publish);
    if (m->user[0] && mosquitto_username_pw_set(m->mosq, m->user, m->pass[0] ? m->pass : NULL))
        return -1;
    return 0;
}

static void *mqtt_main(void *arg)
{
    vx_mqtt *m = arg;
    double backoff = m->o.backoff_min_s, next_try = 0;
    int sock_open = 0;
    while (!atomic_load(&m->stop)) {
        double now = vx_now_s();
        if (!sock_open) {
            if (now < next_try) {
                usleep(LOOP_MS * 1000);
                continue;
            }
            if (client_setup(m) != 0) {
                next_try = now + backoff;
                continue;
            }
            int rc = mosquitto_connect(m->mosq, m->host, m->port, m->o.keepalive_s);
            if (rc != MOSQ_ERR_SUCCESS) {
                pthread_mutex_lock(&m->lock);
                snprintf(m->st.last_error, sizeof m->st.last_error, "connect to %s:%d: %s", m->host, m->port,
                         rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                pthread_mutex_unlock(&m->lock);
                VX_DEBUG("mqtt: %s; retrying in %.1f s", m->st.last_error, backoff);
                next_try = now + backoff;
                backoff = backoff * 2 < m->o.backoff_max_s ? backoff * 2 : m->o.backoff_max_s;
                continue;
            }
            sock_open = 1;
        }
        send_waiting(m);
        int rc = mosquitto_loop(m->mosq, LOOP_MS, 1);
        if (rc == MOSQ_ERR_SUCCESS) {
            pthread_mutex_lock(&m->lock);
            if (m->connected)
                backoff = m->o.backoff_min_s;
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        /* Connection lost or refused: disconnect callbacks have run (or
         * run now), messages in flight are back in the buffer. */
        pthread_mutex_lock(&m->lock);
        snprintf(m->st.last_error, sizeof m->st.last_error, "connection to %s:%d: %s", m->host, m->port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        int was = m->connected;
        m->connected = 0;
        m->st.connected = 0;
        if (was)
            m->st.disconnects++;
        requeue_inflight(m);
        pthread_mutex_unlock(&m->lock);
        mosquitto_disconnect(m->mosq);
        sock_open = 0;
        next_try = vx_now_s() + backoff;
        backoff = backoff * 2 < m->o.backoff_max_s ? backoff * 2 : m->o.backoff_max_s;
    }
    return NULL;
}

vx_err vx_mqtt_create(const vx_mqtt_opts *o, vx_mqtt **out)
{
    *out = NULL;
    if (o->buffer < 1 || o->keepalive_s < 5 || !(o->backoff_min_s > 0) || o->backoff_max_s < o->backoff_min_s)
        return vx_fail(VX_ERR_INVALID, "mqtt: options out of range");
    vx_mqtt *m = calloc(1, sizeof *m);
    if (!m)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    m->o = *o;
    vx_err err = vx_mqtt_parse_url(o->url, m->host, sizeof m->host, &m->port, m->user, sizeof m->user,
                                   m->pass, sizeof m->pass);
    if (err) {
        free(m);
        return err;
    }
    m->o.url = NULL;
    if (o->client_id)
        snprintf(m->client_id, sizeof m->client_id, "%s", o->client_id);
    else
        snprintf(m->client_id, sizeof m->client_id, "verolux-%ld", (long)getpid());
    m->o.client_id = m->client_id;
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->stop, 0);

    pthread_mutex_lock(&lib_lock);
    if (lib_users++ == 0)
        mosquitto_lib_init();
    pthread_mutex_unlock(&lib_lock);
    /* clean_session: the broker keeps nothing for us between connections;
     * our own buffer is what survives a disconnect. */
    if (client_setup(m) != 0) {
        vx_mqtt_destroy(m, 0);
        return vx_fail(VX_ERR_NOMEM, "mqtt: cannot create a client");
    }
    if (pthread_create(&m->thread, NULL, mqtt_main, m) != 0) {
        vx_mqtt_destroy(m, 0);
        return vx_fail(VX_ERR_NOMEM, "mqtt: cannot start the publisher thread");
    }
    m->thread_started = 1;
    *out = m;
    return VX_OK;
}

void vx_mqtt_destroy(vx_mqtt *m, double timeout_s)
{
    if (!m)
        return;
    if (m->thread_started) {
        /* Let what is buffered go out while the broker is there. */
        double deadline = vx_now_s() + timeout_s;
        for (;;) {
            pthread_mutex_lock(&m->lock);
            int busy = m->connected && (m->head || m->inflight);
            pthread_mutex_unlock(&m->lock);
            if (!busy || vx_now_s() >= deadline)
                break;
            usleep(LOOP_MS * 1000);
        }
        atomic_store(&m->stop, 1);
        pthread_join(m->thread, NULL);
    }
    if (m->mosq) {
        mosquitto_disconnect(m->mosq);
        mosquitto_destroy(m->mosq);
    }
    pthread_mutex_lock(&m->lock);
    requeue_inflight(m);
    int left = m->n_waiting;
    while (m->head) {
        msg *x = m->head;
        m->head = x->next;
        msg_free(x);
    }
    pthread_mutex_unlock(&m->lock);
    if (left)
        VX_WARN("mqtt: %d messages not delivered at shutdown (they are in the store)", left);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_lock(&lib_lock);
    if (--lib_users == 0)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&lib_lock);
    free(m);
}

vx_err vx_mqtt_publish(vx_mqtt *m, const char *topic, const char *payload, size_t len)
{
    if (len > 256 * 1024 * 1024)
        return vx_fail(VX_ERR_INVALID, "mqtt: payload too large");
    msg *x = malloc(sizeof *x + len);
    if (!x)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    x->next = NULL;
    x->mid = 0;
    x->len = len;
    memcpy(x->payload, payload, len);
    x->topic = strdup(topic);
    if (!x->topic) {
        free(x);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    msg *dropped = NULL;
    pthread_mutex_lock(&m->lock);
    if (m->n_waiting + m->n_inflight >= m->o.buffer && m->head) {
        dropped = m->head;
        m->head = dropped->next;
        if (!m->head)
            m->tail = NULL;
        m->n_waiting--;
        m->st.dropped++;
    }
    if (m->tail)
        m->tail->next = x;
    else
        m->head = x;
    m->tail = x;
    m->n_waiting++;
    m->st.queued++;
    uint64_t drops = m->st.dropped;
    pthread_mutex_unlock(&m->lock);
    if (dropped) {
        msg_free(dropped);
        if (drops == 1 || drops % 1000 == 0)
            VX_WARN("mqtt: buffer full (%d messages): dropped the oldest (%llu so far)", m->o.buffer,
                    (unsigned long long)drops);
    }
    return VX_OK;
}

void vx_mqtt_stats_get(vx_mqtt *m, vx_mqtt_stats *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->st;
    out->pending = m->n_waiting + m->n_inflight;
    pthread_mutex_unlock(&m->lock);
}
