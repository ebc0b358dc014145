// A line diff (longest common subsequence) between two versions of a function's code.
export interface DiffLine {
  op: ' ' | '+' | '-';
  text: string;
}

export const MAX_DIFF_LINES = 4000;

export function diffLines(a: string, b: string): DiffLine[] | null {
  const x = a.split('\n'), y = b.split('\n');
  // Common head and tail first: most edits are small.
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail), ys = y.slice(head, y.length - tail);
  if (xs.length > MAX_DIFF_LINES || ys.length > MAX_DIFF_LINES || xs.length * ys.length > 4e6) return null;
  const n = xs.length, m = ys.length, w = m + 1;
  const L = new Uint16Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      L[i * w + j] = xs[i] === ys[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
  const out: DiffLine[] = x.slice(0, head).map((t) => ({ op: ' ', text: t }));
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && xs[i] === ys[j]) {
      out.push({ op: ' ', text: xs[i] });
      i++;
      j++;
    } else if (i < n && (j === m || L[(i + 1) * w + j] >= L[i * w + j + 1])) out.push({ op: '-', text: xs[i++] });
    else out.push({ op: '+', text: ys[j++] });
  }
  for (const t of x.slice(x.length - tail)) out.push({ op: ' ', text: t });
  return out;
}
