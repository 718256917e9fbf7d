/**
 * `agent run` (the compiled binary) takes a pending build from the test control plane through to
 * `completed`: claimed, cloned with the claim's token, built with podman, pushed. The agent uses a
 * private podman store (CONTAINER_HOST), so its reconcile loop cannot touch other tests' containers;
 * podman builds through that service — the remote podman path (secrets as files, the digest from
 * the registry).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { GitHubAppTokens } from "../../builder/source/GitHubAppTokens.ts";
import { startAgentCli, tempDir } from "../support/agentBinary.ts";
import { removeImagesNamed, runText } from "../support/builds.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { podman, startRegistry, TEST_IMAGE, uniquePrefix, waitFor, type Registry } from "../support/podman.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";

const prefix = uniquePrefix("bre");
const tmp = tempDir("build-run-e2e-");
const cp = new TestControlPlane();
const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
let pod: IsolatedPodman;
let registry: Registry;

beforeAll(async () => {
  await Promise.all([cp.start(), github.start(), git.start()]);
  cp.nextSubnet = await freeSubnetId();
  pod = await startIsolatedPodman({ images: [TEST_IMAGE], network: { subnetId: cp.nextSubnet, name: `${prefix}-net` } });
  registry = await startRegistry();
  git.createRepo("acme/app", [{ "Dockerfile": 'FROM localhost/busybox:test\nRUN --mount=type=secret,id=APP_SECRET busybox sha256sum /run/secrets/APP_SECRET | busybox cut -d\' \' -f1 > /secret.sha256\nCOPY app.txt /app.txt\nCMD ["cat", "/app.txt", "/secret.sha256"]\n', "app.txt": "built by agent run\n" }]);
  github.install("acme", ["acme/app"]);
}, 120_000);

afterAll(async () => {
  await Promise.all([cp.stop(), github.stop(), git.stop()]);
  await registry?.stop();
  await pod?.stop();
  await removeImagesNamed(prefix);
  tmp.cleanup();
}, 120_000);

test("agent run claims a pending build and reports it through to completed", async () => {
  const token = cp.issueToken();
  const serverId = cp.serverByToken(token)!.id;
  cp.setExpectedState(serverId, { containers: [] });
  const { token: cloneToken } = await new GitHubAppTokens({ appId: github.appId, privateKey: github.privateKeyPem, apiUrl: github.url }).installationToken({ owner: "acme", repo: "app" });
  const build = cp.addBuild({
    cloneUrl: git.cloneUrl("acme/app").replace("http://", `http://x-access-token:${cloneToken}@`),
    imageUri: `${registry.host}/${prefix}/app:run`,
    secrets: { APP_SECRET: cp.encrypt("from-agent-run") },
  });
  const agent = startAgentCli(
    [
      "run", "--url", cp.url, "--token", token, "--data-dir", join(tmp.path, "data"),
      "--network-name", `${prefix}-net`, "--dns-port", "0", "--wireguard", "off", "--poll-interval", "60", "--work-queue-interval", "60",
      "--build-poll-interval", "1", "--insecure-registry", registry.host,
    ],
    { env: pod.env },
  );
  try {
    await agent.waitForLog(/registered as server/);
    await waitFor(() => {
      if (agent.proc.exitCode !== null) throw new Error(`agent exited ${agent.proc.exitCode}: ${agent.stderr()}`);
      return ["completed", "failed"].includes(build.history.at(-1)?.status ?? "");
    }, 120_000, "the build to finish");
    expect({ history: build.history, stderr: build.history.at(-1)?.status === "failed" ? agent.stderr() : "" }).toEqual({
      history: [{ status: "cloning" }, { status: "building" }, { status: "pushing" }, { status: "completed" }],
      stderr: "",
    });
    expect(build.claimedBy).toBe(serverId);
    const inspected = await runText(["skopeo", "inspect", "--tls-verify=false", `docker://${registry.host}/${prefix}/app:run`]);
    expect(JSON.parse(inspected).Digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const out = await podman(["run", "--rm", "--tls-verify=false", `${registry.host}/${prefix}/app@${JSON.parse(inspected).Digest}`]);
    expect(out.trim().split("\n")).toEqual(["built by agent run", createHash("sha256").update("from-agent-run").digest("hex")]);
    expect(agent.stderr()).not.toContain(cloneToken);
    expect(agent.stderr()).not.toContain("from-agent-run");
  } finally {
    expect(await agent.stop()).toBe(0);
  }
}, 180_000);
