import { octalMode } from "../fs/fileMode.ts";

/**
 * What the mode and owner of a config file mean. The agent runs as root with the file's settings,
 * so a file others can write is refused; one others can read is only a problem when it holds a
 * secret (a registration token, a password in a URL).
 */
export interface ConfigFileFacts {
  path: string;
  mode: number;
  uid: number;
  /** The user the agent runs as. */
  processUid: number;
  /** Keys of the file whose values are secrets. */
  secretKeys: readonly string[];
}

export interface ConfigFileVerdict {
  refusal?: string;
  warning?: string;
}

export function judgeConfigFile(f: ConfigFileFacts): ConfigFileVerdict {
  const consequence = "who could change the settings the agent runs with as root";
  if ((f.mode & 0o022) !== 0) {
    const who = (f.mode & 0o002) !== 0 ? "every user" : "its group";
    return { refusal: `${f.path} is writable by ${who} (mode ${octalMode(f.mode)}), ${consequence}: chmod go-w ${f.path}` };
  }
  if (f.uid !== f.processUid && f.uid !== 0) {
    return { refusal: `${f.path} belongs to another user (uid ${f.uid}), ${consequence}: chown ${f.processUid === 0 ? "root" : f.processUid} ${f.path}` };
  }
  if (f.secretKeys.length > 0 && (f.mode & 0o044) !== 0) {
    const keys = f.secretKeys.map((k) => `"${k}"`).join(", ");
    return { warning: `config file ${f.path} holds a secret (${keys}) and is readable by other users (mode ${octalMode(f.mode)}): chmod 600 ${f.path}` };
  }
  return {};
}
