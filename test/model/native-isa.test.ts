// The kernels pick the CPU's best instruction set when the addon loads; a CPU without AVX-512 (or
// AVX2) runs the other paths. TRM_FORGE_NATIVE_ISA caps the pick, so every path passes the kernel tests
// here, each in its own process (the pick is made once per process).
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { loadNative } from "../../src/model/native/index.js";

const native = loadNative();

describe.skipIf(!native.ok)("native kernels on the lower instruction sets", () => {
  for (const isa of ["base", "avx2"]) {
    it(`pass every kernel test with TRM_FORGE_NATIVE_ISA=${isa}`, { timeout: 120_000 }, () => {
      const r = spawnSync(
        process.execPath,
        ["node_modules/vitest/vitest.mjs", "run", "test/model/native-kernels.test.ts"],
        {
          env: { ...process.env, TRM_FORGE_NATIVE_ISA: isa, NO_COLOR: "1" },
          encoding: "utf8",
          timeout: 110_000,
        },
      );
      const out = `${r.stdout}${r.stderr}`;
      expect(r.status, out.slice(-3000)).toBe(0);
      expect(out).toMatch(/Tests\s+\d+ passed/);
      expect(out).not.toMatch(/skipped|failed/);
    });
  }
});
