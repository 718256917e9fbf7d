import { basename } from "node:path";
import { sortRoutes } from "../state/hash.ts";
import type { Certificate, Route } from "../state/types.ts";
import { MANAGED_PREFIX, SERVICE_ID_HEADER } from "./proxyInput.ts";

/** yaml, loaded on first use: only Traefik nodes read or write these files. */
function yaml(): typeof import("yaml") {
  return require("yaml") as typeof import("yaml");
}

export const ROUTES_FILE = "routes.yaml";
export const TLS_FILE = "tls.yaml";

const MIDDLEWARE_SUFFIX = "-service-id";
const HEADER_COMMENT = " Managed by techulus-agent: rewritten on every change; put your own configuration in other files.";

export interface TraefikRouteOptions {
  /** Entry points the routers attach to; default ["websecure"]. */
  entryPoints: string[];
  /** Routers terminate TLS (`tls: {}`); default true. */
  tls: boolean;
}

interface RouterYaml {
  rule?: unknown;
  service?: unknown;
  middlewares?: unknown;
}

/** Traefik v3 rule for a domain: Host() for a name, HostRegexp() for a `*.` wildcard. */
export function hostRule(domain: string): string {
  if (!domain.startsWith("*.")) return `Host(\`${domain}\`)`;
  return `HostRegexp(\`^[a-z0-9-]+\\.${domain.slice(2).replaceAll(".", "\\.")}$\`)`;
}

/** The domain hostRule() was made from, or undefined for any other rule. */
export function domainOfRule(rule: string): string | undefined {
  const host = /^Host\(`([^`]+)`\)$/.exec(rule);
  if (host) return host[1];
  const wildcard = /^HostRegexp\(`\^\[a-z0-9-\]\+\\\.(.+)\$`\)$/.exec(rule);
  return wildcard ? `*.${wildcard[1]!.replaceAll("\\.", ".")}` : undefined;
}

/**
 * The file provider's dynamic configuration for the routes: per route a router (Host rule), a
 * load-balancer service (`http://<upstream>`) and a headers middleware that tags request and
 * response with X-Techulus-Service-Id. Every name is `techulus-<route id>`.
 */
export function renderRoutesYaml(routes: readonly Route[], options: TraefikRouteOptions): string {
  const routers: Record<string, unknown> = {};
  const services: Record<string, unknown> = {};
  const middlewares: Record<string, unknown> = {};
  for (const route of sortRoutes(routes)) {
    const name = `${MANAGED_PREFIX}${route.id}`;
    const middleware = `${name}${MIDDLEWARE_SUFFIX}`;
    routers[name] = {
      rule: hostRule(route.domain),
      entryPoints: options.entryPoints,
      service: name,
      middlewares: [middleware],
      ...(options.tls ? { tls: {} } : {}),
    };
    services[name] = { loadBalancer: { servers: route.upstreams.map((upstream) => ({ url: `http://${upstream}` })) } };
    const tag = { [SERVICE_ID_HEADER]: route.serviceId };
    middlewares[middleware] = { headers: { customRequestHeaders: tag, customResponseHeaders: tag } };
  }
  const http = routes.length === 0 ? {} : { routers, services, middlewares };
  return toYaml({ http });
}

/** Routes read back from a routes.yaml (only `techulus-` routers), sorted by id. */
export function parseRoutesYaml(text: string): Route[] {
  const doc = (yaml().parse(text) ?? {}) as { http?: { routers?: Record<string, RouterYaml>; services?: Record<string, unknown>; middlewares?: Record<string, unknown> } };
  const http = doc.http ?? {};
  const routes: Route[] = [];
  for (const [name, router] of Object.entries(http.routers ?? {})) {
    if (!name.startsWith(MANAGED_PREFIX) || typeof router?.rule !== "string") continue;
    const domain = domainOfRule(router.rule);
    if (domain === undefined) continue;
    const service = http.services?.[String(router.service)] as { loadBalancer?: { servers?: Array<{ url?: unknown }> } } | undefined;
    const upstreams = (service?.loadBalancer?.servers ?? [])
      .map((server) => (typeof server?.url === "string" ? server.url.replace(/^http:\/\//, "") : undefined))
      .filter((u): u is string => u !== undefined);
    let serviceId = "";
    for (const middlewareName of Array.isArray(router.middlewares) ? router.middlewares : []) {
      const headers = (http.middlewares?.[String(middlewareName)] as { headers?: { customResponseHeaders?: Record<string, unknown> } } | undefined)?.headers;
      const value = headers?.customResponseHeaders?.[SERVICE_ID_HEADER];
      if (typeof value === "string") serviceId = value;
    }
    routes.push({ id: name.slice(MANAGED_PREFIX.length), domain, upstreams, serviceId });
  }
  return sortRoutes(routes);
}

/** `<domain>.<12 hex of sha256(cert, key)>`: new content, new file name, so tls.yaml changes and Traefik reloads. */
export function certificateFileStem(cert: Certificate): string {
  const digest = new Bun.CryptoHasher("sha256").update(cert.certificate).update("\0").update(cert.certificateKey).digest("hex");
  return `${cert.domain}.${digest.slice(0, 12)}`;
}

const CERT_FILE = /^(.+)\.([0-9a-f]{12})\.(crt|key)$/;

/** The domain of a certificate file the agent wrote, or undefined for any other file name. */
export function domainOfCertificateFile(path: string): string | undefined {
  return CERT_FILE.exec(basename(path))?.[1];
}

export function isManagedCertificateFile(name: string): boolean {
  return CERT_FILE.test(name);
}

export interface TlsEntry {
  certFile: string;
  keyFile: string;
}

export function renderTlsYaml(entries: readonly TlsEntry[]): string {
  const sorted = [...entries].sort((a, b) => (a.certFile < b.certFile ? -1 : a.certFile > b.certFile ? 1 : 0));
  return toYaml({ tls: { certificates: sorted.map((e) => ({ certFile: e.certFile, keyFile: e.keyFile })) } });
}

export function parseTlsYaml(text: string): TlsEntry[] {
  const doc = (yaml().parse(text) ?? {}) as { tls?: { certificates?: Array<{ certFile?: unknown; keyFile?: unknown }> } };
  return (doc.tls?.certificates ?? [])
    .filter((e) => typeof e?.certFile === "string" && typeof e?.keyFile === "string")
    .map((e) => ({ certFile: e.certFile as string, keyFile: e.keyFile as string }));
}

function toYaml(value: unknown): string {
  const doc = new (yaml().Document)(value);
  doc.commentBefore = HEADER_COMMENT;
  return doc.toString({ lineWidth: 0 });
}
