// The Dockerfile as instructions, for the tests that lint it and the one that repeats its steps.

export interface Instr {
  op: string;
  args: string;
  line: number;
}
export interface Stage {
  base: string;
  name: string | null;
  instrs: Instr[];
}

/** Instructions with continuation lines joined and comments dropped, split into stages. */
export function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const instrs: Instr[] = [];
  let buf = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (!buf && (line.trim().startsWith("#") || !line.trim())) return;
    if (buf && line.trim().startsWith("#")) return;
    if (!buf) start = i + 1;
    if (line.endsWith("\\")) {
      buf += `${line.slice(0, -1)} `;
      return;
    }
    buf += line;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(buf);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot parse "${buf}"`);
    instrs.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    buf = "";
  });
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instrs) {
    if (ins.op === "ARG" && !stages.length) {
      const [k, v] = ins.args.split("=");
      args[k] = v ?? "";
    } else if (ins.op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`FROM on line ${ins.line}`);
      const base = m[1].replace(/\$\{(\w+)\}/g, (_, k) => args[k] ?? "");
      stages.push({ base, name: m[2] ?? null, instrs: [] });
    } else {
      if (!stages.length) throw new Error(`${ins.op} before FROM on line ${ins.line}`);
      stages.at(-1)!.instrs.push(ins);
    }
  }
  return { args, stages };
}

/** A stage by name. */
export function stage(stages: Stage[], name: string): Stage {
  const s = stages.find((x) => x.name === name);
  if (!s) throw new Error(`the Dockerfile has no stage ${name}`);
  return s;
}
