import type { CertificateWire, RouteWire } from "../controlplane/schemas.ts";
import type { z } from "zod";
import { sortCertificates, sortRoutes, stableHash } from "./hash.ts";
import { Problems, quote } from "./Problems.ts";
import type { Certificate, Route } from "./types.ts";
import { normalizeDomainName, normalizeEndpoint, parseSafeId } from "./validate.ts";

type CertificateWireT = z.infer<typeof CertificateWire>;

/**
 * Merges route lists (`caddy.routes`, `traefik.routes`) by id: the same id may appear in several
 * lists only with identical content (after normalisation). Routes without upstreams are dropped:
 * they are not installed. Sorted by id, upstreams sorted.
 */
export function collectRoutes(lists: ReadonlyArray<[path: string, routes: readonly RouteWire[]]>, problems: Problems): Route[] {
  const byId = new Map<string, { route: Route; where: string }>();
  for (const [path, routes] of lists) {
    routes.forEach((wire, i) => {
      const where = `${path}[${i}] ${quote(wire.id)}`;
      const before = problems.list.length;
      const id = problems.check(where, () => parseSafeId("route id", wire.id));
      const domain = problems.check(where, () => normalizeDomainName(wire.domain, { allowWildcard: true }));
      // It becomes a header value, which Caddy reads for {…} placeholders ({env.X} would leak Caddy's environment).
      const serviceId = problems.check(where, () => parseSafeId("serviceId", wire.serviceId));
      const upstreams = new Set<string>();
      wire.upstreams.forEach((upstream, j) => {
        const endpoint = problems.check(`${where} upstreams[${j}]`, () => normalizeEndpoint(upstream));
        if (endpoint !== undefined) upstreams.add(endpoint);
      });
      if (problems.list.length > before || id === undefined || domain === undefined || serviceId === undefined) return;
      const [route] = sortRoutes([{ id, domain, upstreams: [...upstreams], serviceId }]);
      const seen = byId.get(id);
      if (!seen) byId.set(id, { route: route!, where });
      else if (stableHash(seen.route) !== stableHash(route)) problems.add(where, `differs from ${seen.where}, which has the same id`);
    });
  }
  return sortRoutes([...byId.values()].map((v) => v.route).filter((r) => r.upstreams.length > 0));
}

/** Validates TLS certificates (domain, PEM text); never puts certificate or key text in a message. */
export function collectCertificates(wires: readonly CertificateWireT[], path: string, problems: Problems): Certificate[] {
  const byDomain = new Map<string, { certificate: Certificate; where: string }>();
  wires.forEach((wire, i) => {
    const where = `${path}[${i}] ${quote(wire.domain)}`;
    const before = problems.list.length;
    const domain = problems.check(where, () => normalizeDomainName(wire.domain, { allowWildcard: true }));
    if (!isPem(wire.certificate)) problems.add(where, "certificate is not PEM text (no -----BEGIN line)");
    if (!isPem(wire.certificateKey)) problems.add(where, "certificateKey is not PEM text (no -----BEGIN line)");
    if (problems.list.length > before || domain === undefined) return;
    const certificate = { domain, certificate: wire.certificate, certificateKey: wire.certificateKey };
    const seen = byDomain.get(domain);
    if (!seen) byDomain.set(domain, { certificate, where });
    else if (stableHash(seen.certificate) !== stableHash(certificate)) problems.add(where, `differs from ${seen.where}, which has the same domain`);
  });
  return sortCertificates([...byDomain.values()].map((v) => v.certificate));
}

function isPem(text: string): boolean {
  return text.trim() !== "" && text.includes("-----BEGIN");
}
