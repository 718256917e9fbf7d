import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ControlPlaneClient, ControlPlaneError } from "../../lib/controlplane/ControlPlaneClient.ts";
import { signatureHeaders } from "../../lib/controlplane/signing.ts";
import { probeControlPlane } from "../../lib/doctor/probeControlPlane.ts";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import { decryptSecret } from "../../lib/crypto/secrets.ts";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { TestControlPlane, trickledAnswer } from "../support/TestControlPlane.ts";

const cp = new TestControlPlane();
const key = SigningKey.generate();
let client: ControlPlaneClient;
let serverId: string;

async function caught(p: Promise<unknown>): Promise<ControlPlaneError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ControlPlaneError) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  await cp.start();
  const token = cp.issueToken();
  const unsigned = new ControlPlaneClient({ baseUrl: cp.url, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
  const res = await unsigned.register({
    token,
    wireguardPublicKey: wireGuardPublicKey(generateWireGuardPrivateKey()),
    signingPublicKey: key.publicKeyRawBase64(),
  });
  serverId = res.serverId;
  client = new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, backoff: { attempts: 3, baseMs: 1, maxMs: 5 }, timeoutMs: 2000 });
});
afterAll(() => cp.stop());

describe("registration", () => {
  test("a token registers once; the second use is refused with the server's text", async () => {
    const token = cp.issueToken();
    const c = new ControlPlaneClient({ baseUrl: cp.url, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
    const body = { token, wireguardPublicKey: "wg", signingPublicKey: SigningKey.generate().publicKeyRawBase64() };
    const res = await c.register(body);
    expect(res.encryptionKey).toBe(cp.encryptionKey);
    expect(res.wireguardIp).toBe(`10.100.${res.subnetId}.1`);
    const err = await caught(c.register(body));
    expect(err.status).toBe(401);
    expect(err.message).toContain("Invalid, expired, or already used token");
    expect(err.message).not.toContain(token);
  });

  test("an expired token (older than 24 h) is refused", async () => {
    const token = cp.issueToken({ createdAt: Date.now() - 25 * 3600_000 });
    const c = new ControlPlaneClient({ baseUrl: cp.url, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
    const err = await caught(c.register({ token, wireguardPublicKey: "wg", signingPublicKey: "k" }));
    expect(err.status).toBe(401);
  });
});

describe("signed calls", () => {
  test("v1-signed calls are accepted and reach the server's state", async () => {
    cp.setExpectedState(serverId, { containers: [], dns: { records: [{ name: "a.internal", ips: ["10.200.1.2"] }] }, extraFieldFromTheFuture: 1 });
    const state = await client.getExpectedState();
    expect(state.dns?.records[0]?.name).toBe("a.internal");
    await client.reportStatus({ containers: [] });
    expect(cp.servers.get(serverId)!.statusReports.length).toBeGreaterThan(0);
  });

  test("v2 signing mode is accepted by a control plane that verifies v2", async () => {
    const v2 = new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, signing: "v2" });
    cp.signing = "v2";
    try {
      await v2.reportStatus({ containers: [] });
      const err = await caught(client.reportStatus({ containers: [] }));
      expect(err.status).toBe(401);
    } finally {
      cp.signing = "v1";
    }
  });

  const raw = async (headers: Record<string, string>, body: string) => {
    const res = await fetch(`${cp.url}/api/v1/agent/status`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body });
    return { status: res.status, error: ((await res.json()) as { error: string }).error };
  };

  test("a tampered body is rejected", async () => {
    const headers = signatureHeaders(key, serverId, "v1", "POST", "/api/v1/agent/status", '{"containers":[]}');
    expect(await raw(headers, '{"containers":[{}]}')).toEqual({ status: 401, error: "Invalid signature" });
  });

  test("a stale timestamp is rejected", async () => {
    const body = '{"containers":[]}';
    const headers = signatureHeaders(key, serverId, "v1", "POST", "/api/v1/agent/status", body, Date.now() - 61_000);
    expect(await raw(headers, body)).toEqual({ status: 401, error: "Request timestamp expired or invalid" });
  });

  test("a wrong key is rejected", async () => {
    const body = '{"containers":[]}';
    const headers = signatureHeaders(SigningKey.generate(), serverId, "v1", "POST", "/api/v1/agent/status", body);
    expect(await raw(headers, body)).toEqual({ status: 401, error: "Invalid signature" });
  });

  test("missing headers and unknown servers get 400 and 404", async () => {
    expect((await raw({}, "{}")).status).toBe(400);
    const headers = signatureHeaders(key, "no-such-server", "v1", "POST", "/api/v1/agent/status", "{}");
    expect(await raw(headers, "{}")).toEqual({ status: 404, error: "Server not found or not registered" });
  });

  test("the claim is signed over `<ts>:` and a second claim gets 409 (undefined)", async () => {
    const build = cp.addBuild({ cloneUrl: "https://x-access-token:tok@example.invalid/o/r.git", imageUri: "127.0.0.1:5000/p/s:latest", secrets: { K: cp.encrypt("v") } });
    const claimed = await client.claimBuild(build.id);
    expect(claimed?.imageUri).toBe("127.0.0.1:5000/p/s:latest");
    expect(decryptSecret(claimed!.secrets.K!, cp.encryptionKey)).toBe("v");
    expect(await client.claimBuild(build.id)).toBeUndefined();
  });
});

describe("bad answers and failures", () => {
  test("a body that is not JSON gives a clear error", async () => {
    const off = cp.intercept((req) => (req.path.endsWith("/expected-state") ? new Response("<html>oops</html>", { status: 200 }) : undefined));
    try {
      const err = await caught(client.getExpectedState());
      expect(err.message).toBe("control plane GET /api/v1/agent/expected-state answered 200 with a body that is not JSON");
    } finally {
      off();
    }
  });

  test("a response missing a required field names the field", async () => {
    cp.setExpectedState(serverId, { containers: [{ deploymentId: "d1", serviceId: "s1", name: "n" }] });
    const err = await caught(client.getExpectedState());
    expect(err.message).toContain("invalid response: containers.0.image");
  });

  test("5xx is retried with backoff, 4xx is not", async () => {
    let calls = 0;
    const off = cp.intercept((req) => {
      if (!req.path.endsWith("/work-queue")) return undefined;
      calls++;
      return calls < 3 ? Response.json({ error: "Internal server error" }, { status: 503 }) : undefined;
    });
    try {
      expect(await client.getWorkQueue()).toEqual([]);
      expect(calls).toBe(3);
    } finally {
      off();
    }
    let badCalls = 0;
    const off2 = cp.intercept((req) => (req.path.endsWith("/work-queue") ? (badCalls++, Response.json({ error: "Invalid request" }, { status: 400 })) : undefined));
    try {
      const err = await caught(client.getWorkQueue());
      expect(badCalls).toBe(1);
      expect(err.status).toBe(400);
      expect(err.serverError).toBe("Invalid request");
    } finally {
      off2();
    }
  });

  test("an unreachable control plane fails after the retries with the network reason", async () => {
    const dead = new ControlPlaneClient({ baseUrl: "http://127.0.0.1:1", serverId, signingKey: key, backoff: { attempts: 2, baseMs: 1, maxMs: 2 } });
    const err = await caught(dead.getExpectedState());
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  test("a hanging control plane hits the per-request timeout", async () => {
    const off = cp.intercept(async (req) => (req.path.endsWith("/pending-builds") ? (await Bun.sleep(1500), undefined) : undefined));
    try {
      const quick = new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, timeoutMs: 200, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
      const err = await caught(quick.getPendingBuild());
      expect(err.message).toBe("control plane GET /api/v1/agent/pending-builds timed out after 0.2 s waiting for the answer (--request-timeout)");
    } finally {
      off();
    }
  });
});

describe("answers the agent cannot use say what they were", () => {
  const EXPECTED_STATE = "/api/v1/agent/expected-state";
  /** One attempt, so each test sees the error of exactly one answer. */
  const once = (timeoutMs = 15_000) => new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, timeoutMs, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
  const answering = (respond: () => Response) => cp.intercept((req) => (req.path === EXPECTED_STATE ? respond() : undefined));

  test("a body trickled for ever: timed out reading the answer, naming --request-timeout", async () => {
    const off = answering(trickledAnswer);
    try {
      const started = Date.now();
      const err = await caught(once(1000).getExpectedState());
      expect(err.message).toBe(`control plane GET ${EXPECTED_STATE} timed out after 1 s reading the answer (--request-timeout)`);
      expect(err.retryable).toBe(true);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      off();
    }
  });

  test("a redirect: where it points, and it is not followed", async () => {
    for (const [location, shown] of [
      ["https://cp.example.com/api/v1/agent/expected-state", "https://cp.example.com/api/v1/agent/expected-state"],
      ["/v2/agent/expected-state", `${cp.url}/v2/agent/expected-state`],
    ]) {
      const before = cp.requests.length;
      const off = answering(() => new Response("<a>moved</a>", { status: 302, headers: { location } }));
      try {
        const err = await caught(once().getExpectedState());
        expect(err.message).toBe(`control plane GET ${EXPECTED_STATE} answered 302, a redirect to ${shown}: the agent does not follow redirects; give --url the address the control plane answers on`);
        expect(err.status).toBe(302);
        expect(cp.requests.slice(before).map((r) => r.path)).toEqual([EXPECTED_STATE]);
      } finally {
        off();
      }
    }
  });

  test("a 10 MiB answer: over the size limit, and the limit is named (with or without Content-Length)", async () => {
    const tenMiB = "x".repeat(10 * 1024 * 1024);
    const chunked = () => {
      let left = 10;
      const body = new ReadableStream({
        pull(controller) {
          if (left-- === 0) return controller.close();
          controller.enqueue(new TextEncoder().encode(tenMiB.slice(0, 1024 * 1024)));
        },
      });
      return new Response(body, { status: 200 });
    };
    for (const respond of [() => new Response(tenMiB, { status: 200 }), chunked]) {
      const off = answering(respond);
      try {
        const err = await caught(once().getExpectedState());
        expect(err.message).toBe(`control plane GET ${EXPECTED_STATE} answered 200 with a body over the size limit of 8 MiB`);
        expect(err.retryable).toBe(false);
      } finally {
        off();
      }
    }
  });

  test("agent doctor's probe words them the same way", async () => {
    const probe = (timeoutMs = 15_000) => probeControlPlane({ baseUrl: cp.url, serverId, signingKey: key, signing: "v1", timeoutMs });
    let off = answering(() => new Response(null, { status: 307, headers: { location: "https://cp.example.com/x" } }));
    try {
      expect(await probe()).toMatchObject({ status: 307, bodyError: "answered 307, a redirect to https://cp.example.com/x: the agent does not follow redirects; give --url the address the control plane answers on" });
    } finally {
      off();
    }
    off = answering(trickledAnswer);
    try {
      expect((await probe(1000)).bodyError).toBe("timed out after 1 s reading the answer (--request-timeout)");
    } finally {
      off();
    }
  });
});
