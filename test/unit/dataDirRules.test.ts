import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inspectDataDir, judgeDataDir, type DataDirFacts } from "../../lib/datadir/dataDirRules.ts";
import { tempDir } from "../support/agentBinary.ts";

const ROOT_UID = 0;

function facts(path: string, existing?: DataDirFacts["existing"], more: Partial<DataDirFacts> = {}): DataDirFacts {
  return { path, realPath: path, processUid: ROOT_UID, ...(existing ? { existing } : {}), ...more };
}
const folder = (mode: number, uid = ROOT_UID) => ({ isDirectory: true, mode, uid });

describe("judgeDataDir: folders the agent refuses", () => {
  test.each<[string, DataDirFacts, string]>([
    ["/", facts("/", folder(0o755)), "/ is a system folder"],
    ["/tmp", facts("/tmp", folder(0o1777)), "/tmp is a system folder"],
    ["/var", facts("/var", folder(0o755)), "/var is a system folder"],
    ["/var/lib", facts("/var/lib", folder(0o755)), "/var/lib is a system folder"],
    ["/usr/local", facts("/usr/local", folder(0o755)), "/usr/local is a system folder"],
    ["a link to /tmp", facts("/srv/agent", folder(0o1777), { realPath: "/tmp" }), "/srv/agent (which is /tmp) is a system folder"],
    ["inside /proc", facts("/proc/agent"), "/proc/agent is inside /proc, a kernel file system"],
    ["a regular file", facts("/srv/agent.json", { isDirectory: false, mode: 0o644, uid: ROOT_UID }), "/srv/agent.json is not a directory"],
    ["below a regular file", facts("/etc/hosts/agent", undefined, { notAFolder: "/etc/hosts" }), "/etc/hosts/agent cannot be created: /etc/hosts is not a directory"],
    ["another user's folder", facts("/home/alice/agent", folder(0o700, 1000)), "belongs to another user (uid 1000; the agent runs as uid 0)"],
    ["writable by everyone", facts("/srv/shared", folder(0o777)), "/srv/shared is writable by every user (mode 0777)"],
    ["writable by the group", facts("/srv/team", folder(0o770)), "/srv/team is writable by its group (mode 0770)"],
    ["sticky", facts("/srv/drop", folder(0o1755)), "/srv/drop has the sticky bit (mode 1755)"],
  ])("%s", (_name, input, expected) => {
    const verdict = judgeDataDir(input);
    expect(verdict.refusal).toContain(expected);
    expect(verdict.warning).toBeUndefined();
  });
});

describe("judgeDataDir: folders the agent takes", () => {
  test("a folder that does not exist yet, even below /tmp", () => {
    expect(judgeDataDir(facts("/tmp/agent-test/data"))).toEqual({});
    expect(judgeDataDir(facts("/var/lib/techulus-agent"))).toEqual({});
  });

  test("its own private folder", () => {
    expect(judgeDataDir(facts("/var/lib/techulus-agent", folder(0o700)))).toEqual({});
  });

  test("its own folder that others can look into: accepted, with the chmod a person may run", () => {
    const verdict = judgeDataDir(facts("/srv/agent", folder(0o755)));
    expect(verdict.refusal).toBeUndefined();
    expect(verdict.warning).toBe(
      "data dir /srv/agent has mode 0755: other users can look inside (the secret files themselves are 0600); the agent does not change the mode of a folder it did not create: chmod 700 /srv/agent",
    );
  });
});

describe("inspectDataDir", () => {
  const tmp = tempDir("datadir-rules-");
  afterAll(() => tmp.cleanup());

  test("reads what is there without changing it", () => {
    const dir = join(tmp.path, "loose");
    mkdirSync(dir);
    chmodSync(dir, 0o1777);
    expect(inspectDataDir(dir, 0)).toEqual({ path: dir, realPath: dir, existing: { isDirectory: true, mode: 0o1777, uid: 0 }, processUid: 0 });
  });

  test("a path that does not exist yet: its real path through a link, nothing existing", () => {
    const target = join(tmp.path, "target");
    mkdirSync(target);
    symlinkSync(target, join(tmp.path, "link"));
    expect(inspectDataDir(join(tmp.path, "link", "a", "..", "b"), 0)).toEqual({ path: join(tmp.path, "link", "b"), realPath: join(target, "b"), processUid: 0 });
  });

  test("a link to a system folder resolves to it", () => {
    symlinkSync("/tmp", join(tmp.path, "to-tmp"));
    const f = inspectDataDir(join(tmp.path, "to-tmp"), 0);
    expect(f.realPath).toBe("/tmp");
    expect(judgeDataDir(f).refusal).toContain("is a system folder");
  });

  test("a file in the way", () => {
    const file = join(tmp.path, "file");
    writeFileSync(file, "x");
    expect(inspectDataDir(file, 0).existing?.isDirectory).toBe(false);
    expect(inspectDataDir(join(file, "data"), 0).notAFolder).toBe(file);
  });
});
