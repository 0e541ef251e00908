import { readFileSync } from "node:fs";
import { beforeEach, describe, expect, it } from "vitest";
import * as vscode from "vscode";
import { Penwright, PALETTE, type ClientLike } from "../src/penwright";
import { serverCommand, serverKeys, serverSettings } from "../src/settings";
import { recorded, reset, settings } from "./vscode-stub";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const props: Record<string, { default: unknown }> = pkg.contributes.configuration.properties;

/** Settings as VS Code would give them: package.json defaults, then the user's values. */
function seed(overrides: Record<string, unknown> = {}): void {
  const values: Record<string, unknown> = {};
  for (const [key, p] of Object.entries(props)) values[key] = p.default;
  reset({ ...values, ...overrides });
}

class FakeClient implements ClientLike {
  started = false;
  stopped = false;
  requests: { method: string; params: any }[] = [];
  notifications: { method: string; params: any }[] = [];
  handlers = new Map<string, (p: any) => void>();
  constructor(
    public cmd: { command: string; args: string[] },
    public languages: string[],
    public init: Record<string, unknown>,
    private replies: Record<string, unknown>,
  ) {}
  async start() {
    this.started = true;
  }
  async stop() {
    this.stopped = true;
  }
  async sendRequest(method: string, params: any) {
    this.requests.push({ method, params });
    return this.replies[params.command] ?? { ok: true };
  }
  async sendNotification(method: string, params: any) {
    this.notifications.push({ method, params });
  }
  onNotification(method: string, handler: (p: any) => void) {
    this.handlers.set(method, handler);
    return { dispose() {} };
  }
}

let clients: FakeClient[];
let replies: Record<string, unknown>;

async function activated(): Promise<Penwright> {
  const pw = new Penwright(vscode as any, pkg, (cmd, langs, init) => {
    const c = new FakeClient(cmd, langs, init, replies);
    clients.push(c);
    return c;
  });
  pw.register({ subscriptions: [] });
  await pw.start();
  return pw;
}

const sent = (c: FakeClient) => c.requests.map((r) => [r.params.command, ...(r.params.arguments ?? [])]);

beforeEach(() => {
  seed();
  clients = [];
  replies = {
    "penwright.status": { ok: true, message: "Penwright: adapter v2", daemon: "http://127.0.0.1:8765", model: "penwright" },
    "penwright.continueConfig": { ok: true, yaml: "models:\n- provider: openai\n" },
  };
});

describe("activation", () => {
  it("starts one client for the configured languages with the server settings", async () => {
    await activated();
    expect(clients).toHaveLength(1);
    const c = clients[0];
    expect(c.started).toBe(true);
    expect(c.cmd).toEqual({ command: "penwright", args: ["lsp"] });
    expect(c.languages).toEqual(["markdown", "plaintext"]);
    expect(c.init.prefixTokens).toBe(768);
    expect(c.init).not.toHaveProperty("serverCommand");
  });

  it("registers every palette command declared in package.json, and nothing the client registers itself", async () => {
    await activated();
    const declared = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    expect([...recorded.commands.keys()].sort()).toEqual(declared);
    expect(Object.values(PALETTE).sort()).toEqual(declared);
    for (const lspCommand of ["penwright.retrainNow", "penwright.status", "penwright.acceptCompletion"]) {
      expect(recorded.commands.has(lspCommand)).toBe(false); // vscode-languageclient registers these
    }
  });

  it("reports a server that cannot start instead of throwing", async () => {
    seed({ "penwright.serverCommand": [] });
    await activated();
    expect(clients).toHaveLength(0);
    expect(recorded.errors[0]).toMatch(/serverCommand is empty/);
    expect(recorded.statusItems[0].text).toContain("$(error)");
  });
});

describe("settings", () => {
  it("reads values without repeating defaults: every server key comes from package.json", () => {
    const keys = serverKeys(pkg);
    expect(keys).toContain("temperature");
    expect(keys).not.toContain("pythonPath");
    seed({ "penwright.temperature": 0.3 });
    const s = serverSettings(vscode.workspace.getConfiguration("penwright"), pkg);
    expect(s.temperature).toBe(0.3);
    expect(s.paragraphTokens).toBe(props["penwright.paragraphTokens"].default);
    expect(Object.keys(s).sort()).toEqual([...keys].sort());
  });

  it("uses the Python interpreter when one is configured", () => {
    seed({ "penwright.pythonPath": "/opt/py/bin/python" });
    expect(serverCommand(vscode.workspace.getConfiguration("penwright"))).toEqual({
      command: "/opt/py/bin/python",
      args: ["-m", "penwright", "lsp"],
    });
  });

  it("sends changed settings to the server, and restarts it when the command changes", async () => {
    await activated();
    settings.set("penwright.temperature", 0.2);
    const change = (keys: string[]) => ({ affectsConfiguration: (s: string) => keys.some((k) => k === s || k.startsWith(`${s}.`)) });
    await recorded.configListeners[0](change(["penwright.temperature"]));
    const note = clients[0].notifications.at(-1)!;
    expect(note.method).toBe("workspace/didChangeConfiguration");
    expect(note.params.settings.penwright.temperature).toBe(0.2);
    expect(clients).toHaveLength(1);

    settings.set("penwright.pythonPath", "/usr/bin/python3");
    await recorded.configListeners[0](change(["penwright.pythonPath"]));
    expect(clients).toHaveLength(2);
    expect(clients[0].stopped).toBe(true);
    expect(clients[1].cmd.command).toBe("/usr/bin/python3");

    await recorded.configListeners[0](change(["editor.fontSize"]));
    expect(clients).toHaveLength(2);
  });
});

describe("commands", () => {
  it("maps each palette command onto the language server's command", async () => {
    await activated();
    await vscode.commands.executeCommand(PALETTE.retrain);
    await vscode.commands.executeCommand(PALETTE.cancel);
    recorded.answers.push("Roll Back");
    await vscode.commands.executeCommand(PALETTE.rollBack);
    recorded.answers.push("version…", "v3");
    await vscode.commands.executeCommand(PALETTE.chooseAdapter);
    recorded.answers.push("base");
    await vscode.commands.executeCommand(PALETTE.chooseAdapter);
    expect(sent(clients[0])).toEqual([
      ["penwright.retrainNow"],
      ["penwright.cancelTraining"],
      ["penwright.rollback"],
      ["penwright.selectAdapter", "v3"],
      ["penwright.selectAdapter", "base"],
    ]);
    expect(clients[0].requests.every((r) => r.method === "workspace/executeCommand")).toBe(true);
  });

  it("asks before rolling back and does nothing when the author declines", async () => {
    await activated();
    recorded.answers.push(undefined);
    await vscode.commands.executeCommand(PALETTE.rollBack);
    expect(sent(clients[0])).toEqual([]);
    expect(recorded.warnings[0]).toMatch(/previous one/);
  });

  it("shows status, opens the dashboard at the daemon's URL, and opens the Continue config", async () => {
    await activated();
    recorded.answers.push("Open Dashboard");
    await vscode.commands.executeCommand(PALETTE.showStatus);
    expect(recorded.info[0]).toBe("Penwright: adapter v2");
    expect(recorded.opened).toEqual(["http://127.0.0.1:8765/"]);
    await vscode.commands.executeCommand(PALETTE.generateContinueConfig);
    expect(recorded.documents[0]).toEqual({ language: "yaml", content: "models:\n- provider: openai\n" });
    expect(recorded.info.at(-1)).toMatch(/save this as \.continue\/assistants\/penwright\.yaml in the project/);
  });

  it("rejects a malformed adapter version before asking the server", async () => {
    await activated();
    recorded.answers.push("version…", "three");
    await vscode.commands.executeCommand(PALETTE.chooseAdapter);
    expect(sent(clients[0])).toEqual([]);
  });
});

describe("status bar", () => {
  it("shows the live adapter, then training progress from the server's notifications; click shows status", async () => {
    await activated();
    const item = recorded.statusItems[0];
    expect(item.visible).toBe(true);
    expect(item.command).toBe(PALETTE.showStatus);
    const notify = clients[0].handlers.get("penwright/status")!;
    notify({ adapter: "v2", model: "penwright", training: null });
    expect(item.text).toBe("$(feedback) Penwright v2");
    notify({ adapter: "v2", training: { job: 4, step: 6, total: 15, loss: 2.1 } });
    expect(item.text).toBe("$(sync~spin) Penwright: training 40%");
    expect(String(item.tooltip)).toContain("step 6/15");
    notify({ adapter: "v3", model: "penwright@v2", training: null });
    expect(item.text).toBe("$(feedback) Penwright v3 (penwright@v2)");
  });
});
