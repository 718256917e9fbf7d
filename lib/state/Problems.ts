import { InvalidInputError } from "../errors.ts";

/** A value from outside, quoted for an error message: JSON-escaped (no stray newlines) and shortened. */
export function quote(value: string, max = 80): string {
  const shown = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(shown);
}

/** Input rejected as a whole; `problems` lists each problem on its own, for `--json` output. */
export class InputRejectedError extends InvalidInputError {
  readonly problems: readonly string[];
  constructor(message: string, problems: readonly string[], hint?: string) {
    super(message, { hint });
    this.problems = problems;
  }
}

/**
 * Collects every problem found in one piece of input, each prefixed with where it was found
 * (`containers[1] "web-1"`), so the input can be rejected as a whole with one readable error.
 */
export class Problems {
  readonly list: string[] = [];

  add(where: string, message: string): void {
    this.list.push(where ? `${where}: ${message}` : message);
  }

  /** Runs a validator; an InvalidInputError it throws is recorded under `where` and yields undefined. */
  check<T>(where: string, validate: () => T): T | undefined {
    try {
      return validate();
    } catch (err) {
      if (!(err instanceof InvalidInputError)) throw err;
      this.add(where, err.message);
      return undefined;
    }
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  /** Throws one InvalidInputError naming every problem (`<subject> rejected (2 problems): a; b`). */
  throwIfAny(subject: string, hint?: string, maxListed = 25): void {
    if (this.empty) return;
    const count = this.list.length;
    const listed = this.list.slice(0, maxListed).join("; ");
    const more = count > maxListed ? `; and ${count - maxListed} more` : "";
    throw new InputRejectedError(`${subject} rejected (${count} problem${count === 1 ? "" : "s"}): ${listed}${more}`, [...this.list], hint);
  }
}
