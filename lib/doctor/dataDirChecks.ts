import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { SigningKey } from "../crypto/signingKey.ts";
import { isWireGuardKey } from "../crypto/wireguardKey.ts";
import { errorMessage } from "../errors.ts";
import { octalMode } from "../fs/fileMode.ts";
import { resultOf, worst, type Check, type CheckStatus, type Fix } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

type DataDirCheck = Check<DoctorContext>;

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

function chmodFix(items: Array<{ path: string; want: number }>, root: string): Fix {
  const byMode = new Map<number, string[]>();
  for (const { path, want } of items) byMode.set(want, [...(byMode.get(want) ?? []), relative(root, path) || root]);
  const text = [...byMode].map(([want, paths]) => `chmod ${want.toString(8)} ${paths.join(" ")}`).join("; ");
  return {
    description: text,
    apply: async () => {
      for (const { path, want } of items) chmodSync(path, want);
    },
  };
}

export const dataDirCheck: DataDirCheck = {
  id: "datadir.dir",
  title: "data dir exists with mode 0700",
  async run(ctx) {
    const root = ctx.dataDir.root;
    if (!existsSync(root)) return resultOf(this, "warn", `${root} does not exist yet: agent run creates it when it registers`);
    const st = statSync(root);
    if (!st.isDirectory()) return resultOf(this, "fail", `${root} is not a directory`);
    const m = st.mode & 0o777;
    if (m !== 0o700) {
      return resultOf(this, "fail", `${root} has mode ${octalMode(m)}: it holds the server's private keys and must be 0700`, { fix: chmodFix([{ path: root, want: 0o700 }], root) });
    }
    return resultOf(this, "ok", root);
  },
};

/** Secret files and private folders with the mode they must have; group or other access is the problem. */
function secretPaths(ctx: DoctorContext): Array<{ path: string; want: number }> {
  const d = ctx.dataDir;
  return [
    { path: join(d.root, "keys"), want: 0o700 },
    { path: d.stateDir, want: 0o700 },
    { path: d.configFile, want: 0o600 },
    { path: d.privateKeyFile, want: 0o600 },
    { path: d.wireguardKeyFile, want: 0o600 },
  ];
}

export const secretModesCheck: DataDirCheck = {
  id: "datadir.modes",
  title: "secret files are private (0600, folders 0700)",
  async run(ctx) {
    const root = ctx.dataDir.root;
    if (!existsSync(root)) return resultOf(this, "skip", "no data dir yet");
    const present = secretPaths(ctx).filter((p) => existsSync(p.path));
    if (present.length === 0) return resultOf(this, "skip", "no keys or identity yet");
    const wrong = present.filter((p) => (mode(p.path) & 0o077) !== 0);
    if (wrong.length === 0) return resultOf(this, "ok", present.map((p) => `${relative(root, p.path)} ${octalMode(mode(p.path))}`).join(", "));
    const lines = wrong.map((p) => `${relative(root, p.path)} is ${octalMode(mode(p.path))}, must be ${octalMode(p.want)}`);
    return resultOf(this, "fail", `readable by other users: ${lines.join("; ")}`, { fix: chmodFix(wrong, root) });
  },
};

export const identityCheck: DataDirCheck = {
  id: "datadir.identity",
  title: "identity (config.json) readable and valid",
  async run(ctx) {
    const id = ctx.identity();
    if (id.kind === "invalid") {
      return resultOf(this, "fail", `${id.message}. Without a valid identity the agent cannot talk to the control plane`, {
        fix: { description: `restore ${ctx.dataDir.configFile} from a backup, or move it aside and register again with a new token (agent run --url … --token …)` },
      });
    }
    if (id.kind === "absent") {
      if (ctx.stateLocation) return resultOf(this, "skip", `not registered (working from --state ${ctx.stateLocation})`);
      return resultOf(this, "warn", `not registered: ${ctx.dataDir.configFile} does not exist`, {
        fix: { description: "register once: agent run --url https://control-plane.example --token <token>" },
      });
    }
    const i = id.identity;
    const url = ctx.controlPlaneUrl();
    return resultOf(this, "ok", `server ${i.serverId}, subnet 10.200.${i.subnetId}.0/24, WireGuard ${i.wireguardIp}${url ? `, control plane ${url}` : ""}`);
  },
};

export const keysCheck: DataDirCheck = {
  id: "datadir.keys",
  title: "signing and WireGuard keys parse",
  async run(ctx) {
    const d = ctx.dataDir;
    const registered = ctx.identity().kind !== "absent";
    const findings: Array<{ status: CheckStatus; text: string }> = [];
    let fix: Fix | undefined;

    const pem = readOrError(d.privateKeyFile);
    let signing: SigningKey | undefined;
    if (pem.missing) {
      if (registered) findings.push({ status: "fail", text: `${rel(ctx, d.privateKeyFile)} is missing: the control plane knows this server by that key, so no call can be signed; register again with a new token` });
    } else if (pem.error) {
      findings.push({ status: "fail", text: `${rel(ctx, d.privateKeyFile)}: ${pem.error}` });
    } else {
      try {
        signing = SigningKey.fromPem(pem.text!);
      } catch (err) {
        findings.push({ status: "fail", text: `${rel(ctx, d.privateKeyFile)} is not an Ed25519 private key: ${errorMessage(err)}` });
      }
    }
    if (signing) {
      const expected = signing.publicKeyRawBase64();
      const pub = readOrError(d.publicKeyFile);
      if (pub.text?.trim() !== expected) {
        findings.push({ status: "warn", text: `${rel(ctx, d.publicKeyFile)} ${pub.missing ? "is missing" : "does not match the private key"}` });
        fix = { description: `write ${rel(ctx, d.publicKeyFile)} from the private key`, apply: async () => d.writePublic(d.publicKeyFile, expected + "\n") };
      }
    }

    const wg = readOrError(d.wireguardKeyFile);
    if (wg.missing) {
      if (registered) findings.push({ status: "fail", text: `${rel(ctx, d.wireguardKeyFile)} is missing: the mesh peers know this server by its WireGuard key` });
    } else if (wg.error) {
      findings.push({ status: "fail", text: `${rel(ctx, d.wireguardKeyFile)}: ${wg.error}` });
    } else if (!isWireGuardKey(wg.text!.trim())) {
      findings.push({ status: "fail", text: `${rel(ctx, d.wireguardKeyFile)} is not a WireGuard key (base64 of 32 bytes, as wg genkey prints)` });
    }

    if (findings.length === 0) {
      if (!signing && wg.missing) return resultOf(this, "skip", "no keys yet: they are made at registration");
      return resultOf(this, "ok", [signing && "Ed25519 signing key", !wg.missing && "WireGuard key"].filter(Boolean).join(" and "));
    }
    const status = worst(findings.map((f) => f.status));
    return resultOf(this, status, findings.map((f) => f.text).join("; "), fix ? { fix } : {});
  },
};

function rel(ctx: DoctorContext, path: string): string {
  return relative(ctx.dataDir.root, path);
}

function readOrError(path: string): { text?: string; missing?: boolean; error?: string } {
  if (!existsSync(path)) return { missing: true };
  try {
    return { text: readFileSync(path, "utf8") };
  } catch (err) {
    return { error: `cannot read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}` };
  }
}

/** `/proc/<pid>/cmdline` as a person would type it, when the process is visible. */
export function processCommand(pid: number): string | undefined {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return args.length ? args.join(" ") : undefined;
  } catch {
    return undefined;
  }
}

export const lockCheck: DataDirCheck = {
  id: "datadir.lock",
  title: "agent process (data-dir lock)",
  async run(ctx) {
    if (!existsSync(ctx.dataDir.root)) return resultOf(this, "skip", "no data dir yet");
    const holder = ctx.lockHolder();
    if (holder.held) {
      const command = holder.pid ? processCommand(holder.pid) : undefined;
      const who = holder.pid ? `pid ${holder.pid}${command ? ` (${command})` : ""}` : "a process whose pid is not visible";
      return resultOf(this, "ok", `an agent holds the lock on ${ctx.dataDir.lockFile}: ${who}`);
    }
    if (ctx.identity().kind === "valid") {
      return resultOf(this, "warn", "no agent is running on this data dir: nothing keeps this server in sync with the control plane", {
        fix: { description: "start the agent (its systemd unit, or agent run --data-dir …)" },
      });
    }
    return resultOf(this, "ok", "no agent is running on this data dir");
  },
};

export const dataDirChecks: DataDirCheck[] = [dataDirCheck, secretModesCheck, identityCheck, keysCheck, lockCheck];
