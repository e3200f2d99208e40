// What a scan reads back from a version's knowledge card (knowledge.md, as deploy/knowledge.ts
// renders it): the error signatures per service and the incident lines. Both are known
// history: a finding that matches one says "this happened before".

export interface CardSignature {
  service: string;
  /** As the card writes it: the normalised template, backticks turned into quotes. */
  signature: string;
  line: string;
}

export interface CardIncident {
  service: string;
  line: string;
}

export interface CardFacts {
  signatures: CardSignature[];
  incidents: CardIncident[];
}

export const EMPTY_CARD: CardFacts = { signatures: [], incidents: [] };

/** The card's signature form of a template (the card cannot hold a backtick inside code). */
export function cardForm(template: string): string {
  return template.replaceAll("`", "'");
}

export function parseKnowledgeCard(markdown: string): CardFacts {
  const out: CardFacts = { signatures: [], incidents: [] };
  let section = "";
  let service = "";
  for (const raw of markdown.split("\n")) {
    const line = raw.trimEnd();
    if (line.startsWith("## ")) {
      section = line.slice(3);
      service = "";
      continue;
    }
    if (section.startsWith("Top error signatures")) {
      const h = /^### (.+) \(\d+ error lines?\)$/.exec(line);
      if (h) service = h[1];
      const s = /^- \d+× `(.*)` \(first /.exec(line);
      if (s && service) out.signatures.push({ service, signature: s[1], line: line.slice(2) });
    } else if (section.startsWith("Incidents")) {
      const m = /^- ([^:]+): \d{4}-\d{2}-\d{2} /.exec(line);
      if (m) out.incidents.push({ service: m[1], line: line.slice(2) });
    }
  }
  return out;
}
