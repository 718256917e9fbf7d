import { sortCertificates, sortRoutes } from "../state/hash.ts";
import type { Certificate, Route } from "../state/types.ts";
import { MANAGED_PREFIX, SERVICE_ID_HEADER } from "./proxyInput.ts";

/** A route object of Caddy's JSON config; only the parts the agent reads are typed. */
export type CaddyRoute = Record<string, unknown> & { "@id"?: unknown };
export type CaddyLoadPem = Record<string, unknown> & { "@id"?: unknown };

const ROUTE_ID_PREFIX = MANAGED_PREFIX;
// ":" cannot occur in a route id, so a certificate id never looks like a route id.
const CERT_ID_PREFIX = "techulus:cert:";

export function caddyRouteId(route: Route): string {
  return `${ROUTE_ID_PREFIX}${route.id}`;
}

export function isManagedRoute(value: unknown): boolean {
  const id = (value as CaddyRoute | null)?.["@id"];
  return typeof id === "string" && id.startsWith(ROUTE_ID_PREFIX);
}

export function isManagedCertificate(value: unknown): boolean {
  const id = (value as CaddyLoadPem | null)?.["@id"];
  return typeof id === "string" && id.startsWith(CERT_ID_PREFIX);
}

/**
 * One managed route: a host matcher, a `headers` handler that tags the exchange with
 * X-Techulus-Service-Id, then reverse_proxy to the upstreams (container addresses, dialled over
 * the mesh). The tag is set on the request (the upstream sees it) and, deferred so an upstream
 * cannot override it, on the response: Caddy's access log records the request as it arrived,
 * before handlers, but the response headers as sent (`resp_headers`), so that is where log
 * shipping finds the service id.
 */
export function toCaddyRoute(route: Route): CaddyRoute {
  const tag = { [SERVICE_ID_HEADER]: [route.serviceId] };
  return {
    "@id": caddyRouteId(route),
    match: [{ host: [route.domain] }],
    handle: [
      { handler: "headers", request: { set: tag }, response: { set: tag, deferred: true } },
      { handler: "reverse_proxy", upstreams: [...route.upstreams].sort().map((dial) => ({ dial })) },
    ],
    terminal: true,
  };
}

/** A managed route read back from Caddy's live config; undefined for anything else. */
export function fromCaddyRoute(value: unknown): Route | undefined {
  if (!isManagedRoute(value)) return undefined;
  const route = value as CaddyRoute;
  const id = (route["@id"] as string).slice(ROUTE_ID_PREFIX.length);
  const match = asArray(route.match)[0] as { host?: unknown } | undefined;
  const domain = asArray(match?.host)[0];
  let serviceId = "";
  const upstreams: string[] = [];
  for (const handler of asArray(route.handle) as Array<Record<string, unknown>>) {
    if (handler?.handler === "headers") {
      const set = (handler.response as { set?: Record<string, unknown> } | undefined)?.set ?? {};
      const value = asArray(set[SERVICE_ID_HEADER])[0];
      if (typeof value === "string") serviceId = value;
    } else if (handler?.handler === "reverse_proxy") {
      for (const upstream of asArray(handler.upstreams) as Array<{ dial?: unknown }>) {
        if (typeof upstream?.dial === "string") upstreams.push(upstream.dial);
      }
    }
  }
  return { id, domain: typeof domain === "string" ? domain : "", upstreams, serviceId };
}

/**
 * The routes array to install: every route the agent does not own stays where it was, in its
 * order, ahead of the managed ones (which are sorted by id), so an operator's own routes keep
 * precedence and survive every update.
 */
/** A route that answers whatever the host (no matcher set names one), like a stock Caddyfile's `:80 { file_server }`. */
export function answersEveryHost(value: unknown): boolean {
  const match = (value as { match?: unknown } | null)?.match;
  if (!Array.isArray(match) || match.length === 0) return true;
  return match.some((set) => (set as { host?: unknown } | null)?.host === undefined);
}

/**
 * The operator's routes keep their order; the agent's go after the operator's host routes and
 * before the first route that answers every host, which would otherwise shadow them all.
 */
export function mergeCaddyRoutes(live: readonly unknown[], routes: readonly Route[]): unknown[] {
  const own = live.filter((r) => !isManagedRoute(r));
  const firstCatchAll = own.findIndex(answersEveryHost);
  const at = firstCatchAll === -1 ? own.length : firstCatchAll;
  return [...own.slice(0, at), ...sortRoutes(routes).map(toCaddyRoute), ...own.slice(at)];
}

export function routesFromCaddy(live: readonly unknown[]): Route[] {
  return sortRoutes(live.map(fromCaddyRoute).filter((r): r is Route => r !== undefined));
}

/** A certificate for Caddy's `tls.certificates.load_pem`; Caddy then serves it instead of obtaining one. */
export function toCaddyLoadPem(cert: Certificate): CaddyLoadPem {
  return { "@id": `${CERT_ID_PREFIX}${cert.domain}`, certificate: cert.certificate, key: cert.certificateKey, tags: [`${MANAGED_PREFIX}agent`] };
}

export function certificatesFromCaddy(live: readonly unknown[]): Certificate[] {
  const out: Certificate[] = [];
  for (const entry of live) {
    if (!isManagedCertificate(entry)) continue;
    const pem = entry as CaddyLoadPem;
    out.push({
      domain: (pem["@id"] as string).slice(CERT_ID_PREFIX.length),
      certificate: typeof pem.certificate === "string" ? pem.certificate : "",
      certificateKey: typeof pem.key === "string" ? pem.key : "",
    });
  }
  return sortCertificates(out);
}

export function mergeCaddyCertificates(live: readonly unknown[], certificates: readonly Certificate[]): unknown[] {
  return [...live.filter((c) => !isManagedCertificate(c)), ...sortCertificates(certificates).map(toCaddyLoadPem)];
}

/** The logger the agent's routes write their access log to (`http.log.access.<name>`). */
export const CADDY_ACCESS_LOGGER = `${MANAGED_PREFIX}access`;

/** `logging.logs.<CADDY_ACCESS_LOGGER>`: JSON lines into `file`, rolled by Caddy at 50 MB (3 kept). */
export function caddyAccessLogger(file: string): Record<string, unknown> {
  return {
    writer: { output: "file", filename: file, roll_size_mb: 50, roll_keep: 3 },
    encoder: { format: "json" },
    include: [`http.log.access.${CADDY_ACCESS_LOGGER}`],
  };
}

/**
 * A server's `logs` with the agent's domains mapped to its access logger and the mappings of
 * routes that are gone removed; an operator's mappings stay. A server that logged nothing before
 * keeps logging nothing for the hosts that are not the agent's.
 */
export function mergeServerLogs(live: unknown, routes: readonly Route[]): Record<string, unknown> {
  const logs: Record<string, unknown> = isObject(live) ? { ...live } : { skip_unmapped_hosts: true };
  const names: Record<string, unknown> = isObject(logs.logger_names) ? { ...logs.logger_names } : {};
  for (const [host, name] of Object.entries(names)) if (name === CADDY_ACCESS_LOGGER) delete names[host];
  for (const route of sortRoutes(routes)) names[route.domain] = CADDY_ACCESS_LOGGER;
  logs.logger_names = names;
  return logs;
}

/** Caddy's `logging` with the agent's access logger set; every other logger kept. */
export function mergeLogging(live: unknown, file: string): Record<string, unknown> {
  const logging: Record<string, unknown> = isObject(live) ? { ...live } : {};
  logging.logs = { ...(isObject(logging.logs) ? logging.logs : {}), [CADDY_ACCESS_LOGGER]: caddyAccessLogger(file) };
  return logging;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}
