/**
 * The installer on a fresh Debian 12 root with systemd as PID 1 (test/support/debianRoot.ts), the
 * way a person runs it on a new server: `curl -fsSL …/install.sh | bash` with the settings in the
 * environment. install.sh and two releases built from this checkout are served, and the test control
 * plane and a registry answer, on the root's own loopback (test/support/rootServices.ts).
 * The tests run in order on one root: install, restart, upgrade, refusals, uninstall, purge.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { release } from "../../install/release.ts";
import { startDebianRoot, type DebianRoot } from "../support/debianRoot.ts";
import { startRootServices, type RootServices } from "../support/rootServices.ts";
import { waitFor } from "../support/podman.ts";

const REPO = resolve(import.meta.dir, "../..");
const ARCH = process.arch === "arm64" ? "arm64" : "x64";
const V1 = "9.0.0-installtest.1";
const V2 = "9.0.0-installtest.2";
const V3 = "9.0.0-installtest.3";
const UNIT = "techulus-agent";
const CONTAINER = "web-install1";
const DEPLOYMENT = "install-deployment-1";
const INSTALL_TIMEOUT_MS = 15 * 60_000;
// A podman container cannot boot another systemd root inside itself (the nested Podman's storage
// would be on overlay); the host suite runs this file, the fresh-root run of the suite skips it.
const insideContainer = existsSync("/run/.containerenv");

let root: DebianRoot;
let services: RootServices;
let served: string;
let serverId: string;
let token: string;
let containerId: string;

interface ServerInfo {
  id: string;
  registered: boolean;
  registrations: number;
}

async function sh(command: string, options: { allowFailure?: boolean; timeoutMs?: number } = {}) {
  const res = await root.exec(["bash", "-c", command], { allowFailure: true, timeoutMs: options.timeoutMs ?? 120_000 });
  if (res.exitCode !== 0 && !options.allowFailure) throw new Error(`${command} exited ${res.exitCode}:\n${res.stdout}\n${res.stderr}`);
  return res;
}

async function out(command: string): Promise<string> {
  return (await sh(command)).stdout.trim();
}

/** What must not change when the installer refuses: binaries, settings, unit, identity, the running agent. */
async function fingerprint(): Promise<string> {
  return out(
    "sha256sum /usr/local/bin/agent /usr/local/bin/agent.previous /etc/techulus-agent/agent.json /etc/systemd/system/techulus-agent.service /var/lib/techulus-agent/config.json 2>&1; " +
      `systemctl show -p MainPID --value ${UNIT}`,
  );
}

async function registrations(): Promise<ServerInfo> {
  const servers = await services.call<ServerInfo[]>("servers");
  return servers.find((s) => s.id === serverId)!;
}

async function containerState(): Promise<string> {
  return out(`podman inspect --format '{{.Id}} {{.State.Status}}' ${CONTAINER}`);
}

/** Waits for a status report sent after `after` reports, listing the container as running. */
async function reportedContainer(after: number): Promise<{ containerId: string; status: string }> {
  let found: { containerId: string; status: string } | undefined;
  await withAgentLog(() => waitFor(
    async () => {
      const status = await services.call<{ count: number; last: { containers?: Array<{ deploymentId: string; containerId: string; status: string }> } | null }>("status", { serverId });
      found = status.count > after ? status.last?.containers?.find((c) => c.deploymentId === DEPLOYMENT && c.status === "running") : undefined;
      return found !== undefined;
    },
    120_000,
    `a status report with ${CONTAINER} running`,
  ));
  return found!;
}

/** A failure while waiting on the agent says what the agent logged. */
async function withAgentLog<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const journal = await sh(`journalctl -u ${UNIT} -n 40 --no-pager -o cat`, { allowFailure: true });
    throw new Error(`${(err as Error).message}\nthe agent's last log lines:\n${journal.stdout}`);
  }
}

async function statusCount(): Promise<number> {
  return (await services.call<{ count: number }>("status", { serverId })).count;
}

function expectedState(image: string) {
  return {
    containers: [
      {
        deploymentId: DEPLOYMENT,
        serviceId: "web",
        serviceName: "web",
        name: CONTAINER,
        image,
        ipAddress: "10.200.1.10",
        ports: [{ containerPort: 8080, hostPort: 8088 }],
      },
    ],
    dns: { records: [{ name: "web.internal", ips: ["10.200.1.10"] }] },
    caddy: { routes: [{ id: "web-route", domain: "web.localhost", upstreams: ["10.200.1.10:8080"], serviceId: "web" }] },
    wireguard: { peers: [] },
  };
}

describe.skipIf(insideContainer)("install.sh on a fresh Debian 12 with systemd", () => {
  beforeAll(async () => {
    served = mkdtempSync("/var/tmp/techulus-install-served-");
    await release({ version: V1, arches: [ARCH], outDir: join(served, "v1") });
    await release({ version: V2, arches: [ARCH], outDir: join(served, "v2") });
    copyFileSync(join(REPO, "install/install.sh"), join(served, "install.sh"));
    // v2's files with a binary that is not the one its .sha256 describes.
    const tampered = join(served, "tampered");
    cpSync(join(served, "v2"), tampered, { recursive: true });
    const binary = readFileSync(join(tampered, `agent-linux-${ARCH}`));
    const evil = Buffer.concat([binary, Buffer.from("\n# not what was published\n")]);
    writeFileSync(join(tampered, `agent-linux-${ARCH}`), evil);
    writeFileSync(join(tampered, `agent-linux-${ARCH}.gz`), Bun.gzipSync(evil, { level: 1 }));

    // A release whose agent reports its version but exits at once (raw binary only, no .gz).
    const broken = join(served, "broken");
    mkdirSync(broken);
    const script = `#!/bin/sh\ncase "$1" in --version) echo "${V3} (commit 000000000000)" ;; *) echo "agent: cannot start" >&2; exit 1 ;; esac\n`;
    writeFileSync(join(broken, `agent-linux-${ARCH}`), script, { mode: 0o755 });
    writeFileSync(join(broken, `agent-linux-${ARCH}.sha256`), `${createHash("sha256").update(script).digest("hex")}  agent-linux-${ARCH}\n`);
    writeFileSync(join(broken, "VERSION"), `${V3}\n`);

    root = await startDebianRoot({ prefix: "techulus-install" });
    // The one-liner's own precondition: Debian 12's minimal installation has no curl (README).
    await root.exec(["bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl"], { timeoutMs: 300_000 });
    services = await startRootServices(root, served);
    token = (await services.call<{ token: string }>("token")).token;
    serverId = (await services.call<ServerInfo[]>("servers"))[0]!.id;
    await services.call("expect", { serverId, state: expectedState(services.image) });
  }, 10 * 60_000);

  afterAll(async () => {
    await services?.stop();
    await root?.stop();
    if (served) rmSync(served, { recursive: true, force: true });
  }, 120_000);

  test(
    "the one-liner installs the host, the binary and the unit; the agent registers once and runs the expected container",
    async () => {
      const env = [
        `CONTROL_PLANE_URL=${services.controlPlane}`,
        `REGISTRATION_TOKEN=${token}`,
        `AGENT_DOWNLOAD_URL=${services.files}/v1`,
        "IS_PROXY=true",
        `INSECURE_REGISTRIES=${services.registry}`,
      ].join(" ");
      const res = await sh(`curl -fsSL ${services.files}/install.sh | ${env} bash`, { allowFailure: true, timeoutMs: INSTALL_TIMEOUT_MS });
      expect({ exit: res.exitCode, stderr: res.stderr.slice(-3000) }).toEqual({ exit: 0, stderr: expect.any(String) });
      expect(res.stdout).toContain("6/6 service");
      expect(res.stdout).toContain(`registered as server ${serverId}`);
      expect(res.stdout).toMatch(/agent doctor:\n[\s\S]*\d+ ok, \d+ warnings?, \d+ failed/);

      expect(await out(`systemctl is-active ${UNIT}`)).toBe("active");
      expect(await out(`systemctl is-enabled ${UNIT}`)).toBe("enabled");
      expect(await out(`systemctl show -p KillMode --value ${UNIT}`)).toBe("process");
      expect(await out(`systemctl show -p Restart --value ${UNIT}`)).toBe("always");
      expect(await out("systemctl is-active podman.socket")).toBe("active");
      expect(await out("/usr/local/bin/agent --version")).toStartWith(`${V1} (commit `);
      expect(await registrations()).toMatchObject({ registered: true, registrations: 1 });

      // Modes: settings 0600 in a 0700 folder, data dir and keys private.
      expect(await out("stat -c '%a %U' /etc/techulus-agent /etc/techulus-agent/agent.json /var/lib/techulus-agent /var/lib/techulus-agent/keys/private.key /var/lib/techulus-agent/config.json")).toBe(
        ["700 root", "600 root", "700 root", "600 root", "600 root"].join("\n"),
      );
      const settings = JSON.parse(await out("cat /etc/techulus-agent/agent.json"));
      expect(settings).toEqual({ url: services.controlPlane, token, proxy: true, insecureRegistries: [services.registry] });
      // The token is in the settings file only: never on any process's command line.
      const cmdlines = await out("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done");
      expect(cmdlines).toContain("/usr/local/bin/agent run");
      expect(cmdlines).not.toContain(token);

      const reported = await reportedContainer(0);
      containerId = reported.containerId;
      expect(await containerState()).toBe(`${containerId} running`);
      await withAgentLog(() => waitFor(async () => (await sh("curl -fsS --max-time 5 http://127.0.0.1:8088/", { allowFailure: true })).exitCode === 0, 60_000, "the published port"));
      // A proxy node: Caddy was installed (with its stock Caddyfile) and carries the route.
      await withAgentLog(() =>
        waitFor(
          async () => (await sh("curl -fsS --max-time 5 -H 'Host: web.localhost' http://127.0.0.1/", { allowFailure: true })).stdout.includes("hello"),
          60_000,
          "the Caddy route to the container",
        ),
      );
    },
    INSTALL_TIMEOUT_MS + 120_000,
  );

  test("systemctl restart leaves the container running with the same id", async () => {
    expect(containerId).toBeDefined();
    const before = await statusCount();
    await sh(`systemctl restart ${UNIT}`);
    expect(await out(`systemctl is-active ${UNIT}`)).toBe("active");
    const reported = await reportedContainer(before);
    expect(reported.containerId).toBe(containerId);
    expect(await containerState()).toBe(`${containerId} running`);
    expect((await registrations()).registrations).toBe(1);
  }, 180_000);

  test("agent doctor: service.unit finds the unit's settings undone and its fix restores them without a restart; service.log reads the unit's journal", async () => {
    const dropIns = `/etc/systemd/system/${UNIT}.service.d`;
    const doctor = async (args: string) => {
      const res = await sh(`agent doctor --json ${args}`, { allowFailure: true, timeoutMs: 300_000 });
      try {
        return JSON.parse(res.stdout) as { checks: Array<{ id: string; status: string; detail: string; fix?: { automatic: boolean; description: string } }>; fixes?: Array<{ checkId: string; applied: boolean; error?: string; statusAfter?: string }> };
      } catch {
        throw new Error(`agent doctor ${args} printed no JSON (exit ${res.exitCode}):\n${res.stdout}\n${res.stderr}`);
      }
    };
    const check = (report: Awaited<ReturnType<typeof doctor>>, id: string) => report.checks.find((c) => c.id === id)!;
    try {
      // What a hand edit (systemctl edit) can do: containers die with the agent, no restart, no start at boot.
      await sh(`mkdir -p ${dropIns} && printf '[Service]\\nKillMode=control-group\\nRestart=no\\n' > ${dropIns}/05-hand-edit.conf && systemctl daemon-reload && systemctl disable ${UNIT}`);
      expect(await out(`systemctl show -p KillMode --value ${UNIT}`)).toBe("control-group");
      const mainPid = await out(`systemctl show -p MainPID --value ${UNIT}`);

      const before = await doctor("");
      const unit = check(before, "service.unit");
      expect(unit.status).toBe("fail");
      expect(unit.detail).toContain("KillMode=control-group: stopping or restarting the agent kills conmon and with it every container");
      expect(unit.detail).toContain("Restart=no");
      expect(unit.detail).toContain("UnitFileState=disabled");
      expect(unit.detail).toContain(`${dropIns}/05-hand-edit.conf`);
      expect(unit.fix).toMatchObject({ automatic: true });
      const log = check(before, "service.log");
      expect(["ok", "warn"]).toContain(log.status);
      expect(log.detail).toMatch(/in the last \d+ lines? of journalctl -u techulus-agent\.service/);

      const fixed = await doctor("--fix");
      expect(fixed.fixes?.find((f) => f.checkId === "service.unit")).toMatchObject({ applied: true, statusAfter: "ok" });
      expect(check(fixed, "service.unit").detail).toStartWith("KillMode=process, Restart=always, enabled");
      expect(await out(`systemctl show -p KillMode --value ${UNIT}`)).toBe("process");
      expect(await out(`systemctl show -p Restart --value ${UNIT}`)).toBe("always");
      expect(await out(`systemctl is-enabled ${UNIT}`)).toBe("enabled");
      expect(await out(`cat ${dropIns}/10-doctor.conf`)).toContain("KillMode=process\nRestart=always");
      // Applied by daemon-reload alone: the agent was not restarted.
      expect(await out(`systemctl show -p MainPID --value ${UNIT}`)).toBe(mainPid);
      expect(await out(`systemctl is-active ${UNIT}`)).toBe("active");
    } finally {
      await sh(`rm -rf ${dropIns} && systemctl daemon-reload && systemctl enable ${UNIT}`, { allowFailure: true });
    }
  }, 660_000);

  test("bad input is refused with exit 2 and changes nothing", async () => {
    await sh(`curl -fsSL ${services.files}/install.sh -o /root/install.sh`);
    const before = await fingerprint();
    const res = await sh(`bash /root/install.sh --download-url ${services.files}/v2 --proxy-driver nginx`, { allowFailure: true });
    expect(res.exitCode).toBe(2);
    expect(res.stderr).toContain("PROXY_DRIVER (--proxy-driver) must be caddy, traefik or auto");
    expect(await fingerprint()).toBe(before);
  }, 120_000);

  test("--dry-run prints every step and changes nothing", async () => {
    const before = await fingerprint();
    const res = await sh(`bash /root/install.sh --dry-run --download-url ${services.files}/v2`, { timeoutMs: 300_000 });
    for (const step of ["1/6 prerequisites", "2/6 download", "3/6 host setup", "4/6 settings", "5/6 binary", "6/6 service"]) expect(res.stdout).toContain(step);
    expect(res.stdout).toContain("would download");
    expect(res.stdout).toContain("would install /usr/local/bin/agent");
    expect(res.stdout).toContain(`would run: systemctl restart ${UNIT}`);
    expect(await fingerprint()).toBe(before);
  }, 300_000);

  test("a tampered binary is refused and nothing changes", async () => {
    const before = await fingerprint();
    const res = await sh(`bash /root/install.sh --download-url ${services.files}/tampered`, { allowFailure: true, timeoutMs: 300_000 });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain("SHA-256 mismatch");
    expect(res.stderr).toContain("nothing was changed");
    expect(await fingerprint()).toBe(before);
    expect(await out("/usr/local/bin/agent --version")).toStartWith(V1);
  }, 300_000);

  test("a version other than the one asked for is refused", async () => {
    const before = await fingerprint();
    const res = await sh(`AGENT_VERSION=${V1} bash /root/install.sh --download-url ${services.files}/v2`, { allowFailure: true, timeoutMs: 300_000 });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain(`holds version ${V2}, not the requested AGENT_VERSION ${V1}`);
    expect(await fingerprint()).toBe(before);
  }, 300_000);

  test("running the installer again upgrades in place: new binary, same identity, same container", async () => {
    const identity = await out("cat /var/lib/techulus-agent/config.json");
    const before = await statusCount();
    const res = await sh(`bash /root/install.sh --download-url ${services.files}/v2`, { allowFailure: true, timeoutMs: 600_000 });
    expect({ exit: res.exitCode, stderr: res.stderr.slice(-3000) }).toEqual({ exit: 0, stderr: expect.any(String) });
    expect(res.stdout).toContain("identity kept");
    expect(await out("/usr/local/bin/agent --version")).toStartWith(`${V2} (commit `);
    expect(await out("/usr/local/bin/agent.previous --version")).toStartWith(`${V1} (commit `);
    expect(await out("cat /var/lib/techulus-agent/config.json")).toBe(identity);
    expect(await out(`systemctl is-active ${UNIT}`)).toBe("active");
    expect((await reportedContainer(before)).containerId).toBe(containerId);
    expect(await containerState()).toBe(`${containerId} running`);
    expect((await registrations()).registrations).toBe(1);
  }, 660_000);

  test("an upgrade whose agent does not stay up is rolled back to the previous binary", async () => {
    const before = await statusCount();
    const res = await sh(`bash /root/install.sh --download-url ${services.files}/broken`, { allowFailure: true, timeoutMs: 300_000 });
    expect(res.exitCode).toBe(1);
    expect(res.stdout).toContain("agent: cannot start");
    expect(res.stderr).toContain(`the agent exited with the new binary: the previous one (${V2} (commit `);
    expect(await out("/usr/local/bin/agent --version")).toStartWith(`${V2} (commit `);
    expect(await out(`systemctl is-active ${UNIT}`)).toBe("active");
    expect((await reportedContainer(before)).containerId).toBe(containerId);
    expect((await registrations()).registrations).toBe(1);
  }, 360_000);

  test("--uninstall removes the unit and the binary, keeps the data, the settings and the container", async () => {
    const res = await sh("bash /root/install.sh --uninstall");
    expect(res.stdout).toContain("stopping and removing techulus-agent.service");
    expect((await sh(`systemctl is-active ${UNIT}`, { allowFailure: true })).stdout.trim()).not.toBe("active");
    expect(await out("ls /usr/local/bin/agent /usr/local/bin/agent.previous /etc/systemd/system/techulus-agent.service 2>&1 | grep -c 'No such file'")).toBe("3");
    expect(await out("ls /var/lib/techulus-agent/config.json /etc/techulus-agent/agent.json")).toContain("config.json");
    expect(await containerState()).toBe(`${containerId} running`);
  }, 180_000);

  test("--purge removes the managed containers, the proxy routes, the data, the settings and the network: nothing is left", async () => {
    // Traefik's files of the agent beside an operator's (this node runs Caddy; the files are planted).
    await sh(
      "mkdir -p /etc/traefik/dynamic /etc/traefik/certs && cd /etc/traefik && touch dynamic/routes.yaml dynamic/tls.yaml dynamic/mine.yaml certs/web.localhost.0123456789ab.crt certs/web.localhost.0123456789ab.key certs/operator.crt",
    );
    expect(await out("curl -fsS http://127.0.0.1:2019/config/ | grep -o '\"@id\":\"techulus-[^\"]*\"' | wc -l")).not.toBe("0");
    const res = await sh("bash /root/install.sh --purge", { timeoutMs: 180_000 });
    expect(res.stdout).toContain("1 managed container(s)");
    expect(res.stdout).toMatch(/removed the agent's \d+ route\(s\) and certificate\(s\) from Caddy/);
    // Caddy runs on with the operator's config (the stock Caddyfile's server) and nothing of the agent's.
    expect(await out("curl -fsS http://127.0.0.1:2019/config/ | grep -c techulus- || true")).toBe("0");
    expect(await out("curl -fsS http://127.0.0.1:2019/config/apps/http/servers | jq -r 'keys[]'")).not.toBe("");
    expect((await sh("curl -sS --max-time 5 -H 'Host: web.localhost' http://127.0.0.1/", { allowFailure: true })).stdout).not.toContain("hello");
    expect(await out("find /etc/traefik -type f | sort | tr '\\n' ' '")).toBe("/etc/traefik/certs/operator.crt /etc/traefik/dynamic/mine.yaml");
    expect(await out("podman ps -a -q --filter label=techulus.service.id | wc -l")).toBe("0");
    expect(await out("podman network ls --format '{{.Name}}'")).not.toContain("techulus");
    expect(await out("ls -d /var/lib/techulus-agent /etc/techulus-agent /run/techulus-agent /usr/local/bin/agent 2>&1 | grep -c 'No such file'")).toBe("4");
    expect((await sh("ip link show wg0", { allowFailure: true })).exitCode).not.toBe(0);
    expect(await out("pgrep -x dnsmasq | wc -l")).toBe("0");
  }, 240_000);

  test("a first install whose agent cannot register stops and disables the service, with the agent's log", async () => {
    const res = await sh(`bash /root/install.sh --url ${services.controlPlane} --token not-a-token-of-this-control-plane --download-url ${services.files}/v2`, {
      allowFailure: true,
      timeoutMs: 600_000,
    });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain("the service is stopped and disabled. Fix the cause and run the installer again");
    expect(res.stdout).toContain("its last log lines:");
    expect((await sh(`systemctl is-enabled ${UNIT}`, { allowFailure: true })).stdout.trim()).toBe("disabled");
    expect((await sh(`systemctl is-active ${UNIT}`, { allowFailure: true })).stdout.trim()).not.toBe("active");
    expect(await out("ls /var/lib/techulus-agent/config.json 2>&1 | grep -c 'No such file'")).toBe("1");
  }, 660_000);
});
