import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, utimesSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { render } from "ink-testing-library";
import { checkBuildSecrets, secretsHash } from "../../builder/buildSecrets.ts";
import { checkCiRequest } from "../../builder/ciBuild.ts";
import { cleanStaleBuildFolders } from "../../builder/cleanStaleBuildFolders.ts";
import { buildctlInvocation, summarise } from "../../builder/drivers/BuildKitDriver.ts";
import { podmanBuildArgs, podmanIsRemote, podmanPushArgs } from "../../builder/drivers/PodmanBuildDriver.ts";
import { isInsecureRegistry, parseImageRef } from "../../builder/imageRef.ts";
import { dockerfileLocation, parseRailpackVersion, railpackFrontendFor, type BuildPlan } from "../../builder/plan/planBuild.ts";
import { BuildProgressStore } from "../../builder/progress/BuildProgressStore.ts";
import { BuildProgressView } from "../../builder/progress/BuildProgressView.tsx";
import { githubWebUrl, parseRepo } from "../../builder/source/GitHubAppTokens.ts";
import { gitAuthEnv, parseCloneUrl, resolveGitRef } from "../../builder/source/gitRemote.ts";
import { UsageError } from "../../lib/errors.ts";
import { redact } from "../../lib/redact.ts";
import { tempDir } from "../support/agentBinary.ts";

const dirs: Array<{ cleanup: () => void }> = [];
afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));
function dir(): string {
  const d = tempDir("builder-unit-");
  dirs.push(d);
  return d.path;
}

const SHA = "0123456789abcdef0123456789abcdef01234567";

describe("clone URLs and git credentials", () => {
  test("credentials embedded in a clone URL are split off", () => {
    const r = parseCloneUrl("https://x-access-token:ghs_abc%2Fdef@github.com/acme/api.git");
    expect(r).toEqual({ url: "https://github.com/acme/api.git", username: "x-access-token", password: "ghs_abc/def" });
    expect(parseCloneUrl("https://github.com/acme/api.git")).toEqual({ url: "https://github.com/acme/api.git" });
  });

  test("a clone URL that is not http(s) is refused", () => {
    expect(() => parseCloneUrl("ssh://git@github.com/acme/api.git")).toThrow(/must be http/);
    expect(() => parseCloneUrl("file:///etc")).toThrow(/must be http/);
    expect(() => parseCloneUrl("not a url")).toThrow(/not a valid URL/);
  });

  test("the token travels as a Basic extra header scoped to the remote's origin, never prompting", () => {
    const env = gitAuthEnv("https://github.com/acme/api.git", { username: "x-access-token", password: "ghs_secret" });
    expect(env.GIT_TERMINAL_PROMPT).toBe("0");
    expect(env.GIT_CONFIG_COUNT).toBe("1");
    expect(env.GIT_CONFIG_KEY_0).toBe("http.https://github.com/.extraHeader");
    expect(env.GIT_CONFIG_VALUE_0).toBe(`Authorization: Basic ${Buffer.from("x-access-token:ghs_secret").toString("base64")}`);
    expect(gitAuthEnv("https://github.com/acme/api.git", {})).toEqual({ GIT_TERMINAL_PROMPT: "0" });
  });

  test("refs: full sha, HEAD, branch; short shas and option-like branches are refused", () => {
    expect(resolveGitRef({})).toEqual({ branch: "main" });
    expect(resolveGitRef({ ref: "HEAD", branch: "release" })).toEqual({ branch: "release" });
    expect(resolveGitRef({ ref: SHA.toUpperCase() })).toEqual({ commit: SHA });
    expect(resolveGitRef({ ref: SHA, branch: "dev" })).toEqual({ branch: "dev", commit: SHA });
    expect(resolveGitRef({ ref: "feature/x" })).toEqual({ branch: "feature/x" });
    expect(() => resolveGitRef({ ref: "abc1234" })).toThrow(/short commit sha/);
    expect(() => resolveGitRef({ ref: "--upload-pack=evil" })).toThrow(/not a valid branch name/);
    expect(() => resolveGitRef({ ref: "a..b" })).toThrow(/not a valid branch name/);
    expect(() => resolveGitRef({ ref: "v1", branch: "main" })).toThrow(/neither a full commit sha nor HEAD/);
  });

  test("repositories and GitHub web URLs", () => {
    expect(parseRepo("acme/api")).toEqual({ owner: "acme", repo: "api" });
    expect(() => parseRepo("acme")).toThrow(UsageError);
    expect(() => parseRepo("acme/../x")).toThrow(UsageError);
    expect(githubWebUrl("https://api.github.com")).toBe("https://github.com");
    expect(githubWebUrl("https://ghe.example.com/api/v3")).toBe("https://ghe.example.com");
  });
});

describe("image references", () => {
  test("registry, repository and tag", () => {
    expect(parseImageRef("127.0.0.1:5000/acme/api:v1")).toEqual({ registry: "127.0.0.1:5000", repository: "acme/api", tag: "v1", full: "127.0.0.1:5000/acme/api:v1" });
    expect(parseImageRef("registry.example.com/api")).toMatchObject({ registry: "registry.example.com", tag: "latest", full: "registry.example.com/api:latest" });
    expect(parseImageRef("nginx:1")).toMatchObject({ registry: "docker.io", repository: "library/nginx" });
  });

  test("bad references are refused with the reason", () => {
    expect(() => parseImageRef("reg.example.com/API:v1")).toThrow(/bad name component/);
    expect(() => parseImageRef("reg.example.com/api:v1;reboot")).toThrow(/bad tag/);
    expect(() => parseImageRef("reg.example.com/api@sha256:abc")).toThrow(/not a digest/);
    expect(() => parseImageRef("reg.example.com/")).toThrow(/no repository/);
  });

  test("only registries configured as insecure are insecure", () => {
    expect(isInsecureRegistry("127.0.0.1:5000", ["127.0.0.1:5000"])).toBe(true);
    expect(isInsecureRegistry("127.0.0.1:5000", ["127.0.0.1"])).toBe(true);
    expect(isInsecureRegistry("127.0.0.1:5000", ["127.0.0.1:6000"])).toBe(false);
    expect(isInsecureRegistry("registry.example.com", [])).toBe(false);
  });
});

describe("build secrets", () => {
  test("the hash changes with any value and not with order", () => {
    expect(secretsHash({})).toBeUndefined();
    const a = secretsHash({ A: "1", B: "2" });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(secretsHash({ B: "2", A: "1" })).toBe(a!);
    expect(secretsHash({ A: "1", B: "3" })).not.toBe(a!);
  });

  test("names must be environment variable names; values are redacted from then on", () => {
    expect(() => checkBuildSecrets({ "A,src=/etc/shadow": "x" })).toThrow(/not a valid environment variable name/);
    checkBuildSecrets({ NPM_TOKEN: "npm_unit_secret_value" });
    expect(redact("token npm_unit_secret_value")).toBe("token ***");
  });
});

const dockerPlan: BuildPlan = { kind: "dockerfile", contextDir: "/b/src", dockerfileDir: "/b/src/docker", dockerfileName: "app.Dockerfile" };
const railpackPlan: BuildPlan = { kind: "railpack", contextDir: "/b/src", planDir: "/b/plan", railpackVersion: "0.15.4", frontendImage: "ghcr.io/railwayapp/railpack-frontend:v0.15.4" };
const image = parseImageRef("127.0.0.1:5000/acme/api:v1");

describe("buildctl command line", () => {
  test("Dockerfile build: exact argv, secrets by name only, values in the environment", () => {
    const inv = buildctlInvocation(
      { plan: dockerPlan, image, secrets: { NPM_TOKEN: "tok-1", API_KEY: "k-2" }, cacheKey: "svc-1", insecure: true, registryCache: false, workDir: "/b" },
      "tcp://127.0.0.1:1234",
    );
    const hash = secretsHash({ NPM_TOKEN: "tok-1", API_KEY: "k-2" });
    expect(inv.args).toEqual([
      "--addr", "tcp://127.0.0.1:1234", "build", "--progress", "plain",
      "--frontend", "dockerfile.v0", "--local", "context=/b/src", "--local", "dockerfile=/b/src/docker", "--opt", "filename=app.Dockerfile",
      "--opt", "build-arg:cache-key=svc-1",
      "--opt", `build-arg:secrets-hash=${hash}`,
      "--secret", "id=API_KEY,env=TECHULUS_BUILD_SECRET_API_KEY", "--secret", "id=NPM_TOKEN,env=TECHULUS_BUILD_SECRET_NPM_TOKEN",
      "--output", "type=image,name=127.0.0.1:5000/acme/api:v1,push=true,registry.insecure=true",
      "--metadata-file", "/b/buildctl-metadata.json",
    ]);
    expect(inv.env).toEqual({ TECHULUS_BUILD_SECRET_NPM_TOKEN: "tok-1", TECHULUS_BUILD_SECRET_API_KEY: "k-2" });
    expect(inv.args.join(" ")).not.toContain("tok-1");
  });

  test("Railpack build: gateway frontend with the plan, registry cache, secure registry", () => {
    const inv = buildctlInvocation({ plan: railpackPlan, image, secrets: {}, cacheKey: "svc-2", insecure: false, registryCache: true, workDir: "/b" }, "unix:///run/buildkit/buildkitd.sock");
    expect(inv.args).toEqual([
      "--addr", "unix:///run/buildkit/buildkitd.sock", "build", "--progress", "plain",
      "--frontend", "gateway.v0", "--opt", "source=ghcr.io/railwayapp/railpack-frontend:v0.15.4",
      "--local", "context=/b/src", "--local", "dockerfile=/b/plan", "--opt", "filename=railpack-plan.json",
      "--opt", "build-arg:cache-key=svc-2",
      "--output", "type=image,name=127.0.0.1:5000/acme/api:v1,push=true",
      "--import-cache", "type=registry,ref=127.0.0.1:5000/acme/api:buildcache",
      "--export-cache", "type=registry,ref=127.0.0.1:5000/acme/api:buildcache,mode=max",
      "--metadata-file", "/b/buildctl-metadata.json",
    ]);
    expect(inv.env).toEqual({});
  });

  test("a failure is summarised by BuildKit's error line", () => {
    expect(summarise(["#4 RUN x", "error: failed to solve: exit code: 1"])).toBe("error: failed to solve: exit code: 1");
    expect(summarise(["a", "b", "c", "d"])).toBe("b | c | d");
  });
});

describe("podman command lines", () => {
  test("build: force-rm, secrets by name, secrets-hash only when the Dockerfile declares it", () => {
    const args = podmanBuildArgs({ plan: dockerPlan, image, secrets: { TOKEN: "v" } });
    expect(args).toEqual(["build", "--force-rm", "--layers", "--file", "/b/src/docker/app.Dockerfile", "--tag", "127.0.0.1:5000/acme/api:v1", "--secret", "id=TOKEN,env=TECHULUS_BUILD_SECRET_TOKEN", "/b/src"]);
    const withArg = podmanBuildArgs({ plan: dockerPlan, image, secrets: { TOKEN: "v" } }, "FROM x\nARG secrets-hash\nRUN true\n");
    expect(withArg).toContain(`secrets-hash=${secretsHash({ TOKEN: "v" })}`);
    expect(() => podmanBuildArgs({ plan: railpackPlan, image, secrets: {} })).toThrow(/only build Dockerfiles/);
  });

  test("remote podman: secrets as files (it passes no env= secret into RUN steps)", () => {
    const args = podmanBuildArgs({ plan: dockerPlan, image, secrets: { TOKEN: "v" } }, "", { TOKEN: "/b/secrets/TOKEN" });
    expect(args).toContain("id=TOKEN,src=/b/secrets/TOKEN");
    expect(args.join(" ")).not.toContain("env=");
    expect(podmanIsRemote({ CONTAINER_HOST: "unix:///run/podman.sock" })).toBe(true);
    expect(podmanIsRemote({ CONTAINER_CONNECTION: "prod" })).toBe(true);
    expect(podmanIsRemote({})).toBe(false);
  });

  test("push: digest file, TLS verification off only for insecure registries", () => {
    expect(podmanPushArgs(image, "/b/d", true)).toEqual(["push", "--digestfile", "/b/d", "--tls-verify=false", "127.0.0.1:5000/acme/api:v1"]);
    expect(podmanPushArgs(image, "/b/d", false)).toEqual(["push", "--digestfile", "/b/d", "127.0.0.1:5000/acme/api:v1"]);
  });
});

describe("planning", () => {
  test("the Railpack frontend follows the CLI's version", () => {
    expect(parseRailpackVersion("railpack version 0.15.4\n")).toBe("0.15.4");
    expect(parseRailpackVersion("railpack version v1.2.3-rc.1")).toBe("1.2.3-rc.1");
    expect(parseRailpackVersion("nonsense")).toBeUndefined();
    expect(railpackFrontendFor("0.15.4")).toBe("ghcr.io/railwayapp/railpack-frontend:v0.15.4");
  });

  test("a Dockerfile path must stay inside the source", () => {
    expect(dockerfileLocation("/b/src", "docker/app.Dockerfile")).toEqual({ dir: "/b/src/docker", name: "app.Dockerfile", full: "/b/src/docker/app.Dockerfile" });
    expect(() => dockerfileLocation("/b/src", "../../etc/passwd")).toThrow(/inside the source/);
    expect(() => dockerfileLocation("/b/src", "/etc/passwd")).toThrow(/inside the source/);
  });
});

describe("agent build flags", () => {
  const base = { secretNames: [] as string[], env: {}, github: { apiUrl: "https://api.github.com" } };
  test("usage errors before anything runs", () => {
    const cases: Array<[Parameters<typeof checkCiRequest>[0], RegExp]> = [
      [{ ...base, repo: "acme/api" }, /--image is required/],
      [{ ...base, image: "r.example.com/a:1" }, /--repo OWNER\/NAME .* or --source/],
      [{ ...base, image: "r.example.com/A:1", repo: "acme/api" }, /--image: .*bad name component/],
      [{ ...base, image: "r.example.com/a:1", repo: "acme/api", source: "/tmp" }, /alternatives/],
      [{ ...base, image: "r.example.com/a:1", source: "/nonexistent-folder" }, /--source: \/nonexistent-folder is not a folder/],
      [{ ...base, image: "r.example.com/a:1", repo: "acme/api", github: { apiUrl: "https://api.github.com", appId: "1" } }, /go together/],
      [{ ...base, image: "r.example.com/a:1", repo: "acme/api", secretNames: ["TOKEN=abc"] }, /give the name only/],
      [{ ...base, image: "r.example.com/a:1", repo: "acme/api", secretNames: ["MISSING_SECRET_X"] }, /MISSING_SECRET_X is not set/],
      [{ ...base, image: "r.example.com/a:1", repo: "acme/api", ref: "abc1234" }, /--ref: .*short commit sha/],
    ];
    for (const [req, message] of cases) {
      let caught: unknown;
      try {
        checkCiRequest(req);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(UsageError);
      expect((caught as Error).message).toMatch(message);
    }
  });

  test("secrets come from the environment by name", () => {
    const plan = checkCiRequest({ ...base, image: "r.example.com/a:1", repo: "acme/api", secretNames: ["NPM_TOKEN"], env: { NPM_TOKEN: "from-env" } });
    expect(plan.secrets).toEqual({ NPM_TOKEN: "from-env" });
    expect(plan.cacheKey).toBe("acme-api");
  });
});

describe("stale build folders", () => {
  test("old folders go, recent and active ones stay", () => {
    const builds = dir();
    for (const name of ["old", "recent", "active-old"]) mkdirSync(join(builds, name));
    writeFileSync(join(builds, "old", "file"), "x");
    const twoHoursAgo = (Date.now() - 2 * 3600_000) / 1000;
    utimesSync(join(builds, "old"), twoHoursAgo, twoHoursAgo);
    utimesSync(join(builds, "active-old"), twoHoursAgo, twoHoursAgo);
    expect(cleanStaleBuildFolders(builds, { olderThanMs: 3600_000, keep: ["active-old"] })).toEqual(["old"]);
    expect(existsSync(join(builds, "old"))).toBe(false);
    expect(existsSync(join(builds, "recent"))).toBe(true);
    expect(existsSync(join(builds, "active-old"))).toBe(true);
    expect(cleanStaleBuildFolders(join(builds, "missing"), { olderThanMs: 1 })).toEqual([]);
  });
});

describe("live progress view", () => {
  test("phases advance with durations, the latest lines scroll, the outcome shows", () => {
    let now = 1000;
    const store = new BuildProgressStore("Building r.example.com/a:1", 3, () => now);
    store.phase("clone");
    now += 1500;
    store.phase("build");
    for (const l of ["line-1", "line-2", "line-3", "line-4"]) store.line(l);
    const running = render(<BuildProgressView state={store.get()} />);
    const frame = running.lastFrame()!;
    expect(frame).toContain("Building r.example.com/a:1");
    expect(frame).toContain("✔ clone 1.5s");
    expect(frame).toContain("✔ plan");
    expect(frame).toContain("▸ build");
    expect(frame).toContain("· push");
    expect(frame).not.toContain("line-1");
    expect(frame).toContain("line-4");
    running.unmount();

    now += 500;
    store.finish("failed", "podman build failed (exit code 1)");
    const failed = render(<BuildProgressView state={store.get()} />);
    expect(failed.lastFrame()).toContain("✖ build 0.5s");
    expect(failed.lastFrame()).toContain("✖ failed: podman build failed (exit code 1)");
    failed.unmount();
  });
});
