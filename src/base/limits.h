/* Every size, count and time fed by a user has its named maximum here. */
#pragma once

#define MP_MAX_BODY_BYTES          (2u * 1024 * 1024)   /* HTTP request body */
#define MP_MAX_CODE_BYTES          (512u * 1024)        /* one function's source */
#define MP_MAX_NAME_LEN            128                  /* function name */
#define MP_MAX_DESCRIPTION_LEN     4096
#define MP_MAX_EMAIL_LEN           254
#define MP_MAX_PASSWORD_LEN        1024
#define MP_MIN_PASSWORD_LEN        8
#define MP_MAX_REQUIREMENTS        64
#define MP_MAX_INPUTS_BYTES        (1u * 1024 * 1024)   /* serialized inputs of one call */
#define MP_MAX_JSON_DEPTH          64
#define MP_MAX_RESULT_BYTES        (16u * 1024 * 1024)  /* serialized result of one call */
/* The shape of one result, checked on its bytes before any tree is built (a JSON value
 * costs 30-200 bytes of memory however short its text: `[[]]*4_000_000` is 12 MB of
 * text but ~700 MB as a tree). Generous: a 100,000 x 15 table is 1.6 million values
 * and 2 or 3 levels deep; real engineering results never come near. Worst case within
 * them, ~2 million empty lists: ~250 MB for a moment, not gigabytes. */
#define MP_MAX_RESULT_DEPTH        64                   /* lists and objects in one another */
#define MP_MAX_RESULT_ELEMENTS     (2u * 1000 * 1000)   /* numbers, strings, literals, lists, objects */
/* Error messages and tracebacks of user code, each (the rest dropped, marked). */
#define MP_MAX_ERROR_MESSAGE_BYTES (16u * 1024)
#define MP_MAX_TRACEBACK_BYTES     (64u * 1024)
#define MP_MAX_LOG_BYTES           (1u * 1024 * 1024)   /* stdout+stderr kept per call */
#define MP_MAX_ARTIFACTS           64                   /* files in outputs/ per call */
#define MP_MAX_ARTIFACT_BYTES      (32u * 1024 * 1024)  /* all artifacts of one call */
#define MP_MAX_FRAME_BYTES         (64u * 1024 * 1024)  /* one guest protocol frame */
#define MP_INLINE_MAX_BYTES        (64u * 1024)         /* larger values spill to blobs */
#define MP_MAX_WAIT_S              300                  /* ?wait= on execute and tasks */
#define MP_MAX_PAGE                200                  /* items per list page */
#define MP_DEFAULT_PAGE            50
#define MP_MAX_TOKEN_NAME_LEN      128
#define MP_MAX_TOKEN_TTL_DAYS      3650
#define MP_SESSION_TTL_S           (12 * 3600)
#define MP_MAX_IDEMPOTENCY_KEY_LEN 128
#define MP_MAX_ATTEMPTS            3                    /* a task whose worker died is retried this often */

/* Abuse limits (docs/identity.md#abuse-limits). A rate is a token bucket that holds a
 * minute's worth and refills continuously. */
#define MP_DEFAULT_RATE_PER_MIN      600    /* API requests per user (--rate-limit) */
#define MP_DEFAULT_AUTH_RATE_PER_MIN 10     /* logins, sign-ups per address (--auth-rate-limit) */
#define MP_MAX_RATE_PER_MIN          1000000
#define MP_LOGIN_FAILS_PER_HOUR      20     /* failed logins per email before 429 */
#define MP_OIDC_START_FACTOR         6      /* OpenID starts: this times --auth-rate-limit */
#define MP_RATE_TABLE_SIZE           16384  /* keys per bucket table; the least recently seen go */
#define MP_MAX_HEADER_BYTES          (32u * 1024) /* request line and headers of one connection */
#define MP_MAX_URL_LEN               2048
#define MP_MAX_QUERY_ARGS            32
#define MP_MAX_QUERY_VALUE_LEN       1024
#define MP_MAX_CORS_ORIGINS          32
#define MP_MAX_TRUSTED_PROXIES       32
#define MP_MAX_AUDIT_DETAIL_BYTES    4096
/* Slow work (argon2, code analysis, the OpenID provider) runs on its own threads, off the
 * HTTP threads; requests waiting for one are suspended connections, at most this many. */
#define MP_API_SLOW_THREADS          8
#define MP_API_SLOW_QUEUE_MAX        512
/* An OpenID user's API tokens: the provider's word on role and company is at most this
 * old (docs/identity.md#openid-users-tokens). */
#define MP_OIDC_TOKEN_MAX_AGE_S      (12 * 3600)

/* Execution limits: defaults of the original plan, and the server maxima a function
 * may ask for. Operators can lower or raise the maxima in the config. */
#define MP_DEFAULT_TIMEOUT_S       300
#define MP_DEFAULT_MEMORY_MB       2048
#define MP_DEFAULT_CPUS            2
#define MP_DEFAULT_MAX_PROCS       64
#define MP_DEFAULT_TMP_MB          256
#define MP_MAX_TIMEOUT_S           3600
#define MP_MAX_MEMORY_MB           16384
#define MP_MAX_CPUS                64

/* Function tags and catalogue searches. */
#define MP_MAX_TAGS                16
#define MP_MAX_TAG_LEN             32
#define MP_MAX_CATALOGUE_QUERY_LEN 128

/* Workflows, studies and the result cache (core/flow.h). A definition is read and
 * walked on every scheduling step of every run, so it is kept small enough that a step
 * costs microseconds: 200 nodes is far past any engineering chain seen (tens of steps),
 * and the text cap keeps literals from turning a definition into a data store. */
#define MP_MAX_PATH_LEN              256     /* a JSON path "rows.0.sigma" */
#define MP_MAX_PATH_SEGMENTS         32      /* keys and indices in one path */
#define MP_MAX_WORKFLOW_NODES        200
#define MP_MAX_NODE_INPUTS           256     /* inputs of one node */
#define MP_MAX_NODE_ID_LEN           64
#define MP_MAX_WORKFLOW_PARAMS       256
#define MP_MAX_WORKFLOW_OUTPUTS      256
#define MP_MAX_LITERAL_DEPTH         16      /* lists and objects in one literal input */
#define MP_MAX_WORKFLOW_BYTES        (256u * 1024) /* compact JSON text of a definition */
#define MP_MAX_MAP_CONCURRENCY       64      /* elements of one map node running at once */
#define MP_DEFAULT_MAP_CONCURRENCY   4
#define MP_MAX_MAP_ELEMENTS          10000   /* elements of one map node in one run */
/* Studies: the points of one design are made, validated and stored before anything
 * runs, so the count is refused before any is made (a 10^6-point grid is an error, not
 * a gigabyte of JSON). 100,000 points of 15 inputs stay under ~100 MB as a tree. */
#define MP_MAX_STUDY_POINTS          100000
#define MP_MAX_DESIGN_PARAMS         64      /* parameters a design varies */
#define MP_MAX_CSV_COLUMNS           256
#define MP_MAX_CSV_FIELD_BYTES       4096
#define MP_MAX_STUDY_CONCURRENCY     64      /* points of one study running at once */
#define MP_DEFAULT_STUDY_CONCURRENCY 8
#define MP_MAX_STUDY_OUTPUTS         64      /* output paths of one study */
#define MP_MAX_STUDY_NOTES_LEN       4096

/* Retention and export (core/retention.c, core/export.c). */
#define MP_MAX_RETENTION_DAYS        36500   /* a company's retention: 100 years at most */
#define MP_DEFAULT_GC_INTERVAL_S     3600    /* serve --gc-interval: the collector runs hourly */
#define MP_MAX_GC_INTERVAL_S         (7 * 86400)
#define MP_GC_BATCH                  200     /* expired tasks read and deleted at a time */
#define MP_GC_MAX_ORPHANS            10000   /* orphaned task folders removed in one pass */
/* GET /me/export is written to a temporary file (memory holds one object at a time)
 * and refused past this many bytes of content (413). */
#define MP_MAX_EXPORT_BYTES          (2ull * 1024 * 1024 * 1024)
/* Progress and live logs of a running call (events part): mecapy.progress() in the
 * guest sends at most one update per 200 ms; the executor forwards what changed (the
 * last progress, the logs printed since) at most once per MP_LIVE_INTERVAL_MS per call,
 * and the worker stores each forward (one write, not synced). */
#define MP_MAX_PROGRESS_MESSAGE      256     /* characters of a progress message */
#define MP_MAX_PROGRESS_FRAME        2048    /* bytes of one progress frame from the guest */
#define MP_LIVE_INTERVAL_MS          500
#define MP_LIVE_MAX_LOG_CHUNK        (64u * 1024) /* bytes of logs in one forward; the rest next time */
/* Usage and quotas (docs/api.md#usage): the days one usage query or the operators'
 * figures may span, and the largest quota value. A start held by a quota is tried again
 * when the quota says it may pass (a call ends: MP_QUOTA_HOLD_MS), but at least every
 * MP_QUOTA_HOLD_MAX_MS (a quota raised, storage given back, a day or month begun). */
#define MP_MAX_USAGE_DAYS            366
#define MP_MAX_QUOTA_VALUE           1000000000000LL
#define MP_QUOTA_HOLD_MS             1000
#define MP_QUOTA_HOLD_MAX_MS         10000
/* Verification cases and review (docs/functions.md#verification-cases): the cases one
 * version carries, the length of a case's source and of a review comment, and the
 * comments one version's review keeps. */
#define MP_MAX_VERIFICATION_CASES    32
#define MP_MAX_VERIFICATION_SOURCE   512
#define MP_MAX_REVIEW_COMMENT        4096
#define MP_MAX_REVIEW_COMMENTS       100

/* units: the checks one result may declare (more are left out of the task's "checks") */
#define MP_MAX_CHECKS 256
/* Artifacts in folders of outputs/ (leftovers): a file in outputs/a/b/x.csv is the
 * artifact "a/b/x.csv". Folders deeper than this are not collected; a name (its whole
 * path under outputs/) is at most this many bytes; the guest looks at no more than
 * this many entries (files and folders) in all. */
#define MP_MAX_ARTIFACT_DEPTH        8       /* folders an artifact may be in */
#define MP_MAX_ARTIFACT_NAME_LEN     1024
#define MP_MAX_ARTIFACT_ENTRIES      4096
