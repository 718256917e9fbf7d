/**
 * Leftovers of cut-short Podman operations, made on purpose against real Podman, on both network
 * backends (each in an isolated world with an explicit backend): found, repaired when they are the
 * agent's to repair, named when they are not.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeployContext } from "../../lib/drivers.ts";
import { configureLogging } from "../../lib/logger.ts";
import { CNI_NETWORKS_DIR } from "../../lib/podman/cniReservations.ts";
import { readConmonProcesses } from "../../lib/podman/conmonProcesses.ts";
import { PodmanRuntime } from "../../lib/podman/PodmanRuntime.ts";
import type { ExpectedContainer } from "../../lib/state/types.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman, type NetworkBackend } from "../support/isolatedPodman.ts";
import { STUBBORN_CMD, containerState, interruptStop, strandConmon } from "../support/leftoverMakers.ts";
import { freePort, uniquePrefix } from "../support/podman.ts";

const WEB_IMAGE = "localhost/hello-web:test";
const BUSYBOX = "localhost/busybox:test";
const ctx: DeployContext = { decryptEnv: (_key, value) => (value.kind === "plain" ? value.value : "") };
const logLines: string[] = [];

beforeAll(() => {
  configureLogging({ sink: { write: (line) => (logLines.push(line), process.stderr.write(line + "\n")) } });
});

function portIsFree(port: number): boolean {
  try {
    Bun.listen({ hostname: "0.0.0.0", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

for (const backend of ["cni", "netavark"] as NetworkBackend[]) {
  describe(`leftovers on Podman with ${backend}`, () => {
    const prefix = uniquePrefix(backend.slice(0, 3));
    const network = `${prefix}-net`;
    let world: IsolatedPodman;
    let runtime: PodmanRuntime;
    let subnetId: number;
    let volumes: string;
    const ip = (n: number) => `10.200.${subnetId}.${n}`;

    beforeAll(async () => {
      subnetId = await freeSubnetId();
      world = await startIsolatedPodman({ images: [WEB_IMAGE, BUSYBOX], network: { subnetId, name: network }, backend });
      expect((await world.podman(["info", "--format", "{{.Host.NetworkBackend}}"])).trim()).toBe(backend);
      volumes = mkdtempSync(join(tmpdir(), `${prefix}-vol-`));
      runtime = new PodmanRuntime({ socketPath: world.socketPath, networkName: network, volumesRoot: volumes, healthChecks: "podman", stopGraceSeconds: 2 });
    }, 120_000);

    afterAll(async () => {
      await runtime?.close();
      await world?.stop();
      rmSync(volumes, { recursive: true, force: true });
      rmSync(join(CNI_NETWORKS_DIR, network), { recursive: true, force: true });
    });

    const run = (name: string, args: string[]) =>
      world.podman(["run", "-d", "--name", `${prefix}-${name}`, "--network", network, ...args]).then((id) => id.trim());

    function expected(n: number, overrides: Partial<ExpectedContainer> = {}): ExpectedContainer {
      return { deploymentId: `${prefix}-dep${n}`, serviceId: `${prefix}-svc${n}`, serviceName: `web${n}`, name: `${prefix}-web${n}`, image: WEB_IMAGE, ports: [], env: {}, volumes: [], ipAddress: ip(n), ...overrides };
    }

    test("a conmon Podman forgot, holding a port the expected state needs, is stopped; one holding nothing needed is only reported", async () => {
      const needed = await freePort();
      const other = await freePort();
      const a = await run("stray-a", ["--ip", ip(20), "-p", `${needed}:8080`, "--label", `techulus.service.id=${prefix}-svcA`, BUSYBOX, ...STUBBORN_CMD]);
      const b = await run("stray-b", ["--ip", ip(21), "-p", `${other}:8080`, BUSYBOX, ...STUBBORN_CMD]);
      await strandConmon(world, `${prefix}-stray-a`);
      await strandConmon(world, `${prefix}-stray-b`);
      expect(portIsFree(needed)).toBe(false);

      const found = await runtime.healer.find({ ports: [needed], addresses: [] });
      const strays = found.filter((l) => l.kind === "stray-conmon");
      expect(strays.map((l) => l.kind === "stray-conmon" && [l.conmon.containerId, l.needed])).toEqual(
        expect.arrayContaining([
          [a, [`TCP port ${needed}`]],
          [b, []],
        ]),
      );

      const before = logLines.length;
      const outcome = await runtime.healLeftovers({ ports: [needed], addresses: [] });
      expect(outcome.healed.map((l) => l.kind === "stray-conmon" && l.conmon.containerId)).toEqual([a]);
      expect(logLines.slice(before).join("\n")).toContain(`leftover of an interrupted operation: conmon pid`);
      expect(logLines.slice(before).join("\n")).toContain(`holding TCP port ${needed}; stop conmon pid`);
      expect(portIsFree(needed)).toBe(true);
      const conmons = readConmonProcesses();
      expect(conmons.some((c) => c.containerId === a)).toBe(false);
      expect(conmons.some((c) => c.containerId === b)).toBe(true);

      // doctor's fix (a person asked): every stray conmon of this Podman.
      await runtime.healer.heal({ ports: [], addresses: [] }, { everything: true });
      expect(readConmonProcesses().some((c) => c.containerId === b)).toBe(false);
      expect(portIsFree(other)).toBe(true);
    }, 120_000);

    test("a managed container stuck in stopping is stopped; an unmanaged one is left as it is", async () => {
      await run("stuck", ["--ip", ip(22), "--label", `techulus.service.id=${prefix}-svcS`, BUSYBOX, ...STUBBORN_CMD]);
      await run("theirs-stuck", ["--ip", ip(23), BUSYBOX, ...STUBBORN_CMD]);
      await interruptStop(world, `${prefix}-stuck`);
      await interruptStop(world, `${prefix}-theirs-stuck`);
      const outcome = await runtime.healLeftovers({ ports: [], addresses: [] });
      expect(outcome.healed.map((l) => l.kind)).toEqual(["stuck-container"]);
      expect(await containerState(world, `${prefix}-stuck`)).toBe("exited");
      expect(await containerState(world, `${prefix}-theirs-stuck`)).toBe("stopping");
      await world.podman(["stop", "-t", "0", `${prefix}-theirs-stuck`]);
    }, 120_000);

    test("an unmanaged container on a needed address or port: the deploy fails naming it, and it is never touched", async () => {
      const theirs = await run("theirs", ["--ip", ip(30), WEB_IMAGE]);
      const err = await runtime.deploy(expected(30), ctx).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`cannot deploy ${prefix}-web30: container ${prefix}-theirs (${theirs.slice(0, 12)}), which the agent does not manage, holds address ${ip(30)}`);
      expect((err as Error).message).toContain(`podman stop ${prefix}-theirs`);

      const port = await freePort();
      const theirsPort = await run("theirs-port", ["--ip", ip(31), "-p", `${port}:8080`, WEB_IMAGE]);
      const err2 = await runtime.deploy(expected(32, { ports: [{ containerPort: 8080, hostPort: port }] }), ctx).catch((e: Error) => e);
      expect((err2 as Error).message).toContain(`container ${prefix}-theirs-port (${theirsPort.slice(0, 12)}), which the agent does not manage, holds TCP port ${port}`);

      expect(await containerState(world, `${prefix}-theirs`)).toBe("running");
      expect(await containerState(world, `${prefix}-theirs-port`)).toBe("running");
      expect(await containerState(world, `${prefix}-web30`)).toBeUndefined();
      expect(await containerState(world, `${prefix}-web32`)).toBeUndefined();
    }, 120_000);

    if (backend === "cni") {
      // netavark keeps its allocations in a database of its own, which the agent does not edit.
      test("a CNI reservation naming a container Podman does not know is released, and the deploy that needed it goes through", async () => {
        const dir = join(CNI_NETWORKS_DIR, network);
        mkdirSync(dir, { recursive: true });
        const stale = join(dir, ip(40));
        writeFileSync(stale, `${"d".repeat(64)}\r\neth0`);
        // Another world may use a network of the same name: reservations outside this subnet are not ours.
        const elsewhere = join(dir, `10.200.${subnetId === 250 ? 251 : subnetId + 1}.40`);
        writeFileSync(elsewhere, `${"e".repeat(64)}\r\neth0`);

        const before = logLines.length;
        const id = await runtime.deploy(expected(40), ctx);
        expect(await containerState(world, `${prefix}-web40`)).toBe("running");
        expect(logLines.slice(before).join("\n")).toContain(`address ${ip(40)} is reserved (${stale}) for container dddddddddddd, which Podman no longer knows; release the reservation of ${ip(40)}: done`);
        expect(existsSync(elsewhere)).toBe(true);
        expect((await Bun.file(stale).text()).startsWith(id)).toBe(true);
      }, 120_000);
    }
  });
}
