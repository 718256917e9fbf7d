import { InvalidInputError } from "../errors.ts";
import { LABEL_SERVICE_ID, type ActualContainer } from "../state/types.ts";

/**
 * Finds the managed container a work item names by full id or unique prefix. Only containers
 * that carry the `techulus.service.id` label are candidates, so an id of any other container
 * (or of none) is refused before anything is touched.
 */
export function resolveManagedContainer(managed: readonly ActualContainer[], ref: string): ActualContainer {
  const prefix = ref.toLowerCase();
  const matches = managed.filter((c) => c.id.toLowerCase().startsWith(prefix));
  if (matches.length === 0) {
    throw new InvalidInputError(`container ${ref} is not managed by the agent (no ${LABEL_SERVICE_ID} label) or does not exist; refusing`);
  }
  if (matches.length > 1) {
    throw new InvalidInputError(`container id ${ref} is ambiguous: it matches ${matches.length} managed containers; send the full id`);
  }
  return matches[0]!;
}

/** The planner's rule, so a work item and an orphan stop the same containers. */
export { isActive } from "../state/planChanges.ts";
