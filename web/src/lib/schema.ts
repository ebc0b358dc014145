// The run form is generated from a function's input schema (JSON Schema, as the server
// derives it from the handler's signature). Each field keeps what the person typed (text
// for numbers, so that "1e3" or a half-typed "-" are not lost); toInputs() turns the
// form into the inputs object and checks it as the server will, with the same paths
// ("inputs.L", "inputs.xs.2"), so a client-side message and a server 422 land on the
// same field.
import type { JSONSchema } from './api';

export type Kind = 'number' | 'integer' | 'string' | 'boolean' | 'enum' | 'array' | 'object' | 'json';

export interface Shape {
  kind: Kind;
  schema: JSONSchema; // the schema of the value (a nullable's non-null branch)
  nullable: boolean;
}

export function shape(s: JSONSchema | undefined): Shape {
  let schema: JSONSchema = s ?? {};
  let nullable = false;
  const alts = schema.anyOf ?? schema.oneOf;
  if (alts) {
    const rest = alts.filter((a) => a.type !== 'null');
    nullable = rest.length < alts.length;
    if (rest.length === 1) schema = { ...rest[0], description: s?.description ?? rest[0].description, default: s?.default };
    else return { kind: 'json', schema, nullable };
  }
  let t = schema.type;
  if (Array.isArray(t)) {
    nullable = nullable || t.includes('null');
    const rest = t.filter((x) => x !== 'null');
    t = rest.length === 1 ? rest[0] : undefined;
  }
  if (schema.enum) return { kind: 'enum', schema, nullable };
  switch (t) {
    case 'number':
    case 'integer':
    case 'string':
    case 'boolean':
    case 'array':
      return { kind: t, schema, nullable };
    case 'object':
      return { kind: schema.properties ? 'object' : 'json', schema, nullable };
    default:
      return { kind: 'json', schema, nullable };
  }
}

export function typeLabel(s: JSONSchema | undefined): string {
  const sh = shape(s);
  let t: string = sh.kind;
  if (sh.kind === 'array') t = `list of ${typeLabel(sh.schema.items)}`;
  if (sh.kind === 'enum') t = 'one of ' + (sh.schema.enum ?? []).map((v) => JSON.stringify(v)).join(', ');
  if (sh.kind === 'json') t = 'JSON';
  return sh.nullable ? `${t} or null` : t;
}

// The form value of one field: text for numbers and strings, a boolean, the JSON text
// of an enum's choice, a list of form values, an object of them; JSON text otherwise.
export type FormValue = string | boolean | FormValue[] | { [k: string]: FormValue };

export function initial(s: JSONSchema | undefined, value?: unknown): FormValue {
  const sh = shape(s);
  const v = value !== undefined ? value : sh.schema.default ?? s?.default;
  switch (sh.kind) {
    case 'number':
    case 'integer':
      return typeof v === 'number' ? String(v) : '';
    case 'string':
      return typeof v === 'string' ? v : '';
    case 'boolean':
      return v === true;
    case 'enum':
      return v === undefined || v === null ? '' : JSON.stringify(v);
    case 'array':
      return Array.isArray(v) ? v.map((x) => initial(sh.schema.items, x)) : [];
    case 'object': {
      const out: { [k: string]: FormValue } = {};
      const o = v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
      for (const [k, ps] of Object.entries(sh.schema.properties ?? {})) out[k] = initial(ps, o[k]);
      return out;
    }
    default:
      return v === undefined ? '' : JSON.stringify(v, null, 2);
  }
}

export type Errors = Record<string, string>;

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function bounds(s: JSONSchema, n: number): string | null {
  if (s.minimum !== undefined && n < s.minimum) return `must be at least ${s.minimum}`;
  if (s.maximum !== undefined && n > s.maximum) return `must be at most ${s.maximum}`;
  if (s.exclusiveMinimum !== undefined && n <= s.exclusiveMinimum) return `must be more than ${s.exclusiveMinimum}`;
  if (s.exclusiveMaximum !== undefined && n >= s.exclusiveMaximum) return `must be less than ${s.exclusiveMaximum}`;
  return null;
}

// One field's value, or `undefined` when left empty (the key is then left out and the
// server uses the default). Problems go into errors[path].
export function toValue(s: JSONSchema | undefined, v: FormValue, path: string, required: boolean,
                        errors: Errors): unknown {
  const sh = shape(s);
  const empty = v === '' || (Array.isArray(v) && v.length === 0 && sh.kind !== 'array');
  if (empty && sh.kind !== 'string' && sh.kind !== 'boolean') {
    if (required) errors[path] = 'required';
    return undefined;
  }
  switch (sh.kind) {
    case 'number':
    case 'integer': {
      const t = String(v).trim();
      if (!NUMBER.test(t)) {
        errors[path] = sh.kind === 'integer' ? 'expected a whole number' : 'expected a number';
        return undefined;
      }
      const n = Number(t);
      if (sh.kind === 'integer' && !Number.isInteger(n)) {
        errors[path] = 'expected a whole number';
        return undefined;
      }
      const b = bounds(sh.schema, n);
      if (b) errors[path] = b;
      return n;
    }
    case 'string': {
      const t = String(v);
      if (t === '' && !required) return undefined;
      if (sh.schema.minLength !== undefined && t.length < sh.schema.minLength)
        errors[path] = `must be at least ${sh.schema.minLength} characters`;
      if (sh.schema.maxLength !== undefined && t.length > sh.schema.maxLength)
        errors[path] = `must be at most ${sh.schema.maxLength} characters`;
      return t;
    }
    case 'boolean':
      return v === true;
    case 'enum':
      return JSON.parse(String(v));
    case 'array': {
      const items = Array.isArray(v) ? v : [];
      if (sh.schema.minItems !== undefined && items.length < sh.schema.minItems)
        errors[path] = `needs at least ${sh.schema.minItems} items`;
      if (sh.schema.maxItems !== undefined && items.length > sh.schema.maxItems)
        errors[path] = `takes at most ${sh.schema.maxItems} items`;
      return items.map((x, i) => {
        const out = toValue(sh.schema.items, x, `${path}.${i}`, true, errors);
        return out === undefined ? null : out;
      });
    }
    case 'object': {
      const o = (v && typeof v === 'object' && !Array.isArray(v) ? v : {}) as { [k: string]: FormValue };
      const req = new Set(sh.schema.required ?? []);
      const out: Record<string, unknown> = {};
      for (const [k, ps] of Object.entries(sh.schema.properties ?? {})) {
        const x = toValue(ps, o[k] ?? initial(ps), `${path}.${k}`, req.has(k), errors);
        if (x !== undefined) out[k] = x;
      }
      return out;
    }
    default:
      try {
        return JSON.parse(String(v));
      } catch (e) {
        errors[path] = `not valid JSON: ${(e as Error).message}`;
        return undefined;
      }
  }
}

export function toInputs(s: JSONSchema, form: { [k: string]: FormValue }, errors: Errors): Record<string, unknown> {
  const req = new Set(s.required ?? []);
  const out: Record<string, unknown> = {};
  for (const [k, ps] of Object.entries(s.properties ?? {})) {
    const x = toValue(ps, form[k] ?? initial(ps), `inputs.${k}`, req.has(k), errors);
    if (x !== undefined) out[k] = x;
  }
  return out;
}

// A server path as the form names it: "inputs.xs[2]" and "inputs.xs.2" are the same.
export function normPath(p: string | undefined): string {
  if (!p) return '';
  const q = p.replace(/\[(\d+)\]/g, '.$1').replace(/^\$\.?/, '');
  return q.startsWith('inputs') ? q : `inputs.${q}`;
}

// A stable id for a field's input (labels and aria-describedby point at it).
export function fieldId(path: string): string {
  return 'f-' + path.replace(/[^A-Za-z0-9_-]/g, (c) => '_' + c.charCodeAt(0).toString(16));
}
