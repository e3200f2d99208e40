// The Python that can run the project's PyTorch trainer, or null (tests that need it skip and say why).
// TRM_FORGE_PYTHON names one; else python3 on PATH, else the system's (Debian's python3-torch).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const TRAINER = fileURLToPath(new URL("../../../trainers/torch/train.py", import.meta.url));

let found: string | null | undefined;

export function torchPython(): string | null {
  if (found !== undefined) return found;
  const candidates = [process.env.TRM_FORGE_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string =>
    Boolean(c),
  );
  found = null;
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import torch, numpy"], { stdio: "ignore", timeout: 60_000 });
    if (r.status === 0) {
      found = py;
      break;
    }
  }
  if (!found)
    console.warn(
      'skipping the PyTorch tests: no python3 with torch and numpy (`python3 -c "import torch"` fails; install python3-torch or set TRM_FORGE_PYTHON)',
    );
  return found;
}
