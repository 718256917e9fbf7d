import path from "node:path";
import type { ExpectedContainerWire } from "../controlplane/schemas.ts";
import { compareStrings } from "./hash.ts";
import { normalizeImageRef } from "./imageRef.ts";
import { checkNodeFit, type NodeRules } from "./nodeRules.ts";
import { Problems, quote } from "./Problems.ts";
import type { EnvValue, ExpectedContainer, HealthCheck, PortMapping, VolumeMount } from "./types.ts";
import { isPathSegment, isSafeId, parseContainerName, parseEnvName, parseIPv4Address, parsePort, parseSafeId } from "./validate.ts";

/** Env values starting with this marker are plain text; accepted only from local state files. */
export const PLAIN_ENV_MARKER = "plain:";

/** iv (12) + GCM tag (16): the shortest sealed value, for an empty secret. */
const MIN_SEALED_BYTES = 28;

export interface ContainerRules {
  /** Folder that holds `<serviceId>/<volume>` folders; every hostPath must be inside its service's folder. */
  volumesRoot: string;
  /** Accept `plain:` env values (local state files only). */
  allowPlainEnv: boolean;
  /** Host ports and addresses this node can give containers. */
  node: NodeRules;
}

/**
 * Validates and normalises every container; names, deployment ids, host ports and addresses must
 * be unique, and fit the node. Sorted by name.
 */
export function collectContainers(wires: readonly ExpectedContainerWire[], rules: ContainerRules, problems: Problems): ExpectedContainer[] {
  const entries: Array<{ where: string; container: ExpectedContainer }> = [];
  const byName = new Map<string, number>();
  const byDeployment = new Map<string, number>();
  wires.forEach((wire, i) => {
    const where = `containers[${i}] ${quote(wire.name)}`;
    const firstWithName = byName.get(wire.name);
    if (firstWithName !== undefined) problems.add(where, `name is also used by containers[${firstWithName}]`);
    else byName.set(wire.name, i);
    const firstWithDeployment = byDeployment.get(wire.deploymentId);
    if (firstWithDeployment !== undefined) problems.add(where, `deploymentId ${quote(wire.deploymentId)} is also used by containers[${firstWithDeployment}]`);
    else byDeployment.set(wire.deploymentId, i);
    const container = normalizeContainer(wire, where, rules, problems);
    if (container) entries.push({ where, container });
  });
  checkNodeFit(entries, rules.node, problems);
  return entries.map((e) => e.container).sort((a, b) => compareStrings(a.name, b.name));
}

function normalizeContainer(wire: ExpectedContainerWire, where: string, rules: ContainerRules, problems: Problems): ExpectedContainer | undefined {
  const before = problems.list.length;
  const name = problems.check(where, () => parseContainerName(wire.name));
  const deploymentId = problems.check(where, () => parseSafeId("deploymentId", wire.deploymentId));
  const serviceId = problems.check(where, () => parseSafeId("serviceId", wire.serviceId));
  const image = problems.check(where, () => normalizeImageRef(wire.image));
  const ipText = wire.ipAddress ?? "";
  const ipAddress = ipText === "" ? undefined : problems.check(`${where} ipAddress`, () => parseIPv4Address(ipText));
  const ports = collectPorts(wire.ports, where, problems);
  const env = collectEnv(wire.env, where, rules.allowPlainEnv, problems);
  const volumes = collectVolumes(wire.volumes, wire.serviceId, where, rules.volumesRoot, problems);
  const healthCheck = wire.healthCheck ? checkHealthCheck(wire.healthCheck, `${where} healthCheck`, problems) : undefined;
  if (problems.list.length > before || !name || !deploymentId || !serviceId || !image) return undefined;
  const container: ExpectedContainer = { deploymentId, serviceId, serviceName: wire.serviceName, name, image, ports, env, volumes };
  if (ipAddress !== undefined) container.ipAddress = ipAddress;
  if (healthCheck !== undefined) container.healthCheck = healthCheck;
  return container;
}

function collectPorts(wires: ExpectedContainerWire["ports"], where: string, problems: Problems): PortMapping[] {
  const ports: PortMapping[] = [];
  wires.forEach((wire, i) => {
    const containerPort = problems.check(`${where} ports[${i}] containerPort`, () => parsePort(wire.containerPort));
    const hostPortValue = wire.hostPort;
    const hostPort = hostPortValue == null ? undefined : problems.check(`${where} ports[${i}] hostPort`, () => parsePort(hostPortValue));
    if (containerPort === undefined || (hostPortValue != null && hostPort === undefined)) return;
    ports.push(hostPort === undefined ? { containerPort } : { containerPort, hostPort });
  });
  return ports.sort((a, b) => a.containerPort - b.containerPort || (a.hostPort ?? 0) - (b.hostPort ?? 0));
}

/** Env values are secrets: no message ever contains one. */
function collectEnv(wire: Record<string, string>, where: string, allowPlain: boolean, problems: Problems): Record<string, EnvValue> {
  const env: Record<string, EnvValue> = {};
  for (const key of Object.keys(wire).sort(compareStrings)) {
    const value = wire[key]!;
    if (problems.check(where, () => parseEnvName(key)) === undefined) continue;
    if (value.startsWith(PLAIN_ENV_MARKER)) {
      if (allowPlain) env[key] = { kind: "plain", value: value.slice(PLAIN_ENV_MARKER.length) };
      else problems.add(`${where} env ${key}`, `plain values ("${PLAIN_ENV_MARKER}" prefix) are only accepted in local state files, not from the control plane`);
    } else if (looksSealed(value)) {
      env[key] = { kind: "encrypted", value };
    } else {
      problems.add(`${where} env ${key}`, `value is not an encrypted secret (expected base64 of iv‖tag‖ciphertext; for a plain value in a local state file write "${PLAIN_ENV_MARKER}…")`);
    }
  }
  return env;
}

function looksSealed(value: string): boolean {
  return /^[A-Za-z0-9+/]+={0,2}$/.test(value) && value.length % 4 === 0 && Buffer.from(value, "base64").length >= MIN_SEALED_BYTES;
}

function collectVolumes(wires: ExpectedContainerWire["volumes"], serviceId: string, where: string, volumesRoot: string, problems: Problems): VolumeMount[] {
  const volumes: VolumeMount[] = [];
  const byContainerPath = new Map<string, number>();
  const serviceRoot = path.resolve(volumesRoot, serviceId);
  wires.forEach((wire, i) => {
    const at = `${where} volumes[${i}]`;
    const before = problems.list.length;
    if (!isPathSegment(wire.name)) problems.add(at, `name ${quote(wire.name)} must be one path segment (letters, digits, _ . -, starting with a letter or digit)`);
    const containerPath = wire.containerPath;
    const normalizedContainerPath = path.posix.normalize(containerPath).replace(/(.)\/$/, "$1");
    if (!containerPath.startsWith("/") || normalizedContainerPath === "/" || containerPath.split("/").includes("..") || /[\0:,]/.test(containerPath)) {
      problems.add(at, `containerPath ${quote(containerPath)} must be an absolute path below / without "..", ":" or ","`);
    }
    const hostPath = path.resolve(wire.hostPath);
    if (!path.isAbsolute(wire.hostPath) || wire.hostPath.includes("\0")) {
      problems.add(at, `hostPath ${quote(wire.hostPath)} must be an absolute path`);
    } else if (isSafeId(serviceId) && !hostPath.startsWith(serviceRoot + path.sep)) {
      problems.add(at, `hostPath ${quote(wire.hostPath)} is outside ${serviceRoot}${path.sep} (a service's volumes live in <volumes root>/<serviceId>/)`);
    }
    if (problems.list.length > before) return;
    const first = byContainerPath.get(normalizedContainerPath);
    if (first !== undefined) return problems.add(at, `containerPath ${quote(normalizedContainerPath)} is also mounted by volumes[${first}]`);
    byContainerPath.set(normalizedContainerPath, i);
    volumes.push({ name: wire.name, hostPath, containerPath: normalizedContainerPath });
  });
  return volumes.sort((a, b) => compareStrings(a.containerPath, b.containerPath));
}

function checkHealthCheck(wire: HealthCheck, where: string, problems: Problems): HealthCheck | undefined {
  const before = problems.list.length;
  if (wire.cmd.trim() === "") problems.add(where, "cmd is empty");
  for (const field of ["interval", "timeout", "startPeriod"] as const) {
    if (!Number.isFinite(wire[field]) || wire[field] < 0) problems.add(where, `${field} ${wire[field]} must be a non-negative number of seconds`);
  }
  if (!Number.isInteger(wire.retries) || wire.retries < 0) problems.add(where, `retries ${wire.retries} must be a non-negative integer`);
  if (problems.list.length > before) return undefined;
  return { cmd: wire.cmd, interval: wire.interval, timeout: wire.timeout, retries: wire.retries, startPeriod: wire.startPeriod };
}
