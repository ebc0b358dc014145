// Every call the dashboard makes goes through here, to the public API (/api/v1) with the
// browser's session cookie; a request that changes something carries X-CSRF-Token equal
// to the mecapy_csrf cookie (docs/api.md, the cookie rule). Nothing here is private to
// the dashboard.

export interface FieldError {
  path?: string;
  message: string;
  line?: number;
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
  retry_after?: number;
}

export class ApiError extends Error {
  status: number;
  problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.status = problem.status;
    this.problem = problem;
  }
}

export const API = '/api/v1';

function cookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return null;
}

// Told when the session is gone (401), so the app can show the sign-in page.
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

// One call: the session cookie, the CSRF header on a change, and a refusal thrown as an
// ApiError carrying the problem (a 401 also tells the app, unless quiet401).
async function send<T>(method: string, path: string, body: string | undefined, contentType: string | undefined,
                       opts: { raw?: boolean; quiet401?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (contentType) headers['Content-Type'] = contentType;
  if (method !== 'GET' && method !== 'HEAD') {
    const t = cookie('mecapy_csrf');
    if (t) headers['X-CSRF-Token'] = t;
  }
  let r: Response;
  try {
    r = await fetch(API + path, { method, headers, credentials: 'same-origin', body });
  } catch (e) {
    throw new ApiError({ status: 0, title: 'Network error', detail: `the server did not answer (${String(e)})` });
  }
  if (!r.ok) {
    let p: Problem = { status: r.status, title: r.statusText };
    try {
      p = { ...p, ...(await r.json()) };
    } catch {
      /* not JSON: keep the status line */
    }
    if (r.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    throw new ApiError(p);
  }
  if (r.status === 204) return undefined as T;
  if (opts.raw) return (await r.text()) as T;
  return (await r.json()) as T;
}

export const request = <T>(method: string, path: string, body?: unknown,
                           opts?: { raw?: boolean; quiet401?: boolean }): Promise<T> =>
  body === undefined ? send<T>(method, path, undefined, undefined, opts)
    : send<T>(method, path, JSON.stringify(body), 'application/json', opts);

// A body that is not JSON (a CSV upload): the same cookie, CSRF header and errors.
export const postText = <T>(path: string, body: string, contentType: string): Promise<T> =>
  send<T>('POST', path, body, contentType);

export const get = <T>(path: string, opts?: { raw?: boolean; quiet401?: boolean }) =>
  request<T>('GET', path, undefined, opts);
export const post = <T>(path: string, body?: unknown) => request<T>('POST', path, body ?? {});
export const put = <T>(path: string, body: unknown) => request<T>('PUT', path, body);
export const del = <T>(path: string) => request<T>('DELETE', path);

export const enc = encodeURIComponent;

export function qs(params: Record<string, string | number | null | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

// --- the objects the API answers (docs/api.md) ---

export interface User {
  id: string;
  email: string;
  company?: string | null;
  role: string;
  created_at: string;
}

export type JSONSchema = {
  type?: string | string[];
  properties?: Record<string, JSONSchema>;
  required?: string[];
  items?: JSONSchema;
  enum?: unknown[];
  anyOf?: JSONSchema[];
  oneOf?: JSONSchema[];
  default?: unknown;
  description?: string;
  title?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  additionalProperties?: boolean | JSONSchema;
  unit?: string;
  'x-unit'?: string;
  const?: unknown;
};

export interface Fn {
  id: string;
  name: string;
  description: string;
  visibility: 'private' | 'company' | 'public';
  tags: string[];
  owner_id?: string;
  author?: string;
  version: number;
  handler?: string;
  input_schema: JSONSchema;
  output_schema?: JSONSchema | null;
  code?: string;
  created_at?: string;
  updated_at: string;
  verification?: Verification;
  review?: Review;
}

// A version's verification cases and their outcome, and its review (docs/api.md).
export interface VerificationCase {
  name: string;
  passed: boolean | null;
  got?: unknown;
  expected?: unknown;
  source?: string | null;
  task_id?: string | null;
  error?: string | null;
}
export interface Verification {
  status: 'none' | 'running' | 'passed' | 'failed' | string;
  cases: VerificationCase[];
}
export interface Review {
  status: 'draft' | 'submitted' | 'approved' | 'rejected' | string;
  reviewer_id?: string | null;
  at?: string | null;
  comments?: { by: string; at: string; action: string; comment?: string }[];
}

export interface Version {
  version: number;
  handler: string;
  input_schema: JSONSchema;
  created_at: string;
  verification?: Verification;
  review?: Review;
}

export interface Artifact {
  name: string;
  size: number;
  url?: string;
}

export interface TaskError {
  type: string;
  message: string;
  traceback?: string;
  limit?: string;
}

export interface Task {
  id: string;
  function_id: string;
  version: number;
  status: string;
  inputs?: Record<string, unknown>;
  result?: unknown;
  error?: TaskError | null;
  error_type?: string | null;
  logs?: string;
  logs_truncated?: boolean;
  artifacts?: Artifact[];
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  execution_ms: number | null;
  cpu_ms: number | null;
  peak_memory_kb: number | null;
  attempts: number;
  result_size?: number; // with ?result=omit
  result_omitted?: boolean;
  progress?: { fraction: number; message?: string; at?: string } | null;
  inputs_given?: Record<string, unknown> | null;
  checks?: Check[] | null;
  provenance?: Provenance | null;
}

// A check the result declared, with its utilisation (value over limit) and outcome.
export interface Check {
  name: string;
  value: number;
  limit: number;
  unit?: string | null;
  utilisation: number | null;
  passed: boolean | null;
}
export interface Provenance {
  code_sha256: string | null;
  environment: string;
  inputs_sha256: string;
  platform_version: string;
}
export interface Rerun {
  identical: boolean | null;
  task: Task;
}
export interface TaskDiff {
  a: { id: string; function_id: string; version: number; status: string };
  b: { id: string; function_id: string; version: number; status: string };
  fields: { path: string; a?: unknown; b?: unknown; equal: boolean; abs_diff?: number; rel_diff?: number; unit?: string | null }[];
  differences: number;
  truncated: boolean;
  identical_results: boolean | null;
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface Token {
  id: string;
  name: string;
  token?: string;
  created_at: string;
  expires_at: string | null;
  last_used_at?: string | null;
  scopes: string[];
}

export const TERMINAL = new Set(['completed', 'failed', 'timed_out', 'cancelled']);
export const STATUSES = ['queued', 'running', 'completed', 'failed', 'timed_out', 'cancelled'];
export const SCOPES = ['functions:read', 'functions:write', 'tasks:read', 'tasks:write', 'execute', 'tokens'];
