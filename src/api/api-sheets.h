/* Calculation sheets, re-runs and comparisons of tasks (api-sheets.c; docs/api.md#provenance,
 * docs/sheets.md). */
#pragma once

#include "api/api-internal.h"

/* GET /api/v1/tasks/{id}/sheet[?format=pdf] and GET /api/v1/workflow-runs/{id}/sheet. */
enum MHD_Result mp_api_task_sheet(struct mp_route_ctx *c);
enum MHD_Result mp_api_run_sheet(struct mp_route_ctx *c);
/* POST /api/v1/tasks/{id}/rerun[?wait=]: {"task", "identical"}. */
enum MHD_Result mp_api_task_rerun(struct mp_route_ctx *c);
/* GET /api/v1/tasks/{a}/diff/{b}. */
enum MHD_Result mp_api_task_diff(struct mp_route_ctx *c);
/* The answer of a re-run (also after its long poll, api-server.c): {"identical": true,
 * false or null while task runs, "task": task}. task is borrowed. */
enum MHD_Result mp_api_send_rerun(struct mp_api *api, struct MHD_Connection *conn, unsigned status,
                                  const struct mp_principal *p, const char *orig_id, json_t *task);
/* Spreadsheets: does the request ask for .xlsx (Accept: the spreadsheetml type, or
 * ?format=xlsx)? Then GET /tasks/{id} answers with its tabular result, and GET
 * /studies/{id}/results with the study's table, as .xlsx. */
bool mp_api_wants_xlsx(struct mp_route_ctx *c);
enum MHD_Result mp_api_task_xlsx(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_xlsx(struct mp_route_ctx *c);
/* Is this Content-Type the .xlsx one (an uploaded list design)? */
bool mp_api_is_xlsx(const char *content_type);
