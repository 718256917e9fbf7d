/**
 * The workload checks of `agent doctor` against real Podman, in a podman world of the test's own
 * (test/support/isolatedPodman.ts) with the agent's `techulus` network: each broken state made
 * with the podman CLI, found by the check, repaired (by the check's fix, or by the step it names
 * for a person) and the check run again.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { makeWorkloadChecks } from "../../lib/doctor/workloadChecks.ts";
import { configureLogging } from "../../lib/logger.ts";
import { doctorContext } from "../support/doctorFixtures.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { containerState } from "../support/leftoverMakers.ts";
import { uniquePrefix, waitFor } from "../support/podman.ts";

const BUSYBOX = "localhost/busybox:test";
const NET = "techulus";
const prefix = uniquePrefix("wl");
const checks = makeWorkloadChecks({ createdGraceMs: 0, restartSampleMs: 3000 });
const savedEnv: Record<string, string | undefined> = {};
let iso: IsolatedPodman;
let subnetId: number;
let dir: string;
let stateFile: string;
let ctx: DoctorContext;

const ip = (n: number) => `10.200.${subnetId}.${n}`;
const name = (s: string) => `${prefix}-${s}`;

beforeAll(async () => {
  configureLogging({ sink: { write: () => {} } });
  subnetId = await freeSubnetId();
  iso = await startIsolatedPodman({ images: [BUSYBOX], network: { subnetId } });
  // The node's drivers find Podman through the environment, as the agent does.
  for (const [key, value] of Object.entries(iso.env)) {
    savedEnv[key] = process.env[key];
    process.env[key] = value;
  }
  dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  stateFile = join(dir, "state.json");
  ctx = doctorContext(join(dir, "data"), { state: stateFile, subnetId, flags: { wireguard: "off" } });
}, 120_000);

afterEach(async () => {
  const ids = (await iso.podman(["ps", "-a", "--format", "{{.ID}}"])).split("\n").filter(Boolean);
  if (ids.length > 0) await iso.podman(["rm", "-f", "-t", "0", ...ids]);
});

afterAll(async () => {
  await ctx?.close();
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  await iso?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

/** The expected state doctor measures against: deployments with their addresses. */
function expect_(deployments: Array<{ n: number; address: string }>): void {
  const containers = deployments.map(({ n, address }) => ({
    deploymentId: `${prefix}-dep${n}`,
    serviceId: `${prefix}-svc${n}`,
    serviceName: `svc${n}`,
    name: name(`web${n}`),
    image: BUSYBOX,
    ipAddress: address,
    ports: [],
    env: {},
    volumes: [],
  }));
  writeFileSync(stateFile, JSON.stringify({ containers }));
}

const managed = (n: number) => ["--label", `techulus.service.id=${prefix}-svc${n}`, "--label", `techulus.deployment.id=${prefix}-dep${n}`, "--label", `techulus.service.name=svc${n}`];

async function session(ids: string[]): Promise<DoctorSession> {
  const s = new DoctorSession(
    checks.filter((c) => ids.includes(c.id)),
    ctx,
  );
  await s.runAll();
  return s;
}

const result = (s: DoctorSession, id: string) => s.results().find((r) => r.id === id)!;

describe("agent doctor: workload checks against real Podman", () => {
  test("workload.stuck: a container left created and one that exited are shown with exit code and log; the fix starts both", async () => {
    expect_([
      { n: 1, address: ip(11) },
      { n: 2, address: ip(12) },
    ]);
    await iso.podman(["create", "--name", name("web1"), "--network", NET, "--ip", ip(11), ...managed(1), BUSYBOX, "sleep", "1000"]);
    // Fails on its first run only (its file system is kept between starts).
    const once = "[ -e /ran ] && exec sleep 1000; touch /ran; echo 'reading settings'; echo 'fatal: DATABASE_URL is not set' >&2; exit 3";
    await iso.podman(["run", "-d", "--name", name("web2"), "--network", NET, "--ip", ip(12), ...managed(2), BUSYBOX, "sh", "-c", once]);
    await waitFor(async () => (await containerState(iso, name("web2"))) === "exited", 30_000, "web2 to exit");

    const before = await session(["workload.stuck", "workload.addresses", "workload.unlabelled"]);
    const stuck = result(before, "workload.stuck");
    expect(stuck.status).toBe("fail");
    expect(stuck.detail).toContain(`${name("web1")} (`);
    expect(stuck.detail).toMatch(/is "created" since \d+ s ago and was never started/);
    expect(stuck.detail).toMatch(new RegExp(`${name("web2")} \\([0-9a-f]{12}\\) is "exited": it exited with exit code 3 \\d+ s ago`));
    expect(stuck.detail).toContain("last 2 log lines:\n  | reading settings\n  | fatal: DATABASE_URL is not set");
    expect(stuck.fix?.apply).toBeDefined();
    expect(stuck.fix?.description).toContain(`start 2 containers (${name("web1")}, ${name("web2")}) again`);
    expect(result(before, "workload.addresses").status).toBe("ok");
    expect(result(before, "workload.unlabelled").status).toBe("ok");

    const [outcome] = await before.applyFixes(["workload.stuck"]);
    expect(outcome).toMatchObject({ checkId: "workload.stuck", applied: true, statusAfter: "ok" });
    expect(await containerState(iso, name("web1"))).toBe("running");
    expect(await containerState(iso, name("web2"))).toBe("running");
    const inspect = JSON.parse(await iso.podman(["inspect", name("web1")]))[0];
    expect(inspect.NetworkSettings.Networks[NET].IPAddress).toBe(ip(11));
  }, 120_000);

  test("workload.addresses: a running container holds the address another was created with; both are named, and removing one clears it", async () => {
    expect_([{ n: 3, address: ip(30) }]);
    await iso.podman(["run", "-d", "--name", name("theirs"), "--network", NET, "--ip", ip(30), BUSYBOX, "sleep", "1000"]);
    await iso.podman(["create", "--name", name("web3"), "--network", NET, "--ip", ip(30), ...managed(3), BUSYBOX, "sleep", "1000"]);
    // Starting it fails on the address, and Podman remembers why.
    expect((await iso.podman(["start", name("web3")], { allowFailure: true })).trim()).not.toBe(name("web3"));

    const before = await session(["workload.addresses", "workload.unlabelled", "workload.stuck"]);
    const addresses = result(before, "workload.addresses");
    expect(addresses.status).toBe("fail");
    expect(addresses.detail).toContain(`address ${ip(30)} is claimed by 2 containers:`);
    expect(addresses.detail).toMatch(new RegExp(`${name("theirs")} \\([0-9a-f]{12}\\) \\(not managed by the agent\\), running, holds it`));
    expect(addresses.detail).toContain(`${name("web3")} (`);
    expect(addresses.detail).toContain(`created with --ip ${ip(30)}`);
    expect(addresses.fix?.apply).toBeUndefined();
    expect(addresses.fix?.description).toBe(
      `by hand: ${ip(30)} is ${name("web3")}'s in the expected state: podman network disconnect ${NET} ${name("theirs")} (or podman rm -f ${name("theirs")})`,
    );
    expect(result(before, "workload.unlabelled").status).toBe("warn");
    expect(result(before, "workload.stuck").detail).toContain(`${name("web3")} (`);

    await iso.podman(["rm", "-f", "-t", "0", name("theirs")]);
    const after = await session(["workload.addresses", "workload.unlabelled"]);
    expect(result(after, "workload.addresses").status).toBe("ok");
    expect(result(after, "workload.unlabelled").status).toBe("ok");
  }, 120_000);

  test("workload.unlabelled: a container on the agent's network without its labels is named; disconnecting it (the step named) clears it and it keeps running", async () => {
    expect_([]);
    await iso.podman(["run", "-d", "--name", name("stranger"), "--network", NET, BUSYBOX, "sleep", "1000"]);
    const before = await session(["workload.unlabelled"]);
    const unlabelled = result(before, "workload.unlabelled");
    expect(unlabelled.status).toBe("warn");
    expect(unlabelled.detail).toContain(`1 container on ${NET} without the agent's techulus.service.id label`);
    expect(unlabelled.detail).toMatch(new RegExp(`${name("stranger")} \\([0-9a-f]{12}\\), running, holds 10\\.200\\.${subnetId}\\.\\d+`));
    expect(unlabelled.fix?.apply).toBeUndefined();
    expect(unlabelled.fix?.description).toContain(`podman network disconnect ${NET} ${name("stranger")}`);

    await iso.podman(["network", "disconnect", NET, name("stranger")]);
    const after = await session(["workload.unlabelled"]);
    expect(result(after, "workload.unlabelled").status).toBe("ok");
    expect(await containerState(iso, name("stranger"))).toBe("running");
  }, 120_000);

  test("workload.restarts: a container whose restart count keeps climbing is named with the count; once it is removed the check is ok", async () => {
    expect_([{ n: 4, address: ip(40) }]);
    await iso.podman(["run", "-d", "--name", name("web4"), "--network", NET, "--ip", ip(40), "--restart", "always", ...managed(4), BUSYBOX, "sh", "-c", "echo 'cannot connect to db'; sleep 1; exit 7"]);
    const restarts = async () => Number((await iso.podman(["inspect", "--format", "{{.RestartCount}}", name("web4")])).trim());
    await waitFor(async () => (await restarts()) >= 1, 30_000, "a first restart of web4");

    const before = await session(["workload.restarts"]);
    const check = result(before, "workload.restarts");
    expect(check.status).toBe("warn");
    expect(check.detail).toMatch(new RegExp(`${name("web4")} \\([0-9a-f]{12}\\) restarted \\d+ times? in 3 s \\(restart count \\d+ → \\d+`));
    expect(check.detail).toContain("| cannot connect to db");
    expect(check.fix?.apply).toBeUndefined();
    expect(check.fix?.description).toContain(`podman logs --tail 50 ${name("web4")}`);

    // What a person does once the cause is known: the agent redeploys it from the expected state.
    await iso.podman(["rm", "-f", "-t", "0", name("web4")]);
    const after = await session(["workload.restarts"]);
    expect(result(after, "workload.restarts")).toMatchObject({ status: "ok", detail: "no managed container has restarted (0 on techulus)" });
  }, 120_000);
});
