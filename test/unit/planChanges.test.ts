import { describe, expect, test } from "bun:test";
import { hashDns, hashPeers, hashRoutes, stableHash } from "../../lib/state/hash.ts";
import { describePlan, planChanges } from "../../lib/state/planChanges.ts";
import type { ActualContainer, ActualState, Certificate, ContainerState, ExpectedContainer, ExpectedState, Peer, Route } from "../../lib/state/types.ts";

const NGINX = "docker.io/library/nginx:1.26";
const KEY_A = Buffer.alloc(32, 1).toString("base64");
const KEY_B = Buffer.alloc(32, 2).toString("base64");

function want(name: string, deploymentId: string, image = NGINX): ExpectedContainer {
  return { deploymentId, serviceId: "svc", serviceName: "web", name, image, ports: [], env: {}, volumes: [] };
}

function have(name: string, deploymentId: string | undefined, state: ContainerState, options: Partial<ActualContainer> = {}): ActualContainer {
  return { id: `${name}-id-0123456789`, name, image: NGINX, state, health: "none", serviceId: "svc", deploymentId, ...options };
}

const kinds = (expected: ExpectedState, actual: ActualState) => planChanges(expected, actual).map((c) => `${c.kind} ${"container" in c ? c.container.name : "expected" in c ? c.expected.name : ""}`.trim());

describe("hashes", () => {
  test("stableHash ignores key order and undefined properties", () => {
    expect(stableHash({ a: 1, b: [1, 2] })).toBe(stableHash({ b: [1, 2], a: 1, c: undefined }));
    expect(stableHash({ a: 1 })).not.toBe(stableHash({ a: 2 }));
    expect(stableHash([1, 2])).not.toBe(stableHash([2, 1]));
    expect(stableHash({ a: 1 })).toMatch(/^[0-9a-f]{64}$/);
  });
  test("section hashes do not depend on list order, only on content", () => {
    expect(hashDns([{ name: "b", ips: ["2", "1"] }, { name: "a", ips: [] }])).toBe(hashDns([{ name: "a", ips: [] }, { name: "b", ips: ["1", "2"] }]));
    expect(hashDns([{ name: "a", ips: ["1"] }])).not.toBe(hashDns([{ name: "a", ips: ["2"] }]));
    const r1: Route = { id: "r1", domain: "a.com", upstreams: ["1:1", "2:2"], serviceId: "s" };
    expect(hashRoutes([r1, { ...r1, id: "r0" }])).toBe(hashRoutes([{ ...r1, id: "r0" }, { ...r1, upstreams: ["2:2", "1:1"] }]));
    expect(hashRoutes([r1])).not.toBe(hashRoutes([r1], []));
    expect(hashPeers([{ publicKey: "b", allowedIps: ["y", "x"] }, { publicKey: "a", allowedIps: [] }])).toBe(
      hashPeers([{ publicKey: "a", allowedIps: [] }, { publicKey: "b", allowedIps: ["x", "y"], endpoint: undefined }]),
    );
    expect(hashPeers([{ publicKey: "a", allowedIps: [], endpoint: "1.2.3.4:1" }])).not.toBe(hashPeers([{ publicKey: "a", allowedIps: [] }]));
  });
});

describe("containers", () => {
  test("nothing to do when every expected container runs the right image", () => {
    expect(planChanges({ containers: [want("a", "d1")] }, { containers: [have("a", "d1", "running", { image: "nginx:1.26" })] })).toEqual([]);
  });

  test("deploy an expected deployment that has no container", () => {
    const [change] = planChanges({ containers: [want("web-1a2b3c4d", "1a2b3c4d-e")] }, { containers: [] });
    expect(change).toMatchObject({ kind: "deploy", description: `deploy web-1a2b3c4d (${NGINX})`, reason: "deployment 1a2b3c4d-e has no container" });
  });

  test.each<[ContainerState, number | undefined, string]>([
    ["created", undefined, "state created"],
    ["exited", 137, "state exited (exit code 137)"],
    ["stopped", 0, "state stopped (exit code 0)"],
  ])("start (never recreate) a %s container with the right image", (state, exitCode, reason) => {
    const [change, ...rest] = planChanges({ containers: [want("a", "d1")] }, { containers: [have("a", "d1", state, { exitCode })] });
    expect(rest).toEqual([]);
    expect(change).toMatchObject({ kind: "start", description: `start a (${NGINX})`, reason });
  });

  test.each<ContainerState>(["running", "exited", "created", "paused", "dead"])("redeploy a %s container with the wrong image", (state) => {
    const [change, ...rest] = planChanges({ containers: [want("a", "d1")] }, { containers: [have("a", "d1", state, { image: "docker.io/library/nginx:1.25" })] });
    expect(rest).toEqual([]);
    expect(change).toMatchObject({ kind: "redeploy", reason: `image docker.io/library/nginx:1.25 → ${NGINX}` });
  });

  test.each<ContainerState>(["dead", "unknown"])("redeploy a %s container (unrecoverable)", (state) => {
    const [change] = planChanges({ containers: [want("a", "d1")] }, { containers: [have("a", "d1", state, { exitCode: 1 })] });
    expect(change).toMatchObject({ kind: "redeploy", description: `redeploy a (${NGINX})`, reason: `state ${state} (exit code 1), which cannot be recovered` });
  });

  test.each<ContainerState>(["running", "paused", "restarting", "removing"])("leave a %s container with the right image alone", (state) => {
    expect(planChanges({ containers: [want("a", "d1")] }, { containers: [have("a", "d1", state)] })).toEqual([]);
  });

  test("digest pins compare by digest, not by tag", () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    expect(planChanges({ containers: [want("a", "d1", `docker.io/library/nginx@${digest}`)] }, { containers: [have("a", "d1", "running", { image: `nginx:1.26@${digest}` })] })).toEqual([]);
  });
});

describe("orphans", () => {
  test("a running orphan is stopped, a stopped one removed: running → stopped → removed over successive plans", () => {
    const expected: ExpectedState = { containers: [] };
    const [stop] = planChanges(expected, { containers: [have("old", "gone", "running")] });
    expect(stop).toMatchObject({ kind: "stop-orphan", description: "stop orphan container old (old-id-01234)", reason: "deployment gone is no longer expected" });
    const [remove] = planChanges(expected, { containers: [have("old", "gone", "exited")] });
    expect(remove).toMatchObject({ kind: "remove-orphan", description: "remove orphan container old (old-id-01234)", reason: "deployment gone is no longer expected" });
    expect(planChanges(expected, { containers: [] })).toEqual([]);
  });

  test.each<[ContainerState, string]>([
    ["running", "stop-orphan"],
    ["paused", "stop-orphan"],
    ["restarting", "stop-orphan"],
    ["created", "remove-orphan"],
    ["exited", "remove-orphan"],
    ["stopped", "remove-orphan"],
    ["dead", "remove-orphan"],
    ["unknown", "remove-orphan"],
  ])("an orphan in state %s ⇒ %s", (state, kind) => {
    expect(planChanges({ containers: [] }, { containers: [have("o", "gone", state)] }).map((c): string => c.kind)).toEqual([kind]);
  });

  test("an orphan already being removed gets no change", () => {
    expect(planChanges({ containers: [] }, { containers: [have("o", "gone", "removing")] })).toEqual([]);
  });

  test("a managed container without a deployment id is an orphan", () => {
    const [change] = planChanges({ containers: [] }, { containers: [have("stray", undefined, "running")] });
    expect(change).toMatchObject({ kind: "stop-orphan", reason: "no techulus.deployment.id label" });
  });

  test("of several containers for one deployment, the running one with the right image is kept", () => {
    const actual: ActualState = {
      containers: [
        have("b-copy", "d1", "running", { id: "aaa", image: "docker.io/library/nginx:1.25" }),
        have("a-copy", "d1", "exited", { id: "bbb" }),
        have("c-copy", "d1", "running", { id: "ccc" }),
      ],
    };
    const plan = planChanges({ containers: [want("web", "d1")] }, actual);
    expect(plan.map((c) => `${c.kind} ${"container" in c ? c.container.id : ""}`)).toEqual(["remove-orphan bbb", "stop-orphan aaa"]);
    expect(plan[0]!.reason).toBe("deployment d1 already has container c-copy (ccc); this is a surplus copy");
  });

  test("the duplicate rule is deterministic: right image first, then state, then the expected name, then id", () => {
    const a = have("web", "d1", "exited", { id: "zzz" });
    const b = have("other", "d1", "exited", { id: "aaa" });
    const wrong = have("x", "d1", "running", { id: "000", image: "docker.io/library/nginx:1.25" });
    for (const order of [[a, b, wrong], [wrong, b, a], [b, wrong, a]]) {
      const plan = planChanges({ containers: [want("web", "d1")] }, { containers: order });
      expect(plan.map((c) => `${c.kind} ${"container" in c ? c.container.id : ""}`)).toEqual(["remove-orphan aaa", "stop-orphan 000", "start zzz"]);
    }
  });
});

describe("network sections", () => {
  const route = (id: string, domain: string, upstreams: string[]): Route => ({ id, domain, upstreams, serviceId: "svc" });
  const cert = (domain: string, certificate = "-----BEGIN CERTIFICATE-----"): Certificate => ({ domain, certificate, certificateKey: "-----BEGIN KEY-----" });

  test("dns: planned only when both sides are known and differ, with a reason naming each difference", () => {
    const expected: ExpectedState = {
      containers: [],
      dns: [
        { name: "a.internal", ips: ["10.200.1.5"] },
        { name: "c.internal", ips: ["10.200.1.3"] },
        { name: "d.internal", ips: ["10.200.1.4"] },
      ],
    };
    const actual: ActualState = {
      containers: [],
      dns: [
        { name: "d.internal", ips: ["10.200.1.4"] },
        { name: "c.internal", ips: ["10.200.1.2"] },
        { name: "b.internal", ips: ["10.200.1.9"] },
      ],
    };
    const [change, ...rest] = planChanges(expected, actual);
    expect(rest).toEqual([]);
    expect(change).toMatchObject({ kind: "dns", records: expected.dns, description: "update DNS records (3 records)" });
    expect(change!.reason).toBe("dns: added a.internal; removed b.internal; changed c.internal 10.200.1.2 → 10.200.1.3");
    expect(planChanges(expected, { containers: [] })).toEqual([]);
    expect(planChanges({ containers: [] }, actual)).toEqual([]);
    expect(planChanges(expected, { containers: [], dns: [...expected.dns!].reverse() })).toEqual([]);
  });

  test("an empty expected list is an instruction to remove everything", () => {
    const [change] = planChanges({ containers: [], dns: [] }, { containers: [], dns: [{ name: "b.internal", ips: ["10.200.1.9"] }] });
    expect(change).toMatchObject({ kind: "dns", records: [], reason: "dns: removed b.internal" });
  });

  test("routes: differences in upstreams, domain and membership are named", () => {
    const expected: ExpectedState = { containers: [], routes: [route("r1", "a.example.com", ["10.200.1.3:80"]), route("r3", "c.example.com", ["10.200.1.4:80"])] };
    const actual: ActualState = { containers: [], routes: [route("r1", "a.example.com", ["10.200.1.2:80"]), route("r2", "b.example.com", ["10.200.1.9:80"])] };
    const [change] = planChanges(expected, actual);
    expect(change).toMatchObject({ kind: "routes", routes: expected.routes, certificates: [], description: "update proxy routes (2 routes, 0 certificates)" });
    expect(change!.reason).toBe("routes: added r3 (c.example.com); removed r2 (b.example.com); changed r1 upstreams 10.200.1.2:80 → 10.200.1.3:80");
  });

  test("routes: certificates count only when they were sent, and unsent ones are passed through untouched", () => {
    const routes = [route("r1", "a.example.com", ["10.200.1.2:80"])];
    const installed = [cert("a.example.com")];
    expect(planChanges({ containers: [], routes }, { containers: [], routes, certificates: installed })).toEqual([]);
    const [renewal] = planChanges({ containers: [], routes, certificates: [cert("a.example.com", "-----BEGIN CERTIFICATE----- new")] }, { containers: [], routes, certificates: installed });
    expect(renewal).toMatchObject({ kind: "routes", reason: "certificates: replaced a.example.com", description: "update proxy routes (1 route, 1 certificate)" });
    const [routeOnly] = planChanges({ containers: [], routes: [] }, { containers: [], routes, certificates: installed });
    expect(routeOnly).toMatchObject({ kind: "routes", routes: [], certificates: installed, reason: "routes: removed r1 (a.example.com)" });
    const [added] = planChanges({ containers: [], routes, certificates: installed }, { containers: [], routes });
    expect(added!.reason).toBe("certificates: added a.example.com");
  });

  test("routes: nothing when expected routes were not sent (worker node) or the proxy is not in use", () => {
    const routes = [route("r1", "a.example.com", ["10.200.1.2:80"])];
    expect(planChanges({ containers: [] }, { containers: [], routes: [] })).toEqual([]);
    expect(planChanges({ containers: [], routes }, { containers: [] })).toEqual([]);
  });

  test("wireguard: added, removed and changed peers are named by the first 8 characters of their key", () => {
    const expected: Peer[] = [{ publicKey: KEY_A, allowedIps: ["10.100.2.1/32"], endpoint: "5.6.7.8:51820" }, { publicKey: KEY_B, allowedIps: ["10.100.3.1/32"] }];
    const actual: Peer[] = [{ publicKey: KEY_A, allowedIps: ["10.100.2.1/32"], endpoint: "1.2.3.4:51820" }];
    const [change] = planChanges({ containers: [], peers: expected }, { containers: [], peers: actual });
    expect(change).toMatchObject({ kind: "wireguard", peers: expected, description: "update WireGuard peers (2 peers)" });
    expect(change!.reason).toBe(`peers: added ${KEY_B.slice(0, 8)}…; endpoint of ${KEY_A.slice(0, 8)}… 1.2.3.4:51820 → 5.6.7.8:51820`);
    const [removal] = planChanges({ containers: [], peers: [] }, { containers: [], peers: [{ publicKey: KEY_B, allowedIps: ["10.100.3.0/24"] }] });
    expect(removal!.reason).toBe(`peers: removed ${KEY_B.slice(0, 8)}…`);
    const [ips] = planChanges({ containers: [], peers: [{ publicKey: KEY_B, allowedIps: ["10.100.3.0/24"] }] }, { containers: [], peers: [{ publicKey: KEY_B, allowedIps: [], endpoint: "1.2.3.4:1" }] });
    expect(ips!.reason).toBe(`peers: endpoint of ${KEY_B.slice(0, 8)}… 1.2.3.4:1 → (none); allowed IPs of ${KEY_B.slice(0, 8)}… (none) → 10.100.3.0/24`);
    expect(planChanges({ containers: [], peers: expected }, { containers: [] })).toEqual([]);
    expect(planChanges({ containers: [], peers: expected }, { containers: [], peers: [...expected].reverse() })).toEqual([]);
  });

  test("long difference lists are capped", () => {
    const many = Array.from({ length: 15 }, (_, i) => ({ name: `n${String(i).padStart(2, "0")}.internal`, ips: ["10.0.0.1"] }));
    const [change] = planChanges({ containers: [], dns: many }, { containers: [], dns: [] });
    expect(change!.reason).toBe(`dns: added ${many.slice(0, 10).map((r) => r.name).join(", ")} and 5 more`);
  });
});

describe("the whole plan", () => {
  const expected: ExpectedState = {
    containers: [want("z-start", "d-start"), want("b-start", "d-start2"), want("y-deploy", "d-deploy"), want("a-deploy", "d-deploy2"), want("x-redeploy", "d-redeploy"), want("ok", "d-ok")],
    dns: [{ name: "a.internal", ips: ["10.200.1.2"] }],
    routes: [{ id: "r1", domain: "a.example.com", upstreams: ["10.200.1.2:80"], serviceId: "svc" }],
    peers: [{ publicKey: KEY_A, allowedIps: ["10.100.2.1/32"] }],
  };
  const actual: ActualState = {
    containers: [
      have("x-redeploy", "d-redeploy", "running", { image: "docker.io/library/nginx:1.25" }),
      have("ok", "d-ok", "running"),
      have("z-start", "d-start", "exited", { exitCode: 137 }),
      have("b-start", "d-start2", "created"),
      have("zz-orphan", "gone", "running"),
      have("aa-orphan", undefined, "exited"),
    ],
    dns: [],
    routes: [],
    peers: [],
  };

  test("orphans, start, deploy, redeploy, dns, routes, wireguard; by name within each group", () => {
    expect(kinds(expected, actual)).toEqual([
      "remove-orphan aa-orphan",
      "stop-orphan zz-orphan",
      "start b-start",
      "start z-start",
      "deploy a-deploy",
      "deploy y-deploy",
      "redeploy x-redeploy",
      "dns",
      "routes",
      "wireguard",
    ]);
  });

  test("the same input always gives the same plan, whatever the order of actual containers", () => {
    const shuffled = { ...actual, containers: [...actual.containers].reverse() };
    expect(planChanges(expected, shuffled)).toEqual(planChanges(expected, actual));
  });

  test("describePlan numbers each change with its reason", () => {
    const text = describePlan(planChanges(expected, actual));
    const lines = text.split("\n");
    expect(lines[0]).toBe("10 changes planned:");
    expect(lines[1]).toBe("   1. remove orphan container aa-orphan (aa-orphan-id)");
    expect(lines[2]).toBe("      reason: no techulus.deployment.id label");
    expect(lines).toContain("   4. start z-start (docker.io/library/nginx:1.26)");
    expect(lines).toContain("      reason: state exited (exit code 137)");
    expect(lines).toContain("   7. redeploy x-redeploy (docker.io/library/nginx:1.26)");
    expect(lines).toContain("      reason: image docker.io/library/nginx:1.25 → docker.io/library/nginx:1.26");
    expect(lines[19]).toBe("  10. update WireGuard peers (1 peer)");
    expect(lines).toHaveLength(21);
  });

  test("describePlan of an empty plan says so", () => {
    expect(describePlan([])).toBe("No changes: the actual state matches the expected state.");
  });
});
