/*
 * store/mqtt: the publisher against a real mosquitto broker started here on
 * a free port, and a subscriber (libmosquitto) that checks what arrives.
 *
 * The broker runs with persistence and the subscriber with a persistent
 * session (clean_session off, fixed id), so that when the broker is
 * stopped and started again it still holds the subscription: messages the
 * publisher buffered while the broker was away, and flushes on reconnect,
 * must all reach the subscriber, in order.  A second publisher with a tiny
 * buffer shows the bound: the oldest messages are dropped and counted.
 *
 * Waiting is done on conditions with deadlines (a message count, a
 * connection state), never on fixed sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/vx_store.h"

#define MOSQUITTO_BIN "/usr/sbin/mosquitto"
#define DEADLINE_S 15.0

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

typedef struct {
    char dir[128];
    char conf[192];
    int port;
    pid_t pid;
} broker;

static void broker_start(broker *b)
{
    if (access(MOSQUITTO_BIN, X_OK) != 0)
        fail_msg("%s not found: install the Debian package 'mosquitto' (scripts/setup does)", MOSQUITTO_BIN);
    FILE *f = fopen(b->conf, "w");
    assert_non_null(f);
    /* mosquitto started as root switches to the user 'mosquitto', who
     * could not write the persistence file here: stay who we are. */
    struct passwd *pw = getpwuid(getuid());
    fprintf(f,
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n"
            "log_dest file %s/broker.log\nuser %s\n",
            b->port, b->dir, b->dir, pw ? pw->pw_name : "root");
    fclose(f);
    b->pid = fork();
    assert_true(b->pid >= 0);
    if (b->pid == 0) {
        execl(MOSQUITTO_BIN, "mosquitto", "-c", b->conf, (char *)NULL);
        _exit(127);
    }
    double end = vx_now_s() + DEADLINE_S;
    while (!port_open(b->port)) {
        int st;
        if (waitpid(b->pid, &st, WNOHANG) == b->pid)
            fail_msg("mosquitto exited at start (see %s/broker.log)", b->dir);
        if (vx_now_s() > end)
            fail_msg("mosquitto did not listen on port %d", b->port);
        usleep(10000);
    }
}

static void broker_stop(broker *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGTERM); /* mosquitto saves its persistence file on SIGTERM */
    int st;
    waitpid(b->pid, &st, 0);
    b->pid = 0;
}

/* ---- the subscriber ------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t lock;
    char *msgs[256];
    int n;
} inbox;

static void sub_on_connect(struct mosquitto *mosq, void *user, int rc)
{
    if (rc == 0)
        mosquitto_subscribe(mosq, NULL, "verolux/#", 1);
}

static void sub_on_message(struct mosquitto *mosq, void *user, const struct mosquitto_message *m)
{
    inbox *in = user;
    pthread_mutex_lock(&in->lock);
    if (in->n < 256) {
        char *s = malloc(strlen(m->topic) + (size_t)m->payloadlen + 2);
        sprintf(s, "%s %.*s", m->topic, m->payloadlen, (const char *)m->payload);
        in->msgs[in->n++] = s;
    }
    pthread_mutex_unlock(&in->lock);
}

static int inbox_count(inbox *in)
{
    pthread_mutex_lock(&in->lock);
    int n = in->n;
    pthread_mutex_unlock(&in->lock);
    return n;
}

static int inbox_has(inbox *in, const char *text)
{
    pthread_mutex_lock(&in->lock);
    int found = -1;
    for (int i = 0; i < in->n && found < 0; i++)
        if (!strcmp(in->msgs[i], text))
            found = i;
    pthread_mutex_unlock(&in->lock);
    return found;
}

static void wait_for(inbox *in, const char *text)
{
    double end = vx_now_s() + DEADLINE_S;
    while (inbox_has(in, text) < 0) {
        if (vx_now_s() > end)
            fail_msg("'%s' never arrived (%d messages did)", text, inbox_count(in));
        usleep(10000);
    }
}

static void wait_connected(vx_mqtt *m, int want)
{
    double end = vx_now_s() + DEADLINE_S;
    vx_mqtt_stats st;
    for (;;) {
        vx_mqtt_stats_get(m, &st);
        if (st.connected == want)
            return;
        if (vx_now_s() > end)
            fail_msg("publisher connected=%d, expected %d (%s)", st.connected, want, st.last_error);
        usleep(10000);
    }
}

static void publish(vx_mqtt *m, const char *gate, const char *kind, const char *text)
{
    char topic[128];
    vx_mqtt_topic(gate, kind, topic, sizeof topic);
    assert_int_equal(vx_mqtt_publish(m, topic, text, strlen(text)), VX_OK);
}

/* The broker of the running test, stopped by the teardown even when an
 * assertion failed half-way (it would otherwise outlive the test). */
static broker *running;

static int stop_running(void **state)
{
    if (running && running->pid > 0) {
        kill(running->pid, SIGKILL);
        waitpid(running->pid, NULL, 0);
        running->pid = 0;
    }
    return 0;
}

static void test_broker_restart(void **state)
{
    static broker b;
    memset(&b, 0, sizeof b);
    running = &b;
    snprintf(b.dir, sizeof b.dir, "/tmp/vx_mqtt_XXXXXX");
    assert_non_null(mkdtemp(b.dir));
    snprintf(b.conf, sizeof b.conf, "%s/mosquitto.conf", b.dir);
    b.port = free_port();
    broker_start(&b);

    inbox in = {.n = 0};
    pthread_mutex_init(&in.lock, NULL);
    mosquitto_lib_init();
    struct mosquitto *sub = mosquitto_new("vx-test-subscriber", false, &in);
    assert_non_null(sub);
    mosquitto_connect_callback_set(sub, sub_on_connect);
    mosquitto_message_callback_set(sub, sub_on_message);
    mosquitto_reconnect_delay_set(sub, 1, 1, false);
    assert_int_equal(mosquitto_connect(sub, "127.0.0.1", b.port, 30), MOSQ_ERR_SUCCESS);
    assert_int_equal(mosquitto_loop_start(sub), MOSQ_ERR_SUCCESS);

    char url[64];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%d", b.port);
    vx_mqtt_opts o;
    vx_mqtt_opts_default(&o);
    o.url = url;
    o.client_id = "vx-test-publisher";
    o.backoff_min_s = 0.05;
    o.backoff_max_s = 0.4;
    vx_mqtt *pub = NULL;
    assert_int_equal(vx_mqtt_create(&o, &pub), VX_OK);
    wait_connected(pub, 1);
    /* The subscription is in place once a first probe arrives. */
    double end = vx_now_s() + DEADLINE_S;
    while (inbox_has(&in, "verolux/g1/events probe") < 0) {
        publish(pub, "g1", "events", "probe");
        usleep(50000);
        if (vx_now_s() > end)
            fail_msg("the subscriber never received a probe");
    }

    /* Live: events and completions on their topics. */
    char text[64], want[128];
    for (int i = 0; i < 10; i++) {
        snprintf(text, sizeof text, "e-%d", i);
        publish(pub, "g1", "events", text);
    }
    publish(pub, "g1", "completions", "c-0");
    wait_for(&in, "verolux/g1/completions c-0");
    for (int i = 0; i < 10; i++) {
        snprintf(want, sizeof want, "verolux/g1/events e-%d", i);
        wait_for(&in, want);
    }

    /* Everything so far acknowledged (PUBACKs can trail the deliveries). */
    vx_mqtt_stats st;
    end = vx_now_s() + DEADLINE_S;
    do {
        vx_mqtt_stats_get(pub, &st);
        if (vx_now_s() > end)
            fail_msg("publisher still has %d pending", st.pending);
        usleep(10000);
    } while (st.pending);

    /* Broker away: messages are buffered, counted as pending. */
    broker_stop(&b);
    wait_connected(pub, 0);
    vx_mqtt_stats st0;
    vx_mqtt_stats_get(pub, &st0);
    for (int i = 0; i < 15; i++) {
        snprintf(text, sizeof text, "b-%d", i);
        publish(pub, "g1", "events", text);
    }
    vx_mqtt_stats_get(pub, &st);
    assert_int_equal(st.pending, 15);
    assert_int_equal(st.published, st0.published);
    assert_int_equal(st.dropped, 0);
    assert_true(st.disconnects >= 1);

    /* A publisher with room for 5: of 8 messages the 3 oldest are dropped. */
    vx_mqtt_opts so = o;
    so.client_id = "vx-test-small";
    so.buffer = 5;
    vx_mqtt *small = NULL;
    assert_int_equal(vx_mqtt_create(&so, &small), VX_OK);
    for (int i = 0; i < 8; i++) {
        snprintf(text, sizeof text, "s-%d", i);
        publish(small, "g/2+#", "events", text); /* topic characters are replaced */
    }
    vx_mqtt_stats_get(small, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.pending, 5);
    assert_int_equal(st.queued, 8);

    /* Broker back: everything buffered arrives, in order. */
    broker_start(&b);
    wait_connected(pub, 1);
    for (int i = 0; i < 15; i++) {
        snprintf(want, sizeof want, "verolux/g1/events b-%d", i);
        wait_for(&in, want);
    }
    for (int i = 3; i < 8; i++) {
        snprintf(want, sizeof want, "verolux/g_2__/events s-%d", i);
        wait_for(&in, want);
    }
    for (int i = 0; i < 14; i++) {
        char a[64], c[64];
        snprintf(a, sizeof a, "verolux/g1/events b-%d", i);
        snprintf(c, sizeof c, "verolux/g1/events b-%d", i + 1);
        assert_true(inbox_has(&in, a) < inbox_has(&in, c));
    }
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "verolux/g_2__/events s-%d", i);
        assert_int_equal(inbox_has(&in, want), -1);
    }
    /* Acknowledged by the broker: nothing pending. */
    end = vx_now_s() + DEADLINE_S;
    do {
        vx_mqtt_stats_get(pub, &st);
        if (vx_now_s() > end)
            fail_msg("publisher still has %d pending", st.pending);
        usleep(10000);
    } while (st.pending);
    assert_true(st.published >= st0.published + 15);
    assert_true(st.connects >= 2);

    vx_mqtt_destroy(small, 2);
    vx_mqtt_destroy(pub, 2);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    mosquitto_destroy(sub);
    mosquitto_lib_cleanup();
    broker_stop(&b);
    for (int i = 0; i < in.n; i++)
        free(in.msgs[i]);
    pthread_mutex_destroy(&in.lock);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b.dir);
    assert_int_equal(system(cmd), 0);
}

/* No broker at all: publish never blocks, the buffer fills and drops. */
static void test_no_broker(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%d", free_port());
    vx_mqtt_opts o;
    vx_mqtt_opts_default(&o);
    o.url = url;
    o.buffer = 100;
    vx_mqtt *m = NULL;
    assert_int_equal(vx_mqtt_create(&o, &m), VX_OK);
    double t0 = vx_now_s();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(vx_mqtt_publish(m, "verolux/x/events", "{}", 2), VX_OK);
    assert_true(vx_now_s() - t0 < 1.0);
    vx_mqtt_stats st;
    vx_mqtt_stats_get(m, &st);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.pending, 100);
    assert_int_equal(st.dropped, 900);
    vx_mqtt_destroy(m, 0.1);
}

static void test_urls(void **state)
{
    char host[64], user[32], pass[32];
    int port = 0;
    assert_int_equal(vx_mqtt_parse_url("mqtt://broker.local", host, sizeof host, &port, user, sizeof user,
                                       pass, sizeof pass),
                     VX_OK);
    assert_string_equal(host, "broker.local");
    assert_int_equal(port, 1883);
    assert_string_equal(user, "");
    assert_int_equal(vx_mqtt_parse_url("mqtt://bob:s3cr:et@10.0.0.2:8883/", host, sizeof host, &port, user,
                                       sizeof user, pass, sizeof pass),
                     VX_OK);
    assert_string_equal(host, "10.0.0.2");
    assert_int_equal(port, 8883);
    assert_string_equal(user, "bob");
    assert_string_equal(pass, "s3cr:et");
    const char *bad[] = {"",           "tcp://h:1883",   "mqtt://",       "mqtt://:1883",
                         "mqtt://h:0", "mqtt://h:65536", "mqtt://h:12ab", "mqtt://h:",
                         "mqtt://@h",  "mqtt://h/topic", "mqtt://h?x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (vx_mqtt_parse_url(bad[i], host, sizeof host, &port, user, sizeof user, pass, sizeof pass) !=
            VX_ERR_INVALID)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(vx_last_error(), "MQTT_URL"));
    }
    vx_mqtt_opts o;
    vx_mqtt_opts_default(&o);
    o.url = "http://x";
    vx_mqtt *m = NULL;
    assert_int_equal(vx_mqtt_create(&o, &m), VX_ERR_INVALID);
    assert_null(m);
    char topic[64];
    vx_mqtt_topic("a/b+c#", "completions", topic, sizeof topic);
    assert_string_equal(topic, "verolux/a_b_c_/completions");
    vx_mqtt_topic("", "events", topic, sizeof topic);
    assert_string_equal(topic, "verolux/gate/events");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_no_broker),
        cmocka_unit_test_teardown(test_broker_restart, stop_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
