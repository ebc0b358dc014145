// Workflows and studies as the API answers them (docs/workflows.md, docs/studies.md),
// and the layered layout of a workflow's graph (nodes in columns by depth, edges from
// each node it reads).
import type { JSONSchema, TaskError } from './api';

export interface WfNode {
  id: string;
  function: string;
  function_id?: string;
  version?: number;
  inputs?: Record<string, unknown>;
  map?: { over: unknown; as: string; concurrency?: number; skip_failures?: boolean };
  depends_on?: string[];
}

export interface Workflow {
  id: string;
  owner_id?: string;
  name: string;
  description?: string;
  visibility?: string;
  version: number;
  input_schema: JSONSchema;
  nodes: WfNode[];
  outputs: Record<string, { from: string; path?: string }>;
  layout?: Record<string, { x: number; y: number }> | null;
  created_at?: string;
  updated_at?: string;
}

export interface RunNode {
  id: string;
  status: string;
  task_id: string | null;
  task_ids?: (string | null)[];
  element_errors?: { index: number; error: TaskError }[];
  started_at: string | null;
  finished_at: string | null;
  error: TaskError | null;
  skipped_reason: string | null;
}

export interface WorkflowRun {
  id: string;
  workflow_id: string;
  version: number;
  status: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown> | null;
  error: { message?: string; nodes?: string[] } | null;
  nodes: RunNode[];
  created_at: string;
  finished_at: string | null;
}

export interface Progress {
  total: number;
  queued: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
}

export interface Study {
  id: string;
  name: string;
  notes: string;
  status: string;
  target: { function_id: string; version: number };
  fixed: Record<string, unknown>;
  design: Record<string, unknown> & { type: string };
  outputs: string[];
  concurrency: number;
  progress: Progress;
  created_at: string;
  finished_at: string | null;
}

export interface StudyPoint {
  index: number;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown> | null;
  status: string;
  task_id: string | null;
  error: TaskError | null;
}

// An input's references: {"from": node} → that node.
export function refs(input: unknown): string[] {
  if (input && typeof input === 'object' && !Array.isArray(input) && typeof (input as { from?: unknown }).from === 'string')
    return [(input as { from: string }).from];
  return [];
}

export function describeInput(input: unknown): string {
  if (input && typeof input === 'object' && !Array.isArray(input)) {
    const o = input as Record<string, unknown>;
    if (typeof o.param === 'string') return `parameter ${o.param}`;
    if (typeof o.from === 'string') return `${o.from}${o.path ? '.' + String(o.path) : ''}`;
    if ('literal' in o) return JSON.stringify(o.literal);
  }
  return JSON.stringify(input);
}

export function dependsOn(n: WfNode): string[] {
  if (n.depends_on) return n.depends_on;
  const out = new Set<string>();
  for (const v of Object.values(n.inputs ?? {})) for (const r of refs(v)) out.add(r);
  if (n.map) for (const r of refs(n.map.over)) out.add(r);
  return [...out];
}

export interface Placed {
  id: string;
  x: number;
  y: number;
}
export interface Edge {
  from: string;
  to: string;
  label: string;
}

export const NODE_W = 180;
export const NODE_H = 56;
const GAP_X = 70;
const GAP_Y = 24;

// Each node in the column of its depth (the longest path from a node that reads
// nothing), in definition order within a column; where `saved` (the workflow's layout,
// as the editor left it) places a node, there.
export function layout(nodes: WfNode[], saved?: Record<string, { x: number; y: number }> | null): { placed: Placed[]; edges: Edge[]; width: number; height: number } {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const d = (id: string): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const n = byId.get(id);
    let k = 0;
    if (n) for (const p of dependsOn(n)) if (byId.has(p)) k = Math.max(k, d(p) + 1);
    visiting.delete(id);
    depth.set(id, k);
    return k;
  };
  const cols: string[][] = [];
  for (const n of nodes) (cols[d(n.id)] ??= []).push(n.id);
  const placed: Placed[] = [];
  cols.forEach((col, c) => col.forEach((id, r) => {
    const at = saved?.[id];
    placed.push(at ? { id, x: at.x, y: at.y } : { id, x: 10 + c * (NODE_W + GAP_X), y: 10 + r * (NODE_H + GAP_Y) });
  }));
  const edges: Edge[] = [];
  for (const n of nodes) {
    for (const [name, v] of Object.entries(n.inputs ?? {}))
      for (const r of refs(v)) if (byId.has(r)) edges.push({ from: r, to: n.id, label: name });
    if (n.map) for (const r of refs(n.map.over)) if (byId.has(r)) edges.push({ from: r, to: n.id, label: `map ${n.map.as}` });
  }
  const rows = Math.max(1, ...cols.map((c) => c?.length ?? 0));
  const width = Math.max(20 + cols.length * (NODE_W + GAP_X) - GAP_X, ...placed.map((p) => p.x + NODE_W + 10));
  const height = Math.max(20 + rows * (NODE_H + GAP_Y) - GAP_Y, ...placed.map((p) => p.y + NODE_H + 10));
  return { placed, edges, width, height };
}

export const RUN_TERMINAL = new Set(['completed', 'failed', 'cancelled']);
