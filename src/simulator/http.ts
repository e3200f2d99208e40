// The request and response shapes the three API handlers share with the server.
import type { IncomingHttpHeaders } from "node:http";

export interface ApiRequest {
  method: string;
  path: string;
  /** Query-string and form-body parameters; form values win, as with Go's FormValue. */
  params: URLSearchParams;
  headers: IncomingHttpHeaders;
}

export interface ApiResponse {
  status: number;
  type: string;
  body: string;
}

export function json(status: number, body: string): ApiResponse {
  return { status, type: "application/json", body };
}

/** Plain text as Go's http.Error writes it: with a trailing newline. */
export function text(status: number, body: string): ApiResponse {
  return { status, type: "text/plain; charset=utf-8", body: body.endsWith("\n") ? body : `${body}\n` };
}

/** A duration as Prometheus's model.Duration prints it: 30d1h, 5m, 1w. */
export function modelDuration(ms: number): string {
  if (ms === 0) return "0s";
  let rest = ms;
  let out = "";
  const unit = (u: string, mult: number, exact: boolean) => {
    if (exact && rest % mult !== 0) return;
    const v = Math.floor(rest / mult);
    if (v > 0) {
      out += `${v}${u}`;
      rest -= v * mult;
    }
  };
  unit("y", 31_536_000_000, true);
  unit("w", 604_800_000, true);
  unit("d", 86_400_000, false);
  unit("h", 3_600_000, false);
  unit("m", 60_000, false);
  unit("s", 1000, false);
  unit("ms", 1, false);
  return out;
}

/** A Go duration string (time.Duration.String) for whole milliseconds: 168h0m0s, 1m30s, 250ms. */
export function goDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** A Go duration such as 5s, 1m30s or 100ms, in ms; null when it is not one. */
export function parseGoDuration(v: string): number | null {
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(v)) return null;
  const mult: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  let total = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * mult[m[2]];
  return total;
}
