import { z } from "zod";
import { PeerWire, describeIssues, type WorkItemWire } from "../controlplane/schemas.ts";
import { InvalidInputError } from "../errors.ts";

/**
 * Payload schemas of the work-queue item types (PROTOCOL.md "Work queue"). The payload arrives
 * as a JSON string; malformed JSON or a wrong shape is an InvalidInputError with a message that
 * names the field, and nothing is done for that item.
 */

/** A full container id or a unique prefix of at least 12 hex characters. */
export const ContainerIdRef = z
  .string()
  .regex(/^[0-9a-fA-F]{12,64}$/, "must be a container id (12 to 64 hex characters)")
  .transform((v) => v.toLowerCase());

const ContainerPayload = z.object({
  deploymentId: z.string().optional(),
  containerId: ContainerIdRef,
});

export const WorkPayloads = {
  restart: ContainerPayload,
  stop: ContainerPayload,
  force_cleanup: z.object({
    serviceId: z.string().min(1, "must not be empty"),
    containerIds: z.array(ContainerIdRef),
  }),
  // Validated as a safe path segment by the handler, which explains what is wrong with it.
  cleanup_volumes: z.object({ serviceId: z.string() }),
  deploy: z.unknown(),
  update_wireguard: z.object({ peers: z.array(PeerWire) }),
} as const;

export type WorkItemType = keyof typeof WorkPayloads;
export const WORK_ITEM_TYPES = Object.keys(WorkPayloads) as WorkItemType[];

export type ParsedWorkItem = {
  [T in WorkItemType]: { id: string; type: T; payload: z.infer<(typeof WorkPayloads)[T]> };
}[WorkItemType];

export function isKnownType(type: string): type is WorkItemType {
  return Object.hasOwn(WorkPayloads, type);
}

export function parseWorkItem(item: Pick<WorkItemWire, "id" | "type" | "payload">): ParsedWorkItem {
  if (!isKnownType(item.type)) {
    throw new InvalidInputError(`unknown work item type ${JSON.stringify(item.type)}; this agent handles ${WORK_ITEM_TYPES.join(", ")}`);
  }
  if (item.type === "deploy") return { id: item.id, type: "deploy", payload: undefined };
  let json: unknown;
  try {
    json = JSON.parse(item.payload);
  } catch (err) {
    throw new InvalidInputError(`${item.type} payload is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = WorkPayloads[item.type].safeParse(json);
  if (!parsed.success) throw new InvalidInputError(`${item.type} payload is invalid: ${describeIssues(parsed.error)}`);
  return { id: item.id, type: item.type, payload: parsed.data } as ParsedWorkItem;
}
