import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import { lockHolderFromTable } from "../../lib/fs/fileLock.ts";
import type { Check, CheckResult } from "../../lib/doctor/Check.ts";
import { configFileCheck } from "../../lib/doctor/configFileCheck.ts";
import { clockResult } from "../../lib/doctor/controlPlaneChecks.ts";
import { confString, confStringList, parseContainersConf, setConfValue } from "../../lib/doctor/containersConf.ts";
import { dataDirCheck, identityCheck, keysCheck, lockCheck, secretModesCheck } from "../../lib/doctor/dataDirChecks.ts";
import { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { cgroupMode, diskResult, ociRuntimeCheck, toolChecks, ulimitsCheck } from "../../lib/doctor/hostChecks.ts";
import { doctorContext, hostFiles, MOUNTS_UNIFIED, registeredDataDir } from "../support/doctorFixtures.ts";

const temps: string[] = [];
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), "doctor-unit-"));
  temps.push(dir);
  return dir;
}
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

const mode = (p: string) => statSync(p).mode & 0o777;

async function runCheck(check: Check<DoctorContext>, ctx: DoctorContext): Promise<CheckResult> {
  ctx.refresh();
  return check.run(ctx);
}

describe("data dir checks", () => {
  test("a data dir with loose modes fails, names each file, and the fix makes it 0700/0600", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root);
    chmodSync(root, 0o755);
    chmodSync(dataDir.configFile, 0o644);
    chmodSync(dataDir.wireguardKeyFile, 0o640);
    const ctx = doctorContext(root);

    const dir = await runCheck(dataDirCheck, ctx);
    expect(dir.status).toBe("fail");
    expect(dir.detail).toContain("has mode 0755");
    const files = await runCheck(secretModesCheck, ctx);
    expect(files.status).toBe("fail");
    expect(files.detail).toContain("config.json is 0644, must be 0600");
    expect(files.detail).toContain("wireguard.key is 0640, must be 0600");
    expect(files.detail).not.toContain("private.key");
    expect(files.fix?.description).toBe("chmod 600 config.json wireguard.key");

    await dir.fix!.apply!();
    await files.fix!.apply!();
    expect(mode(root)).toBe(0o700);
    expect(mode(dataDir.configFile)).toBe(0o600);
    expect(mode(dataDir.wireguardKeyFile)).toBe(0o600);
    expect((await runCheck(dataDirCheck, ctx)).status).toBe("ok");
    expect((await runCheck(secretModesCheck, ctx)).status).toBe("ok");
  });

  test("a stricter mode (0400) is fine; a folder open to others is not", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root);
    chmodSync(dataDir.privateKeyFile, 0o400);
    chmodSync(join(root, "keys"), 0o755);
    const r = await runCheck(secretModesCheck, doctorContext(root));
    expect(r.status).toBe("fail");
    expect(r.detail).toBe("readable by other users: keys is 0755, must be 0700");
  });

  test("no data dir yet: a warning, and the checks that need it are skipped", async () => {
    const root = join(temp(), "never-created");
    const ctx = doctorContext(root);
    expect((await runCheck(dataDirCheck, ctx)).status).toBe("warn");
    expect((await runCheck(secretModesCheck, ctx)).status).toBe("skip");
    expect((await runCheck(lockCheck, ctx)).status).toBe("skip");
    const identity = await runCheck(identityCheck, ctx);
    expect(identity.status).toBe("warn");
    expect(identity.detail).toContain("not registered");
  });

  test("an invalid config.json is reported with what is wrong, and a valid one summarised", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root, 12);
    const ctx = doctorContext(root);
    const ok = await runCheck(identityCheck, ctx);
    expect(ok.status).toBe("ok");
    expect(ok.detail).toContain("subnet 10.200.12.0/24, WireGuard 10.100.12.1");

    writeFileSync(dataDir.configFile, "{ not json");
    const broken = await runCheck(identityCheck, ctx);
    expect(broken.status).toBe("fail");
    expect(broken.detail).toContain(`cannot read ${dataDir.configFile}`);

    const identity = JSON.parse(JSON.stringify({ serverId: "s1", subnetId: 300, wireguardIp: "10.100.1.1", encryptionKey: "zz" }));
    writeFileSync(dataDir.configFile, JSON.stringify(identity));
    const invalid = await runCheck(identityCheck, ctx);
    expect(invalid.status).toBe("fail");
    expect(invalid.detail).toContain("is invalid");
    expect(invalid.detail).toContain("subnetId");
    expect(invalid.detail).toContain("encryptionKey");
    expect(invalid.fix?.apply).toBeUndefined();
  });

  test("keys: a corrupt private key fails, a stale public key is rewritten by the fix", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root);
    const ctx = doctorContext(root);
    expect((await runCheck(keysCheck, ctx)).status).toBe("ok");

    const realPublic = readFileSync(dataDir.publicKeyFile, "utf8");
    writeFileSync(dataDir.publicKeyFile, SigningKey.generate().publicKeyRawBase64() + "\n");
    const stale = await runCheck(keysCheck, ctx);
    expect(stale.status).toBe("warn");
    expect(stale.detail).toContain("keys/public.key does not match the private key");
    await stale.fix!.apply!();
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).toBe(realPublic);
    expect((await runCheck(keysCheck, ctx)).status).toBe("ok");

    writeFileSync(dataDir.privateKeyFile, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    writeFileSync(dataDir.wireguardKeyFile, "not-a-key\n");
    const bad = await runCheck(keysCheck, ctx);
    expect(bad.status).toBe("fail");
    expect(bad.detail).toContain("keys/private.key is not an Ed25519 private key");
    expect(bad.detail).toContain("wireguard.key is not a WireGuard key");
  });

  test("keys: missing keys fail on a registered server (a new key could not sign for it)", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root);
    rmSync(dataDir.privateKeyFile);
    const r = await runCheck(keysCheck, doctorContext(root));
    expect(r.status).toBe("fail");
    expect(r.detail).toContain("keys/private.key is missing");
  });

  describe("the lock", () => {
    let holder: ReturnType<typeof Bun.spawn> | undefined;
    afterEach(() => {
      holder?.kill("SIGKILL");
      holder = undefined;
    });

    test("names the pid and command of the process holding it, without taking it", async () => {
      const root = join(temp(), "data");
      const dataDir = registeredDataDir(root);
      const ctx = doctorContext(root);
      const idle = await runCheck(lockCheck, ctx);
      expect(idle.status).toBe("warn");
      expect(idle.detail).toContain("no agent is running");

      const script = `import { FileLock } from ${JSON.stringify(join(import.meta.dir, "../../lib/fs/fileLock.ts"))};
        FileLock.tryAcquire(${JSON.stringify(dataDir.lockFile)}); console.log("locked"); await Bun.sleep(60000);`;
      holder = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
      const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("locked");

      const held = await runCheck(lockCheck, ctx);
      expect(held.status).toBe("ok");
      expect(held.detail).toContain(`pid ${holder.pid} (`);
      expect(held.detail).toContain(process.execPath);
      // Looking did not take the lock: the holder still has it and the file still names it.
      expect(readFileSync(dataDir.lockFile, "utf8").trim()).toBe(String(holder.pid));
    });

    test("reads holders from the kernel's lock table, ignoring waiters and other files", () => {
      const table = [
        "1: POSIX  ADVISORY  WRITE 77 fe:00:999 0 EOF",
        "2: FLOCK  ADVISORY  WRITE 4113 fe:00:2146962 0 EOF",
        "2: -> FLOCK  ADVISORY  WRITE 5000 fe:00:2146962 0 EOF",
        "3: FLOCK  ADVISORY  WRITE 88 00:2a:2146962 0 EOF",
      ].join("\n");
      expect(lockHolderFromTable(table, 0xfe00n, 2146962n)).toBe(4113);
      expect(lockHolderFromTable(table, 0x2an, 2146962n)).toBe(88);
      expect(lockHolderFromTable(table, 0xfe00n, 1n)).toBeUndefined();
    });
  });
});

describe("config file check", () => {
  test("a token in a config file others can read fails with the chmod 600 fix, which makes it pass", async () => {
    const dir = temp();
    const file = join(dir, "agent.json");
    writeFileSync(file, JSON.stringify({ token: "tok-123", url: "http://127.0.0.1:9" }));
    chmodSync(file, 0o644);
    const ctx = doctorContext(join(dir, "data"), { configFile: file });
    const before = await runCheck(configFileCheck, ctx);
    expect(before.status).toBe("fail");
    expect(before.detail).toBe(`config file ${file} holds a secret ("token") and is readable by other users (mode 0644): chmod 600 ${file}`);
    expect(before.fix?.description).toBe(`chmod 600 ${file}`);
    await before.fix!.apply!();
    expect(mode(file)).toBe(0o600);
    expect(await runCheck(configFileCheck, ctx)).toMatchObject({ status: "ok", detail: `${file} 0600` });
  });

  test("a readable file without secrets is fine; no config file is skipped", async () => {
    const dir = temp();
    const file = join(dir, "agent.json");
    writeFileSync(file, JSON.stringify({ url: "http://127.0.0.1:9" }));
    chmodSync(file, 0o644);
    expect((await runCheck(configFileCheck, doctorContext(join(dir, "data"), { configFile: file }))).status).toBe("ok");
    const withoutFile = new DoctorContext({ settings: { ...doctorContext(join(dir, "data")).settings, configFile: undefined } });
    expect((await runCheck(configFileCheck, withoutFile)).status).toBe("skip");
  });
});

describe("containers.conf checks", () => {
  test("crun on a cgroups v1/hybrid host fails; the fix sets runc and keeps the rest of the file", async () => {
    const dir = temp();
    const conf = `# operator's settings\n[containers]\nlog_size_max = 1000000 # keep\n\n[engine]\nruntime = "crun"\nevents_logger = "file"\n`;
    const paths = hostFiles(dir, { containersConf: conf });
    const ctx = doctorContext(join(dir, "data"), { paths, which: async (p) => `/usr/bin/${p}` });
    const r = await runCheck(ociRuntimeCheck, ctx);
    expect(r.status).toBe("fail");
    expect(r.detail).toContain('runtime = "crun" on a cgroups v1/hybrid host');
    await r.fix!.apply!();
    const after = readFileSync(paths.containersConf!, "utf8");
    expect(after).toBe(`# operator's settings\n[containers]\nlog_size_max = 1000000 # keep\n\n[engine]\nruntime = "runc"\nevents_logger = "file"\n`);
    expect((await runCheck(ociRuntimeCheck, ctx)).status).toBe("ok");
  });

  test("no runtime set: fine on cgroups v2, a failure on hybrid (the fix adds an [engine] table)", async () => {
    const dir = temp();
    const v2 = doctorContext(join(dir, "data"), { paths: hostFiles(dir, { containersConf: "[containers]\n", mounts: MOUNTS_UNIFIED }) });
    expect((await runCheck(ociRuntimeCheck, v2)).status).toBe("ok");
    const dir2 = temp();
    const paths = hostFiles(dir2, {});
    const hybrid = doctorContext(join(dir2, "data"), { paths, which: async (p) => `/usr/bin/${p}` });
    const r = await runCheck(ociRuntimeCheck, hybrid);
    expect(r.status).toBe("fail");
    await r.fix!.apply!();
    expect(readFileSync(paths.containersConf!, "utf8")).toBe('[engine]\nruntime = "runc"\n');
    expect((await runCheck(ociRuntimeCheck, hybrid)).status).toBe("ok");
  });

  test("runc selected but not installed: fail with an install fix", async () => {
    const dir = temp();
    const ctx = doctorContext(join(dir, "data"), { paths: hostFiles(dir, { containersConf: '[engine]\nruntime = "runc"\n' }), which: async () => undefined });
    const r = await runCheck(ociRuntimeCheck, ctx);
    expect(r.status).toBe("fail");
    expect(r.fix?.command).toEqual(["apt-get", "install", "-y", "--no-install-recommends", "runc"]);
  });

  test("default_ulimits above the hard limit fail; the fix caps them and the check passes", async () => {
    const dir = temp();
    const conf = `[containers]\ndefault_ulimits = [\n  "nofile=65536:65536", # too high here\n  "nproc=4096:4096",\n]\n\n[engine]\nruntime = "runc"\n`;
    const paths = hostFiles(dir, { containersConf: conf });
    const ctx = doctorContext(join(dir, "data"), { paths });
    const r = await runCheck(ulimitsCheck, ctx);
    expect(r.status).toBe("fail");
    expect(r.detail).toContain("nofile=65536:65536 is above the hard limit nofile=20000");
    expect(r.detail).not.toContain("nproc=4096:4096 is above");
    await r.fix!.apply!();
    const after = readFileSync(paths.containersConf!, "utf8");
    expect(after).toBe(`[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\n`);
    const again = await runCheck(ulimitsCheck, ctx);
    expect(again.status).toBe("ok");
    expect(again.detail).toContain("hard limits nofile=20000, nproc=96365");
  });

  test("a malformed ulimit is reported and left to a person", async () => {
    const dir = temp();
    const ctx = doctorContext(join(dir, "data"), { paths: hostFiles(dir, { containersConf: '[containers]\ndefault_ulimits = ["nofile=lots"]\n' }) });
    const r = await runCheck(ulimitsCheck, ctx);
    expect(r.status).toBe("fail");
    expect(r.detail).toContain('"nofile=lots" is not name=soft[:hard]');
    expect(r.fix?.apply).toBeUndefined();
  });

  test("the TOML subset: comments, quotes, multi-line arrays, tables", () => {
    const text = `runtime = "top-level"\n[engine]\n# runtime = "commented"\nruntime = 'runc' # trailing\n[containers]\ndefault_ulimits = [ "a=1:1", # one\n "b=2" ]\nlabel = "x # not a comment"\n`;
    const conf = parseContainersConf(text);
    expect(confString(conf, "engine", "runtime")).toBe("runc");
    expect(confString(conf, "", "runtime")).toBe("top-level");
    expect(confStringList(conf, "containers", "default_ulimits")).toEqual(["a=1:1", "b=2"]);
    expect(confString(conf, "containers", "label")).toBe("x # not a comment");
    expect(setConfValue("[network]\nx = 1", "engine", "runtime", '"runc"')).toBe('[network]\nx = 1\n\n[engine]\nruntime = "runc"\n');
  });

  test("cgroup layout from the mount table", () => {
    expect(cgroupMode(MOUNTS_UNIFIED)).toBe("unified");
    expect(cgroupMode("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n")).toBe("legacy");
  });
});

describe("programs, disk and clock", () => {
  const installed = (names: string[]) => async (p: string) => (names.includes(p) ? `/usr/bin/${p}` : undefined);
  const tool = (program: string) => toolChecks.find((c) => c.id === `host.tool.${program}`)!;

  test("missing programs fail where this node needs them, with the package to install", async () => {
    const dir = temp();
    const root = join(dir, "data");
    registeredDataDir(root);
    const ctx = doctorContext(root, { flags: { dnsPort: 53 }, paths: hostFiles(dir, {}), which: installed(["wg"]) });
    const dnsmasq = await runCheck(tool("dnsmasq"), ctx);
    expect(dnsmasq.status).toBe("fail");
    expect(dnsmasq.fix?.command).toEqual(["apt-get", "install", "-y", "--no-install-recommends", "dnsmasq"]);
    expect((await runCheck(tool("dig"), ctx)).status).toBe("warn");
    expect((await runCheck(tool("wg"), ctx)).status).toBe("ok");
    const wgGo = await runCheck(tool("wireguard-go"), ctx);
    expect(wgGo.status).toBe("fail");
    expect(wgGo.detail).toContain("the kernel has no WireGuard module");
    expect((await runCheck(tool("caddy"), ctx)).status).toBe("skip");
  });

  test("wireguard-go is not needed when the kernel has WireGuard; caddy only on Caddy proxy nodes", async () => {
    const dir = temp();
    const paths = hostFiles(dir, { modulesDep: "kernel/drivers/net/wireguard/wireguard.ko: kernel/lib/crypto/libchacha20poly1305.ko\n" });
    const ctx = doctorContext(join(dir, "data"), { flags: { proxy: true, traefikDynamicDir: join(dir, "no-traefik") }, paths, which: installed([]) });
    expect((await runCheck(tool("wireguard-go"), ctx)).status).toBe("skip");
    expect((await runCheck(tool("caddy"), ctx)).status).toBe("fail");
    expect((await runCheck(tool("dnsmasq"), ctx)).status).toBe("skip");
    const traefik = doctorContext(join(dir, "data"), { flags: { proxy: true, proxyDriver: "traefik" }, paths, which: installed([]) });
    expect((await runCheck(tool("caddy"), traefik)).status).toBe("skip");
  });

  test("with --proxy-driver auto, a node without Caddy whose Traefik folder exists uses Traefik: caddy is not needed", async () => {
    const dir = temp();
    const dynamicDir = join(dir, "traefik-dynamic");
    const flags = { proxy: true, traefikDynamicDir: dynamicDir };
    const ctx = () => doctorContext(join(dir, "data"), { flags, paths: hostFiles(dir, {}), which: installed([]) });
    expect((await runCheck(tool("caddy"), ctx())).status).toBe("fail");
    mkdirSync(dynamicDir);
    const traefik = await runCheck(tool("caddy"), ctx());
    expect(traefik.status).toBe("skip");
    expect(traefik.detail).toContain(dynamicDir);
  });

  test("disk space thresholds", () => {
    const c = { id: "host.disk", title: "disk" };
    const GiB = 1024 ** 3;
    expect(diskResult(c, "/d", 50 * GiB, 100 * GiB).status).toBe("ok");
    expect(diskResult(c, "/d", 4 * GiB, 10 * GiB).status).toBe("warn");
    expect(diskResult(c, "/d", 8 * GiB, 100 * GiB).status).toBe("warn");
    expect(diskResult(c, "/d", 0.5 * GiB, 10 * GiB).status).toBe("fail");
    expect(diskResult(c, "/d", 0.5 * GiB, 10 * GiB).detail).toContain("0.5 GiB free of 10.0 GiB (5%)");
  });

  test("clock skew: ok within 30 s, a warning above, a failure above the control plane's 60 s", () => {
    const c = { id: "controlplane.clock", title: "clock" };
    expect(clockResult(c, 2_000, false).status).toBe("ok");
    const behind = clockResult(c, 40_000, false);
    expect(behind.status).toBe("warn");
    expect(behind.detail).toContain("this server's clock is 40 s behind the control plane's");
    const ahead = clockResult(c, -70_000, true);
    expect(ahead.status).toBe("fail");
    expect(ahead.detail).toContain("70 s ahead of the control plane's");
    expect(ahead.fix?.command).toEqual(["timedatectl", "set-ntp", "true"]);
    expect(clockResult(c, 70_000, false).fix?.command).toBeUndefined();
  });
});

describe("DoctorSession", () => {
  test("exit code 1 only when a check fails; a check that throws is a failure, not a crash", async () => {
    const ctx = doctorContext(join(temp(), "data"));
    const ok: Check<DoctorContext> = { id: "a", title: "A", run: async () => ({ id: "a", title: "A", status: "warn", detail: "meh" }) };
    const broken: Check<DoctorContext> = {
      id: "b",
      title: "B",
      run: async () => {
        throw new Error("boom");
      },
    };
    const warnOnly = new DoctorSession([ok], ctx);
    await warnOnly.runAll();
    expect(warnOnly.exitCode()).toBe(0);
    const session = new DoctorSession([ok, broken], ctx);
    const seen: string[] = [];
    await session.runAll((r) => seen.push(`${r.id}:${r.status}`));
    expect(seen).toEqual(["a:warn", "b:fail"]);
    expect(session.results()[1]!.detail).toBe("the check itself failed: boom");
    expect(session.exitCode()).toBe(1);
    expect(session.summary()).toEqual({ ok: 0, warn: 1, fail: 1, skip: 0 });
  });

  test("applying fixes re-runs the fixed checks; a failing fix is reported and leaves the check failing", async () => {
    const root = join(temp(), "data");
    const dataDir = registeredDataDir(root);
    chmodSync(dataDir.configFile, 0o666);
    const ctx = doctorContext(root);
    const failingFix: Check<DoctorContext> = {
      id: "x",
      title: "X",
      run: async () => ({ id: "x", title: "X", status: "fail", detail: "broken", fix: { description: "cannot work", command: ["false"] } }),
    };
    const session = new DoctorSession([secretModesCheck, failingFix, identityCheck], ctx);
    await session.runAll();
    expect(session.proposedFixes().map((f) => [f.checkId, f.automatic])).toEqual([
      ["datadir.modes", true],
      ["x", true],
    ]);
    const outcomes = await session.applyFixes(["datadir.modes", "x"]);
    expect(outcomes[0]).toMatchObject({ checkId: "datadir.modes", applied: true, statusAfter: "ok" });
    expect(outcomes[1]).toMatchObject({ checkId: "x", applied: false, statusAfter: "fail" });
    expect(outcomes[1]!.error).toContain("false exited with code 1");
    expect(mode(dataDir.configFile)).toBe(0o600);
    expect(session.exitCode()).toBe(1);
  });
});
