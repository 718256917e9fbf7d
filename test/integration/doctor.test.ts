/**
 * `agent doctor --json` (the compiled binary) against the test control plane and a podman of the
 * test's own (test/support/isolatedPodman.ts): a drift fix runs a real reconcile pass, which would
 * stop other tests' managed containers as orphans on the shared podman.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { ensureRegistered } from "../../lib/registration.ts";
import { runAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { STUBBORN_CMD, containerState, interruptStop, strandConmon } from "../support/leftoverMakers.ts";
import { freePort, podman as sharedPodman } from "../support/podman.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";

const prefix = `t${process.pid}${randomBytes(3).toString("hex")}doc`;
const IMAGE = "localhost/hello-web:test";
const wgInterface = `twg${randomBytes(3).toString("hex")}`;
const cp = new TestControlPlane();
const dirs: Array<{ cleanup: () => void }> = [];
let iso: IsolatedPodman;
let subnetId: number;

beforeAll(async () => {
  await cp.start();
  subnetId = await freeSubnetId();
  iso = await startIsolatedPodman({ images: [IMAGE, "localhost/busybox:test"], network: { subnetId } });
}, 120_000);

afterAll(async () => {
  await iso?.stop();
  await cp.stop();
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function dataDir(): string {
  const d = tempDir(`${prefix}-`);
  dirs.push(d);
  return join(d.path, "data");
}

async function registered(): Promise<{ dir: string; serverId: string }> {
  const dir = dataDir();
  cp.nextSubnet = subnetId;
  const reg = await ensureRegistered({ dataDir: new DataDir(dir), url: cp.url, token: cp.issueToken() });
  await reg.client.close();
  return { dir, serverId: reg.identity.serverId };
}

interface Report {
  ok: boolean;
  exitCode: number;
  summary: Record<string, number>;
  checks: Array<{ id: string; status: string; detail: string; fix?: { description: string; automatic: boolean; command?: string[] }; changes?: Array<{ kind: string; description: string; reason: string }> }>;
  fixes?: Array<{ checkId: string; description: string; applied: boolean; error?: string; statusAfter?: string }>;
}

async function doctor(args: string[]): Promise<{ exitCode: number; report: Report; stderr: string }> {
  const res = await runAgentCli(["doctor", "--json", "--dns-port", "0", "--wireguard", "off", "--wireguard-interface", wgInterface, ...args], { env: iso.env, timeoutMs: 120_000 });
  let report: Report;
  try {
    report = JSON.parse(res.stdout);
  } catch {
    throw new Error(`doctor printed no JSON (exit ${res.exitCode}); stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
  }
  return { exitCode: res.exitCode, report, stderr: res.stderr };
}

const check = (r: Report, id: string) => {
  const c = r.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in ${JSON.stringify(r.checks.map((x) => x.id))}`);
  return c;
};

function container(n: number, overrides: Record<string, unknown> = {}) {
  return {
    deploymentId: `${prefix}-dep${n}`,
    serviceId: `${prefix}-svc${n}`,
    serviceName: `web${n}`,
    name: `${prefix}-web${n}`,
    image: IMAGE,
    ipAddress: `10.200.${subnetId}.${20 + n}`,
    ports: [],
    env: {},
    healthCheck: null,
    volumes: [],
    ...overrides,
  };
}

async function isoContainers(): Promise<string[]> {
  const list = JSON.parse((await iso.podman(["ps", "-a", "--format", "json"])) || "[]") as Array<{ Names: string[]; State: string }>;
  return list.map((c) => `${c.Names[0]} ${c.State}`);
}

async function removeIsoContainers(): Promise<void> {
  const ids = (await iso.podman(["ps", "-a", "--format", "{{.ID}}"])).split("\n").filter(Boolean);
  if (ids.length > 0) await iso.podman(["rm", "-f", "-t", "0", ...ids]);
}

describe("agent doctor against the control plane", () => {
  test("clock skew: 40 s is a warning (calls still work), 70 s a failure (the control plane refuses them)", async () => {
    const { dir, serverId } = await registered();
    cp.setExpectedState(serverId, { containers: [] });
    try {
      cp.clockOffsetMs = 40_000;
      const warn = await doctor(["--data-dir", dir]);
      expect(check(warn.report, "controlplane.reachable").status).toBe("ok");
      expect(check(warn.report, "controlplane.auth").status).toBe("ok");
      const clock = check(warn.report, "controlplane.clock");
      expect(clock.status).toBe("warn");
      expect(clock.detail).toMatch(/this server's clock is (39|40|41) s behind the control plane's/);
      expect(check(warn.report, "controlplane.expected-state").status).toBe("ok");
      expect(check(warn.report, "drift").status).toBe("ok");
      expect(warn.report.summary.fail).toBe(0);
      expect(warn.exitCode).toBe(0);
      expect(warn.report.exitCode).toBe(0);

      cp.clockOffsetMs = 70_000;
      const fail = await doctor(["--data-dir", dir]);
      const auth = check(fail.report, "controlplane.auth");
      expect(auth.status).toBe("fail");
      expect(auth.detail).toContain("HTTP 401: Request timestamp expired or invalid");
      expect(auth.detail).toContain("the clocks are too far apart");
      const clock70 = check(fail.report, "controlplane.clock");
      expect(clock70.status).toBe("fail");
      expect(clock70.detail).toMatch(/(69|70|71) s behind .* rejects signed calls more than 60 s off/);
      expect(check(fail.report, "controlplane.expected-state").status).toBe("skip");
      expect(fail.exitCode).toBe(1);
      expect(fail.report.ok).toBe(false);
    } finally {
      cp.clockOffsetMs = 0;
    }
  }, 120_000);

  test("an unknown server and an unreachable control plane are told apart", async () => {
    const { dir, serverId } = await registered();
    cp.servers.delete(serverId);
    const gone = await doctor(["--data-dir", dir]);
    expect(check(gone.report, "controlplane.auth").detail).toContain(`HTTP 404: Server not found or not registered: the control plane does not know server ${serverId}`);
    expect(gone.exitCode).toBe(1);

    const down = await doctor(["--data-dir", dir, "--url", "http://127.0.0.1:9"]);
    const reachable = check(down.report, "controlplane.reachable");
    expect(reachable.status).toBe("fail");
    expect(reachable.detail).toContain("ECONNREFUSED");
    expect(check(down.report, "controlplane.auth").status).toBe("skip");
    expect(check(down.report, "drift").status).toBe("skip");
  }, 120_000);

  test("drift: a missing deployment is explained with its reason; --fix deploys it and the re-check is clean", async () => {
    const { dir, serverId } = await registered();
    const wanted = container(1, { env: { GREETING: cp.encrypt("hello from doctor") } });
    cp.setExpectedState(serverId, { containers: [wanted] });
    try {
      const before = await doctor(["--data-dir", dir]);
      const drift = check(before.report, "drift");
      expect(drift.status).toBe("warn");
      expect(drift.changes).toEqual([{ kind: "deploy", description: `deploy ${wanted.name} (${IMAGE})`, reason: `deployment ${wanted.deploymentId} has no container` }]);
      expect(drift.detail).toContain(`deploy ${wanted.name} (${IMAGE}) — because deployment ${wanted.deploymentId} has no container`);
      expect(drift.fix).toEqual({ description: "apply this change now (one reconcile pass)", automatic: true });
      expect(before.exitCode).toBe(0);
      expect(await isoContainers()).toEqual([]);

      const fixed = await doctor(["--data-dir", dir, "--fix"]);
      expect(fixed.report.fixes).toEqual([{ checkId: "drift", description: "apply this change now (one reconcile pass)", applied: true, statusAfter: "ok" }]);
      expect(check(fixed.report, "drift").status).toBe("ok");
      expect(await isoContainers()).toEqual([`${wanted.name} running`]);
      // The shared podman never saw it.
      expect(await sharedPodman(["ps", "-a", "--filter", `name=${prefix}`, "--format", "{{.Names}}"])).toBe("");
      const env = JSON.parse(await iso.podman(["inspect", wanted.name]))[0].Config.Env as string[];
      expect(env).toContain("GREETING=hello from doctor");
      const reports = cp.servers.get(serverId)!.statusReports;
      expect(reports.at(-1)?.body.containers).toEqual([expect.objectContaining({ deploymentId: wanted.deploymentId, status: "running" })]);

      const after = await doctor(["--data-dir", dir]);
      expect(check(after.report, "drift").status).toBe("ok");
      expect(check(after.report, "drift").detail).toBe("matches the control plane (1 container)");
      expect(after.exitCode).toBe(0);
    } finally {
      await removeIsoContainers();
    }
  }, 180_000);

  test("while an agent holds the data dir, doctor names it and leaves the drift to it", async () => {
    const { dir, serverId } = await registered();
    cp.setExpectedState(serverId, { containers: [container(2)] });
    const script = `import { FileLock } from ${JSON.stringify(join(import.meta.dir, "../../lib/fs/fileLock.ts"))};
      FileLock.tryAcquire(${JSON.stringify(join(dir, "agent.lock"))}); console.log("locked"); await Bun.sleep(120000);`;
    const holder = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("locked");
      const res = await doctor(["--data-dir", dir, "--fix"]);
      expect(check(res.report, "datadir.lock").detail).toContain(`pid ${holder.pid} (`);
      const drift = check(res.report, "drift");
      expect(drift.status).toBe("warn");
      expect(drift.fix?.automatic).toBe(false);
      expect(drift.fix?.description).toContain(`an agent is running (pid ${holder.pid}`);
      expect(res.report.fixes).toEqual([]);
      expect(await isoContainers()).toEqual([]);
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
      await removeIsoContainers();
    }
  }, 120_000);
});

describe("agent doctor --state (no control plane)", () => {
  test("--fix with check ids applies only theirs; an unknown id exits 2 and changes nothing", async () => {
    const dir = dataDir();
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
    const stateFile = join(dir, "..", "state.json");
    const wanted = container(4);
    writeFileSync(stateFile, JSON.stringify({ containers: [wanted] }));
    try {
      const bad = await runAgentCli(["doctor", "--data-dir", dir, "--state", stateFile, "--dns-port", "0", "--wireguard", "off", "--fix", "datadir.dir", "nosuch.check"], { env: iso.env });
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toContain('--fix: no check "nosuch.check"; the checks are ');
      expect(bad.stderr).toContain("datadir.dir");
      expect(statSync(dir).mode & 0o777).toBe(0o755);

      const res = await doctor(["--data-dir", dir, "--state", stateFile, "--fix", "datadir.dir", "host.root"]);
      expect(res.report.fixes?.map((f) => [f.checkId, f.applied, f.statusAfter])).toEqual([["datadir.dir", true, "ok"]]);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      // The drift had a fix too, not chosen: nothing was deployed.
      expect(check(res.report, "drift").status).toBe("warn");
      expect(await isoContainers()).toEqual([]);

      // Without --json, a chosen check with nothing to apply says why.
      const text = await runAgentCli(["doctor", "--data-dir", dir, "--state", stateFile, "--dns-port", "0", "--wireguard", "off", "--wireguard-interface", wgInterface, "--fix", "datadir.dir"], { env: iso.env, timeoutMs: 120_000 });
      expect(text.stdout).toContain("nothing to apply for datadir.dir: the check is ok");
      expect(await isoContainers()).toEqual([]);
    } finally {
      await removeIsoContainers();
    }
  }, 180_000);

  test("drift against a local file is explained and fixed; an invalid file fails the check", async () => {
    const dir = dataDir();
    const stateFile = join(dir, "..", "state.json");
    const wanted = container(3, { env: { MODE: "plain:doctor" } });
    writeFileSync(stateFile, JSON.stringify({ containers: [wanted] }));
    try {
      const before = await doctor(["--data-dir", dir, "--state", stateFile]);
      expect(check(before.report, "datadir.identity").status).toBe("skip");
      expect(check(before.report, "controlplane.reachable").status).toBe("skip");
      const drift = check(before.report, "drift");
      expect(drift.status).toBe("warn");
      expect(drift.detail.split("\n")[0]).toBe(`1 change to match ${stateFile}:`);
      expect(drift.changes).toEqual([{ kind: "deploy", description: `deploy ${wanted.name} (${IMAGE})`, reason: `deployment ${wanted.deploymentId} has no container` }]);
      expect(before.exitCode).toBe(0);

      const fixed = await doctor(["--data-dir", dir, "--state", stateFile, "--fix"]);
      expect(fixed.report.fixes?.map((f) => [f.checkId, f.applied, f.statusAfter])).toEqual([["drift", true, "ok"]]);
      expect(await isoContainers()).toEqual([`${wanted.name} running`]);
      const inspect = JSON.parse(await iso.podman(["inspect", wanted.name]))[0];
      expect(inspect.NetworkSettings.Networks.techulus.IPAddress).toBe(wanted.ipAddress);

      // The file now wants another image for it: the reason names old and new.
      writeFileSync(stateFile, JSON.stringify({ containers: [{ ...wanted, image: "localhost/busybox:test" }] }));
      const redeploy = await doctor(["--data-dir", dir, "--state", stateFile]);
      expect(check(redeploy.report, "drift").changes).toEqual([
        { kind: "redeploy", description: `redeploy ${wanted.name} (localhost/busybox:test)`, reason: `image ${IMAGE} → localhost/busybox:test` },
      ]);

      writeFileSync(stateFile, JSON.stringify({ containers: [{ ...wanted, image: "ng inx" }] }));
      const invalid = await doctor(["--data-dir", dir, "--state", stateFile]);
      const bad = check(invalid.report, "drift");
      expect(bad.status).toBe("fail");
      expect(bad.detail).toContain('image "ng inx" has whitespace');
      expect(invalid.exitCode).toBe(1);
    } finally {
      await removeIsoContainers();
    }
  }, 180_000);
});

describe("agent doctor: leftovers of interrupted operations", () => {
  test("a stray conmon, a stuck container and a stale reservation are reported and --fix repairs them; an unmanaged holder is named for a person", async () => {
    const dir = dataDir();
    const stateFile = join(dir, "..", "state.json");
    const port = await freePort();
    const ip = (n: number) => `10.200.${subnetId}.${n}`;
    const wanted = [container(1, { ports: [{ containerPort: 8080, hostPort: port }] }), container(2, { ipAddress: ip(60) })];
    writeFileSync(stateFile, JSON.stringify({ containers: wanted }));
    const reservations = join("/var/lib/cni/networks/techulus");
    const stale = join(reservations, ip(70));
    try {
      await iso.podman(["run", "-d", "--name", `${prefix}-stray`, "--network", "techulus", "--ip", ip(50), "-p", `${port}:8080`, "--label", `techulus.service.id=${prefix}-old`, "localhost/busybox:test", ...STUBBORN_CMD]);
      await strandConmon(iso, `${prefix}-stray`);
      await iso.podman(["run", "-d", "--name", `${prefix}-stuck`, "--network", "techulus", "--ip", ip(51), "--label", `techulus.service.id=${prefix}-old2`, "localhost/busybox:test", ...STUBBORN_CMD]);
      await interruptStop(iso, `${prefix}-stuck`);
      await iso.podman(["run", "-d", "--name", `${prefix}-theirs`, "--network", "techulus", "--ip", ip(60), IMAGE]);
      if (iso.backend === "cni") {
        mkdirSync(reservations, { recursive: true });
        writeFileSync(stale, `${"f".repeat(64)}\r\neth0`);
      }

      const before = await doctor(["--data-dir", dir, "--state", stateFile]);
      const stray = check(before.report, "podman.stray-conmon");
      expect(stray.status).toBe("fail");
      expect(stray.detail).toContain(`of container ${prefix}-stray`);
      expect(stray.detail).toContain(`holding TCP port ${port}`);
      expect(stray.fix?.automatic).toBe(true);
      const stuck = check(before.report, "podman.stuck-containers");
      expect(stuck).toMatchObject({ status: "warn", fix: { description: `finish stopping ${prefix}-stuck`, automatic: true } });
      const reservation = check(before.report, "podman.address-reservations");
      if (iso.backend === "cni") expect(reservation).toMatchObject({ status: "warn", fix: { description: `release the reservation of ${ip(70)}`, automatic: true } });
      else expect(reservation.status).toBe("ok");
      const foreign = check(before.report, "podman.foreign-holders");
      expect(foreign.status).toBe("fail");
      expect(foreign.detail).toContain(`container ${prefix}-theirs`);
      expect(foreign.detail).toContain(`holds address ${ip(60)}`);
      expect(foreign.fix).toMatchObject({ automatic: false });
      expect(foreign.fix!.description).toContain(`podman stop ${prefix}-theirs`);

      const fixed = await doctor(["--data-dir", dir, "--state", stateFile, "--fix"]);
      const byCheck = new Map((fixed.report.fixes ?? []).map((f) => [f.checkId, f]));
      expect(byCheck.get("podman.stray-conmon")).toMatchObject({ applied: true, statusAfter: "ok" });
      expect(byCheck.get("podman.stuck-containers")).toMatchObject({ applied: true, statusAfter: "ok" });
      if (iso.backend === "cni") {
        expect(byCheck.get("podman.address-reservations")).toMatchObject({ applied: true, statusAfter: "ok" });
        expect(existsSync(stale)).toBe(false);
      }
      expect(byCheck.has("podman.foreign-holders")).toBe(false);
      expect(check(fixed.report, "podman.foreign-holders").status).toBe("fail");
      expect(await containerState(iso, `${prefix}-theirs`)).toBe("running");
      // Stopped by its fix; the drift fix's pass then removes it as an orphan (no deployment id).
      expect(await containerState(iso, `${prefix}-stuck`)).not.toBe("stopping");
    } finally {
      rmSync(stale, { force: true });
      await removeIsoContainers();
    }
  }, 180_000);
});
