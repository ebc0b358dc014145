// A list read page by page (GET … ?cursor=, {"items", "next_cursor"}), for the list pages:
// load() reads the first page again (a new filter), load(true) appends the next page, and
// an answer that arrives after a newer request was made is dropped.
import type { Page } from './api';

export class PagedList<T> {
  items = $state<T[]>([]);
  next = $state<string | null>(null);
  error = $state<string | null>(null);
  loading = $state(false);
  loaded = $state(false); // a first answer (or error) came
  #seq = 0;
  #fetch: (cursor: string | null) => Promise<Page<T>>;

  constructor(fetch: (cursor: string | null) => Promise<Page<T>>) {
    this.#fetch = fetch;
  }

  async load(more = false): Promise<void> {
    const mine = ++this.#seq;
    this.loading = true;
    this.error = null;
    try {
      const p = await this.#fetch(more ? this.next : null);
      if (mine !== this.#seq) return;
      this.items = more ? [...this.items, ...p.items] : p.items;
      this.next = p.next_cursor ?? null;
    } catch (e) {
      if (mine === this.#seq) this.error = (e as Error).message;
    } finally {
      if (mine === this.#seq) {
        this.loading = false;
        this.loaded = true;
      }
    }
  }
}
