import { expect, test } from "bun:test";
import { parseReleaseArgs, sizeTable } from "../../install/release.ts";
import pkg from "../../package.json" with { type: "json" };

test("release options: defaults, and bad input named", () => {
  expect(parseReleaseArgs([])).toMatchObject({ version: pkg.version, arches: ["x64", "arm64"] });
  expect(parseReleaseArgs(["--version", "1.2.3-rc.1", "--arch", "arm64", "--out", "/tmp/r"])).toEqual({ version: "1.2.3-rc.1", arches: ["arm64"], outDir: "/tmp/r" });
  expect(() => parseReleaseArgs(["--version", "latest"])).toThrow('--version: must look like 1.2.3 or 1.2.3-rc.1 (got "latest")');
  expect(() => parseReleaseArgs(["--arch", "x64,sparc"])).toThrow('--arch: "sparc" is not one of x64, arm64');
  expect(() => parseReleaseArgs(["--bogus"])).toThrow();
});

test("the size table shows raw and compressed sizes", () => {
  const table = sizeTable([{ arch: "x64", file: "agent-linux-x64", bytes: 115_700_000, gzipBytes: 53_800_000, sha256: "" }]);
  expect(table.split("\n")).toEqual(["file                  raw     gzip  ratio", "agent-linux-x64  115.7 MB  53.8 MB    46%"]);
});
