/** Results go to stdout (for scripts), logs to stderr (lib/logger). */
export function printResult(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}
