import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { buildTestImage, podman as hostPodman, uniquePrefix, waitFor } from "../support/podman.ts";
import { byTime, startVictoriaLogs, type RealVictoriaLogs } from "../support/victoriaLogs.ts";

const LINES = 1500;
const prefix = uniquePrefix("lr");
const tmp = tempDir("logs-resume-e2e-");
const counterImage = `localhost/${prefix}-counter:1`;
const cp = new TestControlPlane();
let vl: RealVictoriaLogs;
let world: IsolatedPodman;
let subnetId: number;

beforeAll(async () => {
  vl = await startVictoriaLogs();
  await cp.start();
  subnetId = cp.nextSubnet = await freeSubnetId();
  // Numbered lines, about 50 a second, then it stays up so the agent keeps it.
  await buildTestImage(counterImage, ["sh", "-c", `i=1; while [ $i -le ${LINES} ]; do echo "line $i"; i=$((i+1)); sleep 0.02; done; trap 'exit 0' TERM; sleep 100000 & wait`]);
  world = await startIsolatedPodman({ images: [counterImage], network: { subnetId, name: `${prefix}-net` } });
});

afterAll(async () => {
  await world?.stop();
  await hostPodman(["rmi", counterImage], { allowFailure: true });
  await cp.stop();
  await vl?.stop();
  tmp.cleanup();
});

describe("container logs across agent restarts (real VictoriaLogs, compiled agent)", () => {
  test("a container printing numbered lines through a SIGTERM and a SIGKILL of the agent, and while it is down: every line exactly once, in order", async () => {
    const token = cp.issueToken();
    const serverId = cp.serverByToken(token)!.id;
    const serviceId = `${prefix}-svc`;
    const name = `${prefix}-counter`;
    cp.setExpectedState(serverId, {
      containers: [
        {
          deploymentId: `${prefix}-dep`,
          serviceId,
          serviceName: "counter",
          name,
          image: counterImage,
          ipAddress: `10.200.${subnetId}.40`,
          ports: [],
          env: {},
          healthCheck: null,
          volumes: [],
        },
      ],
    });
    const dataDir = join(tmp.path, "data");
    const common = ["--data-dir", dataDir, "--network-name", `${prefix}-net`, "--dns-port", "0", "--wireguard", "off", "--logs-endpoint", vl.url, "--poll-interval", "1", "--work-queue-interval", "60", "--build-poll-interval", "3600"];
    // The first run ships no agent log (off by default), the later ones do (--ship-agent-log).
    const start = (first: boolean) => startAgentCli(["run", "--url", cp.url, ...(first ? ["--token", token] : ["--ship-agent-log"]), ...common], { env: world.env });
    const query = `service_id:"${serviceId}"`;
    const printed = async () => (await world.podman(["logs", name], { allowFailure: true })).split("\n").filter((l) => l.startsWith("line ")).length;
    const agents: Array<ReturnType<typeof start>> = [];
    try {
      const first = start(true);
      agents.push(first);
      await vl.waitForRows(query, 100, 60_000);
      expect(await first.stop("SIGTERM")).toBe(0);

      // Down: the container goes on printing.
      const atStop = await printed();
      await waitFor(async () => (await printed()) >= atStop + 100, 30_000, "100 lines printed while the agent is down");

      const second = start(false);
      agents.push(second);
      await vl.waitForRows(query, atStop + 150, 60_000);
      second.proc.kill("SIGKILL");
      await second.exited();

      const atKill = await printed();
      await waitFor(async () => (await printed()) >= Math.min(LINES, atKill + 100), 30_000, "lines printed after the SIGKILL");
      expect(atKill).toBeLessThan(LINES); // the kill really was in the middle

      const third = start(false);
      agents.push(third);
      await waitFor(async () => (await printed()) === LINES, 60_000, `the container to print its ${LINES} lines`);
      await vl.waitForRows(query, LINES, 60_000);
      expect(await third.stop("SIGTERM")).toBe(0);
      await Bun.sleep(500); // rows of a last, duplicate batch would be queryable by now

      const all = byTime(await vl.query(query));
      expect(all.map((r) => r._msg)).toEqual(Array.from({ length: LINES }, (_, i) => `line ${i + 1}`));
      const agentLog = await vl.query(`log_type:agent server_id:"${serverId}"`);
      expect(agentLog.filter((r) => r._msg.includes(`agent started for server ${serverId}`))).toHaveLength(2);
      const positions = JSON.parse(readFileSync(join(dataDir, "state/log-positions.json"), "utf8"));
      const record = Object.values(positions.containers as Record<string, { serviceId: string; dropped: number }>).find((r) => r.serviceId === serviceId);
      expect(record?.dropped).toBe(0);
    } finally {
      for (const agent of agents) if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
  }, 240_000);
});
