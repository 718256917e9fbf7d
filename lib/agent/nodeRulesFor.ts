import { parsePortRange, type NodeRules, type PortRange, type ReservedPort } from "../state/nodeRules.ts";
import type { NodeSettings } from "./nodeDrivers.ts";

/**
 * The rules an expected state must meet on this node (lib/state/nodeRules): the host ports of
 * --host-port-range minus the ports of the agent and of the programs it drives here, and the
 * container subnet (undefined: taken from the state itself). Settings come resolved, defaults filled in.
 */
export function nodeRulesFor(settings: NodeSettings, subnetId: number | undefined): NodeRules {
  const hostPorts = settings.hostPortRange!.flatMap((text): PortRange[] => {
    const range = parsePortRange(text);
    return range ? [range] : [];
  });
  const reservedPorts: ReservedPort[] = [];
  if (settings.wireguard !== "off") {
    reservedPorts.push({ port: settings.wireguardPort!, owner: "the agent's WireGuard port (--wireguard-port)" });
  }
  if (settings.dnsPort !== 0) {
    reservedPorts.push({ port: settings.dnsPort!, owner: "the agent's internal DNS port (--dns-port)" });
  }
  if (settings.proxy) {
    reservedPorts.push({ port: 80, owner: "the proxy's HTTP port (this is a proxy node)" }, { port: 443, owner: "the proxy's HTTPS port (this is a proxy node)" });
    const caddyAdmin = settings.proxyDriver === "traefik" ? undefined : localPort(settings.caddyAdminUrl!);
    if (caddyAdmin !== undefined) reservedPorts.push({ port: caddyAdmin, owner: "Caddy's admin API (--caddy-admin-url)" });
  }
  return { ...(subnetId === undefined ? {} : { subnetId }), hostPorts, reservedPorts };
}

/** The port of a URL served on this host (loopback), or undefined for another host. */
function localPort(url: string): number | undefined {
  const u = new URL(url);
  if (!/^(localhost|127(\.\d{1,3}){3}|\[::1\])$/.test(u.hostname)) return undefined;
  return u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
}
