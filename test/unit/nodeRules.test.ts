import { describe, expect, test } from "bun:test";
import type { ExpectedContainerWire } from "../../lib/controlplane/schemas.ts";
import { NODE_SETTING_KEYS } from "../../lib/agent/nodeDrivers.ts";
import { nodeRulesFor } from "../../lib/agent/nodeRulesFor.ts";
import { resolveSettings } from "../../lib/config/settings.ts";
import { UsageError } from "../../lib/errors.ts";
import { normalizeExpectedState } from "../../lib/state/normalizeExpectedState.ts";
import { parsePortRange, type NodeRules } from "../../lib/state/nodeRules.ts";
import { InputRejectedError } from "../../lib/state/Problems.ts";

const WIREGUARD = { port: 51820, owner: "the agent's WireGuard port (--wireguard-port)" };
const NODE: NodeRules = { subnetId: 1, hostPorts: [{ from: 1024, to: 65535 }], reservedPorts: [WIREGUARD] };

function container(n: number, overrides: Partial<ExpectedContainerWire> = {}): ExpectedContainerWire {
  return {
    deploymentId: `dep-${n}`,
    serviceId: `svc-${n}`,
    serviceName: `web${n}`,
    name: `web-${n}`,
    image: "localhost/web:1",
    ipAddress: `10.200.1.${10 + n}`,
    ports: [],
    env: {},
    healthCheck: null,
    volumes: [],
    ...overrides,
  };
}

function problems(containers: ExpectedContainerWire[], node: NodeRules = NODE): readonly string[] {
  try {
    normalizeExpectedState({ containers }, { isProxy: false, volumesRoot: "/var/lib/techulus-agent/volumes", allowPlainEnv: true, node });
  } catch (err) {
    expect(err).toBeInstanceOf(InputRejectedError);
    return (err as InputRejectedError).problems;
  }
  return [];
}

const port = (hostPort: number, containerPort = 8080) => ({ containerPort, hostPort });

describe("host ports", () => {
  test("inside the range and not the agent's: accepted", () => {
    expect(problems([container(1, { ports: [port(8088), { containerPort: 9000 }] }), container(2, { ports: [port(65535)] })])).toEqual([]);
  });

  test("below the range (ssh), or one of the agent's own ports: the container and the port are named", () => {
    expect(problems([container(1, { ports: [port(22)] }), container(2, { ports: [port(51820)] })])).toEqual([
      'containers[0] "web-1": host port 22 is outside the host ports containers may publish (1024-65535, --host-port-range)',
      'containers[1] "web-2": host port 51820 is the agent\'s WireGuard port (--wireguard-port)',
    ]);
  });

  test("several ranges and single ports", () => {
    const node = { ...NODE, hostPorts: [{ from: 80, to: 80 }, { from: 8000, to: 8999 }] };
    expect(problems([container(1, { ports: [port(80), port(8080, 9)] }), container(2, { ports: [port(9000)] })], node)).toEqual([
      'containers[1] "web-2": host port 9000 is outside the host ports containers may publish (80,8000-8999, --host-port-range)',
    ]);
  });

  test("two containers on one host port, or one container publishing it twice", () => {
    expect(problems([container(1, { ports: [port(8080)] }), container(2, { ports: [port(8080)] }), container(3, { ports: [port(9090, 80), port(9090, 81)] })])).toEqual([
      'containers[1] "web-2": host port 8080 is also published by containers[0] "web-1"',
      'containers[2] "web-3": host port 9090 is published twice',
    ]);
  });
});

describe("addresses", () => {
  test("two containers with one address", () => {
    expect(problems([container(1), container(2, { ipAddress: "10.200.1.11" })])).toEqual(['containers[1] "web-2" ipAddress: 10.200.1.11 is also the address of containers[0] "web-1"']);
  });

  test("outside the node's subnet, its gateway, network and broadcast addresses", () => {
    expect(problems([container(1, { ipAddress: "10.200.2.5" }), container(2, { ipAddress: "10.200.1.1" }), container(3, { ipAddress: "10.200.1.0" }), container(4, { ipAddress: "10.200.1.255" })])).toEqual([
      'containers[0] "web-1" ipAddress: 10.200.2.5 is outside this node\'s container subnet 10.200.1.0/24',
      'containers[1] "web-2" ipAddress: 10.200.1.1 is the gateway of 10.200.1.0/24 (the node itself), not a container address',
      'containers[2] "web-3" ipAddress: 10.200.1.0 is the network address of 10.200.1.0/24, not a container address',
      'containers[3] "web-4" ipAddress: 10.200.1.255 is the broadcast address of 10.200.1.0/24, not a container address',
    ]);
  });

  test("without a known subnet, the subnet is the one of the first address (by name), as the agent then uses", () => {
    const { subnetId: _, ...unknownSubnet } = NODE;
    expect(problems([container(2, { ipAddress: "10.200.3.4" }), container(1, { ipAddress: "10.200.2.5" })], unknownSubnet)).toEqual([
      'containers[0] "web-2" ipAddress: 10.200.3.4 is outside this node\'s container subnet 10.200.2.0/24 (the subnet of the state\'s first address; --subnet-id sets it)',
    ]);
    expect(problems([container(1, { ipAddress: null }), container(2, { ipAddress: null })], unknownSubnet)).toEqual([]);
  });

  test("every problem of the state is named in one rejection", () => {
    const all = problems([container(1, { ports: [port(8080)] }), container(2, { ports: [port(8080)], ipAddress: "10.200.1.11" }), container(3, { ipAddress: "10.200.9.9", ports: [port(53)] })]);
    expect(all).toHaveLength(4);
  });
});

describe("--host-port-range and the agent's own ports", () => {
  test("ports and FROM-TO ranges", () => {
    expect(parsePortRange("1024-65535")).toEqual({ from: 1024, to: 65535 });
    expect(parsePortRange(" 8080 ")).toEqual({ from: 8080, to: 8080 });
    expect(parsePortRange("80 - 443")).toEqual({ from: 80, to: 443 });
    for (const bad of ["", "0-10", "10-5", "70000", "1024-", "a-b", "80,443"]) expect(parsePortRange(bad)).toBeUndefined();
  });

  const rules = (flags: Record<string, unknown>, subnetId?: number) => nodeRulesFor(resolveSettings(NODE_SETTING_KEYS, { flags, env: {} }), subnetId);

  test("by default: 1024-65535, minus the WireGuard and DNS ports", () => {
    expect(rules({}, 4)).toEqual({
      subnetId: 4,
      hostPorts: [{ from: 1024, to: 65535 }],
      reservedPorts: [WIREGUARD, { port: 53, owner: "the agent's internal DNS port (--dns-port)" }],
    });
  });

  test("the ports follow the settings; WireGuard off and DNS off free theirs", () => {
    expect(rules({ hostPortRange: "80,8000-8999", wireguardPort: "41000", dnsPort: "5353" }).reservedPorts.map((r) => r.port)).toEqual([41000, 5353]);
    expect(rules({ hostPortRange: "80,8000-8999" }).hostPorts).toEqual([{ from: 80, to: 80 }, { from: 8000, to: 8999 }]);
    expect(rules({ wireguard: "off", dnsPort: "0" }).reservedPorts).toEqual([]);
    expect("subnetId" in rules({})).toBe(false);
  });

  test("a proxy node also keeps 80, 443 and a local Caddy admin API", () => {
    const ports = (flags: Record<string, unknown>) => rules({ wireguard: "off", dnsPort: "0", proxy: true, ...flags }).reservedPorts.map((r) => r.port);
    expect(ports({})).toEqual([80, 443, 2019]);
    expect(ports({ caddyAdminUrl: "http://localhost:3019" })).toEqual([80, 443, 3019]);
    expect(ports({ caddyAdminUrl: "http://10.0.0.5:2019" })).toEqual([80, 443]);
    expect(ports({ proxyDriver: "traefik" })).toEqual([80, 443]);
  });

  test("a bad range is a usage error naming the flag", () => {
    expect(() => resolveSettings(["hostPortRange"], { flags: { hostPortRange: "22-" }, env: {} })).toThrow(UsageError);
    expect(() => resolveSettings(["hostPortRange"], { flags: {}, env: { AGENT_HOST_PORT_RANGE: "9000-8000" } })).toThrow(
      /^--host-port-range \(from AGENT_HOST_PORT_RANGE\): must be ports or FROM-TO ranges within 1–65535/,
    );
  });
});
