// The extension's state: one language client, the status bar, the palette commands.
// The vscode API and the client come in from outside (extension.ts), so tests can stub both.

import type * as vscode from "vscode";
import { languages, RESTART_KEYS, serverCommand, serverSettings, type PackageJsonLike, type ServerCommand } from "./settings";
import { StatusBar, type StatusNotice } from "./status";

export interface ClientLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  sendRequest(method: string, params: unknown): Promise<unknown>;
  sendNotification(method: string, params: unknown): Promise<void>;
  onNotification(method: string, handler: (params: any) => void): { dispose(): unknown };
}

export type ClientFactory = (cmd: ServerCommand, languages: string[], init: Record<string, unknown>) => ClientLike;

export interface CommandResult {
  ok?: boolean;
  message?: string;
  [key: string]: unknown;
}

/** Palette command id -> what it does. The LSP's own ids (penwright.retrainNow...) are registered by the client. */
export const PALETTE = {
  retrain: "penwright.retrain",
  cancel: "penwright.cancel",
  showStatus: "penwright.showStatus",
  rollBack: "penwright.rollBack",
  chooseAdapter: "penwright.chooseAdapter",
  openDashboard: "penwright.openDashboard",
  generateContinueConfig: "penwright.generateContinueConfig",
  restartServer: "penwright.restartServer",
} as const;

export class Penwright {
  client: ClientLike | undefined;
  readonly status: StatusBar;
  private notice: StatusNotice = {};

  constructor(
    private readonly vs: typeof vscode,
    private readonly pkg: PackageJsonLike,
    private readonly makeClient: ClientFactory,
  ) {
    this.status = new StatusBar(vs.window.createStatusBarItem(vs.StatusBarAlignment.Right, 100));
  }

  private config() {
    return this.vs.workspace.getConfiguration("penwright");
  }

  async start(): Promise<void> {
    const cfg = this.config();
    let cmd: ServerCommand;
    try {
      cmd = serverCommand(cfg);
    } catch (err) {
      this.status.stopped(String(err));
      void this.vs.window.showErrorMessage(String((err as Error).message ?? err));
      return;
    }
    const client = this.makeClient(cmd, languages(cfg), serverSettings(cfg, this.pkg));
    client.onNotification("penwright/status", (n: StatusNotice) => {
      this.notice = n;
      this.status.update(n);
    });
    this.client = client;
    try {
      await client.start();
      this.status.update(this.notice);
    } catch (err) {
      this.status.stopped(`The Penwright language server did not start: ${err}`);
      void this.vs.window.showErrorMessage(
        `Penwright: could not start \`${[cmd.command, ...cmd.args].join(" ")}\` (${err}). Set penwright.pythonPath to a Python that has Penwright installed.`,
      );
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await client.stop().catch(() => undefined);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async onConfigurationChanged(e: { affectsConfiguration(section: string): boolean }): Promise<void> {
    if (!e.affectsConfiguration("penwright")) return;
    if (RESTART_KEYS.some((k) => e.affectsConfiguration(k))) {
      await this.restart();
      return;
    }
    await this.client?.sendNotification("workspace/didChangeConfiguration", {
      settings: { penwright: serverSettings(this.config(), this.pkg) },
    });
  }

  /** Run one of the language server's commands; undefined when no server runs. */
  async execute(command: string, ...args: unknown[]): Promise<CommandResult | undefined> {
    if (!this.client) {
      void this.vs.window.showWarningMessage("Penwright: the language server is not running (Penwright: Restart Language Server).");
      return undefined;
    }
    return (await this.client.sendRequest("workspace/executeCommand", { command, arguments: args })) as CommandResult;
  }

  register(context: { subscriptions: { dispose(): unknown }[] }): void {
    const vs = this.vs;
    const handlers: Record<string, () => Promise<unknown>> = {
      [PALETTE.retrain]: () => this.execute("penwright.retrainNow"),
      [PALETTE.cancel]: () => this.execute("penwright.cancelTraining"),
      [PALETTE.showStatus]: () => this.showStatus(),
      [PALETTE.rollBack]: () => this.rollBack(),
      [PALETTE.chooseAdapter]: () => this.chooseAdapter(),
      [PALETTE.openDashboard]: () => this.openDashboard(),
      [PALETTE.generateContinueConfig]: () => this.generateContinueConfig(),
      [PALETTE.restartServer]: () => this.restart(),
    };
    for (const [id, fn] of Object.entries(handlers)) {
      context.subscriptions.push(vs.commands.registerCommand(id, fn));
    }
    context.subscriptions.push(vs.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)));
    context.subscriptions.push(this.status);
  }

  async showStatus(): Promise<void> {
    const r = await this.execute("penwright.status");
    if (!r || r.ok === false) return;
    const pick = await this.vs.window.showInformationMessage(String(r.message ?? "Penwright"), "Open Dashboard", "Retrain Now");
    if (pick === "Open Dashboard") await this.openDashboard(r);
    if (pick === "Retrain Now") await this.execute("penwright.retrainNow");
  }

  async rollBack(): Promise<void> {
    const yes = "Roll Back";
    const pick = await this.vs.window.showWarningMessage("Retire the live adapter and go back to the previous one?", { modal: true }, yes);
    if (pick === yes) await this.execute("penwright.rollback");
  }

  async chooseAdapter(): Promise<void> {
    const items = [
      { label: "live", description: "the live adapter (follows promotions)" },
      { label: "base", description: "the base model, no adapter" },
      { label: "version…", description: "a published version, e.g. v3" },
    ];
    const pick = await this.vs.window.showQuickPick(items, { placeHolder: "Which model should completions come from?" });
    if (!pick) return;
    let choice: string | undefined = pick.label;
    if (choice === "version…") {
      choice = await this.vs.window.showInputBox({
        prompt: "Adapter version",
        placeHolder: "v3",
        validateInput: (v: string) => (/^v?\d+$/.test(v.trim()) ? undefined : "a version number, like 3 or v3"),
      });
      if (!choice) return;
    }
    await this.execute("penwright.selectAdapter", choice.trim());
  }

  async openDashboard(known?: CommandResult): Promise<void> {
    const r = known ?? (await this.execute("penwright.status"));
    const url = r && typeof r.daemon === "string" ? r.daemon : undefined;
    if (!url) {
      void this.vs.window.showWarningMessage("Penwright: the daemon is not running, so there is no dashboard to open.");
      return;
    }
    await this.vs.env.openExternal(this.vs.Uri.parse(`${url}/`));
  }

  async generateContinueConfig(): Promise<void> {
    const r = await this.execute("penwright.continueConfig");
    if (!r || typeof r.yaml !== "string") return;
    const doc = await this.vs.workspace.openTextDocument({ language: "yaml", content: r.yaml });
    await this.vs.window.showTextDocument(doc);
    const where = typeof r.path === "string" ? r.path : ".continue/assistants/penwright.yaml";
    void this.vs.window.showInformationMessage(
      `Penwright: save this as ${where} in the project; Continue loads it as a local assistant ` +
        "(or run `penwright continue-config --write`). Do not paste it into ~/.continue/config.yaml.",
    );
  }
}
