import { afterEach, describe, expect, test } from "bun:test";
import { pruneArgs, prunedTotal } from "../../builder/drivers/buildkitCache.ts";
import { countWorkers, parseBuildKitVersion, unreachableReason } from "../../builder/drivers/buildkitProbe.ts";
import { buildkitCheck } from "../../lib/doctor/buildkitCheck.ts";
import { tempDir } from "../support/agentBinary.ts";
import { doctorContext } from "../support/doctorFixtures.ts";

const dirs: Array<{ cleanup: () => void }> = [];
afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));
function dir(): string {
  const d = tempDir("buildkit-unit-");
  dirs.push(d);
  return d.path;
}

describe("BuildKit cache bound", () => {
  test("prune keeps the cache at or under the bound, in MB as buildctl counts them", () => {
    expect(pruneArgs("tcp://127.0.0.1:1234", 10240)).toEqual(["--addr", "tcp://127.0.0.1:1234", "prune", "--keep-storage", "10240"]);
  });

  test("what a prune freed, from buildctl's Total line", () => {
    const output = "ID\t\t\t\t\t\t\t\t\tRECLAIMABLE\tSIZE\tLAST ACCESSED\nvhnfncm6lmdlsj2yzc9ko7el2*   \ttrue       \t4.10kB\t\nTotal:\t28.67kB\n";
    expect(prunedTotal(output)).toBe("28.67kB");
    expect(prunedTotal("Total:\t0B\n")).toBe("0B");
    expect(prunedTotal("")).toBeUndefined();
  });
});

describe("BuildKit probe", () => {
  test("the daemon's version from debug info, JSON or plain", () => {
    expect(parseBuildKitVersion('{"buildkitVersion":{"package":"github.com/moby/buildkit","version":"v0.11.6","revision":"2951a28cd7085eb18979b1f710678623d94ed578"}}\n')).toBe("v0.11.6");
    expect(parseBuildKitVersion('{"buildkitVersion":{"package":"github.com/moby/buildkit","version":"v0.19.0-rc1"}}')).toBe("v0.19.0-rc1");
    expect(parseBuildKitVersion("BuildKit: github.com/moby/buildkit v0.11.6 2951a28cd7085eb18979b1f710678623d94ed578\n")).toBe("v0.11.6");
    expect(parseBuildKitVersion("nothing here")).toBeUndefined();
  });

  test("workers are the rows under the header", () => {
    expect(countWorkers("ID\t\t\t\tPLATFORMS\nlju7uxcbnqk64pw4h4dujo7zb\tlinux/amd64,linux/amd64/v2,linux/amd64/v3,linux/amd64/v4\n")).toBe(1);
    expect(countWorkers("ID\t\t\t\tPLATFORMS\n")).toBe(0);
  });
});

describe("why BuildKit does not answer", () => {
  test("the dial error, without gRPC's wrapping", () => {
    const stderr = 'error: failed to list workers: Unavailable: connection error: desc = "transport: error while dialing: dial tcp 127.0.0.1:9: connect: connection refused"\n';
    expect(unreachableReason(stderr)).toBe("error while dialing: dial tcp 127.0.0.1:9: connect: connection refused");
    expect(unreachableReason("")).toBe("no answer");
  });
});

describe("doctor: host.buildkit without buildctl", () => {
  const noBuildctl = async () => undefined;
  test("auto: skipped (builds use podman); buildkit: a failure; podman: skipped", async () => {
    const root = dir();
    const run = (builder: string) => buildkitCheck.run(doctorContext(root, { which: noBuildctl, flags: { builder } }));
    const auto = await run("auto");
    expect([auto.status, auto.detail]).toEqual(["skip", "buildctl is not installed: builds use podman (--builder auto)"]);
    const required = await run("buildkit");
    expect(required.status).toBe("fail");
    expect(required.detail).toBe("buildctl is not installed, and --builder buildkit builds with it");
    expect((await run("podman")).status).toBe("skip");
  });
});
