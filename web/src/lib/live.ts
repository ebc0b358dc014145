// An object's event stream (docs/api.md: GET /api/v1/tasks/{id}/events, and the same for
// workflow runs and studies): `status` (the object as GET answers it) first and at each
// change, `end` (the final object) then the stream closes, `error` (a problem) for a
// stream the server ends itself; a task's stream also carries `log` (new log text) and
// `progress` ({fraction, message, at}). A stream that cannot be had or is cut without an
// `end` (no such route on an older server, too many streams open, a proxy that buffers)
// is given up once, through `fallback`: the page then follows by long polls.
import { API, get } from './api';

export interface TaskProgress {
  fraction: number;
  message?: string;
  at?: string;
}

export interface StreamHandlers<T> {
  status: (o: T) => void;
  end: (o: T | null) => void;
  failed: (detail: string) => void;
  fallback: () => void;
  log?: (text: string) => void;
  progress?: (p: TaskProgress) => void;
}

// Returns the function that stops following (safe to call more than once).
export function follow<T>(path: string, h: StreamHandlers<T>): () => void {
  if (typeof EventSource === 'undefined') {
    queueMicrotask(h.fallback);
    return () => {};
  }
  let es: EventSource | null = new EventSource(API + path);
  const stop = () => {
    es?.close();
    es = null;
  };
  const parse = (e: Event): unknown => {
    try {
      return JSON.parse((e as MessageEvent).data);
    } catch {
      return null;
    }
  };
  es.addEventListener('status', (e) => {
    const o = parse(e);
    if (o && typeof o === 'object') h.status(o as T);
  });
  es.addEventListener('end', (e) => {
    stop();
    const o = parse(e);
    h.end(o && typeof o === 'object' ? (o as T) : null);
  });
  if (h.log) es.addEventListener('log', (e) => h.log!((e as MessageEvent).data));
  if (h.progress)
    es.addEventListener('progress', (e) => {
      const p = parse(e) as TaskProgress | null;
      if (p && typeof p.fraction === 'number' && Number.isFinite(p.fraction)) h.progress!(p);
    });
  es.addEventListener('error', (e) => {
    const data = (e as MessageEvent).data;
    if (data) {
      // The server's own `error` event: a problem, the stream ends.
      stop();
      const p = parse(e) as { detail?: string; title?: string } | null;
      h.failed(p?.detail ?? p?.title ?? 'the event stream ended with an error');
    } else if (es && es.readyState !== EventSource.OPEN) {
      // Refused, missing or cut (EventSource would retry: we poll instead, once).
      stop();
      h.fallback();
    }
  });
  return stop;
}

// A workflow run or a study, followed until it ends: its event stream, else long polls of
// GET path()?wait= (answered the moment it ends, else after `wait` seconds). `update` is
// given each new state (its failure, as the stream's or a poll's, goes to `failed`).
// follow() again after an action (Retry) opens the stream again if it worked once; a stream
// that never worked is not tried again: the polls go on. stop() ends it for good.
export function watch<T>(o: {
  path: () => string;
  wait: number;
  current: () => T | null;
  running: (x: T) => boolean;
  update: (x: T) => void | Promise<void>;
  failed: (detail: string) => void;
}): { follow: () => void; stop: () => void } {
  let gone = false;
  let stopStream: (() => void) | null = null;
  let streamed = false; // the stream worked once
  let polling = false; // it never did: follow by polls
  let asking = false; // a poll loop is under way
  const apply = (x: T) => void Promise.resolve(o.update(x)).catch((e) => o.failed((e as Error).message));

  async function poll() {
    if (asking) return;
    asking = true;
    try {
      for (let x = o.current(); !gone && x && o.running(x); x = o.current()) {
        const next = await get<T>(`${o.path()}?wait=${o.wait}`);
        if (gone) return;
        await o.update(next);
      }
    } catch (e) {
      o.failed((e as Error).message);
    } finally {
      asking = false;
    }
  }

  function start() {
    const x = o.current();
    if (polling) return void poll();
    if (!x || !o.running(x)) return;
    stopStream?.();
    stopStream = follow<T>(`${o.path()}/events`, {
      status: (s) => {
        streamed = true;
        if (!gone) apply(s);
      },
      end: (s) => {
        if (s && !gone) apply(s);
      },
      failed: o.failed,
      fallback: () => {
        polling = !streamed;
        poll();
      },
    });
  }

  return {
    follow: start,
    stop: () => {
      gone = true;
      stopStream?.();
    },
  };
}
