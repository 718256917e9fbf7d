/** Permission bits as `ls -l` users write them with chmod: `0644`, `1777` (special bits kept). */
export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}
