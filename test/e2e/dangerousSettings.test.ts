import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runAgentCli, runAgentJson, tempDir } from "../support/agentBinary.ts";

/**
 * Settings that would let the agent damage the server are refused before it touches anything:
 * exit 2, one line naming the setting and why, and what was there is left exactly as it was.
 * Shared folders are played by throw-away folders: `/tmp` and `/var` bind-mounted in a mount
 * namespace of the agent's own, `/` only as an unprivileged user (who could not change it anyway).
 */
const tmp = tempDir("dangerous-settings-");
afterAll(() => tmp.cleanup());

const NOBODY = 65534;
const stat = (path: string) => {
  const st = statSync(path);
  return { mode: (st.mode & 0o7777).toString(8), uid: st.uid };
};

function folder(name: string, mode: number, uid = 0): string {
  const path = join(tmp.path, name);
  mkdirSync(path);
  writeFileSync(join(path, "theirs"), "kept");
  chmodSync(path, mode);
  chownSync(path, uid, 0);
  return path;
}

/** `agent run` creates the data dir and its keys folder first (then stops: no identity, no token). */
const RUN = ["run", "--url", "http://127.0.0.1:1"];

describe("--data-dir", () => {
  test("/ is refused; run as an unprivileged user, the agent could not have changed it anyway", async () => {
    const before = stat("/");
    const res = await runAgentCli([...RUN, "--data-dir", "/"], { wrapper: ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"] });
    expect(res.stderr).toBe("agent: --data-dir: / is a system folder that other users and services need; give the agent a folder of its own, such as the default /var/lib/techulus-agent\n");
    expect(res.exitCode).toBe(2);
    expect(stat("/")).toEqual(before);
  });

  test("/tmp and /var are refused and keep their mode (throw-away folders mounted over them in a namespace of its own)", async () => {
    const fakeTmp = folder("tmp", 0o1777);
    const fakeVar = folder("var", 0o755);
    const inNamespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /var && mount --bind "$2" /tmp && shift 2 && exec "$@"', "sh", fakeVar, fakeTmp];
    for (const [dir, fake] of [["/tmp", fakeTmp], ["/var", fakeVar]] as const) {
      const before = stat(fake);
      const res = await runAgentCli([...RUN, "--data-dir", dir], { wrapper: inNamespace });
      expect(res.stderr).toBe(`agent: --data-dir: ${dir} is a system folder that other users and services need; give the agent a folder of its own, such as the default /var/lib/techulus-agent\n`);
      expect(res.exitCode).toBe(2);
      expect(stat(fake)).toEqual(before);
      expect(readdirSync(fake)).toEqual(["theirs"]);
    }
    // The namespace's mounts never reached the real folders.
    expect(readdirSync("/tmp")).not.toContain("theirs");
  });

  test("a shared folder (writable by everyone, or sticky) and another user's folder are refused and left as they were", async () => {
    const cases = [
      { dir: folder("shared", 0o777), says: "is writable by every user (mode 0777)" },
      { dir: folder("drop", 0o1755), says: "has the sticky bit (mode 1755)" },
      { dir: folder("alice", 0o700, NOBODY), says: `belongs to another user (uid ${NOBODY}; the agent runs as uid 0)` },
    ];
    for (const { dir, says } of cases) {
      const before = stat(dir);
      for (const args of [[...RUN, "--data-dir", dir], ["doctor", "--json", "--data-dir", dir]]) {
        const res = await runAgentCli(args);
        expect(res.stderr).toStartWith(`agent: --data-dir: ${dir} ${says}`);
        expect(res.stderr.trim().split("\n")).toHaveLength(1);
        expect(res.exitCode).toBe(2);
        expect(stat(dir)).toEqual(before);
        expect(readdirSync(dir)).toEqual(["theirs"]);
      }
    }
  });

  test("a regular file is not a directory: exit 2, the file untouched", async () => {
    const file = join(tmp.path, "agent.conf");
    writeFileSync(file, "not a folder");
    for (const dataDir of [file, join(file, "data")]) {
      const res = await runAgentCli([...RUN, "--data-dir", dataDir]);
      expect(res.stderr).toBe(
        dataDir === file ? `agent: --data-dir: ${file} is not a directory\n` : `agent: --data-dir: ${dataDir} cannot be created: ${file} is not a directory\n`,
      );
      expect(res.exitCode).toBe(2);
    }
    expect(readFileSync(file, "utf8")).toBe("not a folder");
  });

  test("its own folder that others can look into is used as it is, with a warning: the agent never tightens a folder it did not create", async () => {
    const dir = folder("own", 0o750);
    const res = await runAgentCli([...RUN, "--data-dir", dir]);
    expect(res.stderr).toContain(`[datadir] warn: data dir ${dir} has mode 0750: other users can look inside`);
    expect(res.stderr).toContain(`chmod 700 ${dir}`);
    // It went on as usual: made its keys folder (0700, its own), then stopped for want of a token.
    expect(res.stderr).toContain("has no identity yet and --token is missing");
    expect(res.exitCode).toBe(2);
    expect(stat(dir).mode).toBe("750");
    expect(stat(join(dir, "keys")).mode).toBe("700");
  });

  test("a folder it creates is 0700", async () => {
    const dir = join(tmp.path, "new", "data");
    const res = await runAgentCli([...RUN, "--data-dir", dir]);
    expect(res.exitCode).toBe(2);
    expect(res.stderr).not.toContain("[datadir]");
    expect(stat(dir).mode).toBe("700");
  });
});

describe("--config", () => {
  function configFile(name: string, content: unknown, mode: number): string {
    const path = join(tmp.path, name);
    writeFileSync(path, JSON.stringify(content));
    chmodSync(path, mode);
    return path;
  }

  test("a token in a file others can read: a warning naming the file and its mode, and doctor proposes chmod 600", async () => {
    const token = "tok-3f9a1c77e2";
    const file = configFile("readable.json", { token }, 0o644);
    const dataDir = join(tmp.path, "config-data");
    const run = await runAgentCli(["run", "--config", file, "--data-dir", dataDir]);
    expect(run.stderr).toContain(`[config] warn: config file ${file} holds a secret ("token") and is readable by other users (mode 0644): chmod 600 ${file}`);
    expect(run.stderr).not.toContain(token);
    // The file was used (the token is there; only --url is missing), and left as it was.
    expect(run.stderr).toContain("has no identity yet and --url is missing");
    expect(run.exitCode).toBe(2);

    const doctor = await runAgentJson(["doctor", "--json", "--config", file, "--data-dir", dataDir], { timeoutMs: 120_000 });
    const check = doctor.json.checks.find((c: { id: string }) => c.id === "config.file");
    expect(check).toMatchObject({ status: "fail", fix: { description: `chmod 600 ${file}`, automatic: true } });
    expect(check.detail).toContain("(mode 0644)");
    expect(statSync(file).mode & 0o777).toBe(0o644);
  }, 150_000);

  test("a file others can write is refused before anything happens", async () => {
    const file = configFile("writable.json", { url: "http://127.0.0.1:1" }, 0o666);
    const dataDir = join(tmp.path, "never-made");
    const res = await runAgentCli(["run", "--config", file, "--data-dir", dataDir]);
    expect(res.stderr).toBe(`agent: --config: ${file} is writable by every user (mode 0666), who could change the settings the agent runs with as root: chmod go-w ${file}\n`);
    expect(res.exitCode).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
    expect(statSync(file).mode & 0o777).toBe(0o666);
  });
});
