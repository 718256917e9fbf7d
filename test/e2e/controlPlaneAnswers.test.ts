import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { runAgentCli, tempDir } from "../support/agentBinary.ts";
import { registeredDataDir } from "../support/doctorFixtures.ts";
import { TestControlPlane, trickledAnswer } from "../support/TestControlPlane.ts";

/**
 * Control-plane answers the agent cannot use, seen through the compiled binary: the error says
 * what the answer was (too slow, a redirect, too big), not a bare error code or "not JSON".
 */
const EXPECTED_STATE = "/api/v1/agent/expected-state";
const cp = new TestControlPlane();
const tmp = tempDir("cp-answers-");
let dataDir: string;

beforeAll(async () => {
  await cp.start();
  dataDir = join(tmp.path, "data");
  registeredDataDir(dataDir);
});
afterAll(async () => {
  await cp.stop();
  tmp.cleanup();
});

async function reconcileAgainst(respond: () => Response, extra: string[] = []) {
  const off = cp.intercept((req) => (req.path === EXPECTED_STATE ? respond() : undefined));
  try {
    // Should an answer ever get through, the pass must not reach the host's DNS or WireGuard.
    return await runAgentCli(["reconcile", "--once", "--data-dir", dataDir, "--url", cp.url, "--dns-port", "0", "--wireguard", "off", ...extra], { timeoutMs: 60_000 });
  } finally {
    off();
  }
}

test("an answer trickled for ever: timed out after N s reading the answer (--request-timeout)", async () => {
  const res = await reconcileAgainst(trickledAnswer, ["--request-timeout", "1"]);
  expect(res.stderr).toContain(`agent: cannot fetch expected state: control plane GET ${EXPECTED_STATE} timed out after 1 s reading the answer (--request-timeout)`);
  expect(res.exitCode).toBe(1);
});

test("a redirect: the control plane redirected, and where to; it is not followed", async () => {
  const before = cp.requests.length;
  const res = await reconcileAgainst(() => new Response(null, { status: 302, headers: { location: "https://cp.example.com/api/v1/agent/expected-state" } }));
  expect(res.stderr).toContain(
    `agent: cannot fetch expected state: control plane GET ${EXPECTED_STATE} answered 302, a redirect to https://cp.example.com/api/v1/agent/expected-state: the agent does not follow redirects; give --url the address the control plane answers on`,
  );
  expect(res.exitCode).toBe(1);
  expect(cp.requests.slice(before).map((r) => r.path)).toEqual([EXPECTED_STATE]);
});

test("a 10 MiB answer: over the size limit, which is named", async () => {
  // Not JSON either: were the limit not enforced, the agent would stop at parsing, never act on it.
  const res = await reconcileAgainst(() => new Response("x".repeat(10 * 1024 * 1024), { status: 200 }));
  expect(res.stderr).toContain(`agent: cannot fetch expected state: control plane GET ${EXPECTED_STATE} answered 200 with a body over the size limit of 8 MiB`);
  expect(res.exitCode).toBe(1);
});
