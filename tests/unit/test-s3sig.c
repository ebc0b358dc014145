/* Unit tests of the S3 request signing (blobs/blobs-s3-sig.c) against AWS's published
 * Signature Version 4 vectors: the generic test suite (aws-sig-v4-test-suite, 2015-08-30,
 * service "service") and the worked examples of the S3 API reference ("Signature
 * Calculations for the Authorization Header", 2013-05-24). Every expected string below is
 * AWS's. No network, no clock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#include "base/util.h"
#include "blobs/blobs-internal.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The generic suite's credentials and instant. */
#define SUITE_AK "AKIDEXAMPLE"
#define SUITE_SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define SUITE_SCOPE "20150830/us-east-1/service/aws4_request"

/* The S3 reference's credentials and instant (its secret has '/' where the suite's has '+'). */
#define S3_AK "AKIAIOSFODNN7EXAMPLE"
#define S3_SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DATE "20130524T000000Z"
#define S3_HOST "examplebucket.s3.amazonaws.com"

struct vector {
        const char *name;
        const char *method, *path;
        struct mp_s3_pair query[4];
        struct mp_s3_pair headers[8];
        const char *body;
        /* expected */
        const char *creq;       /* NULL: not checked */
        const char *sts_hash;   /* hex SHA-256 of the canonical request (last line of the sts) */
        const char *signed_headers, *signature;
};

static size_t count_pairs(const struct mp_s3_pair *p, size_t max) {
        size_t n = 0;
        while (n < max && p[n].name)
                n++;
        return n;
}

/* Sign v as the suite does (service "service") or as S3 does, and compare each step. */
static void check_steps(const struct vector *v, const struct mp_s3_sign_in *inp, const char *date,
                        const char *service);

static void check_vector(const struct vector *v, bool s3) {
        char payload[MP_S3_HASH_HEX];
        const char *date = s3 ? S3_DATE : SUITE_DATE, *service = s3 ? "s3" : "service";

        mp_s3_sha256_hex(v->body, v->body ? strlen(v->body) : 0, payload);
        struct mp_s3_sign_in in = {
                .method = v->method, .path = v->path, .query = v->query,
                .n_query = count_pairs(v->query, ELEMENTSOF(v->query)), .headers = v->headers,
                .n_headers = count_pairs(v->headers, ELEMENTSOF(v->headers)),
                .payload_hash = payload, .amz_date = date, .region = "us-east-1",
                .service = service, .access_key = s3 ? S3_AK : SUITE_AK,
                .secret_key = s3 ? S3_SK : SUITE_SK,
        };
        int before = check_failed_now;

        check_failed_now = 0;
        check_steps(v, &in, date, service);
        if (check_failed_now)
                fprintf(stderr, "  (in vector %s)\n", v->name);
        check_failed_now |= before;
}

static void check_steps(const struct vector *v, const struct mp_s3_sign_in *inp, const char *date,
                        const char *service) {
        _cleanup_free_ char *creq = NULL, *signed_headers = NULL, *sts = NULL, *authz = NULL;
        char h[MP_S3_HASH_HEX], sig[MP_S3_HASH_HEX], expect_sts[512], expect_authz[1024];
        const struct mp_s3_sign_in in = *inp;

        REQUIRE(mp_s3_canonical_request(&in, &creq, &signed_headers) == 0);
        if (v->creq)
                CHECK_STR(creq, v->creq);
        CHECK_STR(signed_headers, v->signed_headers);
        mp_s3_sha256_hex(creq, strlen(creq), h);
        CHECK_STR(h, v->sts_hash);

        REQUIRE(mp_s3_string_to_sign(date, "us-east-1", service, creq, &sts) == 0);
        snprintf(expect_sts, sizeof(expect_sts), "AWS4-HMAC-SHA256\n%s\n%.8s/us-east-1/%s/aws4_request\n%s",
                 date, date, service, v->sts_hash);
        CHECK_STR(sts, expect_sts);

        REQUIRE(mp_s3_signature(in.secret_key, date, "us-east-1", service, sts, sig) == 0);
        CHECK_STR(sig, v->signature);

        REQUIRE(mp_s3_authorization(&in, &authz) == 0);
        snprintf(expect_authz, sizeof(expect_authz),
                 "AWS4-HMAC-SHA256 Credential=%s/%.8s/us-east-1/%s/aws4_request, SignedHeaders=%s, "
                 "Signature=%s", in.access_key, date, service, v->signed_headers, v->signature);
        CHECK_STR(authz, expect_authz);
}

#define SUITE_HEADERS { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE }

static const struct vector suite[] = {
        {
                .name = "get-vanilla", .method = "GET", .path = "/",
                .headers = { SUITE_HEADERS },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "host;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
                .signed_headers = "host;x-amz-date",
                .signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        {
                /* Same name twice: sorted by value, byte order ('V' < 'v'). */
                .name = "get-vanilla-query-order-key", .method = "GET", .path = "/",
                .query = { { "Param1", "value2" }, { "Param1", "Value1" } },
                .headers = { SUITE_HEADERS },
                .creq = "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
                .signed_headers = "host;x-amz-date",
                .signature = "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        },
        {
                .name = "get-vanilla-query-order-key-case", .method = "GET", .path = "/",
                .query = { { "Param2", "value2" }, { "Param1", "value1" } },
                .headers = { SUITE_HEADERS },
                .creq = "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
                .signed_headers = "host;x-amz-date",
                .signature = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        {
                .name = "get-vanilla-query-order-value", .method = "GET", .path = "/",
                .query = { { "Param1", "value2" }, { "Param1", "value1" } },
                .headers = { SUITE_HEADERS },
                .sts_hash = "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
                .signed_headers = "host;x-amz-date",
                .signature = "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        },
        {
                .name = "get-vanilla-query-unreserved", .method = "GET", .path = "/",
                .query = { { "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                             "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" } },
                .headers = { SUITE_HEADERS },
                .sts_hash = "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
                .signed_headers = "host;x-amz-date",
                .signature = "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        },
        {
                /* A non-ASCII query name is percent-encoded byte by byte, upper-case hex. */
                .name = "get-vanilla-utf8-query", .method = "GET", .path = "/",
                .query = { { "\xe1\x88\xb4", "bar" } },
                .headers = { SUITE_HEADERS },
                .creq = "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
                .signed_headers = "host;x-amz-date",
                .signature = "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        },
        {
                .name = "get-unreserved", .method = "GET",
                .path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                .headers = { SUITE_HEADERS },
                .sts_hash = "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
                .signed_headers = "host;x-amz-date",
                .signature = "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        },
        {
                /* Repeated header names: one line, values joined by ',' in the order sent. */
                .name = "get-header-key-duplicate", .method = "GET", .path = "/",
                .headers = { { "Host", "example.amazonaws.com" }, { "My-Header1", "value2" },
                             { "My-Header1", "value2" }, { "My-Header1", "value1" },
                             { "X-Amz-Date", SUITE_DATE } },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
                        "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
                .signed_headers = "host;my-header1;x-amz-date",
                .signature = "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        },
        {
                .name = "get-header-value-order", .method = "GET", .path = "/",
                .headers = { { "Host", "example.amazonaws.com" }, { "My-Header1", "value4" },
                             { "My-Header1", "value1" }, { "My-Header1", "value3" },
                             { "My-Header1", "value2" }, { "X-Amz-Date", SUITE_DATE } },
                .sts_hash = "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
                .signed_headers = "host;my-header1;x-amz-date",
                .signature = "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        },
        {
                /* Blanks around a value go, runs of blanks inside fold to one. */
                .name = "get-header-value-trim", .method = "GET", .path = "/",
                .headers = { { "Host", "example.amazonaws.com" }, { "My-Header1", " value1" },
                             { "My-Header2", " \"a   b   c\"" }, { "X-Amz-Date", SUITE_DATE } },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
                        "my-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
                        "host;my-header1;my-header2;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
                .signed_headers = "host;my-header1;my-header2;x-amz-date",
                .signature = "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        {
                .name = "post-vanilla", .method = "POST", .path = "/",
                .headers = { SUITE_HEADERS },
                .sts_hash = "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
                .signed_headers = "host;x-amz-date",
                .signature = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
        {
                /* The suite's .authz signs content-type;host;x-amz-date (its .creq also lists
                 * content-length, which no signer that matches the .authz can produce: the
                 * .sts and .authz are the consistent pair, and the ones checked here). The
                 * payload hash is the body's: SHA-256("Param1=value1"). */
                .name = "post-x-www-form-urlencoded", .method = "POST", .path = "/",
                .headers = { { "Content-Type", "application/x-www-form-urlencoded" },
                             SUITE_HEADERS },
                .body = "Param1=value1",
                .creq = "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
                        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "content-type;host;x-amz-date\n"
                        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                .sts_hash = "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
                .signed_headers = "content-type;host;x-amz-date",
                .signature = "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
};

static const struct vector s3_examples[] = {
        {
                .name = "s3 GET Object with Range", .method = "GET", .path = "/test.txt",
                .headers = { { "Host", S3_HOST }, { "Range", "bytes=0-9" },
                             { "x-amz-content-sha256", EMPTY_SHA }, { "x-amz-date", S3_DATE } },
                .creq = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                        "x-amz-content-sha256:" EMPTY_SHA "\nx-amz-date:20130524T000000Z\n\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
                .signed_headers = "host;range;x-amz-content-sha256;x-amz-date",
                .signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
        {
                /* '$' in a key is encoded in the path; the payload hash is the body's. */
                .name = "s3 PUT Object", .method = "PUT", .path = "/test$file.text",
                .headers = { { "Date", "Fri, 24 May 2013 00:00:00 GMT" }, { "Host", S3_HOST },
                             { "x-amz-content-sha256",
                               "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072" },
                             { "x-amz-date", S3_DATE },
                             { "x-amz-storage-class", "REDUCED_REDUNDANCY" } },
                .body = "Welcome to Amazon S3.",
                .creq = "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
                        "host:examplebucket.s3.amazonaws.com\n"
                        "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
                        "x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
                        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                .sts_hash = "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
                .signed_headers = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                .signature = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        },
        {
                /* A parameter without a value is canonicalized as "lifecycle=". */
                .name = "s3 GET Bucket Lifecycle", .method = "GET", .path = "/",
                .query = { { "lifecycle", "" } },
                .headers = { { "Host", S3_HOST }, { "x-amz-content-sha256", EMPTY_SHA },
                             { "x-amz-date", S3_DATE } },
                .creq = "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n"
                        "x-amz-content-sha256:" EMPTY_SHA "\nx-amz-date:20130524T000000Z\n\n"
                        "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
                .signed_headers = "host;x-amz-content-sha256;x-amz-date",
                .signature = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        },
        {
                .name = "s3 GET Bucket (list)", .method = "GET", .path = "/",
                .query = { { "prefix", "J" }, { "max-keys", "2" } },
                .headers = { { "Host", S3_HOST }, { "x-amz-content-sha256", EMPTY_SHA },
                             { "x-amz-date", S3_DATE } },
                .creq = "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\n"
                        "x-amz-content-sha256:" EMPTY_SHA "\nx-amz-date:20130524T000000Z\n\n"
                        "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA,
                .sts_hash = "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
                .signed_headers = "host;x-amz-content-sha256;x-amz-date",
                .signature = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        },
};

TEST(aws_sigv4_test_suite) {
        for (size_t i = 0; i < ELEMENTSOF(suite); i++)
                check_vector(&suite[i], false);
}

TEST(aws_s3_reference_examples) {
        for (size_t i = 0; i < ELEMENTSOF(s3_examples); i++)
                check_vector(&s3_examples[i], true);
}

/* The signing key chain of the S3 reference, checked through a one-line string to sign:
 * a wrong date, region or service changes the signature. */
TEST(scope_changes_the_signature) {
        char a[MP_S3_HASH_HEX], b[MP_S3_HASH_HEX];

        REQUIRE(mp_s3_signature(S3_SK, S3_DATE, "us-east-1", "s3", "x", a) == 0);
        REQUIRE(mp_s3_signature(S3_SK, "20130525T000000Z", "us-east-1", "s3", "x", b) == 0);
        CHECK(strcmp(a, b) != 0);
        REQUIRE(mp_s3_signature(S3_SK, S3_DATE, "eu-west-1", "s3", "x", b) == 0);
        CHECK(strcmp(a, b) != 0);
        REQUIRE(mp_s3_signature(S3_SK, S3_DATE, "us-east-1", "s3", "x", b) == 0);
        CHECK_STR(a, b);
        /* malformed inputs are refused, not signed */
        CHECK_INT(mp_s3_signature(S3_SK, "2013-05-24", "us-east-1", "s3", "x", b), ==, -EINVAL);
        CHECK_INT(mp_s3_signature(NULL, S3_DATE, "us-east-1", "s3", "x", b), ==, -EINVAL);
}

static void check_encode(const char *in, bool keep_slash, const char *want) {
        struct mp_buf b = { 0 };

        CHECK_INT(mp_s3_uri_encode(in, keep_slash, &b), ==, 0);
        CHECK_STR(b.data ? b.data : "", want);
        mp_buf_free(&b);
}

TEST(uri_encoding_of_odd_keys) {
        /* unreserved bytes pass; '/' only in a path; everything else %XX upper-case */
        check_encode("tasks/0b7a/result.json", true, "tasks/0b7a/result.json");
        check_encode("tasks/0b7a/result.json", false, "tasks%2F0b7a%2Fresult.json");
        check_encode("a-b_c.d~e", true, "a-b_c.d~e");
        check_encode("test$file.text", true, "test%24file.text");
        check_encode("a b+c=d&e", true, "a%20b%2Bc%3Dd%26e");
        check_encode("100%", true, "100%25");
        check_encode("caf\xc3\xa9/\xe1\x88\xb4", true, "caf%C3%A9/%E1%88%B4");
        check_encode("?#[]@!'()*,;:", true, "%3F%23%5B%5D%40%21%27%28%29%2A%2C%3B%3A");
        check_encode("", true, "");
}

TEST(canonical_query_encodes_and_sorts) {
        _cleanup_free_ char *q = NULL, *e = NULL;
        const struct mp_s3_pair p[] = {
                { "prefix", "tasks/t1/" }, { "list-type", "2" },
                { "continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=" },
        };

        REQUIRE(mp_s3_canonical_query(p, ELEMENTSOF(p), &q) == 0);
        /* '/', '=' and '+' inside values are encoded; the order is by name */
        CHECK_STR(q, "continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J%2Fwm36Hy4vbOwM%3D&"
                     "list-type=2&prefix=tasks%2Ft1%2F");
        REQUIRE(mp_s3_canonical_query(NULL, 0, &e) == 0);
        CHECK_STR(e, "");
}

TEST(payload_hash_header) {
        /* x-amz-content-sha256 carries the body's real hash, and the canonical request
         * ends with the same value: a body changed in transit breaks the signature. */
        _cleanup_free_ char *creq = NULL;
        char h[MP_S3_HASH_HEX];
        const char body[] = { 'a', 0, 'b' }; /* binary, with a NUL */

        mp_s3_sha256_hex(NULL, 0, h);
        CHECK_STR(h, EMPTY_SHA);
        mp_s3_sha256_hex("Welcome to Amazon S3.", 21, h);
        CHECK_STR(h, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        mp_s3_sha256_hex(body, sizeof(body), h);
        CHECK_STR(h, "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138");

        const struct mp_s3_pair hd[] = { { "host", "h" }, { "x-amz-content-sha256", h },
                                         { "x-amz-date", S3_DATE } };
        struct mp_s3_sign_in in = { .method = "PUT", .path = "/b/k", .headers = hd, .n_headers = 3,
                                    .payload_hash = h, .amz_date = S3_DATE, .region = "us-east-1",
                                    .service = "s3", .access_key = S3_AK, .secret_key = S3_SK };
        REQUIRE(mp_s3_canonical_request(&in, &creq, NULL) == 0);
        CHECK(strstr(creq, "\nx-amz-content-sha256:") != NULL);
        CHECK(strlen(creq) > 64 && strcmp(creq + strlen(creq) - 64, h) == 0);
        /* a path must start with '/' */
        in.path = "b/k";
        CHECK_INT(mp_s3_canonical_request(&in, &creq, NULL), ==, -EINVAL);
}

static const struct check_case cases[] = {
        CASE(aws_sigv4_test_suite),
        CASE(aws_s3_reference_examples),
        CASE(scope_changes_the_signature),
        CASE(uri_encoding_of_odd_keys),
        CASE(canonical_query_encodes_and_sorts),
        CASE(payload_hash_header),
};

CHECK_MAIN(cases)
