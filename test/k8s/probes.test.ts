// The Deployment's probes and the ServiceMonitor's scrape against the real HTTP server with the
// manifests' own `server` section: the kubelet and Prometheus reach the pod by its IP, so the Host
// header they send is <pod IP>:<port>, and the server's Host check must let exactly that through
// while a foreign name is still refused. The probe, without a token, learns nothing but the status.
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ServerContext } from "../../src/server/context.js";
import { type HttpServer, startHttpServer } from "../../src/server/http.js";
import { BRUNO, removeDir, SRE, tempDir, testConfig, tokenSection } from "../server/helpers.js";
import { built, one } from "./helpers.js";

/** A non-loopback IPv4 address of this machine: what a pod IP is to the kubelet. */
const podIp = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

function get(
  port: number,
  path: string,
  host: string,
): Promise<{ status: number; body: string; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    // Connect to the pod address, and send the Host header the prober sends.
    const req = request({ host: podIp, port, path, method: "GET", headers: { Host: host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          type: res.headers["content-type"],
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe.skipIf(!podIp)("the kubelet's probes and Prometheus' scrape pass the Host check", () => {
  const objects = built("overlays/cpu");
  const cm = one(
    objects.filter((o) => o.metadata.name.startsWith("trm-forge-config")),
    "ConfigMap",
  );
  const server = parseYaml(cm.data["config.yaml"]).server;
  const container = one(objects, "Deployment", "trm-forge").spec.template.spec.containers.find(
    (c: any) => c.name === "trm-forge",
  );
  const dir = tempDir("trm-k8s-probes-");
  let ctx: ServerContext;
  let http: HttpServer;

  beforeAll(async () => {
    // The manifests' server section as it is (0.0.0.0, allowed_hosts), on a free port.
    ctx = new ServerContext({
      config: testConfig(dir, { server: { ...server, port: 0 }, tokens: tokenSection(dir) }),
      schedule: false,
    });
    await ctx.start();
    http = await startHttpServer(ctx);
  });
  afterAll(async () => {
    await http?.close(1000);
    await ctx?.stop(1000);
    removeDir(dir);
  });

  it("answers every probe of the Deployment with the status alone", async () => {
    expect(server.host).toBe("0.0.0.0");
    const probes = [container.startupProbe, container.livenessProbe, container.readinessProbe];
    expect(probes.every(Boolean)).toBe(true);
    for (const p of probes) {
      // The kubelet sends Host: <pod IP>:<port> unless the probe names a host or a Host header.
      expect(p.httpGet.host).toBeUndefined();
      const header = (p.httpGet.httpHeaders ?? []).find((h: any) => h.name.toLowerCase() === "host");
      const r = await get(http.port, p.httpGet.path, header?.value ?? `${podIp}:${http.port}`);
      expect(r.status, p.httpGet.path).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ status: "ok" });
      expect(r.body).not.toContain(SRE);
      expect(r.body).not.toContain(BRUNO);
    }
  });

  it("serves the ServiceMonitor's scrape on the pod address", async () => {
    const sm = one(objects, "ServiceMonitor");
    for (const e of sm.spec.endpoints) {
      const r = await get(http.port, e.path, `${podIp}:${http.port}`);
      expect(r.status, e.path).toBe(200);
      expect(r.type).toMatch(/^text\/plain/);
      expect(r.body).toMatch(/^# HELP trm_forge_/m);
    }
  });

  it("still refuses a foreign Host or Origin on the same paths", async () => {
    for (const path of ["/healthz", "/metrics"]) {
      expect((await get(http.port, path, `evil.example:${http.port}`)).status, path).toBe(403);
      expect((await get(http.port, path, `203.0.113.7:${http.port}`)).status, path).toBe(403);
    }
  });
});
