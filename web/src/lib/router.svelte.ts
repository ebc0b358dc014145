// Addresses are the app's state: /functions/{id}, /tasks/{id} open straight on their
// page (the server answers them with index.html), and the back button works (History
// API). Links are plain <a href>: a click on a same-origin link outside /api/ is routed
// here instead of loading the page again.

export const route = $state({ path: location.pathname, search: location.search });

function update(): void {
  route.path = location.pathname;
  route.search = location.search;
}

export function navigate(url: string, opts: { replace?: boolean } = {}): void {
  if (opts.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  update();
  window.scrollTo(0, 0);
}

export function query(name: string): string | null {
  return new URLSearchParams(route.search).get(name);
}

export function startRouter(): void {
  window.addEventListener('popstate', update);
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.('a');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
}

// "/functions/abc" against "/functions/:id" → {id: "abc"}, or null.
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/').filter(Boolean);
  const s = path.split('/').filter(Boolean);
  if (p.length !== s.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) {
      try {
        out[p[i].slice(1)] = decodeURIComponent(s[i]);
      } catch {
        return null;
      }
    } else if (p[i] !== s[i]) return null;
  }
  return out;
}
