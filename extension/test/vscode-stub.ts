// A stub of the `vscode` module with the shape the extension uses, recording what it was asked to do.

type Handler = (...args: any[]) => any;

export const recorded = {
  commands: new Map<string, Handler>(),
  info: [] as string[],
  warnings: [] as string[],
  errors: [] as string[],
  opened: [] as string[],
  documents: [] as { language?: string; content?: string }[],
  statusItems: [] as StubStatusItem[],
  configListeners: [] as Handler[],
  answers: [] as (string | undefined)[], // queued answers for showInformationMessage/showWarningMessage/quick picks/input boxes
};

export const settings = new Map<string, unknown>();

export function reset(values: Record<string, unknown>): void {
  recorded.commands.clear();
  for (const key of ["info", "warnings", "errors", "opened", "documents", "statusItems", "configListeners", "answers"] as const) {
    (recorded[key] as unknown[]).length = 0;
  }
  settings.clear();
  for (const [k, v] of Object.entries(values)) settings.set(k, v);
}

export class StubStatusItem {
  text = "";
  tooltip: unknown = undefined;
  command: unknown = undefined;
  visible = false;
  disposed = false;
  show(): void {
    this.visible = true;
  }
  dispose(): void {
    this.disposed = true;
  }
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

const answer = async () => recorded.answers.shift();

export const window = {
  createStatusBarItem: () => {
    const item = new StubStatusItem();
    recorded.statusItems.push(item);
    return item;
  },
  createOutputChannel: () => ({ appendLine() {}, dispose() {} }),
  showInformationMessage: async (m: string) => (recorded.info.push(m), answer()),
  showWarningMessage: async (m: string) => (recorded.warnings.push(m), answer()),
  showErrorMessage: async (m: string) => (recorded.errors.push(m), undefined),
  showQuickPick: async (items: { label: string }[]) => {
    const label = await answer();
    return items.find((i) => i.label === label);
  },
  showInputBox: async (o: { validateInput?: (v: string) => string | undefined }) => {
    const v = await answer();
    return v !== undefined && o.validateInput?.(v) ? undefined : v;
  },
  showTextDocument: async (doc: unknown) => doc,
};

export const workspace = {
  getConfiguration: (section: string) => ({
    get: <T>(key: string): T | undefined => settings.get(`${section}.${key}`) as T | undefined,
  }),
  onDidChangeConfiguration: (listener: Handler) => {
    recorded.configListeners.push(listener);
    return { dispose() {} };
  },
  openTextDocument: async (o: { language?: string; content?: string }) => (recorded.documents.push(o), o),
};

export const commands = {
  registerCommand: (id: string, fn: Handler) => {
    if (recorded.commands.has(id)) throw new Error(`command '${id}' already exists`);
    recorded.commands.set(id, fn);
    return { dispose: () => recorded.commands.delete(id) };
  },
  executeCommand: async (id: string, ...args: unknown[]) => recorded.commands.get(id)?.(...args),
};

export const env = {
  openExternal: async (uri: { toString(): string }) => (recorded.opened.push(uri.toString()), true),
};

export const Uri = {
  parse: (s: string) => ({ toString: () => s }),
};
