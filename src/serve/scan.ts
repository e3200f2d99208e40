// The anomaly scan with an agent's served champion: the model is leased for the scan's length, so
// a swap in the middle frees the old weights only after the scan is done.
import { UsageError } from "../errors.js";
import { checkScanRequest, type ScanOptions, type ScanOutput, scanAgent } from "../pipeline/scan/index.js";
import type { ModelServer } from "./server.js";

export async function scanChampion(models: ModelServer, o: Omit<ScanOptions, "model">): Promise<ScanOutput> {
  // Bad arguments are reported before anything else, champion or not.
  checkScanRequest(o.config, o.sinceMs, o.sources);
  for (let i = 0; i < 3; i++) {
    const model = models.model(o.agent);
    if (!model) break;
    if (!model.acquire()) continue; // swapped out just now: take the new one
    try {
      return await scanAgent({ ...o, model });
    } finally {
      model.release();
    }
  }
  const st = models.status().find((s) => s.agent === o.agent);
  const why = st?.last_failure ? ` (loading ${st.last_failure.to} failed: ${st.last_failure.error})` : "";
  throw new UsageError(
    `agent ${o.agent} has no champion model to scan with${why}: train one first (training_start, or trm-forge run)`,
  );
}
