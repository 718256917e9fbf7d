/**
 * Data dirs and host files for doctor tests.
 *
 *   registeredDataDir(root)    a data dir as registration leaves it (identity, keys, documented modes)
 *   doctorContext(root, opts)  a DoctorContext on that dir with real settings resolution (flags, and a config file when given)
 *   hostFiles(dir, files)      fixture containers.conf, /proc/self/limits, mounts, … under dir → HostPaths
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveSettings } from "../../lib/config/settings.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { loadOrCreateKeys } from "../../lib/datadir/keys.ts";
import { DOCTOR_SETTING_KEYS, DoctorContext, type DoctorContextOptions, type HostPaths } from "../../lib/doctor/DoctorContext.ts";

export function registeredDataDir(root: string, subnetId = 7): DataDir {
  const dataDir = new DataDir(root);
  dataDir.ensure();
  loadOrCreateKeys(dataDir);
  dataDir.writeIdentity({
    serverId: randomUUID(),
    subnetId,
    wireguardIp: `10.100.${subnetId}.1`,
    encryptionKey: randomBytes(32).toString("hex"),
    controlPlaneUrl: "http://127.0.0.1:9",
    peers: [],
    registeredAt: new Date().toISOString(),
  });
  return dataDir;
}

export function doctorContext(
  root: string,
  options: Partial<Omit<DoctorContextOptions, "settings">> & { flags?: Record<string, unknown>; configFile?: string } = {},
): DoctorContext {
  const settings = resolveSettings(DOCTOR_SETTING_KEYS, { flags: { dataDir: root, dnsPort: 0, ...options.flags }, env: {}, configFile: options.configFile });
  return new DoctorContext({ ...options, settings });
}

export const LIMITS_20000 = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max file size             unlimited            unlimited            bytes
Max processes             96365                96365                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

export const MOUNTS_HYBRID = `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
`;

export const MOUNTS_UNIFIED = `cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
`;

/** Writes fixture host files under `dir` and returns paths pointing at them (missing ones point nowhere). */
export function hostFiles(dir: string, files: { containersConf?: string; limits?: string; mounts?: string; modulesDep?: string }): Partial<HostPaths> {
  mkdirSync(join(dir, "modules"), { recursive: true });
  const paths: Partial<HostPaths> = {
    containersConf: join(dir, "containers.conf"),
    procSelfLimits: join(dir, "limits"),
    procMounts: join(dir, "mounts"),
    sysModuleWireguard: join(dir, "no-such-module"),
    modulesDir: join(dir, "modules"),
    systemdRunDir: join(dir, "no-systemd"),
  };
  if (files.containersConf !== undefined) writeFileSync(paths.containersConf!, files.containersConf);
  writeFileSync(paths.procSelfLimits!, files.limits ?? LIMITS_20000);
  writeFileSync(paths.procMounts!, files.mounts ?? MOUNTS_HYBRID);
  if (files.modulesDep !== undefined) writeFileSync(join(dir, "modules", "modules.dep"), files.modulesDep);
  return paths;
}
