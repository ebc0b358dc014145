// The files the dashboard offers for download. Each is a plain link to the API: the
// browser follows it with its session cookie (a GET needs no CSRF token, docs/api.md),
// so the file comes as the API writes it, named by the link's download= attribute.
import { API, enc } from './api';

// A task's or a workflow run's calculation sheet (docs/sheets.md): the HTML page, or the
// same page as PDF.
export type SheetOf = 'tasks' | 'workflow-runs';
export const sheetUrl = (of: SheetOf, id: string, pdf = false): string =>
  `${API}/${of}/${enc(id)}/sheet${pdf ? '?format=pdf' : ''}`;

// A table as .xlsx: ?format=xlsx, which the API takes as it takes Accept: the spreadsheetml
// type (docs/api.md, Spreadsheets). `path` is the table's address under /api/v1: a
// study's results, or a task (its tabular result).
export const xlsxUrl = (path: string): string => `${API}${path}?format=xlsx`;

// Whether GET /tasks/{id} gives the result as .xlsx rather than a 406: the server's rule
// (a list whose every item is an object; its values may be anything). Not the tree's rule
// for drawing a list as a table (format.ts, tableColumns), which wants scalar values.
export const isTabular = (v: unknown): v is Record<string, unknown>[] =>
  Array.isArray(v) && v.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r));
