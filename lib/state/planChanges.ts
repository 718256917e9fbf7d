import { diffDns, diffPeers, diffRoutes } from "./describeDrift.ts";
import { compareStrings, hashDns, hashPeers, hashRoutes } from "./hash.ts";
import { sameImage } from "./imageRef.ts";
import { LABEL_DEPLOYMENT_ID, type ActualContainer, type ActualState, type Change, type ContainerState, type ExpectedContainer, type ExpectedState } from "./types.ts";

/** States in which a container is running (or about to be): an orphan in one is stopped before it is removed. */
const ACTIVE: ReadonlySet<ContainerState> = new Set(["running", "paused", "restarting"]);

/** A container with a process that `stop` would end. */
export function isActive(container: ActualContainer): boolean {
  return ACTIVE.has(container.state);
}
/** States a container with the right image is simply started from (never recreated: its IP stays allocated to it). */
const STARTABLE: ReadonlySet<ContainerState> = new Set(["created", "exited", "stopped"]);
/** States nothing can bring back: the container is replaced. */
const UNRECOVERABLE: ReadonlySet<ContainerState> = new Set(["dead", "unknown"]);
// "removing" is transient: such a container gets no change; once it is gone the deployment is deployed afresh.

const STATE_RANK: Record<ContainerState, number> = {
  running: 0,
  paused: 1,
  restarting: 1,
  created: 2,
  exited: 2,
  stopped: 2,
  dead: 3,
  unknown: 3,
  removing: 4,
};

/**
 * The changes that make `actual` match `expected`, in the order they must be applied:
 * 1. orphans (managed containers without a deployment id, of a deployment no longer expected, or
 *    surplus copies of an expected deployment): stopped when active, removed otherwise, so a
 *    running orphan goes running → stopped → removed over successive plans;
 * 2. start: containers of an expected deployment, right image, created/exited/stopped;
 * 3. deploy: expected deployments with no container;
 * 4. redeploy: wrong image, or a dead/unknown container;
 * 5–7. dns, routes, wireguard: when both sides are known and differ.
 * Within each group, by container name. Pure: the same input always gives the same plan.
 */
export function planChanges(expected: ExpectedState, actual: ActualState): Change[] {
  const expectedByDeployment = new Map(expected.containers.map((c) => [c.deploymentId, c]));
  const candidates = new Map<string, ActualContainer[]>();
  const orphans: Array<{ container: ActualContainer; reason: string }> = [];
  for (const container of actual.containers) {
    const id = container.deploymentId;
    if (!id) orphans.push({ container, reason: `no ${LABEL_DEPLOYMENT_ID} label` });
    else if (!expectedByDeployment.has(id)) orphans.push({ container, reason: `deployment ${id} is no longer expected` });
    else candidates.set(id, [...(candidates.get(id) ?? []), container]);
  }

  const kept = new Map<string, ActualContainer>();
  for (const [deploymentId, containers] of candidates) {
    const want = expectedByDeployment.get(deploymentId)!;
    const [best, ...surplus] = [...containers].sort((a, b) => compareCandidates(a, b, want));
    kept.set(deploymentId, best!);
    for (const container of surplus) {
      orphans.push({ container, reason: `deployment ${deploymentId} already has container ${best!.name} (${shortId(best!.id)}); this is a surplus copy` });
    }
  }

  const changes: Change[] = [];
  orphans.sort((a, b) => compareStrings(a.container.name, b.container.name) || compareStrings(a.container.id, b.container.id));
  for (const { container, reason } of orphans) {
    if (container.state === "removing") continue;
    const what = `orphan container ${container.name} (${shortId(container.id)})`;
    if (isActive(container)) changes.push({ kind: "stop-orphan", container, description: `stop ${what}`, reason });
    else changes.push({ kind: "remove-orphan", container, description: `remove ${what}`, reason });
  }

  const byName = [...expected.containers].sort((a, b) => compareStrings(a.name, b.name));
  const starts: Change[] = [];
  const deploys: Change[] = [];
  const redeploys: Change[] = [];
  for (const want of byName) {
    const have = kept.get(want.deploymentId);
    const label = `${want.name} (${want.image})`;
    if (!have) {
      deploys.push({ kind: "deploy", expected: want, description: `deploy ${label}`, reason: `deployment ${want.deploymentId} has no container` });
    } else if (have.state === "removing") {
      continue;
    } else if (!sameImage(have.image, want.image)) {
      redeploys.push({ kind: "redeploy", expected: want, container: have, description: `redeploy ${label}`, reason: `image ${have.image} → ${want.image}` });
    } else if (STARTABLE.has(have.state)) {
      starts.push({ kind: "start", expected: want, container: have, description: `start ${label}`, reason: describeState(have) });
    } else if (UNRECOVERABLE.has(have.state)) {
      redeploys.push({ kind: "redeploy", expected: want, container: have, description: `redeploy ${label}`, reason: `${describeState(have)}, which cannot be recovered` });
    }
  }
  changes.push(...starts, ...deploys, ...redeploys);

  if (expected.dns && actual.dns && hashDns(expected.dns) !== hashDns(actual.dns)) {
    const n = expected.dns.length;
    changes.push({ kind: "dns", records: expected.dns, description: `update DNS records (${plural(n, "record")})`, reason: diffDns(expected.dns, actual.dns) });
  }

  if (expected.routes && actual.routes) {
    // Certificates that were not sent are left alone: compared only when expected.certificates is set.
    const wantCerts = expected.certificates;
    const haveCerts = wantCerts === undefined ? undefined : (actual.certificates ?? []);
    if (hashRoutes(expected.routes, wantCerts) !== hashRoutes(actual.routes, haveCerts)) {
      const certificates = wantCerts ?? actual.certificates ?? [];
      changes.push({
        kind: "routes",
        routes: expected.routes,
        certificates,
        description: `update proxy routes (${plural(expected.routes.length, "route")}, ${plural(certificates.length, "certificate")})`,
        reason: diffRoutes(expected.routes, actual.routes, wantCerts, haveCerts),
      });
    }
  }

  if (expected.peers && actual.peers && hashPeers(expected.peers) !== hashPeers(actual.peers)) {
    changes.push({ kind: "wireguard", peers: expected.peers, description: `update WireGuard peers (${plural(expected.peers.length, "peer")})`, reason: diffPeers(expected.peers, actual.peers) });
  }
  return changes;
}

/** Which container of one deployment to keep: right image, then the liveliest state, then the expected name, then by id. */
function compareCandidates(a: ActualContainer, b: ActualContainer, want: ExpectedContainer): number {
  const imageRank = (c: ActualContainer) => (sameImage(c.image, want.image) ? 0 : 1);
  const nameRank = (c: ActualContainer) => (c.name === want.name ? 0 : 1);
  return imageRank(a) - imageRank(b) || STATE_RANK[a.state] - STATE_RANK[b.state] || nameRank(a) - nameRank(b) || compareStrings(a.id, b.id);
}

function describeState(container: ActualContainer): string {
  return container.exitCode === undefined ? `state ${container.state}` : `state ${container.state} (exit code ${container.exitCode})`;
}

function shortId(id: string): string {
  return id.slice(0, 12);
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The plan as numbered text for `--dry-run`: each change with its reason. */
export function describePlan(changes: ReadonlyArray<Pick<Change, "description" | "reason">>): string {
  if (changes.length === 0) return "No changes: the actual state matches the expected state.";
  const lines = [`${plural(changes.length, "change")} planned:`];
  const width = String(changes.length).length;
  changes.forEach((change, i) => {
    const number = `${String(i + 1).padStart(width)}.`;
    lines.push(`  ${number} ${change.description}`, `  ${" ".repeat(number.length)} reason: ${change.reason}`);
  });
  return lines.join("\n");
}
