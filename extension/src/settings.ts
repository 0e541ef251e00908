// Settings are declared once, in package.json (penwright.*). This module only reads them:
// no default is repeated here. Keys the language server does not know are client-only.

export interface ConfigLike {
  get<T>(key: string): T | undefined;
}

export interface PackageJsonLike {
  contributes: { configuration: { properties: Record<string, unknown> } };
}

/** Keys only the extension uses (how to start the server); the server ignores them too. */
export const CLIENT_ONLY_KEYS: ReadonlySet<string> = new Set(["pythonPath", "serverCommand", "languages"]);

/** Settings keys (without the `penwright.` prefix) that are passed to the language server. */
export function serverKeys(pkg: PackageJsonLike): string[] {
  return Object.keys(pkg.contributes.configuration.properties)
    .filter((k) => k.startsWith("penwright."))
    .map((k) => k.slice("penwright.".length))
    .filter((k) => !CLIENT_ONLY_KEYS.has(k));
}

/** The object sent as initializationOptions and in didChangeConfiguration. */
export function serverSettings(cfg: ConfigLike, pkg: PackageJsonLike): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of serverKeys(pkg)) {
    const value = cfg.get<unknown>(key);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/** `<pythonPath> -m penwright lsp` when a Python is configured, else `serverCommand`. */
export function serverCommand(cfg: ConfigLike): ServerCommand {
  const python = (cfg.get<string>("pythonPath") ?? "").trim();
  if (python) return { command: python, args: ["-m", "penwright", "lsp"] };
  const cmd = (cfg.get<string[]>("serverCommand") ?? []).filter((s) => typeof s === "string" && s.length > 0);
  if (cmd.length === 0) {
    throw new Error("penwright.serverCommand is empty: set it (e.g. [\"penwright\", \"lsp\"]) or penwright.pythonPath.");
  }
  return { command: cmd[0], args: cmd.slice(1) };
}

export function languages(cfg: ConfigLike): string[] {
  return (cfg.get<string[]>("languages") ?? []).filter((s) => typeof s === "string" && s.length > 0);
}

/** Settings whose change needs a new server process (the others reach it as didChangeConfiguration). */
export const RESTART_KEYS = ["penwright.pythonPath", "penwright.serverCommand", "penwright.languages"];
