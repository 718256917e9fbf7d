import { describe, expect, test } from "bun:test";
import { InvalidInputError } from "../../lib/errors.ts";
import { normalizeImageRef, parseImageRef, sameImage } from "../../lib/state/imageRef.ts";

const DIGEST = `sha256:${"a1".repeat(32)}`;

describe("normalizeImageRef", () => {
  test.each([
    ["nginx", "docker.io/library/nginx:latest"],
    ["nginx:1.25", "docker.io/library/nginx:1.25"],
    ["user/app", "docker.io/user/app:latest"],
    ["docker.io/nginx", "docker.io/library/nginx:latest"],
    ["index.docker.io/library/nginx:1", "docker.io/library/nginx:1"],
    ["ghcr.io/o/a", "ghcr.io/o/a:latest"],
    ["ghcr.io/o/a:v1.2.3", "ghcr.io/o/a:v1.2.3"],
    ["127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest"],
    ["localhost/busybox:test", "localhost/busybox:test"],
    ["localhost:5000/app", "localhost:5000/app:latest"],
    ["Registry.Example.COM/team/app", "registry.example.com/team/app:latest"],
    ["my-registry.local/a__b/c-d.e:Tag_1", "my-registry.local/a__b/c-d.e:Tag_1"],
    [`nginx@${DIGEST}`, `docker.io/library/nginx@${DIGEST}`],
    [`ghcr.io/o/a:1.0@${DIGEST}`, `ghcr.io/o/a:1.0@${DIGEST}`],
  ])("%s ⇒ %s", (input, expected) => {
    expect(normalizeImageRef(input)).toBe(expected);
  });

  test("normalising is idempotent", () => {
    for (const ref of ["nginx", "user/app:2", `ghcr.io/o/a:1@${DIGEST}`, "127.0.0.1:5000/x/y"]) {
      const once = normalizeImageRef(ref);
      expect(normalizeImageRef(once)).toBe(once);
    }
  });

  test("parse splits registry, repository, tag and digest", () => {
    expect(parseImageRef(`127.0.0.1:5000/x/y:t@${DIGEST}`)).toEqual({ registry: "127.0.0.1:5000", repository: "x/y", tag: "t", digest: DIGEST });
  });

  test.each([
    ["", "is empty"],
    ["ng inx", "has whitespace"],
    ["nginx\n", "has whitespace"],
    ["nginx;rm -rf /", "has whitespace"],
    ["nginx;id", 'has shell metacharacter ";"'],
    ["nginx|id", 'has shell metacharacter "|"'],
    ["nginx&", 'has shell metacharacter "&"'],
    ["$(id)", 'has shell metacharacter "$"'],
    ["nginx`id`", 'has shell metacharacter "`"'],
    ["a>b", 'has shell metacharacter ">"'],
    ["a<b", 'has shell metacharacter "<"'],
    ["nginx'", "has shell metacharacter \"'\""],
    ['nginx"', 'has shell metacharacter "\\""'],
    ["nginx\\", 'has shell metacharacter "\\\\"'],
    ["ngïnx", "has character"],
    ["User/App", "upper-case repository path"],
    ["ghcr.io/Owner/app", "upper-case repository path"],
    ["ghcr.io//app", "has an empty part"],
    ["/app", "has an empty part"],
    ["app/", "has an empty part"],
    [":tag", "has no name"],
    ["nginx:", "has a bad tag"],
    ["nginx:-x", "has a bad tag"],
    [`nginx:${"a".repeat(129)}`, "has a bad tag"],
    ["nginx@sha256:abc", "has a bad digest"],
    [`nginx@sha256:${"A1".repeat(32)}`, "has a bad digest"],
    [`nginx@md5:${"a1".repeat(16)}`, "has a bad digest"],
    ["nginx@", "has a bad digest"],
    ["a..b", "bad repository path component"],
    ["a-/b", "bad repository path component"],
    ["-bad.io/x", "bad registry"],
    ["a".repeat(64).replace(/a/g, "f"), "is an image ID"],
    [`ghcr.io/${"a".repeat(250)}`, "longer than 255"],
  ])("rejects %j (%s)", (input, message) => {
    expect(() => normalizeImageRef(input)).toThrow(InvalidInputError);
    expect(() => normalizeImageRef(input)).toThrow(message);
  });

  test("the error names the reference", () => {
    expect(() => normalizeImageRef("ng inx")).toThrow('image "ng inx" has whitespace');
  });
});

describe("sameImage", () => {
  test("equal after normalisation", () => {
    expect(sameImage("nginx", "docker.io/library/nginx:latest")).toBe(true);
    expect(sameImage("user/app:1", "docker.io/user/app:1")).toBe(true);
  });
  test("different tags or repositories differ", () => {
    expect(sameImage("nginx:1.25", "nginx:1.26")).toBe(false);
    expect(sameImage("nginx", "ghcr.io/library/nginx")).toBe(false);
    expect(sameImage("nginx", `nginx@${DIGEST}`)).toBe(false);
  });
  test("two digest references agree on repository and digest, whatever their tags", () => {
    expect(sameImage(`nginx:1@${DIGEST}`, `docker.io/library/nginx@${DIGEST}`)).toBe(true);
    expect(sameImage(`nginx@${DIGEST}`, `nginx@sha256:${"b2".repeat(32)}`)).toBe(false);
  });
  test("an unparsable reference only equals itself", () => {
    expect(sameImage("f".repeat(64), "f".repeat(64))).toBe(true);
    expect(sameImage("f".repeat(64), "nginx")).toBe(false);
  });
});
