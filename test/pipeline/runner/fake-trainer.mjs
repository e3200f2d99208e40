// A stand-in external trainer in Node, so the runner's own tests need no Python: it prints the
// progress protocol's lines, waits while the file HOLD exists, then copies WEIGHTS into the output
// folder, or exits with the code CRASH after an error line. Usage: fake-trainer.mjs OUT CONFIG
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const [out, configFile] = process.argv.slice(2);
const steps = JSON.parse(readFileSync(configFile, "utf8")).train.max_steps;
console.log(`fake trainer: ${steps} steps, pid ${process.pid}`);
for (let s = 1; s <= steps; s++) {
  console.log(JSON.stringify({ type: "progress", step: s, total_steps: steps, loss: 1 / s }));
  await sleep(10);
  while (process.env.HOLD && existsSync(process.env.HOLD)) await sleep(20);
}
if (process.env.CRASH) {
  console.error("RuntimeError: CUDA out of memory (simulated)");
  process.exit(Number(process.env.CRASH));
}
copyFileSync(process.env.WEIGHTS, join(out, "model.safetensors"));
console.log("fake trainer: wrote model.safetensors");
