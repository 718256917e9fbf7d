import { expect, test } from "bun:test";
import { redact, registerSecret, registeredSecretCount, withSecretScope } from "../../lib/redact.ts";

test("a secret registered in a scope is redacted inside it and forgotten after it", async () => {
  const before = registeredSecretCount();
  const seen = await withSecretScope(async () => {
    registerSecret("ghs_scopedtoken123");
    await Bun.sleep(1);
    return redact("token ghs_scopedtoken123 used");
  });
  expect(seen).toBe("token *** used");
  expect(redact("token ghs_scopedtoken123 used")).toBe("token ghs_scopedtoken123 used");
  expect(registeredSecretCount()).toBe(before);
});

test("a value also registered outside the scope stays redacted after the scope ends", async () => {
  registerSecret("shared-value-987");
  await withSecretScope(async () => registerSecret("shared-value-987"));
  expect(redact("x shared-value-987 y")).toBe("x *** y");
});

test("secrets registered outside any scope are permanent; short values are ignored", () => {
  registerSecret("permanent-secret-555");
  registerSecret("abc");
  expect(redact("permanent-secret-555 abc")).toBe("*** abc");
});
