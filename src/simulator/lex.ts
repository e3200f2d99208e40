// The tokenizer the LogQL and TraceQL parsers share: white space, quoted strings ("..." with
// escapes, `...` raw), and every other token by the language's own rules, with the 1-based
// columns and the error wording of Loki's and Tempo's parsers.

export interface Tok<K extends string = string> {
  t: string;
  kind: K | "string" | "eof";
  col: number;
}

export interface LexRules<K extends string> {
  /** What a backslash before `e` stands for inside "...". */
  escape(e: string): string;
  /** The error to throw, from a message that already names the column. */
  error(message: string): Error;
  /** How the language's parser says a string is not closed. */
  unterminated: string;
  /** The language's token starting at `i` (its text is what it consumes), or null: unexpected. */
  next(src: string, i: number): { t: string; kind: K } | null;
}

export function lex<K extends string>(src: string, rules: LexRules<K>): Tok<K>[] {
  const out: Tok<K>[] = [];
  const at = (col: number, what: string) => rules.error(`parse error at line 1, col ${col}: ${what}`);
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const col = i + 1;
    if (c === '"' || c === "`") {
      let j = i + 1;
      let s = "";
      while (j < src.length && src[j] !== c) {
        if (c === '"' && src[j] === "\\" && j + 1 < src.length) {
          s += rules.escape(src[j + 1]);
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) throw at(col, rules.unterminated);
      out.push({ t: s, kind: "string", col });
      i = j + 1;
      continue;
    }
    const tok = rules.next(src, i);
    if (!tok) throw at(col, `syntax error: unexpected ${c}`);
    out.push({ ...tok, col });
    i += tok.t.length;
  }
  out.push({ t: "", kind: "eof", col: src.length + 1 });
  return out;
}

/** A token as the parsers' "unexpected ..." messages name it. */
export function shown(tok: Tok): string {
  if (tok.kind === "eof") return "$end";
  if (tok.kind === "string") return "STRING";
  if (tok.kind === "ident") return "IDENTIFIER";
  return tok.t;
}
