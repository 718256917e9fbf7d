import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { judgeConfigFile } from "../../lib/config/configFileRules.ts";
import { SETTINGS, resolveSettings } from "../../lib/config/settings.ts";
import { UsageError } from "../../lib/errors.ts";
import { REPO_ROOT, tempDir } from "../support/agentBinary.ts";

const KEYS = ["url", "dataDir", "proxy", "logFormat", "requestTimeout"] as const;
const dirs: Array<{ cleanup: () => void }> = [];
afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));

function configFile(content: unknown): string {
  const dir = tempDir();
  dirs.push(dir);
  const path = join(dir.path, "agent.json");
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

describe("settings precedence", () => {
  test("defaults apply when nothing is set", () => {
    const s = resolveSettings(KEYS, { flags: {}, env: {} });
    expect(s.dataDir).toBe("/var/lib/techulus-agent");
    expect(s.proxy).toBe(false);
    expect(s.logFormat).toBe("text");
    expect(s.url).toBeUndefined();
  });

  test("flags beat environment, environment beats file, file beats defaults", () => {
    const file = configFile({ url: "http://file.example", dataDir: "/file", logFormat: "json", requestTimeout: 7 });
    const s = resolveSettings(KEYS, {
      flags: { url: "http://flag.example/" },
      env: { AGENT_URL: "http://env.example", AGENT_DATA_DIR: "/env" },
      configFile: file,
    });
    expect(s.url).toBe("http://flag.example");
    expect(s.dataDir).toBe("/env");
    expect(s.logFormat).toBe("json");
    expect(s.requestTimeout).toBe(7);
  });

  test("environment strings become booleans and numbers", () => {
    const s = resolveSettings(KEYS, { flags: {}, env: { AGENT_PROXY: "true", AGENT_REQUEST_TIMEOUT: "2.5" } });
    expect(s.proxy).toBe(true);
    expect(s.requestTimeout).toBe(2.5);
  });
});

describe("settings errors name the flag and the problem", () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ["bad flag", () => resolveSettings(KEYS, { flags: { logFormat: "xml" }, env: {} }), /^--log-format: must be text or json/],
    ["bad env", () => resolveSettings(KEYS, { flags: {}, env: { AGENT_URL: "ftp://x" } }), /^--url \(from AGENT_URL\): must be an http/],
    ["relative data dir", () => resolveSettings(KEYS, { flags: { dataDir: "var/lib" }, env: {} }), /^--data-dir: must be an absolute path/],
    ["bad boolean", () => resolveSettings(KEYS, { flags: {}, env: { AGENT_PROXY: "maybe" } }), /--proxy \(from AGENT_PROXY\): must be true or false/],
    ["bad number", () => resolveSettings(KEYS, { flags: { requestTimeout: "soon" }, env: {} }), /--request-timeout: must be a number/],
    ["negative number", () => resolveSettings(KEYS, { flags: { requestTimeout: "-1" }, env: {} }), /--request-timeout: must be a positive number/],
    ["file value", () => resolveSettings(KEYS, { flags: {}, env: {}, configFile: configFile({ proxy: "yes" }) }), /--proxy \(from .*agent.json key "proxy"\)/],
    ["unknown key", () => resolveSettings(KEYS, { flags: {}, env: {}, configFile: configFile({ urll: "x" }) }), /unknown key\(s\) "urll"/],
    ["not JSON", () => resolveSettings(KEYS, { flags: {}, env: {}, configFile: configFile("{nope") }), /is not valid JSON/],
    ["missing file", () => resolveSettings(KEYS, { flags: {}, env: {}, configFile: "/nonexistent/agent.json" }), /cannot read \/nonexistent\/agent.json: ENOENT/],
  ];
  for (const [name, fn, pattern] of cases) {
    test(name, () => {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(UsageError);
      expect((caught as Error).message).toMatch(pattern);
      expect((caught as UsageError).exitCode).toBe(2);
    });
  }
});

describe("config file mode and owner", () => {
  function withMode(content: unknown, mode: number): string {
    const path = configFile(content);
    chmodSync(path, mode);
    return path;
  }
  const resolve = (path: string) => resolveSettings(KEYS, { flags: {}, env: {}, configFile: path });
  const refusal = (path: string) => {
    try {
      resolve(path);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).exitCode).toBe(2);
      return (err as Error).message;
    }
    throw new Error("expected the config file to be refused");
  };

  test("a token in a file others can read: used, with a warning naming the file, its mode and the chmod", () => {
    const path = withMode({ token: "tok-123", url: "http://cp.example" }, 0o644);
    const s = resolveSettings(["token", "url"], { flags: {}, env: {}, configFile: path });
    expect(s.token).toBe("tok-123");
    expect(s.configWarnings).toEqual([`config file ${path} holds a secret ("token") and is readable by other users (mode 0644): chmod 600 ${path}`]);
  });

  test("a password in a URL is a secret too; a plain URL is not", () => {
    const withPassword = withMode({ url: "https://agent:hunter2@cp.example", dataDir: "/srv/agent" }, 0o640);
    expect(resolve(withPassword).configWarnings).toEqual([`config file ${withPassword} holds a secret ("url") and is readable by other users (mode 0640): chmod 600 ${withPassword}`]);
    expect(resolve(withMode({ url: "https://cp.example", dataDir: "/srv/agent" }, 0o644)).configWarnings).toEqual([]);
  });

  test("a private file with a token: no warning", () => {
    expect(resolve(withMode({ token: "tok-123" }, 0o600)).configWarnings).toEqual([]);
  });

  test("a file others can write is refused, secret or not", () => {
    const everyone = withMode({ url: "https://cp.example" }, 0o666);
    expect(refusal(everyone)).toBe(`--config: ${everyone} is writable by every user (mode 0666), who could change the settings the agent runs with as root: chmod go-w ${everyone}`);
    const group = withMode({ url: "https://cp.example" }, 0o620);
    expect(refusal(group)).toStartWith(`--config: ${group} is writable by its group (mode 0620)`);
  });

  test("a file of another user is refused", () => {
    const path = withMode({ url: "https://cp.example" }, 0o600);
    chownSync(path, 65534, 65534);
    expect(refusal(path)).toBe(`--config: ${path} belongs to another user (uid 65534), who could change the settings the agent runs with as root: chown root ${path}`);
  });

  test("an agent not run as root accepts its own file and root's", () => {
    const facts = { path: "/home/ci/agent.json", mode: 0o600, processUid: 1000, secretKeys: ["token"] };
    expect(judgeConfigFile({ ...facts, uid: 1000 })).toEqual({});
    expect(judgeConfigFile({ ...facts, uid: 0 })).toEqual({});
    expect(judgeConfigFile({ ...facts, uid: 1001 }).refusal).toContain("chown 1000 /home/ci/agent.json");
  });
});

describe("the README's Configuration table", () => {
  test("has a row for every setting, with its flag, environment variable and config key", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("\n## Configuration\n"), readme.indexOf("\n## ", readme.indexOf("\n## Configuration\n") + 1));
    const rows = section.split("\n").filter((line) => line.startsWith("| `--"));
    const wrong = Object.values(SETTINGS).flatMap((s) => {
      const flag = s.flag.split(" ")[0]!;
      const row = rows.find((r) => r.startsWith(`| \`${flag}\``) || r.startsWith(`| \`${flag} `));
      if (!row) return [`${flag}: no row`];
      return row.split(" | ")[1] === `\`${s.env}\`` && row.split(" | ")[2] === `\`${s.key}\`` ? [] : [`${flag}: ${row.split(" | ").slice(1, 3).join(" | ")}`];
    });
    expect(wrong).toEqual([]);
    expect(rows).toHaveLength(Object.keys(SETTINGS).length);
  });
});
