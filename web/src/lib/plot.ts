// What the study plots share: extents, round ticks, and a colour scale (a perceptually
// ordered ramp, dark blue to yellow, so that order reads without a legend's help).
export function extent(vs: number[]): [number, number] {
  if (!vs.length) return [0, 1];
  let lo = Infinity, hi = -Infinity;
  for (const v of vs) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    lo -= d;
    hi += d;
  }
  return [lo, hi];
}

export function ticks([lo, hi]: [number, number], n = 5): number[] {
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
// t in [0, 1] -> "rgb(r g b)".
export function colour(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x)), f = x - i;
  const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
  return `rgb(${c[0]} ${c[1]} ${c[2]})`;
}
export const RAMP_STOPS = RAMP.map((c, i) => ({ offset: i / (RAMP.length - 1), colour: `rgb(${c[0]} ${c[1]} ${c[2]})` }));
