import { InvalidInputError } from "../errors.ts";
import { sortDnsRecords } from "../state/hash.ts";
import { isDomainName, isIPv6Address, isIPv4Address as isIPv4 } from "../state/validate.ts";
import type { DnsRecord } from "../state/types.ts";

const HEADER = "# Managed by techulus-agent: internal DNS records (ip name). Rewritten on every change.";

/**
 * Refuses anything that could become more than one `ip name` line (or a dnsmasq directive):
 * lib/state validates expected state, this is the last line of defence before a file is written.
 */
export function assertValidRecords(records: readonly DnsRecord[]): void {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [index, record] of records.entries()) {
    const where = `dns.records[${index}]`;
    if (!isDomainName(record.name) || record.name !== record.name.toLowerCase()) {
      problems.push(`${where}: ${JSON.stringify(record.name)} is not a lower-case domain name`);
    } else if (seen.has(record.name)) {
      problems.push(`${where}: ${record.name} appears twice`);
    }
    seen.add(record.name);
    for (const ip of record.ips) {
      if (!isIPv4(ip) && !isIPv6Address(ip)) problems.push(`${where}: ${JSON.stringify(ip)} is not an IP address`);
    }
  }
  if (problems.length > 0) throw new InvalidInputError(`invalid DNS records, nothing applied: ${problems.join("; ")}`);
}

/** `/etc/hosts` format, one line per address, sorted, so equal record sets give equal files. */
export function renderHostsFile(records: readonly DnsRecord[]): string {
  const lines = [HEADER];
  for (const record of sortDnsRecords(records)) {
    for (const ip of record.ips) lines.push(`${ip} ${record.name}`);
  }
  return lines.join("\n") + "\n";
}

/** Reads a hosts file back into sorted records (all names of a line share its address). */
export function parseHostsFile(text: string): DnsRecord[] {
  const byName = new Map<string, Set<string>>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const [ip, ...names] = line.split(/\s+/);
    for (const name of names) {
      const key = name.toLowerCase();
      if (!byName.has(key)) byName.set(key, new Set());
      byName.get(key)!.add(ip!);
    }
  }
  return sortDnsRecords([...byName].map(([name, ips]) => ({ name, ips: [...ips] })));
}
