import { expect, test } from "bun:test";
import { buildProgram, commandNameOf } from "../../cli/program.ts";

test("the command being run is the first word, or the one after help", () => {
  expect(commandNameOf(["reconcile", "--once", "--state", "x.json"])).toBe("reconcile");
  expect(commandNameOf(["--help"])).toBeUndefined();
  expect(commandNameOf(["help", "doctor"])).toBe("doctor");
  expect(commandNameOf(["frobnicate"])).toBe("frobnicate");
});

test("only the command being run is loaded; the others are listed by name and summary", async () => {
  const program = await buildProgram(["doctor", "--json"]);
  const byName = Object.fromEntries(program.commands.map((c) => [c.name(), c]));
  expect(Object.keys(byName).sort()).toEqual(["build", "doctor", "reconcile", "run"]);
  expect(byName.doctor!.options.map((o) => o.long)).toContain("--fix");
  expect(byName.run!.options).toEqual([]);
  for (const c of program.commands) expect(c.description()).not.toBe("");
});
