import { InvalidInputError } from "../errors.ts";
import { isDomainName, isEndpoint, isSafeId } from "../state/validate.ts";
import type { Certificate, Route } from "../state/types.ts";

/** The request header both proxy drivers set to the route's service id (it shows in access logs). */
export const SERVICE_ID_HEADER = "X-Techulus-Service-Id";
/** Names of everything the agent owns in a proxy's config start with this. */
export const MANAGED_PREFIX = "techulus-";

/**
 * Last check before routes reach a proxy config: lib/state validates expected state; this
 * refuses whatever could still break out of a value (a line break in a header value or a rule,
 * a name Traefik or Caddy would read differently).
 */
export function assertValidProxyInput(routes: readonly Route[], certificates: readonly Certificate[]): void {
  const problems: string[] = [];
  const ids = new Set<string>();
  for (const [index, route] of routes.entries()) {
    const where = `routes[${index}]`;
    if (!isSafeId(route.id)) problems.push(`${where}: id ${JSON.stringify(route.id)} is not a safe id`);
    else if (ids.has(route.id)) problems.push(`${where}: id ${route.id} appears twice`);
    ids.add(route.id);
    if (!isDomainName(route.domain, { allowWildcard: true }) || route.domain !== route.domain.toLowerCase()) {
      problems.push(`${where}: ${JSON.stringify(route.domain)} is not a lower-case domain name`);
    }
    for (const upstream of route.upstreams) {
      if (!isEndpoint(upstream)) problems.push(`${where}: upstream ${JSON.stringify(upstream)} is not host:port`);
    }
    // A header value in both proxies; Caddy expands {…} placeholders in it, so only a safe id may go there.
    if (!isSafeId(route.serviceId)) problems.push(`${where}: service id ${JSON.stringify(route.serviceId)} is not a safe id (letters, digits, _ . -)`);
  }
  const domains = new Set<string>();
  for (const [index, cert] of certificates.entries()) {
    const where = `certificates[${index}]`;
    if (!isDomainName(cert.domain, { allowWildcard: true }) || cert.domain !== cert.domain.toLowerCase()) {
      problems.push(`${where}: ${JSON.stringify(cert.domain)} is not a lower-case domain name`);
    } else if (domains.has(cert.domain)) {
      problems.push(`${where}: ${cert.domain} appears twice`);
    }
    domains.add(cert.domain);
    if (!cert.certificate.includes("-----BEGIN") || !cert.certificateKey.includes("-----BEGIN")) {
      problems.push(`${where} ${cert.domain}: certificate and key must be PEM text`);
    }
  }
  if (problems.length > 0) throw new InvalidInputError(`invalid proxy routes, nothing applied: ${problems.join("; ")}`);
}

/** Routes without upstreams are not installed (PROTOCOL.md). */
export function installable(routes: readonly Route[]): Route[] {
  return routes.filter((route) => route.upstreams.length > 0);
}
