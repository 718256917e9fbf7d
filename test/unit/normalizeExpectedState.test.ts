import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { ExpectedContainerWire, ExpectedStateWire } from "../../lib/controlplane/schemas.ts";
import { encryptSecret } from "../../lib/crypto/secrets.ts";
import { InvalidInputError } from "../../lib/errors.ts";
import { normalizeExpectedState, normalizePeers, type NormalizeOptions } from "../../lib/state/normalizeExpectedState.ts";
import type { NodeRules } from "../../lib/state/nodeRules.ts";
import { InputRejectedError } from "../../lib/state/Problems.ts";

const ROOT = "/var/lib/techulus-agent/volumes";
const NODE: NodeRules = { subnetId: 1, hostPorts: [{ from: 1024, to: 65535 }], reservedPorts: [{ port: 51820, owner: "the agent's WireGuard port (--wireguard-port)" }] };
const CONTROL_PLANE: NormalizeOptions = { isProxy: true, volumesRoot: ROOT, allowPlainEnv: false, node: NODE };
const STATE_FILE: NormalizeOptions = { ...CONTROL_PLANE, allowPlainEnv: true };
const WORKER: NormalizeOptions = { ...CONTROL_PLANE, isProxy: false };
const SEALED = encryptSecret("s3cret", randomBytes(32).toString("hex"));
const KEY_A = Buffer.alloc(32, 1).toString("base64");
const KEY_B = Buffer.alloc(32, 2).toString("base64");
const KEY_C = Buffer.alloc(32, 3).toString("base64");
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

function container(overrides: Partial<ExpectedContainerWire> = {}): ExpectedContainerWire {
  return {
    deploymentId: "1a2b3c4d-0000-4000-8000-000000000001",
    serviceId: "svc1",
    serviceName: "web",
    name: "svc1-1a2b3c4d",
    image: "nginx",
    ipAddress: "10.200.1.2",
    ports: [{ containerPort: 80, hostPort: null }],
    env: { SECRET: SEALED },
    healthCheck: null,
    volumes: [],
    ...overrides,
  };
}

function state(overrides: Partial<ExpectedStateWire> = {}): ExpectedStateWire {
  return { containers: [container()], ...overrides };
}

/** The rejection's message, failing the test if the state was accepted. */
function rejection(wire: ExpectedStateWire, options: NormalizeOptions = CONTROL_PLANE): InputRejectedError {
  try {
    normalizeExpectedState(wire, options);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err).toBeInstanceOf(InputRejectedError);
    return err as InputRejectedError;
  }
  throw new Error("expected the state to be rejected");
}

describe("containers", () => {
  test("a valid container is normalised", () => {
    const result = normalizeExpectedState(
      state({
        containers: [
          container({
            image: "user/app:2",
            ipAddress: "",
            ports: [{ containerPort: 8080, hostPort: 18080 }, { containerPort: 80, hostPort: null }],
            env: { B: SEALED, A: SEALED },
            healthCheck: { cmd: "wget -q -O- localhost", interval: 10, timeout: 5, retries: 3, startPeriod: 0 },
            volumes: [
              { name: "data", hostPath: `${ROOT}/svc1/data/`, containerPath: "/var/data/" },
              { name: "conf", hostPath: `${ROOT}/svc1/./conf`, containerPath: "/etc/app" },
            ],
          }),
        ],
      }),
      CONTROL_PLANE,
    );
    expect(result.containers).toEqual([
      {
        deploymentId: "1a2b3c4d-0000-4000-8000-000000000001",
        serviceId: "svc1",
        serviceName: "web",
        name: "svc1-1a2b3c4d",
        image: "docker.io/user/app:2",
        ports: [{ containerPort: 80 }, { containerPort: 8080, hostPort: 18080 }],
        env: { A: { kind: "encrypted", value: SEALED }, B: { kind: "encrypted", value: SEALED } },
        healthCheck: { cmd: "wget -q -O- localhost", interval: 10, timeout: 5, retries: 3, startPeriod: 0 },
        volumes: [
          { name: "conf", hostPath: `${ROOT}/svc1/conf`, containerPath: "/etc/app" },
          { name: "data", hostPath: `${ROOT}/svc1/data`, containerPath: "/var/data" },
        ],
      },
    ]);
    expect("ipAddress" in result.containers[0]!).toBe(false);
    expect("healthCheck" in normalizeExpectedState(state(), CONTROL_PLANE).containers[0]!).toBe(false);
  });

  test("null ipAddress is undefined; a valid one is kept", () => {
    expect(normalizeExpectedState(state({ containers: [container({ ipAddress: null })] }), CONTROL_PLANE).containers[0]!.ipAddress).toBeUndefined();
    expect(normalizeExpectedState(state(), CONTROL_PLANE).containers[0]!.ipAddress).toBe("10.200.1.2");
  });

  test("containers are sorted by name", () => {
    const result = normalizeExpectedState(
      state({ containers: [container({ name: "b", deploymentId: "d2", ipAddress: "10.200.1.3" }), container({ name: "a", deploymentId: "d1" })] }),
      CONTROL_PLANE,
    );
    expect(result.containers.map((c) => c.name)).toEqual(["a", "b"]);
  });

  test.each<[string, Partial<ExpectedContainerWire>, string]>([
    ["image with whitespace", { image: "ng inx" }, 'containers[0] "svc1-1a2b3c4d": image "ng inx" has whitespace'],
    ["image with metacharacters", { image: "nginx;curl evil|sh" }, 'image "nginx;curl evil|sh" has'],
    ["image with $( )", { image: "$(reboot)" }, 'has shell metacharacter "$"'],
    ["bad ipAddress", { ipAddress: "10.0.0.999" }, 'containers[0] "svc1-1a2b3c4d" ipAddress: "10.0.0.999" is not an IPv4 address'],
    ["bad container name", { name: "web;rm" }, 'container name "web;rm" is invalid'],
    ["bad deploymentId", { deploymentId: "../x" }, 'deploymentId "../x" is invalid'],
    ["bad serviceId", { serviceId: ".." }, 'serviceId ".." is invalid'],
    ["containerPort 0", { ports: [{ containerPort: 0 }] }, "ports[0] containerPort: port 0 is out of range 1–65535"],
    ["hostPort 70000", { ports: [{ containerPort: 80, hostPort: 70000 }] }, "ports[0] hostPort: port 70000 is out of range"],
    ["bad env name", { env: { "BAD-NAME": SEALED } }, 'env name "BAD-NAME" is invalid'],
    ["env value that is not sealed", { env: { TOKEN: "hello world" } }, "env TOKEN: value is not an encrypted secret"],
    ["env value too short to be sealed", { env: { TOKEN: "aGVsbG8=" } }, "env TOKEN: value is not an encrypted secret"],
    ["plain env from the control plane", { env: { TOKEN: "plain:hunter2" } }, "env TOKEN: plain values (\"plain:\" prefix) are only accepted in local state files"],
    ["relative containerPath", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1/d`, containerPath: "data" }] }, 'volumes[0]: containerPath "data" must be an absolute path'],
    ["containerPath with ..", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1/d`, containerPath: "/a/../b" }] }, "must be an absolute path below / without"],
    ["containerPath /", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1/d`, containerPath: "/" }] }, "must be an absolute path below /"],
    ["volume name with a slash", { volumes: [{ name: "a/b", hostPath: `${ROOT}/svc1/d`, containerPath: "/d" }] }, 'name "a/b" must be one path segment'],
    ["volume name ..", { volumes: [{ name: "..", hostPath: `${ROOT}/svc1/d`, containerPath: "/d" }] }, 'name ".." must be one path segment'],
    ["relative hostPath", { volumes: [{ name: "d", hostPath: "svc1/d", containerPath: "/d" }] }, 'hostPath "svc1/d" must be an absolute path'],
    ["hostPath escaping with ..", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1/../../../../etc`, containerPath: "/d" }] }, `is outside ${ROOT}/svc1/`],
    ["hostPath in another service's folder", { volumes: [{ name: "d", hostPath: `${ROOT}/svc2/d`, containerPath: "/d" }] }, `is outside ${ROOT}/svc1/`],
    ["hostPath that is the service folder itself", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1`, containerPath: "/d" }] }, "is outside"],
    ["hostPath sharing a prefix", { volumes: [{ name: "d", hostPath: `${ROOT}/svc1x/d`, containerPath: "/d" }] }, "is outside"],
    ["hostPath outside the root", { volumes: [{ name: "d", hostPath: "/etc/shadow", containerPath: "/d" }] }, "is outside"],
    [
      "two volumes on one containerPath",
      {
        volumes: [
          { name: "a", hostPath: `${ROOT}/svc1/a`, containerPath: "/d" },
          { name: "b", hostPath: `${ROOT}/svc1/b`, containerPath: "/d/" },
        ],
      },
      'volumes[1]: containerPath "/d" is also mounted by volumes[0]',
    ],
    ["empty health command", { healthCheck: { cmd: " ", interval: 1, timeout: 1, retries: 1, startPeriod: 0 } }, "healthCheck: cmd is empty"],
    ["negative health interval", { healthCheck: { cmd: "true", interval: -1, timeout: 1, retries: 1, startPeriod: 0 } }, "healthCheck: interval -1 must be a non-negative"],
    ["fractional retries", { healthCheck: { cmd: "true", interval: 1, timeout: 1, retries: 1.5, startPeriod: 0 } }, "retries 1.5 must be a non-negative integer"],
  ])("rejects %s", (_name, overrides, message) => {
    const err = rejection(state({ containers: [container(overrides)] }));
    expect(err.message).toContain(message);
    expect(err.message).toStartWith("expected state rejected (1 problem): ");
  });

  test("no rejection message ever contains a secret value", () => {
    const err = rejection(state({ containers: [container({ env: { A: "plain:hunter2", B: "not sealed secret!", C: SEALED, "D-": "plain:x" } })] }));
    expect(err.message).not.toContain("hunter2");
    expect(err.message).not.toContain("not sealed secret!");
    expect(err.message).not.toContain(SEALED);
  });

  test("plain: values are accepted from local state files, everything else stays encrypted", () => {
    const result = normalizeExpectedState(state({ containers: [container({ env: { A: "plain:hello:world", B: "plain:", C: SEALED } })] }), STATE_FILE);
    expect(result.containers[0]!.env).toEqual({
      A: { kind: "plain", value: "hello:world" },
      B: { kind: "plain", value: "" },
      C: { kind: "encrypted", value: SEALED },
    });
  });

  test("duplicate names and duplicate deployment ids are rejected", () => {
    const err = rejection(
      state({
        containers: [
          container({ name: "a", deploymentId: "d1", ipAddress: null }),
          container({ name: "a", deploymentId: "d2", ipAddress: null }),
          container({ name: "c", deploymentId: "d1", ipAddress: null }),
        ],
      }),
    );
    expect(err.problems).toEqual(['containers[1] "a": name is also used by containers[0]', 'containers[2] "c": deploymentId "d1" is also used by containers[0]']);
  });
});

describe("the state is rejected as a whole", () => {
  test("every problem is listed in one error, and nothing is returned", () => {
    const err = rejection(
      state({
        containers: [container(), container({ name: "web-1", deploymentId: "d2", image: "ng inx" })],
        dns: { records: [{ name: "api.internal", ips: ["10.0.0.999"] }] },
        wireguard: { peers: [{ publicKey: "nope", allowedIps: "10.100.2.0/24", endpoint: null }] },
      }),
    );
    expect(err.message).toBe(
      'expected state rejected (3 problems): containers[1] "web-1": image "ng inx" has whitespace; dns.records[0]: "10.0.0.999" is not an IPv4 address; wireguard.peers[0]: "nope" is not a WireGuard public key (base64 of 32 bytes)',
    );
    expect(err.problems).toHaveLength(3);
    expect(err.hint).toContain("nothing was applied");
  });

  test("a container with several problems reports each of them", () => {
    const err = rejection(state({ containers: [container({ image: "A B", ipAddress: "x", env: { "1": SEALED } })] }));
    expect(err.problems).toHaveLength(3);
  });

  test("a very long list of problems is capped in the message but complete in .problems", () => {
    const containers = Array.from({ length: 40 }, (_, i) => container({ name: `c${i}`, deploymentId: `d${i}`, image: "bad image" }));
    const err = rejection(state({ containers }));
    expect(err.problems).toHaveLength(40);
    expect(err.message).toStartWith("expected state rejected (40 problems): ");
    expect(err.message).toEndWith("; and 15 more");
  });
});

describe("sections not sent stay undefined; empty lists stay empty", () => {
  test("missing sections are undefined", () => {
    const result = normalizeExpectedState({ containers: [] }, CONTROL_PLANE);
    expect(result).toEqual({ containers: [] });
    expect(Object.keys(result)).toEqual(["containers"]);
  });
  test("empty sections are empty lists", () => {
    const result = normalizeExpectedState(
      { containers: [], dns: { records: [] }, traefik: { routes: [], certificates: [] }, wireguard: { peers: [] } },
      CONTROL_PLANE,
    );
    expect(result).toEqual({ containers: [], dns: [], routes: [], certificates: [], peers: [] });
  });
  test("traefik without certificates leaves certificates undefined", () => {
    const result = normalizeExpectedState({ containers: [], traefik: { routes: [] } }, CONTROL_PLANE);
    expect(result.routes).toEqual([]);
    expect(result.certificates).toBeUndefined();
  });
});

describe("DNS records", () => {
  test("names lower-cased, ips sorted, records sorted, same names merged, empty records dropped", () => {
    const result = normalizeExpectedState(
      state({
        dns: {
          records: [
            { name: "Web.Internal", ips: ["10.200.1.3", "10.200.1.2"] },
            { name: "api.internal", ips: ["10.200.2.2"] },
            { name: "web.internal", ips: ["10.200.1.4", "10.200.1.2"] },
            { name: "gone.internal", ips: [] },
          ],
        },
      }),
      CONTROL_PLANE,
    );
    expect(result.dns).toEqual([
      { name: "api.internal", ips: ["10.200.2.2"] },
      { name: "web.internal", ips: ["10.200.1.2", "10.200.1.3", "10.200.1.4"] },
    ]);
  });
  test.each([
    ["bad_name.internal", "10.0.0.1", 'dns.records[0]: "bad_name.internal" is not a valid domain name'],
    ["*.internal", "10.0.0.1", 'dns.records[0]: "*.internal" is not a valid domain name'],
    ["api.internal", "10.0.0.999", 'dns.records[0]: "10.0.0.999" is not an IPv4 address'],
    ["api.internal", "fd00::1", 'dns.records[0]: "fd00::1" is not an IPv4 address'],
    ["docker.io", "10.0.0.1", 'dns.records[0]: "docker.io" is not an internal name (it must end in .internal)'],
    ["internal", "10.0.0.1", 'dns.records[0]: "internal" is not an internal name'],
  ])("rejects %s → %s", (name, ip, message) => {
    expect(rejection(state({ dns: { records: [{ name, ips: [ip] }] } })).message).toContain(message);
  });
});

describe("routes and certificates", () => {
  const route = (id: string, domain: string, upstreams: string[], serviceId = "svc1") => ({ id, domain, upstreams, serviceId });

  test("caddy and traefik routes are merged by id, validated, sorted; routes without upstreams dropped", () => {
    const result = normalizeExpectedState(
      state({
        caddy: { routes: [route("r2", "B.example.com", ["10.200.1.3:80", "10.200.1.2:80"]), route("r1", "a.example.com", ["10.200.1.2:3000"])] },
        traefik: {
          routes: [route("r1", "A.example.com", ["10.200.1.2:3000"]), route("r3", "*.apps.example.com", ["app.internal:8080"]), route("r0", "idle.example.com", [])],
          certificates: [{ domain: "b.example.com", certificate: PEM, certificateKey: PEM_KEY }, { domain: "A.example.com", certificate: PEM, certificateKey: PEM_KEY }],
        },
      }),
      CONTROL_PLANE,
    );
    expect(result.routes).toEqual([
      route("r1", "a.example.com", ["10.200.1.2:3000"]),
      route("r2", "b.example.com", ["10.200.1.2:80", "10.200.1.3:80"]),
      route("r3", "*.apps.example.com", ["app.internal:8080"]),
    ]);
    expect(result.certificates!.map((c) => c.domain)).toEqual(["a.example.com", "b.example.com"]);
  });

  test("the same id with different content in caddy and traefik is rejected", () => {
    const err = rejection(state({ caddy: { routes: [route("r1", "a.example.com", ["10.200.1.2:80"])] }, traefik: { routes: [route("r1", "a.example.com", ["10.200.1.9:80"])] } }));
    expect(err.message).toContain('traefik.routes[0] "r1": differs from caddy.routes[0] "r1", which has the same id');
  });

  test.each([
    [route("r1", "bad_domain.com", ["10.200.1.2:80"]), '"bad_domain.com" is not a valid domain name'],
    [route("r1", "a.example.com", ["10.200.1.2"]), 'upstreams[0]: "10.200.1.2" is not a host:port endpoint (no port)'],
    [route("r1", "a.example.com", ["10.200.1.999:80"]), "upstreams[0]: \"10.200.1.999:80\" is not a host:port endpoint (bad IPv4 address)"],
    [route("r1", "a.example.com", ["10.200.1.2:99999"]), "port must be 1–65535"],
    [route("../r1", "a.example.com", ["10.200.1.2:80"]), 'route id "../r1" is invalid'],
    // Caddy expands {…} placeholders in header values: this would send Caddy's environment to every client.
    [route("r1", "a.example.com", ["10.200.1.2:80"], "{env.HOME}"), 'serviceId "{env.HOME}" is invalid'],
  ])("rejects a bad route %#", (bad, message) => {
    expect(rejection(state({ caddy: { routes: [bad] } })).message).toContain(message);
  });

  test("a bad route with no upstreams is still rejected", () => {
    expect(rejection(state({ caddy: { routes: [route("r1", "bad domain", [])] } })).message).toContain("is not a valid domain name");
  });

  test.each([
    [{ domain: "bad domain", certificate: PEM, certificateKey: PEM_KEY }, '"bad domain" is not a valid domain name'],
    [{ domain: "a.example.com", certificate: "", certificateKey: PEM_KEY }, "certificate is not PEM text"],
    [{ domain: "a.example.com", certificate: PEM, certificateKey: "secret-key-material" }, "certificateKey is not PEM text"],
  ])("rejects a bad certificate %#", (cert, message) => {
    const err = rejection(state({ traefik: { routes: [], certificates: [cert] } }));
    expect(err.message).toContain(`traefik.certificates[0]`);
    expect(err.message).toContain(message);
    expect(err.message).not.toContain("secret-key-material");
  });

  test("two different certificates for one domain are rejected", () => {
    const err = rejection(
      state({ traefik: { routes: [], certificates: [{ domain: "a.example.com", certificate: PEM, certificateKey: PEM_KEY }, { domain: "A.example.com", certificate: PEM + "x", certificateKey: PEM_KEY }] } }),
    );
    expect(err.message).toContain("which has the same domain");
  });

  test("worker nodes drop routes and certificates entirely, even invalid ones", () => {
    const result = normalizeExpectedState(
      state({
        caddy: { routes: [route("r1", "a.example.com", ["10.200.1.2:80"])] },
        traefik: { routes: [route("r2", "bad domain", ["x"])], certificates: [{ domain: "a.example.com", certificate: "", certificateKey: "" }] },
      }),
      WORKER,
    );
    expect(result.routes).toBeUndefined();
    expect(result.certificates).toBeUndefined();
    expect(result.containers).toHaveLength(1);
  });
});

describe("WireGuard peers", () => {
  test("allowed IPs split, trimmed, canonical and sorted; empty endpoint is undefined; peers sorted by key", () => {
    const result = normalizeExpectedState(
      state({
        wireguard: {
          peers: [
            { publicKey: KEY_B, allowedIps: " 10.200.2.0/24 , 10.100.2.1/32,", endpoint: "203.0.113.7:51820" },
            { publicKey: KEY_A, allowedIps: "10.100.3.1/32", endpoint: "" },
            { publicKey: KEY_C, allowedIps: "", endpoint: null },
          ],
        },
      }),
      CONTROL_PLANE,
    );
    expect(result.peers).toEqual([
      { publicKey: KEY_A, allowedIps: ["10.100.3.1/32"] },
      { publicKey: KEY_B, allowedIps: ["10.100.2.1/32", "10.200.2.0/24"], endpoint: "203.0.113.7:51820" },
      { publicKey: KEY_C, allowedIps: [] },
    ]);
  });

  test.each([
    [{ publicKey: "not-a-key", allowedIps: "10.100.2.0/24" }, 'wireguard.peers[0]: "not-a-key" is not a WireGuard public key'],
    [{ publicKey: KEY_A, allowedIps: "10.100.2.0/24,10.100.2.0" }, 'wireguard.peers[0] allowedIps: "10.100.2.0" is not a CIDR'],
    [{ publicKey: KEY_A, allowedIps: "10.100.2.0/40" }, 'wireguard.peers[0] allowedIps: "10.100.2.0/40" is not a CIDR'],
    [{ publicKey: KEY_A, allowedIps: "10.100.2.0/24", endpoint: "203.0.113.7" }, 'wireguard.peers[0] endpoint: "203.0.113.7" is not a host:port endpoint'],
    [{ publicKey: KEY_A, allowedIps: "10.100.2.0/24", endpoint: "evil;host:51820" }, "is not a host:port endpoint"],
  ])("rejects %#", (peer, message) => {
    expect(rejection(state({ wireguard: { peers: [peer] } })).message).toContain(message);
  });

  test("duplicate public keys are rejected", () => {
    const err = rejection(state({ wireguard: { peers: [{ publicKey: KEY_A, allowedIps: "10.100.2.1/32" }, { publicKey: KEY_A, allowedIps: "10.100.3.1/32" }] } }));
    expect(err.problems).toEqual([`wireguard.peers[1]: public key ${KEY_A} is also used by wireguard.peers[0]`]);
  });

  test("normalizePeers validates a work-queue peer set the same way", () => {
    expect(normalizePeers([{ publicKey: KEY_B, allowedIps: "10.100.2.0/24" }, { publicKey: KEY_A, allowedIps: "10.100.3.0/24", endpoint: "[FD00::1]:51820" }])).toEqual([
      { publicKey: KEY_A, allowedIps: ["10.100.3.0/24"], endpoint: "[fd00::1]:51820" },
      { publicKey: KEY_B, allowedIps: ["10.100.2.0/24"] },
    ]);
    expect(normalizePeers([])).toEqual([]);
    expect(() => normalizePeers([{ publicKey: "x", allowedIps: "bad" }])).toThrow(
      'WireGuard peers rejected (2 problems): peers[0]: "x" is not a WireGuard public key (base64 of 32 bytes); peers[0] allowedIps: "bad" is not a CIDR',
    );
  });
});
