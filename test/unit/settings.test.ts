import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveSettings } from "../../lib/config/settings.ts";
import { UsageError } from "../../lib/errors.ts";
import { tempDir } from "../support/agentBinary.ts";

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
