// CodeMirror 6 with Python, loaded on demand (only the pages that show code import
// this module, so the first page's script stays small). Lines named by an upload's 422
// are marked in the gutter and the text.
import { EditorView, basicSetup } from 'codemirror';
import { python } from '@codemirror/lang-python';
import { EditorState, StateEffect, StateField, RangeSetBuilder } from '@codemirror/state';
import { Decoration, type DecorationSet } from '@codemirror/view';

const setErrorLines = StateEffect.define<number[]>();
const errorMark = Decoration.line({ class: 'cm-error-line' });

const errorLines = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(deco, tr) {
    for (const e of tr.effects)
      if (e.is(setErrorLines)) {
        const b = new RangeSetBuilder<Decoration>();
        for (const n of [...new Set(e.value)].sort((x, y) => x - y))
          if (n >= 1 && n <= tr.state.doc.lines) b.add(tr.state.doc.line(n).from, tr.state.doc.line(n).from, errorMark);
        return b.finish();
      }
    return tr.docChanged ? deco.map(tr.changes) : deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

export interface Editor {
  get(): string;
  markLines(lines: number[]): void;
  goto(line: number): void;
  destroy(): void;
}

// The page's CSP nonce (the server's, in <meta property="csp-nonce">): CodeMirror's
// style element carries it where the browser has no constructable stylesheets.
function cspNonce(): string {
  return (document.querySelector('meta[property="csp-nonce"]') as HTMLMetaElement | null)?.nonce ?? '';
}

export function createEditor(parent: HTMLElement, doc: string, opts: { readOnly: boolean; label: string; onChange?: (s: string) => void }): Editor {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        EditorView.cspNonce.of(cspNonce()),
        basicSetup,
        python(),
        errorLines,
        ...(opts.readOnly ? [EditorView.lineWrapping] : []),
        EditorState.readOnly.of(opts.readOnly),
        // Read-only stays editable in the DOM sense: the text can be focused, selected and
        // scrolled by keyboard (a scrollable region must take the focus), never changed.
        EditorView.editable.of(true),
        EditorView.contentAttributes.of({ 'aria-label': opts.label }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged && opts.onChange) opts.onChange(u.state.doc.toString());
        }),
      ],
    }),
  });
  // The scroller takes the keyboard too (arrow keys scroll a long read-only file).
  view.scrollDOM.tabIndex = 0;
  view.scrollDOM.setAttribute('aria-label', `${opts.label}: scroll`);
  return {
    get: () => view.state.doc.toString(),
    markLines: (lines) => view.dispatch({ effects: setErrorLines.of(lines) }),
    goto(line) {
      if (line < 1 || line > view.state.doc.lines) return;
      const pos = view.state.doc.line(line).from;
      view.dispatch({ selection: { anchor: pos }, effects: EditorView.scrollIntoView(pos, { y: 'center' }) });
      view.focus();
    },
    destroy: () => view.destroy(),
  };
}
