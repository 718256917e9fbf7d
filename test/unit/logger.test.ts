import { afterEach, expect, test } from "bun:test";
import { configureLogging, logger } from "../../lib/logger.ts";
import { forgetSecret, registerSecret } from "../../lib/redact.ts";

const lines: string[] = [];
const sink = { write: (line: string) => lines.push(line) };
const PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIsecretsecret\n-----END PRIVATE KEY-----";

afterEach(() => {
  lines.length = 0;
  forgetSecret(PEM);
  configureLogging({ format: "text", sink: { write: (line) => process.stderr.write(line + "\n") } });
});

test("text lines are `[component] message` and never carry a registered secret", () => {
  registerSecret(PEM);
  configureLogging({ format: "text", sink });
  logger("build").info(`key is ${PEM}`, { token: PEM });
  expect(lines).toHaveLength(1);
  expect(lines[0]).toStartWith("[build] key is ***");
  expect(lines[0]).not.toContain("secretsecret");
});

test("JSON lines redact secrets that JSON would escape (line breaks), in the message and in fields", () => {
  registerSecret(PEM);
  configureLogging({ format: "json", sink });
  logger("build").warn(`key is ${PEM}`, { token: PEM, nested: { pem: PEM } });
  const record = JSON.parse(lines[0]!);
  expect(record).toMatchObject({ level: "warn", component: "build", msg: "key is ***", token: "***", nested: { pem: "***" } });
  expect(lines[0]).not.toContain("secretsecret");
});

test("credentials in URLs are masked", () => {
  configureLogging({ format: "text", sink });
  logger("git").info("cloning https://x-access-token:ghs_abc123@github.com/o/r.git");
  expect(lines[0]).toBe("[git] cloning https://***@github.com/o/r.git");
});
