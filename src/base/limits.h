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
