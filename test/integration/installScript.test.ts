/**
 * install/install.sh on this machine, where it must change nothing: shellcheck, bad input, an
 * unsupported OS or architecture, the questions it asks on a terminal, and --dry-run. What it
 * installs is tested under real systemd in test/e2e/install.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { run } from "../../lib/exec.ts";

const REPO = resolve(import.meta.dir, "../..");
const INSTALL = join(REPO, "install/install.sh");
// What a real install would create or change here; none of these tests may touch them.
const INSTALLED = ["/usr/local/bin/agent", "/etc/techulus-agent", "/etc/systemd/system/techulus-agent.service", "/var/lib/techulus-agent"];
const untouched = () => INSTALLED.map((path) => `${path} ${existsSync(path)}`);
const before = untouched();

/** The installer with no terminal (setsid: no controlling tty), only the given environment. */
async function installer(args: string[], env: Record<string, string> = {}, wrap: string[] = []) {
  const res = await run("setsid", ["-w", ...wrap, "bash", INSTALL, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    allowFailure: true,
    timeoutMs: 60_000,
  });
  expect(untouched()).toEqual(before);
  return res;
}

test("every shell script is shellcheck clean", async () => {
  const scripts = [
    ...readdirSync(join(REPO, "install")).filter((f) => f.endsWith(".sh")).map((f) => join(REPO, "install", f)),
    join(REPO, "test/run"),
    join(REPO, "test/fresh-debian"),
    join(REPO, ".ci/run"),
  ];
  const res = await run("shellcheck", scripts, { allowFailure: true });
  expect(res.stdout + res.stderr).toBe("");
  expect(res.exitCode).toBe(0);
});

describe("install.sh refuses before changing anything", () => {
  const DOWNLOAD = { AGENT_DOWNLOAD_URL: "https://downloads.example/agent" };
  const cases: Array<[string, string[], Record<string, string>, string]> = [
    ["an unknown flag", ["--frobnicate"], {}, "unknown argument: --frobnicate"],
    ["a flag without its value", ["--url"], {}, "--url needs a value"],
    ["two actions", ["--uninstall", "--purge"], {}, "--uninstall and --purge cannot be combined"],
    ["no download URL and no terminal", [], {}, "AGENT_DOWNLOAD_URL is not set: export AGENT_DOWNLOAD_URL=… or pass --download-url"],
    ["no token on a first install", ["--url", "https://cp.example"], DOWNLOAD, "REGISTRATION_TOKEN is not set"],
    ["a control plane URL that is not http(s)", ["--url", "ftp://cp.example", "--token", "t"], DOWNLOAD, 'CONTROL_PLANE_URL (--url) must be an http:// or https:// URL (got "ftp://cp.example")'],
    ["IS_PROXY other than true/false", ["--url", "https://cp.example", "--token", "t"], { ...DOWNLOAD, IS_PROXY: "maybe" }, 'IS_PROXY must be true or false (got "maybe")'],
    ["an unknown proxy driver", ["--url", "https://cp.example", "--token", "t", "--proxy-driver", "nginx"], DOWNLOAD, "PROXY_DRIVER (--proxy-driver) must be caddy, traefik or auto"],
    ["a malformed AGENT_VERSION", ["--url", "https://cp.example", "--token", "t"], { ...DOWNLOAD, AGENT_VERSION: "latest" }, 'AGENT_VERSION (--version) must look like 1.2.3 (got "latest")'],
    ["an insecure registry with a scheme", ["--url", "https://cp.example", "--token", "t"], { ...DOWNLOAD, INSECURE_REGISTRIES: "10.0.0.5:5000,http://r.example" }, "INSECURE_REGISTRIES (--insecure-registries) must be a comma-separated list of host or host:port"],
  ];
  for (const [what, args, env, message] of cases) {
    test(`${what}: exit 2`, async () => {
      const res = await installer(args, env);
      expect(res.stderr).toContain(message);
      expect(res.exitCode).toBe(2);
    });
  }

  test("an unsupported OS: exit 1 with one line naming it and the supported ones", async () => {
    const dir = mkdtempSync("/tmp/techulus-osrelease-");
    try {
      writeFileSync(join(dir, "os-release"), 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n');
      // A mount namespace of its own: /etc/os-release says Fedora for this one run only.
      const res = await installer(["--dry-run"], DOWNLOAD, ["unshare", "-m", "bash", "-c", `mount --bind ${dir}/os-release /etc/os-release && exec "$@"`, "wrap"]);
      expect(res.stderr.trim()).toBe("[techulus-agent] error: unsupported OS: Fedora Linux 40; supported: Debian 12, Ubuntu 22.04, Ubuntu 24.04");
      expect(res.exitCode).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an unsupported architecture: exit 1", async () => {
    const res = await installer(["--dry-run"], DOWNLOAD, ["setarch", "i686"]);
    expect(res.stderr.trim()).toBe("[techulus-agent] error: unsupported architecture: i686; supported: x86_64, aarch64");
    expect(res.exitCode).toBe(1);
  });
});

test("--help lists every variable and exits 0", async () => {
  const res = await installer(["--help"]);
  expect(res.exitCode).toBe(0);
  for (const name of ["CONTROL_PLANE_URL", "REGISTRATION_TOKEN", "AGENT_DOWNLOAD_URL", "AGENT_VERSION", "IS_PROXY", "PROXY_DRIVER", "LOGS_ENDPOINT", "INSECURE_REGISTRIES", "--dry-run", "--uninstall", "--purge"]) {
    expect(res.stdout).toContain(name);
  }
});

/** Runs argv on a terminal (script(1)), typing each answer once its prompt has appeared. */
async function onTerminal(argv: string, dialogue: Array<[prompt: string, answer: string]>): Promise<{ output: string; exitCode: number }> {
  const proc = Bun.spawn(["script", "-qec", argv, "/dev/null"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  let output = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of proc.stdout) output += decoder.decode(chunk);
  })();
  for (const [prompt, answer] of dialogue) {
    const deadline = Date.now() + 30_000;
    while (!output.includes(prompt) && Date.now() < deadline) await Bun.sleep(50);
    if (!output.includes(prompt)) throw new Error(`no prompt "${prompt}"; the terminal showed:\n${output}`);
    proc.stdin.write(`${answer}\n`);
    proc.stdin.flush();
  }
  const exitCode = await proc.exited;
  await reading;
  return { output, exitCode };
}

test("on a terminal it asks for what is missing (from /dev/tty: stdin is the script) and --dry-run changes nothing", async () => {
  const { output, exitCode } = await onTerminal(`bash ${INSTALL} --dry-run --insecure-registries 10.0.0.5:5000`, [
    ["Download URL of the agent release (AGENT_DOWNLOAD_URL):", "https://downloads.example/agent"],
    ["Control plane URL:", "https://cp.example"],
    ["Registration token:", "secret-token"],
  ]);
  // The token is read without echo.
  expect(output).not.toContain("secret-token");
  expect(output).toContain("would download https://downloads.example/agent/VERSION");
  expect(output).toContain("would write /etc/techulus-agent/agent.json (mode 0600) with: url,token,insecureRegistries");
  expect(output).toContain("5/6 binary");
  if (existsSync("/run/systemd/system")) {
    expect(output).toContain("would run: systemctl restart techulus-agent.service");
  } else {
    // No systemd as PID 1: it says what it skipped and how to run the agent instead.
    expect(output).toContain("6/6 service: skipped, systemd is not running here");
    expect(output).toContain("run the agent under your supervisor: /usr/local/bin/agent run");
  }
  expect(exitCode).toBe(0);
  expect(untouched()).toEqual(before);
});
