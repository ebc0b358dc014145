/* queue/: both backends keep the port's promises: a push wakes a waiting claim at once,
 * completion reaches the listener, workers are listed. The Redis backend (run when
 * MECAPY_TEST_REDIS_URL names a throwaway Redis, which the cases FLUSHALL) also: a
 * dead worker's job is reaped and claimed by another, two claimers never get the same
 * job, a push made while Redis was down is recovered from the store, completion reaches
 * a listener on another connection, and a function's jobs land on its shard while an
 * idle worker of another shard steals them. */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/util.h"
#include "queue/queue.h"
#include "store/store.h"
#include "check.h"

static char dir[] = "/tmp/mecapy-test-queue-XXXXXX";
static const char *redis_url; /* NULL: the Redis cases are not run */

/* Each case has its own database, named after it. */
static struct mp_store *open_named(const char *name) {
        char url[256];
        struct mp_store *s = NULL;
        snprintf(url, sizeof(url), "sqlite:%s/%s.db", dir, name);
        if (mp_store_open(url, &s, NULL) < 0)
                return NULL;
        return s;
}

#define OWNER "00000000-0000-4000-8000-000000000001"
#define FUNCTION "00000000-0000-4000-8000-000000000000"

/* The task's owner and a function, once per database (the store checks references). */
static void ensure_function(struct mp_store *s, const char *fid) {
        json_t *user = json_pack("{s:s,s:s,s:s,s:s,s:n,s:I}", "id", OWNER, "email", "q@example.com",
                                 "password_hash", "x", "role", "member", "company_id", "created_at",
                                 (json_int_t) mp_now_ms());
        json_t *fn = json_pack("{s:s,s:s,s:n,s:s,s:s,s:s,s:I}", "id", fid, "owner_id", OWNER,
                               "company_id", "name", fid, "description", "", "visibility", "private",
                               "created_at", (json_int_t) mp_now_ms());
        json_t *ver = json_pack("{s:s,s:s,s:[],s:{},s:{},s:s,s:I}", "code", "def main(): pass",
                                "handler", "main", "requirements", "input_schema", "limits",
                                "isolation", "warm", "created_at", (json_int_t) mp_now_ms());
        json_t *existing = NULL;
        if (MP_STORE(s)->user_get(s, "id", OWNER, &existing, NULL) == -ENOENT)
                CHECK_INT(MP_STORE(s)->user_create(s, user, NULL), ==, 0);
        json_decref(existing);
        existing = NULL;
        if (MP_STORE(s)->function_get(s, fid, &existing, NULL) == -ENOENT)
                CHECK_INT(MP_STORE(s)->function_create(s, fn, ver, NULL), ==, 0);
        json_decref(existing);
        json_decref(user);
        json_decref(fn);
        json_decref(ver);
}

static void add_task_of(struct mp_store *s, const char *fid, char *id) {
        json_t *fn = NULL, *task;
        ensure_function(s, fid);
        mp_id_new(id);
        task = json_pack("{s:s,s:s,s:i,s:s,s:n,s:{},s:n,s:I}", "id", id, "function_id",
                         fid, "version", 1, "owner_id", OWNER, "company_id", "inputs",
                         "idempotency_key", "queued_at", (json_int_t) mp_now_ms());
        CHECK_INT(MP_STORE(s)->task_create(s, task, &fn, NULL), ==, 0);
        json_decref(task);
}

static void add_task(struct mp_store *s, char *id) {
        add_task_of(s, FUNCTION, id);
}

/* ---- Redis helpers ---- */

static redisContext *redis_direct(void) {
        char host[128] = "127.0.0.1";
        long port = 6379;
        const char *p = redis_url + strlen("redis://"), *colon = strchr(p, ':');
        if (colon) {
                char num[16];
                snprintf(host, sizeof(host), "%.*s", (int) MP_MIN((size_t) (colon - p), sizeof(host) - 1), p);
                snprintf(num, sizeof(num), "%.*s", (int) strcspn(colon + 1, "/?"), colon + 1);
                mp_parse_long(num, 1, 65535, &port);
        }
        redisContext *c = redisConnect(host, (int) port);
        if (c && c->err) {
                redisFree(c);
                return NULL;
        }
        return c;
}

/* A clean Redis for each case. */
static void redis_flush(void) {
        redisContext *c = redis_direct();
        REQUIRE(c != NULL);
        freeReplyObject(redisCommand(c, "FLUSHALL"));
        redisFree(c);
}

/* The test Redis with options appended ("shards=2&worker_ttl=1"). */
static const char *rurl(const char *opts) {
        static char buf[512];
        snprintf(buf, sizeof(buf), "%s%s%s", redis_url, opts && *opts ? (strchr(redis_url, '?') ? "&" : "?") : "",
                 opts ? opts : "");
        return buf;
}

static int open_q(const char *url, struct mp_store *s, struct mp_queue **q) {
        struct mp_error err = { 0 };
        int r = mp_queue_open(url, s, q, &err);
        if (r < 0)
                fprintf(stderr, "  opening %s: %s\n", url, err.message);
        mp_error_clear(&err);
        return r;
}

static void join(struct mp_queue *q, const char *id, int shard) {
        struct mp_queue_worker w = { .pid = (int) getpid(), .capacity = 1, .shard = shard };
        snprintf(w.id, sizeof(w.id), "%s", id);
        snprintf(w.host, sizeof(w.host), "test");
        CHECK_INT(MP_QUEUE(q)->register_worker(q, &w, NULL), ==, 0);
}

/* ---- cases for every backend (url: "local:" or the Redis URL) ---- */

struct claimer {
        struct mp_queue *q;
        const char *worker;
        int64_t wait_ms;
        char got[MP_ID_LEN + 1];
        int rc;
        int64_t waited_ms;
};

static void *claim_main(void *p) {
        struct claimer *c = p;
        int64_t t0 = mp_mono_ms();
        c->rc = MP_QUEUE(c->q)->claim(c->q, c->worker ? c->worker : "w1/0", 60000, c->wait_ms ? c->wait_ms : 5000,
                                      c->got, NULL);
        c->waited_ms = mp_mono_ms() - t0;
        return NULL;
}

static void push_wakes_a_waiting_claim_at_once(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *q = NULL;
        struct claimer c = { 0 };
        pthread_t t;
        char id[MP_ID_LEN + 1];

        REQUIRE(s && open_q(url, s, &q) == 0);
        join(q, "w1", -1);
        c.q = q;
        pthread_create(&t, NULL, claim_main, &c);
        usleep(100 * 1000);
        add_task(s, id);
        CHECK_INT(MP_QUEUE(q)->push(q, id, FUNCTION, NULL), ==, 0);
        pthread_join(t, NULL);
        CHECK_INT(c.rc, ==, 1);
        CHECK_STR(c.got, id);
        /* Woken by the push, not by a re-check nor the 5 s limit. */
        CHECK_INT(c.waited_ms, <, 900);
        CHECK_INT(MP_QUEUE(q)->ack(q, id, "w1/0", NULL), ==, 0);
        mp_queue_close(q);
        mp_store_close(s);
}

static void claim_times_out_empty_and_shutdown_wakes(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *q = NULL;
        struct claimer c = { 0 };
        pthread_t t;
        char got[MP_ID_LEN + 1];

        REQUIRE(s && open_q(url, s, &q) == 0);
        join(q, "w1", -1);
        CHECK_INT(MP_QUEUE(q)->claim(q, "w1/0", 1000, 50, got, NULL), ==, 0);
        c.q = q;
        pthread_create(&t, NULL, claim_main, &c);
        usleep(50 * 1000);
        MP_QUEUE(q)->shutdown(q);
        pthread_join(t, NULL);
        CHECK_INT(c.rc, ==, 0);
        CHECK_INT(c.waited_ms, <, 1500);
        mp_queue_close(q);
        mp_store_close(s);
}

struct heard {
        pthread_mutex_t lock;
        char last[MP_ID_LEN + 1];
        int n;
        int64_t at;
};

static void on_done(void *userdata, const char *task_id) {
        struct heard *h = userdata;
        if (!task_id)
                return; /* "look again": not a notice */
        pthread_mutex_lock(&h->lock);
        snprintf(h->last, sizeof(h->last), "%s", task_id);
        h->n++;
        h->at = mp_mono_ms();
        pthread_mutex_unlock(&h->lock);
}

/* The listener is on one queue handle (the API process), the notice comes from another
 * (a worker) for redis; the same handle for local, which has one process. */
static void completion_reaches_the_listener(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *api = NULL, *worker = NULL;
        struct heard h = { .lock = PTHREAD_MUTEX_INITIALIZER };
        char id[MP_ID_LEN + 1];
        int64_t t0;

        REQUIRE(s && open_q(url, s, &api) == 0);
        worker = api;
        if (strcmp(url, "local:"))
                REQUIRE(open_q(url, s, &worker) == 0);
        CHECK_INT(MP_QUEUE(api)->listen_done(api, on_done, &h, NULL), ==, 0);
        usleep(200 * 1000); /* the subscriber connects */
        add_task(s, id);
        t0 = mp_mono_ms();
        CHECK_INT(MP_QUEUE(worker)->notify_done(worker, id, NULL), ==, 0);
        for (int i = 0; i < 200; i++) {
                pthread_mutex_lock(&h.lock);
                int n = h.n;
                pthread_mutex_unlock(&h.lock);
                if (n)
                        break;
                usleep(10 * 1000);
        }
        pthread_mutex_lock(&h.lock);
        CHECK_INT(h.n, ==, 1);
        CHECK_STR(h.last, id);
        CHECK_INT(h.at - t0, <, 500);
        pthread_mutex_unlock(&h.lock);
        CHECK_INT(MP_QUEUE(api)->listen_done(api, NULL, NULL, NULL), ==, 0);
        if (worker != api)
                mp_queue_close(worker);
        mp_queue_close(api);
        mp_store_close(s);
}

static int heard_n(struct heard *h) {
        pthread_mutex_lock(&h->lock);
        int n = h->n;
        pthread_mutex_unlock(&h->lock);
        return n;
}

/* Cancel notices reach the worker's listener, apart from completion notices (one
 * subscriber carries both for redis), and each listener stops on its own. */
static void cancel_reaches_the_listener(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *worker = NULL, *api = NULL;
        struct heard done = { .lock = PTHREAD_MUTEX_INITIALIZER }, cancel = { .lock = PTHREAD_MUTEX_INITIALIZER };
        char id[MP_ID_LEN + 1];

        REQUIRE(s && open_q(url, s, &worker) == 0);
        api = worker;
        if (strcmp(url, "local:"))
                REQUIRE(open_q(url, s, &api) == 0);
        CHECK_INT(MP_QUEUE(worker)->listen_done(worker, on_done, &done, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(worker)->listen_cancel(worker, on_done, &cancel, NULL), ==, 0);
        usleep(200 * 1000); /* the subscriber connects */
        add_task(s, id);
        int64_t t0 = mp_mono_ms();
        CHECK_INT(MP_QUEUE(api)->notify_cancel(api, id, NULL), ==, 0);
        for (int i = 0; i < 200 && !heard_n(&cancel); i++)
                usleep(10 * 1000);
        CHECK_INT(heard_n(&cancel), ==, 1);
        CHECK_STR(cancel.last, id);
        CHECK_INT(cancel.at - t0, <, 500);
        CHECK_INT(heard_n(&done), ==, 0);
        /* Completion listening stops; cancels still come. */
        CHECK_INT(MP_QUEUE(worker)->listen_done(worker, NULL, NULL, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(api)->notify_cancel(api, id, NULL), ==, 0);
        for (int i = 0; i < 200 && heard_n(&cancel) < 2; i++)
                usleep(10 * 1000);
        CHECK_INT(heard_n(&cancel), ==, 2);
        CHECK_INT(MP_QUEUE(worker)->listen_cancel(worker, NULL, NULL, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(api)->notify_cancel(api, id, NULL), ==, 0);
        usleep(100 * 1000);
        CHECK_INT(heard_n(&cancel), ==, 2);
        if (worker != api)
                mp_queue_close(api);
        mp_queue_close(worker);
        mp_store_close(s);
}

static json_t *find_worker(json_t *list, const char *id) {
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(list, "items"), i, w)
                if (!strcmp(json_string_value(json_object_get(w, "id")) ?: "", id))
                        return w;
        return NULL;
}

static void registered_workers_are_listed(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *q = NULL;
        json_t *list = NULL, *w;

        REQUIRE(s && open_q(url, s, &q) == 0);
        join(q, "lister-1", -1);
        CHECK_INT(MP_QUEUE(q)->heartbeat(q, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(q)->workers(q, &list, NULL), ==, 0);
        w = find_worker(list, "lister-1");
        CHECK(w != NULL);
        if (w) {
                CHECK_STR(json_string_value(json_object_get(w, "host")), "test");
                CHECK_INT(json_integer_value(json_object_get(w, "pid")), ==, getpid());
                CHECK_INT(json_integer_value(json_object_get(w, "capacity")), ==, 1);
                CHECK_INT(mp_now_ms() - json_integer_value(json_object_get(w, "last_heartbeat")), <, 5000);
        }
        json_decref(list);
        list = NULL;
        /* Leaving removes it. */
        CHECK_INT(MP_QUEUE(q)->unregister_worker(q, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(q)->workers(q, &list, NULL), ==, 0);
        CHECK(find_worker(list, "lister-1") == NULL);
        json_decref(list);
        mp_queue_close(q);
        mp_store_close(s);
}

/* A job whose end could not be recorded is released: nobody gets it during the delay,
 * then another worker does; a release by a worker that does not hold it does nothing. */
static void released_job_comes_back_after_its_delay(const char *url, const char *name) {
        struct mp_store *s = open_named(name);
        struct mp_queue *a = NULL, *b = NULL;
        char id[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        int64_t t0;

        REQUIRE(s && open_q(url, s, &a) == 0);
        b = a;
        if (strcmp(url, "local:"))
                REQUIRE(open_q(url, s, &b) == 0);
        join(a, "holder", -1);
        if (b != a)
                join(b, "other", -1);
        add_task(s, id);
        CHECK_INT(MP_QUEUE(a)->push(a, id, FUNCTION, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(a)->claim(a, "holder/0", 600000, 1000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        CHECK_INT(MP_QUEUE(b)->release(b, id, "other/0", 0, NULL), ==, 0);
        t0 = mp_mono_ms();
        CHECK_INT(MP_QUEUE(a)->release(a, id, "holder/0", 1200, NULL), ==, 1);
        CHECK_INT(MP_QUEUE(b)->claim(b, "other/0", 600000, 600, got, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(b)->claim(b, "other/0", 600000, 5000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        CHECK_INT(mp_mono_ms() - t0, >=, 1100);
        CHECK_INT(mp_mono_ms() - t0, <, 3500);
        /* Released again at once: it comes back at once. */
        CHECK_INT(MP_QUEUE(b)->release(b, id, "other/0", 0, NULL), ==, 1);
        CHECK_INT(MP_QUEUE(a)->claim(a, "holder/0", 600000, 2000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        CHECK_INT(MP_QUEUE(a)->ack(a, id, "holder/0", NULL), ==, 0);
        if (b != a)
                mp_queue_close(b);
        mp_queue_close(a);
        mp_store_close(s);
}

TEST(local_released_job_comes_back_after_its_delay) { released_job_comes_back_after_its_delay("local:", __func__); }

TEST(local_push_wakes_a_waiting_claim_at_once) { push_wakes_a_waiting_claim_at_once("local:", __func__); }
TEST(local_claim_times_out_empty_and_shutdown_wakes) { claim_times_out_empty_and_shutdown_wakes("local:", __func__); }
TEST(local_completion_reaches_the_listener) { completion_reaches_the_listener("local:", __func__); }
TEST(local_cancel_reaches_the_listener) { cancel_reaches_the_listener("local:", __func__); }
TEST(local_registered_workers_are_listed) { registered_workers_are_listed("local:", __func__); }

TEST(local_claimed_jobs_come_back_after_recover) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *q = NULL;
        char id[MP_ID_LEN + 1], got[MP_ID_LEN + 1];

        REQUIRE(s && mp_queue_open("local:", s, &q, NULL) == 0);
        add_task(s, id);
        CHECK_INT(MP_QUEUE(q)->claim(q, "dead-worker", 600000, 0, got, NULL), ==, 1);
        CHECK_STR(got, id);
        CHECK_INT(MP_QUEUE(q)->claim(q, "w2", 600000, 0, got, NULL), ==, 0);
        /* The process holding the claim died: a restart releases it. */
        mp_queue_close(q);
        mp_store_close(s);
        s = open_named(__func__);
        REQUIRE(s && mp_queue_open("local:", s, &q, NULL) == 0);
        CHECK_INT(MP_QUEUE(q)->recover(q, NULL), >=, 1);
        CHECK_INT(MP_QUEUE(q)->claim(q, "w2", 600000, 0, got, NULL), ==, 1);
        CHECK_STR(got, id);
        mp_queue_close(q);
        mp_store_close(s);
}

TEST(unknown_backend_is_refused) {
        struct mp_queue *q = NULL;
        struct mp_error err = { 0 };
        CHECK_INT(mp_queue_open("rabbit://x", NULL, &q, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "rabbit://x") != NULL);
        mp_error_clear(&err);
        CHECK_INT(mp_queue_open("redis://127.0.0.1:6379?shards=0", NULL, &q, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "shards") != NULL);
        mp_error_clear(&err);
        CHECK_INT(mp_queue_open("redis://127.0.0.1:99999", NULL, &q, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "port") != NULL);
        mp_error_clear(&err);
        CHECK_INT(mp_queue_open("redis://127.0.0.1:6379?color=red", NULL, &q, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "color") != NULL);
        mp_error_clear(&err);
}

TEST(shard_hash_is_stable) {
        /* FNV-1a 32: these values are shared by every process and every version. */
        CHECK_INT(mp_queue_shard_hash(""), ==, 2166136261u);
        CHECK_INT(mp_queue_shard_hash("a"), ==, 0xe40c292cu);
        CHECK_INT(mp_queue_shard_hash("foobar"), ==, 0xbf9cf968u);
}

/* ---- Redis ---- */

TEST(redis_released_job_comes_back_after_its_delay) {
        redis_flush();
        released_job_comes_back_after_its_delay(rurl(NULL), __func__);
}

TEST(redis_push_wakes_a_waiting_claim_at_once) {
        redis_flush();
        push_wakes_a_waiting_claim_at_once(rurl(NULL), __func__);
}
TEST(redis_claim_times_out_empty_and_shutdown_wakes) {
        redis_flush();
        claim_times_out_empty_and_shutdown_wakes(rurl(NULL), __func__);
}
TEST(redis_completion_reaches_a_listener_on_another_connection) {
        redis_flush();
        completion_reaches_the_listener(rurl(NULL), __func__);
}
TEST(redis_cancel_reaches_a_listener_on_another_connection) {
        redis_flush();
        cancel_reaches_the_listener(rurl(NULL), __func__);
}
TEST(redis_registered_workers_are_listed) {
        redis_flush();
        registered_workers_are_listed(rurl(NULL), __func__);
}

TEST(redis_job_of_a_dead_worker_is_reaped_and_claimed_by_another) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *a = NULL, *b = NULL;
        char id[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        int64_t t0;

        redis_flush();
        REQUIRE(s && open_q(rurl("worker_ttl=1"), s, &a) == 0 && open_q(rurl("worker_ttl=1"), s, &b) == 0);
        join(a, "doomed", -1);
        join(b, "survivor", -1);
        add_task(s, id);
        CHECK_INT(MP_QUEUE(a)->push(a, id, FUNCTION, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(a)->claim(a, "doomed/0", 60000, 1000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        /* While its worker beats, nobody else gets the job. */
        CHECK_INT(MP_QUEUE(b)->claim(b, "survivor/0", 60000, 1500, got, NULL), ==, 0);
        /* The worker dies (its handle closes without leaving: no more heartbeats). */
        mp_queue_close(a);
        t0 = mp_mono_ms();
        CHECK_INT(MP_QUEUE(b)->claim(b, "survivor/0", 60000, 5000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        /* Within the heartbeat's ttl (1 s) and a reaper round or two. */
        CHECK_INT(mp_mono_ms() - t0, <, 3000);
        CHECK_INT(MP_QUEUE(b)->ack(b, id, "survivor/0", NULL), ==, 0);
        mp_queue_close(b);
        mp_store_close(s);
}

struct race {
        struct mp_queue *q;
        struct mp_store *s;
        char worker[32];
        char got[64][MP_ID_LEN + 1];
        int n;
};

static void *race_main(void *p) {
        struct race *r = p;
        char id[MP_ID_LEN + 1];
        while (r->n < 64 && MP_QUEUE(r->q)->claim(r->q, r->worker, 60000, 300, id, NULL) == 1) {
                json_t *fields = json_pack("{s:s}", "status", "completed");
                memcpy(r->got[r->n++], id, sizeof(id));
                /* What a worker does: finish in the store, tell, then acknowledge. */
                MP_STORE(r->s)->task_finish(r->s, id, fields, NULL);
                json_decref(fields);
                MP_QUEUE(r->q)->notify_done(r->q, id, NULL);
                MP_QUEUE(r->q)->ack(r->q, id, r->worker, NULL);
        }
        return NULL;
}

TEST(redis_two_claimers_never_get_the_same_job) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *a = NULL, *b = NULL;
        struct race ra = { 0 }, rb = { 0 };
        pthread_t ta, tb;
        char ids[40][MP_ID_LEN + 1];

        redis_flush();
        REQUIRE(s && open_q(rurl(NULL), s, &a) == 0 && open_q(rurl(NULL), s, &b) == 0);
        join(a, "ra", -1);
        join(b, "rb", -1);
        for (int i = 0; i < 40; i++) {
                add_task(s, ids[i]);
                CHECK_INT(MP_QUEUE(a)->push(a, ids[i], FUNCTION, NULL), ==, 0);
                /* A duplicate of every fourth job (what the store sweep may push). */
                if (i % 4 == 0)
                        CHECK_INT(MP_QUEUE(b)->push(b, ids[i], FUNCTION, NULL), ==, 0);
        }
        ra.q = a;
        rb.q = b;
        ra.s = rb.s = s;
        snprintf(ra.worker, sizeof(ra.worker), "ra/0");
        snprintf(rb.worker, sizeof(rb.worker), "rb/0");
        pthread_create(&ta, NULL, race_main, &ra);
        pthread_create(&tb, NULL, race_main, &rb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        /* Every job once: a duplicate is dropped, as its task runs on a live worker or
         * has ended. */
        CHECK_INT(ra.n + rb.n, ==, 40);
        CHECK(ra.n > 0 && rb.n > 0);
        for (int i = 0; i < 40; i++) {
                int seen = 0;
                for (int k = 0; k < ra.n; k++)
                        seen += !strcmp(ra.got[k], ids[i]);
                for (int k = 0; k < rb.n; k++)
                        seen += !strcmp(rb.got[k], ids[i]);
                if (seen != 1)
                        CHECK_FAIL("job %d (%s) was claimed %d times", i, ids[i], seen);
        }
        mp_queue_close(a);
        mp_queue_close(b);
        mp_store_close(s);
}

TEST(redis_push_while_down_is_recovered_from_the_store) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *down = NULL, *up = NULL;
        struct mp_error err = { 0 };
        char id[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        int port;

        redis_flush();
        /* A Redis that is down: a loopback port nobody listens on. */
        {
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                socklen_t len = sizeof(sa);
                REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
                        getsockname(fd, (struct sockaddr *) &sa, &len) == 0);
                port = ntohs(sa.sin_port);
                close(fd);
        }
        char url[64];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
        REQUIRE(s && open_q(url, s, &down) == 0); /* opening does not need Redis up */
        add_task(s, id);
        CHECK_INT(MP_QUEUE(down)->push(down, id, FUNCTION, &err), <, 0);
        CHECK(strstr(err.message, "unreachable") != NULL);
        mp_error_clear(&err);
        mp_queue_close(down);
        /* Redis is back (here: the real one, empty): the job is taken from the store. */
        REQUIRE(open_q(rurl(NULL), s, &up) == 0);
        join(up, "w-up", -1);
        CHECK_INT(MP_QUEUE(up)->claim(up, "w-up/0", 60000, 100, got, NULL), ==, 0);
        CHECK_INT(MP_QUEUE(up)->recover(up, NULL), >=, 1);
        CHECK_INT(MP_QUEUE(up)->claim(up, "w-up/0", 60000, 1000, got, NULL), ==, 1);
        CHECK_STR(got, id);
        /* Recovering again pushes nothing new: Redis knows the task now. */
        CHECK_INT(MP_QUEUE(up)->recover(up, NULL), ==, 0);
        mp_queue_close(up);
        mp_store_close(s);
}

TEST(redis_jobs_land_on_their_functions_shard_and_idle_workers_steal) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *w0 = NULL, *w1 = NULL;
        char f[2][MP_ID_LEN + 1], id[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        int shard[2];
        redisContext *c = redis_direct();

        redis_flush();
        REQUIRE(c && s);
        /* Two functions on different shards of 2. */
        mp_id_new(f[0]);
        shard[0] = (int) (mp_queue_shard_hash(f[0]) % 2);
        do {
                mp_id_new(f[1]);
                shard[1] = (int) (mp_queue_shard_hash(f[1]) % 2);
        } while (shard[1] == shard[0]);
        REQUIRE(open_q(rurl("shards=2"), s, &w0) == 0 && open_q(rurl("shards=2"), s, &w1) == 0);
        join(w0, "home0", 0);
        join(w1, "home1", 1);
        for (int k = 0; k < 2; k++)
                for (int i = 0; i < 3; i++) {
                        add_task_of(s, f[k], id);
                        CHECK_INT(MP_QUEUE(w0)->push(w0, id, f[k], NULL), ==, 0);
                }
        for (int k = 0; k < 2; k++) {
                redisReply *r = redisCommand(c, "LLEN mecapy:jobs:%d", shard[k]);
                REQUIRE(r && r->type == REDIS_REPLY_INTEGER);
                CHECK_INT(r->integer, ==, 3);
                freeReplyObject(r);
        }
        /* The worker of shard 0 takes its own shard's jobs first... */
        for (int i = 0; i < 3; i++) {
                json_t *t = NULL;
                CHECK_INT(MP_QUEUE(w0)->claim(w0, "home0/0", 60000, 1000, got, NULL), ==, 1);
                REQUIRE(MP_STORE(s)->task_get(s, got, &t, NULL) == 0);
                CHECK_STR(json_string_value(json_object_get(t, "function_id")), f[shard[0] == 0 ? 0 : 1]);
                json_decref(t);
        }
        /* ...then, its shard empty, steals from the other at once rather than wait. */
        int64_t t0 = mp_mono_ms();
        CHECK_INT(MP_QUEUE(w0)->claim(w0, "home0/0", 60000, 5000, got, NULL), ==, 1);
        CHECK_INT(mp_mono_ms() - t0, <, 1000);
        json_t *t = NULL;
        REQUIRE(MP_STORE(s)->task_get(s, got, &t, NULL) == 0);
        CHECK_STR(json_string_value(json_object_get(t, "function_id")), f[shard[0] == 0 ? 1 : 0]);
        json_decref(t);
        redisFree(c);
        mp_queue_close(w0);
        mp_queue_close(w1);
        mp_store_close(s);
}

static const struct check_case cases[] = {
        CASE(local_push_wakes_a_waiting_claim_at_once),
        CASE(local_claim_times_out_empty_and_shutdown_wakes),
        CASE(local_completion_reaches_the_listener),
        CASE(local_cancel_reaches_the_listener),
        CASE(local_registered_workers_are_listed),
        CASE(local_claimed_jobs_come_back_after_recover),
        CASE(local_released_job_comes_back_after_its_delay),
        CASE(unknown_backend_is_refused),
        CASE(shard_hash_is_stable),
};

static const struct check_case redis_cases[] = {
        CASE(redis_push_wakes_a_waiting_claim_at_once),
        CASE(redis_claim_times_out_empty_and_shutdown_wakes),
        CASE(redis_completion_reaches_a_listener_on_another_connection),
        CASE(redis_cancel_reaches_a_listener_on_another_connection),
        CASE(redis_registered_workers_are_listed),
        CASE(redis_job_of_a_dead_worker_is_reaped_and_claimed_by_another),
        CASE(redis_two_claimers_never_get_the_same_job),
        CASE(redis_push_while_down_is_recovered_from_the_store),
        CASE(redis_jobs_land_on_their_functions_shard_and_idle_workers_steal),
        CASE(redis_released_job_comes_back_after_its_delay),
};

int check_failed_now;

static void run(const struct check_case *c, size_t n, const char *filter, int *passed, int *failed) {
        for (size_t i = 0; i < n; i++) {
                if (filter && !strstr(c[i].name, filter))
                        continue;
                check_failed_now = 0;
                c[i].fn();
                printf("%s %s\n", check_failed_now ? "FAIL" : "ok  ", c[i].name);
                fflush(stdout);
                *(check_failed_now ? failed : passed) += 1;
        }
}

int main(int argc, char **argv) {
        int passed = 0, failed = 0;
        char cmd[300];

        if (!mkdtemp(dir))
                return 1;
        redis_url = getenv("MECAPY_TEST_REDIS_URL");
        if (redis_url && !*redis_url)
                redis_url = NULL;
        run(cases, ELEMENTSOF(cases), argc > 1 ? argv[1] : NULL, &passed, &failed);
        if (redis_url)
                run(redis_cases, ELEMENTSOF(redis_cases), argc > 1 ? argv[1] : NULL, &passed, &failed);
        else
                printf("(the %zu Redis cases were not run: MECAPY_TEST_REDIS_URL is not set)\n",
                       ELEMENTSOF(redis_cases));
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
}
