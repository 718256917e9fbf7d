import { SERVICE_ID_HEADER } from "../proxy/proxyInput.ts";
import type { LogLine } from "./LogShipper.ts";

/** One request through the proxy, as shipped with `log_type: "http"`. */
export interface AccessRecord {
  time: Date;
  serviceId?: string;
  host: string;
  method: string;
  /** Without the query string: queries carry tokens too often to be shipped. */
  path: string;
  status: number;
  durationMs: number;
  bytes: number;
  clientIp: string;
}

export type AccessLogFormat = "caddy" | "traefik";

/** The record of one access-log line, or undefined when the line is not one this format writes. */
export function parseAccessLine(format: AccessLogFormat, line: string): AccessRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  return format === "caddy" ? fromCaddy(value as Record<string, unknown>) : fromTraefik(value as Record<string, unknown>);
}

/**
 * Caddy's JSON access log (`http.log.access.*`): `ts` in unix seconds, `duration` in seconds,
 * `size` the body bytes written, `request` as it arrived, `resp_headers` as sent (where the
 * agent's routes put the service id).
 */
function fromCaddy(v: Record<string, unknown>): AccessRecord | undefined {
  const request = v.request as Record<string, unknown> | undefined;
  if (typeof v.ts !== "number" || typeof v.status !== "number" || typeof request !== "object" || request === null) return undefined;
  const { method, host, uri } = request;
  if (typeof method !== "string" || typeof host !== "string" || typeof uri !== "string") return undefined;
  const clientIp = typeof request.client_ip === "string" ? request.client_ip : request.remote_ip;
  const service = headerValue(v.resp_headers, SERVICE_ID_HEADER);
  return {
    time: new Date(Math.round(v.ts * 1000)),
    ...(service ? { serviceId: service } : {}),
    host: stripPort(host),
    method,
    path: pathOf(uri),
    status: v.status,
    durationMs: typeof v.duration === "number" ? roundMs(v.duration * 1000) : 0,
    bytes: typeof v.size === "number" ? v.size : 0,
    clientIp: typeof clientIp === "string" ? clientIp : "",
  };
}

/**
 * Traefik's JSON access log: `StartUTC` the request's start, `Duration` in nanoseconds; the
 * service id is the response header the agent's middleware sets, kept in the log as
 * `downstream_X-Techulus-Service-Id` when Traefik's `accessLog.fields.headers` keeps it.
 */
function fromTraefik(v: Record<string, unknown>): AccessRecord | undefined {
  const start = typeof v.StartUTC === "string" ? Date.parse(v.StartUTC) : Number.NaN;
  const { RequestMethod: method, RequestHost: host, RequestPath: uri, DownstreamStatus: status } = v;
  if (!Number.isFinite(start) || typeof method !== "string" || typeof host !== "string" || typeof uri !== "string" || typeof status !== "number") return undefined;
  const service = v[`downstream_${SERVICE_ID_HEADER}`];
  return {
    time: new Date(start),
    ...(typeof service === "string" && service ? { serviceId: service } : {}),
    host: stripPort(host),
    method,
    path: pathOf(uri),
    status,
    durationMs: typeof v.Duration === "number" ? roundMs(v.Duration / 1e6) : 0,
    bytes: typeof v.DownstreamContentSize === "number" ? v.DownstreamContentSize : 0,
    clientIp: typeof v.ClientHost === "string" ? v.ClientHost : "",
  };
}

export function accessLogLine(record: AccessRecord): LogLine {
  const fields: Record<string, string | number> = {
    log_type: "http",
    host: record.host,
    method: record.method,
    path: record.path,
    status: record.status,
    duration_ms: record.durationMs,
    bytes: record.bytes,
    client_ip: record.clientIp,
  };
  if (record.serviceId) fields.service_id = record.serviceId;
  return { msg: `${record.method} ${record.host}${record.path} ${record.status} ${record.durationMs} ms`, time: record.time, fields };
}

function headerValue(headers: unknown, name: string): string | undefined {
  if (typeof headers !== "object" || headers === null) return undefined;
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== lower) continue;
    const first = Array.isArray(value) ? value[0] : value;
    return typeof first === "string" ? first : undefined;
  }
  return undefined;
}

function pathOf(uri: string): string {
  const q = uri.search(/[?#]/);
  return q === -1 ? uri : uri.slice(0, q);
}

function stripPort(host: string): string {
  return host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d+$/, "");
}

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
