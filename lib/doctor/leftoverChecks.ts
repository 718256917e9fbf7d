import { errorMessage } from "../errors.ts";
import type { LeftoverHealer } from "../podman/LeftoverHealer.ts";
import { describeLeftover, needsOf, remedyOf, type Leftover, type Needs } from "../podman/leftovers.ts";
import { resultOf, type Check, type CheckResult, type CheckStatus } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

type LeftoverKind = Leftover["kind"];

interface Found {
  healer: LeftoverHealer;
  leftovers: Leftover[];
  /** Whether the expected state is known (without it, "needed" cannot be judged). */
  needsKnown: boolean;
}

/** One look per round, shared by the four checks: Podman's containers, this machine's conmons, CNI's reservations. */
function findLeftovers(ctx: DoctorContext): Promise<Found> {
  return ctx.memo("leftovers", async (): Promise<Found> => {
    const expected = await ctx.expected();
    const needs: Needs = expected.kind === "ok" ? needsOf(expected.state) : { ports: [], addresses: [] };
    const node = await ctx.node(ctx.subnetIdFor(expected.kind === "ok" ? expected.state : undefined));
    return { healer: node.runtime.healer, leftovers: await node.runtime.healer.find(needs), needsKnown: expected.kind === "ok" };
  });
}

interface LeftoverCheckSpec {
  id: string;
  title: string;
  kind: LeftoverKind;
  none: string;
  status(found: Leftover[]): CheckStatus;
}

function leftoverCheck(spec: LeftoverCheckSpec): Check<DoctorContext> {
  return {
    id: spec.id,
    title: spec.title,
    async run(ctx): Promise<CheckResult> {
      let found: Found;
      try {
        found = await findLeftovers(ctx);
      } catch (err) {
        return resultOf(this, "skip", `cannot look: ${errorMessage(err)}`);
      }
      if (spec.kind === "foreign-holder" && !found.needsKnown) return resultOf(this, "skip", "no expected state to compare with");
      const mine = found.leftovers.filter((l) => l.kind === spec.kind);
      if (mine.length === 0) return resultOf(this, "ok", spec.none);
      const detail = mine.map(describeLeftover).join("\n");
      if (spec.kind === "foreign-holder") {
        return resultOf(this, spec.status(mine), detail, { fix: { description: remedyOf(mine[0]!) } });
      }
      const description = mine.map(remedyOf).join("; ");
      return resultOf(this, spec.status(mine), detail, {
        fix: {
          description,
          apply: async () => {
            for (const leftover of mine) await found.healer.repair(leftover);
          },
        },
      });
    },
  };
}

/** What cut-short Podman operations left behind (lib/podman/leftovers): the agent repairs a–c by itself; d is for a person. */
export const leftoverChecks: Check<DoctorContext>[] = [
  {
    ...leftoverCheck({
      id: "podman.stray-conmon",
      title: "no conmon left running without its container",
      kind: "stray-conmon",
      none: "every conmon of this Podman belongs to a container it knows",
      status: (found) => (found.some((l) => l.kind === "stray-conmon" && l.needed.length > 0) ? "fail" : "warn"),
    }),
    // The first to start the node's drivers (and maybe the agent's own podman service): the host checks before it must not see that service yet.
    waitForEarlier: true,
  },
  leftoverCheck({
    id: "podman.stuck-containers",
    title: "no managed container stuck stopping or removing",
    kind: "stuck-container",
    none: "no managed container is stopping or removing",
    status: () => "warn",
  }),
  leftoverCheck({
    id: "podman.address-reservations",
    title: "no stale address reservation on the agent's network",
    kind: "stale-reservation",
    none: "every CNI reservation on the agent's network names a container Podman knows (none are kept with netavark)",
    status: () => "warn",
  }),
  leftoverCheck({
    id: "podman.foreign-holders",
    title: "the expected ports and addresses are not held by unmanaged containers",
    kind: "foreign-holder",
    none: "no container the agent does not manage holds a port or address of the expected state",
    status: () => "fail",
  }),
];
