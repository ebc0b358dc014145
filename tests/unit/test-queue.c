/* queue/: the local queue wakes a waiting worker at once and survives restarts. */
#include <pthread.h>
#include <stdlib.h>

#include "base/util.h"
#include "queue/queue.h"
#include "store/store.h"
#include "check.h"

static char dir[] = "/tmp/mecapy-test-queue-XXXXXX";

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

/* The task's owner and function, once per database (the store checks references). */
static void ensure_owner_and_function(struct mp_store *s) {
        json_t *user = json_pack("{s:s,s:s,s:s,s:s,s:n,s:I}", "id", OWNER, "email", "q@example.com",
                                 "password_hash", "x", "role", "member", "company_id", "created_at",
                                 (json_int_t) mp_now_ms());
        json_t *fn = json_pack("{s:s,s:s,s:n,s:s,s:s,s:s,s:I}", "id", FUNCTION, "owner_id", OWNER,
                               "company_id", "name", "f", "description", "", "visibility", "private",
                               "created_at", (json_int_t) mp_now_ms());
        json_t *ver = json_pack("{s:s,s:s,s:[],s:{},s:{},s:s,s:I}", "code", "def main(): pass",
                                "handler", "main", "requirements", "input_schema", "limits",
                                "isolation", "warm", "created_at", (json_int_t) mp_now_ms());
        json_t *existing = NULL;
        if (MP_STORE(s)->user_get(s, "id", OWNER, &existing, NULL) == -ENOENT) {
                CHECK_INT(MP_STORE(s)->user_create(s, user, NULL), ==, 0);
                CHECK_INT(MP_STORE(s)->function_create(s, fn, ver, NULL), ==, 0);
        }
        json_decref(existing);
        json_decref(user);
        json_decref(fn);
        json_decref(ver);
}

static void add_task(struct mp_store *s, char *id) {
        json_t *fn = NULL, *task;
        ensure_owner_and_function(s);
        mp_id_new(id);
        task = json_pack("{s:s,s:s,s:i,s:s,s:n,s:{},s:n,s:I}", "id", id, "function_id",
                         FUNCTION, "version", 1, "owner_id", OWNER, "company_id", "inputs",
                         "idempotency_key", "queued_at", (json_int_t) mp_now_ms());
        CHECK_INT(MP_STORE(s)->task_create(s, task, &fn, NULL), ==, 0);
        json_decref(task);
}

struct claimer {
        struct mp_queue *q;
        char got[MP_ID_LEN + 1];
        int rc;
        int64_t waited_ms;
};

static void *claim_main(void *p) {
        struct claimer *c = p;
        int64_t t0 = mp_mono_ms();
        c->rc = MP_QUEUE(c->q)->claim(c->q, "w1", 60000, 5000, c->got, NULL);
        c->waited_ms = mp_mono_ms() - t0;
        return NULL;
}

TEST(push_wakes_a_waiting_claim_at_once) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *q = NULL;
        struct claimer c = { 0 };
        pthread_t t;
        char id[MP_ID_LEN + 1];

        REQUIRE(s && mp_queue_open("local:", s, &q, NULL) == 0);
        c.q = q;
        pthread_create(&t, NULL, claim_main, &c);
        usleep(100 * 1000);
        add_task(s, id);
        MP_QUEUE(q)->push(q, id, NULL);
        pthread_join(t, NULL);
        CHECK_INT(c.rc, ==, 1);
        CHECK_STR(c.got, id);
        /* Woken by the push, not by the 1 s re-check nor the 5 s limit. */
        CHECK_INT(c.waited_ms, <, 900);
        mp_queue_close(q);
        mp_store_close(s);
}

TEST(claim_times_out_empty_and_shutdown_wakes) {
        struct mp_store *s = open_named(__func__);
        struct mp_queue *q = NULL;
        struct claimer c = { 0 };
        pthread_t t;
        char got[MP_ID_LEN + 1];

        REQUIRE(s && mp_queue_open("local:", s, &q, NULL) == 0);
        CHECK_INT(MP_QUEUE(q)->claim(q, "w1", 1000, 50, got, NULL), ==, 0);
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

TEST(claimed_jobs_come_back_after_recover) {
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
}

static const struct check_case cases[] = {
        CASE(push_wakes_a_waiting_claim_at_once),
        CASE(claim_times_out_empty_and_shutdown_wakes),
        CASE(claimed_jobs_come_back_after_recover),
        CASE(unknown_backend_is_refused),
};

static int run_all(int argc, char **argv);
int main(int argc, char **argv) {
        int rc;
        if (!mkdtemp(dir))
                return 1;
        rc = run_all(argc, argv);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
        return rc;
}
#define main run_all
CHECK_MAIN(cases)
