// Numbers with sensible precision: integers as they are, others to 6 significant
// digits (trailing zeros dropped), exponents for the very large and very small.
export function num(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  const a = Math.abs(n);
  if (a !== 0 && (a < 1e-4 || a >= 1e9)) return n.toExponential(4).replace(/\.?0+e/, 'e');
  return String(Number(n.toPrecision(6)));
}

export function scalar(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number') return num(v);
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function when(s: string | null | undefined): string {
  if (!s) return '—';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
}

export function ms(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`;
}

// A list of rows: an array of at least one object, every item an object whose values
// are scalars. The table's columns are the union of their keys, in first-seen order.
export function tableColumns(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length === 0) return null;
  const cols = new Map<string, true>();
  const probe = v.length > 1000 ? [...v.slice(0, 500), ...v.slice(-500)] : v;
  for (const row of probe) {
    if (!row || typeof row !== 'object' || Array.isArray(row)) return null;
    for (const [k, x] of Object.entries(row)) {
      if (x !== null && typeof x === 'object') return null;
      cols.set(k, true);
    }
  }
  return cols.size ? [...cols.keys()] : null;
}

// <input type="datetime-local"> speaks local time without a zone; the API (and the
// addresses that hold a filter), UTC: "2024-05-01T12:00:00Z" <-> "2024-05-01T14:00".
const pad = (n: number) => String(n).padStart(2, '0');
export function utcToLocalInput(iso: string | null): string {
  const d = iso ? new Date(iso) : null;
  if (!d || Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
export function localInputToUtc(local: string): string {
  const d = local ? new Date(local) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString().replace(/\.000Z$/, 'Z') : '';
}
