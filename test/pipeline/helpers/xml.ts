// A strict little XML parser for checking the report's inline SVGs: every tag closed in order,
// every attribute quoted and unique, only the five XML entities (and numeric ones). It throws on
// anything a browser's XML parser would reject for these documents.

export interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

const ENTITY: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(s: string, where: number): string {
  return s.replace(/&([^;\s]*);?/g, (m, name: string) => {
    if (!m.endsWith(";")) throw new Error(`bare & at ${where}`);
    if (name.startsWith("#x")) return String.fromCodePoint(Number.parseInt(name.slice(2), 16));
    if (name.startsWith("#")) return String.fromCodePoint(Number(name.slice(1)));
    if (!(name in ENTITY)) throw new Error(`unknown entity &${name}; at ${where}`);
    return ENTITY[name];
  });
}

export function parseXml(src: string): XmlNode {
  let i = 0;
  const root: XmlNode = { name: "#root", attrs: {}, children: [], text: "" };
  const stack: XmlNode[] = [root];
  while (i < src.length) {
    const lt = src.indexOf("<", i);
    const textEnd = lt < 0 ? src.length : lt;
    if (textEnd > i) {
      const t = src.slice(i, textEnd);
      if (t.includes(">")) throw new Error(`stray > at ${i}`);
      stack[stack.length - 1].text += decode(t, i);
    }
    if (lt < 0) break;
    const gt = src.indexOf(">", lt);
    if (gt < 0) throw new Error(`unterminated tag at ${lt}`);
    const body = src.slice(lt + 1, gt);
    i = gt + 1;
    if (body.startsWith("/")) {
      const name = body.slice(1).trim();
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`</${name}> closes <${open?.name}> at ${lt}`);
      continue;
    }
    const selfClosing = body.endsWith("/");
    const inner = selfClosing ? body.slice(0, -1) : body;
    const m = /^([A-Za-z][\w:.-]*)/.exec(inner);
    if (!m) throw new Error(`bad tag name at ${lt}`);
    const node: XmlNode = { name: m[1], attrs: {}, children: [], text: "" };
    let rest = inner.slice(m[1].length);
    const attrRe = /^\s+([A-Za-z_:][\w:.-]*)="([^"<]*)"/;
    for (;;) {
      const a = attrRe.exec(rest);
      if (!a) break;
      if (a[1] in node.attrs) throw new Error(`duplicate attribute ${a[1]} at ${lt}`);
      node.attrs[a[1]] = decode(a[2], lt);
      rest = rest.slice(a[0].length);
    }
    if (rest.trim() !== "")
      throw new Error(`bad attributes "${rest.trim().slice(0, 30)}" in <${node.name}> at ${lt}`);
    stack[stack.length - 1].children.push(node);
    if (!selfClosing) stack.push(node);
  }
  if (stack.length !== 1) throw new Error(`<${stack[stack.length - 1].name}> is never closed`);
  if (root.children.length !== 1) throw new Error(`expected one root element, got ${root.children.length}`);
  return root.children[0];
}

export function findAll(node: XmlNode, pred: (n: XmlNode) => boolean, out: XmlNode[] = []): XmlNode[] {
  if (pred(node)) out.push(node);
  for (const c of node.children) findAll(c, pred, out);
  return out;
}
